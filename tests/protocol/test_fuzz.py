"""Whatever the bytes, the decoders raise ProtocolError and nothing else."""

import json

from hypothesis import given
from hypothesis import strategies as st

from hatchway.protocol import (
    Acknowledge,
    AgentMessage,
    ChannelClosed,
    EncChallengeResponse,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    OpenDataChannel,
    ProtocolError,
    Role,
    TerminalSize,
    decode,
)
from hatchway.protocol.smux import SmuxSession
from hatchway.protocol.stream import DataChannel

PAYLOAD_CLASSES = [
    Acknowledge,
    ChannelClosed,
    HandshakeRequest,
    HandshakeResponse,
    HandshakeComplete,
    EncChallengeResponse,
    TerminalSize,
    OpenDataChannel,
]

valid_messages = st.builds(
    AgentMessage,
    message_type=st.sampled_from(
        ["input_stream_data", "output_stream_data", "acknowledge", "channel_closed"]
    ),
    created_date=st.integers(1, 2**64 - 1),
    sequence_number=st.integers(-(2**63), 2**63 - 1),
    flags=st.integers(0, 2**64 - 1),
    payload_type=st.integers(0, 12),
    payload=st.binary(max_size=300),
)


def must_only_raise_protocol_error(fn, *args):
    try:
        fn(*args)
    except ProtocolError:
        pass


@given(st.binary(max_size=400))
def test_random_bytes(data):
    must_only_raise_protocol_error(decode, data)


@given(
    valid_messages,
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    st.integers(0, 400),
    st.binary(max_size=20),
)
def test_mutated_valid_messages(message, flips, cut, tail):
    data = bytearray(message.encode())
    for position, value in flips:
        data[position % len(data)] = value
    must_only_raise_protocol_error(decode, bytes(data[: max(cut, len(data) // 2)]) + tail)
    must_only_raise_protocol_error(decode, bytes(data))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "AcknowledgedMessageType",
        "AcknowledgedMessageId",
        "AcknowledgedMessageSequenceNumber",
        "IsSequentialMessage",
        "SessionId",
        "MessageId",
        "Output",
        "CreatedDate",
        "AgentVersion",
        "RequestedClientActions",
        "ActionType",
        "ActionParameters",
        "ClientVersion",
        "ProcessedClientActions",
        "ActionStatus",
        "Errors",
        "HandshakeTimeToComplete",
        "CustomerMessage",
        "Challenge",
        "cols",
        "rows",
        "MessageSchemaVersion",
        "TokenValue",
    ]
)


@given(st.sampled_from(PAYLOAD_CLASSES), st.dictionaries(field_names, json_values, max_size=8))
def test_json_payloads_with_random_fields(cls, obj):
    must_only_raise_protocol_error(cls.from_json, json.dumps(obj).encode())
    parsed = None
    try:
        parsed = cls.from_json(json.dumps(obj).encode())
    except ProtocolError:
        return
    if isinstance(parsed, HandshakeResponse):
        must_only_raise_protocol_error(lambda: parsed.kms_ciphertext_key)


@given(st.sampled_from(PAYLOAD_CLASSES), st.binary(max_size=200))
def test_json_payloads_with_random_bytes(cls, data):
    must_only_raise_protocol_error(cls.from_json, data)


@given(st.lists(st.binary(max_size=100), max_size=10))
def test_smux_random_bytes(chunks):
    session = SmuxSession(client=False)
    for chunk in chunks:
        try:
            session.receive_data(chunk)
        except ProtocolError:
            return


@given(st.lists(valid_messages, max_size=10))
def test_data_channel_random_valid_frames(messages):
    channel = DataChannel(Role.CLIENT)
    for message in messages:
        must_only_raise_protocol_error(lambda m=message: channel.receive(m.encode(), now=1.0))
