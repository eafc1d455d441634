"""The Session Manager wire protocol, sans-I/O.

Nothing here opens a socket, reads a clock or imports the rest of Hatchway: bytes and
``now`` go in, bytes and events come out. The server, the agent, the client and the
browser console all rest on this one core.
"""

from .crypto import Role, SessionCipher
from .errors import FlowControlError, ProtocolError
from .message import (
    HEADER_LENGTH,
    MAX_MESSAGE_BYTES,
    PAYLOAD_OFFSET,
    AgentMessage,
    Flags,
    MessageType,
    PayloadType,
    decode,
    message_id_from_wire,
    message_id_to_wire,
    peek_message_type,
    peek_sequence_number,
)
from .payloads import (
    AGENT_PRESENCE_FEATURE,
    FEATURES_HEADER,
    Acknowledge,
    ActionStatus,
    ActionType,
    AgentPresence,
    ChannelClosed,
    EncChallengeRequest,
    EncChallengeResponse,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    OpenDataChannel,
    PortFlag,
    Presence,
    ProcessedClientAction,
    RequestedClientAction,
    SessionType,
    TerminalSize,
    parse_features,
)
from .stream import DataChannel

__all__ = [
    "AGENT_PRESENCE_FEATURE",
    "FEATURES_HEADER",
    "HEADER_LENGTH",
    "MAX_MESSAGE_BYTES",
    "PAYLOAD_OFFSET",
    "Acknowledge",
    "ActionStatus",
    "ActionType",
    "AgentMessage",
    "AgentPresence",
    "ChannelClosed",
    "DataChannel",
    "EncChallengeRequest",
    "EncChallengeResponse",
    "Flags",
    "FlowControlError",
    "HandshakeComplete",
    "HandshakeRequest",
    "HandshakeResponse",
    "MessageType",
    "OpenDataChannel",
    "PayloadType",
    "PortFlag",
    "Presence",
    "ProcessedClientAction",
    "ProtocolError",
    "RequestedClientAction",
    "Role",
    "SessionCipher",
    "SessionType",
    "TerminalSize",
    "decode",
    "message_id_from_wire",
    "message_id_to_wire",
    "parse_features",
    "peek_message_type",
    "peek_sequence_number",
]
