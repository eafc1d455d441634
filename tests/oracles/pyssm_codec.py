"""Runs under pyssm-client's Python 3.12 virtualenv, never imported by the tests.

Reads a JSON list of requests on stdin and writes a JSON list of answers:
- {"op": "decode", "hex": ...}: pyssm-client parses the bytes and reports every field;
- {"op": "encode", ...fields}: pyssm-client serializes a message and returns its hex.
"""

import json
import sys
import uuid

from pyssm_client.communicator.protocol import parse_client_message, serialize_client_message


def decode(request):
    msg = parse_client_message(bytes.fromhex(request["hex"]))
    if msg is None:
        return None
    return {
        "message_type": msg.message_type,
        "schema_version": msg.schema_version,
        "created_date": msg.created_date,
        "sequence_number": msg.sequence_number,
        "flags": msg.flags,
        "message_id": msg.get_message_id_string(),
        "payload_type": msg.payload_type,
        "payload": msg.payload.hex(),
        "header_length": msg.header_length,
    }


def encode(request):
    data = serialize_client_message(
        message_type=request["message_type"],
        schema_version=request["schema_version"],
        created_date=request["created_date"],
        sequence_number=request["sequence_number"],
        flags=request["flags"],
        message_id=uuid.UUID(request["message_id"]).bytes,
        payload=bytes.fromhex(request["payload"]),
        payload_type=request["payload_type"],
    )
    return data.hex()


def main():
    requests = json.load(sys.stdin)
    answers = [decode(r) if r["op"] == "decode" else encode(r) for r in requests]
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
