"""Cross-check the codec against pyssm-client, a third-party implementation.

pyssm-client needs Python 3.12, so it runs in its own virtualenv, in a subprocess.
"""

import json
import random
import subprocess
import uuid

from hatchway.protocol import AgentMessage, MessageType, decode
from tests.conftest import ROOT

ORACLE = ROOT / "tests" / "oracles" / "pyssm_codec.py"
COUNT = 400


def ask_pyssm(python, requests):
    result = subprocess.run(
        [str(python), str(ORACLE)],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def random_message(rng: random.Random) -> AgentMessage:
    kind = rng.choice([t.value for t in MessageType][:6])
    return AgentMessage(
        message_type=kind,
        schema_version=rng.choice([1, 1, 2, 2**32 - 1]),
        created_date=rng.randrange(1, 2**63),
        sequence_number=rng.randrange(-(2**63), 2**63),
        flags=rng.randrange(0, 2**63),
        message_id=uuid.UUID(int=rng.getrandbits(128)),
        payload_type=rng.randrange(0, 13),
        payload=rng.randbytes(rng.choice([0, 1, 3, 1024, rng.randrange(0, 5000)])),
    )


def test_pyssm_reads_what_we_encode(pyssm_python):
    rng = random.Random(2)
    messages = [random_message(rng) for _ in range(COUNT)]
    answers = ask_pyssm(pyssm_python, [{"op": "decode", "hex": m.encode().hex()} for m in messages])
    for message, answer in zip(messages, answers, strict=True):
        assert answer == {
            "message_type": message.message_type,
            "schema_version": message.schema_version,
            "created_date": message.created_date,
            "sequence_number": message.sequence_number,
            "flags": message.flags,
            "message_id": str(message.message_id),
            "payload_type": message.payload_type,
            "payload": message.payload.hex(),
            "header_length": 116,
        }


def test_we_read_what_pyssm_encodes(pyssm_python):
    rng = random.Random(3)
    messages = [random_message(rng) for _ in range(COUNT)]
    requests = [
        {
            "op": "encode",
            "message_type": m.message_type,
            "schema_version": m.schema_version,
            "created_date": m.created_date,
            "sequence_number": m.sequence_number,
            "flags": m.flags,
            "message_id": str(m.message_id),
            "payload_type": m.payload_type,
            "payload": m.payload.hex(),
        }
        for m in messages
    ]
    for message, wire in zip(messages, ask_pyssm(pyssm_python, requests), strict=True):
        assert decode(bytes.fromhex(wire)) == message
        if message.payload:
            # Byte for byte the same, except pyssm's all-zero digest on empty payloads.
            assert bytes.fromhex(wire) == message.encode()
