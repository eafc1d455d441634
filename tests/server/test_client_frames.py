"""What the relay passes from an agent to a client: only messages clients understand."""

from hatchway.protocol import AgentMessage, MessageType, peek_message_type
from hatchway.server.client_frames import for_client


def frame(kind: str) -> bytes:
    return AgentMessage(message_type=kind, created_date=1, payload=b"{}").encode()


def test_what_the_official_plugin_handles_reaches_clients():
    for kind in (
        MessageType.OUTPUT_STREAM_DATA,
        MessageType.ACKNOWLEDGE,
        MessageType.CHANNEL_CLOSED,
        MessageType.START_PUBLICATION,
        MessageType.PAUSE_PUBLICATION,
    ):
        assert for_client(frame(kind)), kind


def test_messages_for_the_service_do_not():
    for kind in (MessageType.AGENT_SESSION_STATE, MessageType.INPUT_STREAM_DATA, "made_up"):
        assert not for_client(frame(kind)), kind


def test_a_frame_too_short_for_a_header_does_not():
    assert not for_client(b"\x00\x00\x00\x74output_stream_data")
    assert peek_message_type(b"") == ""


def test_the_type_is_read_from_the_header_alone():
    encoded = frame(MessageType.AGENT_SESSION_STATE)
    assert peek_message_type(encoded[:36]) == "agent_session_state"
    assert peek_message_type(b"\x00\x00\x00\x74" + b"\xff" * 32) == ""
