"""Hatchway's agent-presence notice: asked for by the client in a header of its data-channel
upgrade, then delivered as an event."""

import pytest

from hatchway.protocol import (
    AGENT_PRESENCE_FEATURE,
    FEATURES_HEADER,
    AgentMessage,
    AgentPresence,
    MessageType,
    Presence,
    ProtocolError,
    parse_features,
)
from hatchway.protocol.client_session import AgentPresenceChanged, ClientSession, ClientState


def test_the_features_header_is_a_comma_separated_list():
    assert FEATURES_HEADER == "X-Hatchway-Features"
    assert parse_features(AGENT_PRESENCE_FEATURE) == {"agent_presence"}
    assert parse_features(" agent_presence , other,,") == {"agent_presence", "other"}
    assert parse_features("") == frozenset()


def test_the_payload_round_trips():
    away = AgentPresence(Presence.AWAY, "mi-1", 90.0)
    assert AgentPresence.from_json(away.to_json()) == away
    assert AgentPresence.from_json(b'{"State":"back"}') == AgentPresence(Presence.BACK, "")
    with pytest.raises(ProtocolError):
        AgentPresence.from_json(b'{"State":"sideways"}')


def presence_frame(payload: bytes) -> bytes:
    return AgentMessage(
        message_type=MessageType.HATCHWAY_AGENT_PRESENCE, created_date=1, payload=payload
    ).encode()


def test_a_client_session_turns_the_notice_into_an_event():
    session = ClientSession("sess-1", "mi-1")
    away = AgentPresence(Presence.AWAY, "mi-1", 2.0)
    session.receive(presence_frame(away.to_json()), 0.0)
    assert session.next_event() == AgentPresenceChanged(away)
    session.receive(presence_frame(b"not json"), 0.0)  # dropped: only a notice
    assert session.next_event() is None
    assert session.state is ClientState.AWAITING_HANDSHAKE
