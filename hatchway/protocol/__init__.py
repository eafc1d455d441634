"""The Session Manager wire protocol, sans-I/O.

Nothing here opens a socket, reads a clock or imports the rest of Hatchway: bytes and
``now`` go in, bytes and events come out. The server, the agent, the client and the
browser console all rest on this one core.
"""

from .crypto import Role, SessionCipher
from .errors import FlowControlError, ProtocolError
from .message import (
    HEADER_LENGTH,
    PAYLOAD_OFFSET,
    AgentMessage,
    Flags,
    MessageType,
    PayloadType,
    decode,
    message_id_from_wire,
    message_id_to_wire,
    peek_message_type,
)
from .payloads import (
    Acknowledge,
    ActionStatus,
    ActionType,
    ChannelClosed,
    EncChallengeRequest,
    EncChallengeResponse,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    OpenDataChannel,
    PortFlag,
    ProcessedClientAction,
    RequestedClientAction,
    SessionType,
    TerminalSize,
)
from .stream import DataChannel

__all__ = [
    "HEADER_LENGTH",
    "PAYLOAD_OFFSET",
    "Acknowledge",
    "ActionStatus",
    "ActionType",
    "AgentMessage",
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
    "peek_message_type",
]
