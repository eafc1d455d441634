import hashlib
import struct
import uuid

import pytest

from hatchway.protocol import (
    HEADER_LENGTH,
    AgentMessage,
    MessageType,
    PayloadType,
    ProtocolError,
    decode,
    message_id_from_wire,
    message_id_to_wire,
    peek_sequence_number,
)

# data-channel.md §2, checked against the reference plugin's own encoder and decoder.
SPEC_VECTOR = bytes.fromhex(
    "00000074696e7075745f73747265616d"
    "5f646174612020202020202020202020"
    "2020202000000001 0000018bcfe56800".replace(" ", "")
    + "0000000000000005 0000000000000000".replace(" ", "")
    + "a456426614174000123e4567e89b12d3"
    "1d887ce0f8672e4914d9000e801cd74e"
    "cd805dd9366c0bc42dc16adc0197dc2f"
    "00000001000000036c730d"
)
SPEC_ID = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")


def spec_message() -> AgentMessage:
    return AgentMessage(
        message_type="input_stream_data",
        schema_version=1,
        created_date=1700000000000,
        sequence_number=5,
        flags=0,
        message_id=SPEC_ID,
        payload_type=1,
        payload=b"ls\r",
    )


def test_spec_vector_encodes_byte_for_byte():
    assert len(SPEC_VECTOR) == 123
    assert spec_message().encode() == SPEC_VECTOR


def test_spec_vector_decodes():
    msg = decode(SPEC_VECTOR)
    assert msg == spec_message()
    assert msg.payload_type is PayloadType.OUTPUT


def test_message_id_halves_are_swapped_on_the_wire():
    # The id the plugin acknowledged in the live capture (§2).
    u = uuid.UUID("bdd9e687-e358-4804-9fd7-eeeba4ba8d3e")
    assert message_id_to_wire(u).hex() == "9fd7eeeba4ba8d3ebdd9e687e3584804"
    assert message_id_from_wire(message_id_to_wire(u)) == u


def test_header_layout():
    data = spec_message().encode()
    assert struct.unpack(">I", data[:4])[0] == HEADER_LENGTH == 116
    assert data[4:36] == b"input_stream_data".ljust(32, b" ")
    assert data[80:112] == hashlib.sha256(b"ls\r").digest()
    assert struct.unpack(">I", data[116:120])[0] == 3


@pytest.mark.parametrize("kind", list(MessageType))
@pytest.mark.parametrize("payload_type", [0, *PayloadType])
def test_round_trip_every_type(kind, payload_type):
    msg = AgentMessage(
        message_type=kind,
        created_date=1_700_000_000_123,
        sequence_number=-3 if payload_type == 4 else 2**63 - 1,
        flags=2**64 - 1,
        payload_type=payload_type,
        payload=bytes(range(256)) * 3,
    )
    assert decode(msg.encode()) == msg


def test_nul_padding_and_zero_digest_on_empty_payload_are_accepted():
    # pyssm-client writes an all-zero digest for empty payloads; NUL padding also occurs.
    data = bytearray(AgentMessage(message_type="acknowledge", created_date=5).encode())
    data[4:36] = b"acknowledge".ljust(32, b"\x00")
    data[80:112] = bytes(32)
    assert decode(bytes(data)).message_type == "acknowledge"


def test_publication_messages_may_have_no_created_date():
    msg = AgentMessage(message_type="start_publication", created_date=0)
    assert decode(msg.encode()) == msg


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d[:100], "shorter than"),
        (lambda d: d[:-1], "payload length"),
        (lambda d: d + b"x", "payload length"),
        (lambda d: b"\x00\x00\x00\x10" + d[4:], "header length 16"),
        (lambda d: b"\x00\x00\x01\x00" + d[4:], "points past the end"),
        (lambda d: d[:4] + b" " * 32 + d[36:], "message type is empty"),
        (lambda d: d[:4] + b"\xff" * 32 + d[36:], "not ASCII"),
        (lambda d: d[:40] + bytes(8) + d[48:], "no created date"),
        (lambda d: d[:-1] + b"X", "digest mismatch"),
    ],
)
def test_malformed_messages_say_what_is_wrong(mutate, fragment):
    with pytest.raises(ProtocolError, match=fragment):
        decode(mutate(SPEC_VECTOR))


def test_decode_rejects_non_bytes():
    with pytest.raises(ProtocolError):
        decode(12)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"message_type": "x" * 33},
        {"message_type": ""},
        {"message_type": "é"},
        {"sequence_number": 2**63},
        {"flags": -1},
        {"payload_type": 2**32},
        {"schema_version": -1},
        {"created_date": 0},
        {"created_date": True},
    ],
)
def test_encode_refuses_fields_that_do_not_fit(fields):
    base = {"message_type": "output_stream_data", "created_date": 1}
    with pytest.raises(ProtocolError):
        AgentMessage(**(base | fields)).encode()


def test_the_sequence_number_is_read_from_the_header_alone():
    assert peek_sequence_number(SPEC_VECTOR) == 5
    assert peek_sequence_number(SPEC_VECTOR[:56]) == 5
    assert peek_sequence_number(SPEC_VECTOR[:55]) is None
    message = AgentMessage(
        message_type=MessageType.OUTPUT_STREAM_DATA, created_date=1, sequence_number=-1
    )
    assert peek_sequence_number(message.encode()) == -1
