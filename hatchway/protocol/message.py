"""The AgentMessage binary codec (data-channel.md §2).

Layout, all integers big-endian::

    0   HeaderLength   u32   always 116: the offset of PayloadLength
    4   MessageType    32 B  ASCII, space padded
    36  SchemaVersion  u32
    40  CreatedDate    u64   Unix epoch milliseconds
    48  SequenceNumber i64
    56  Flags          u64
    64  MessageId      16 B  UUID with its two 8-byte halves swapped
    80  PayloadDigest  32 B  SHA-256 of the payload as sent
    112 PayloadType    u32
    116 PayloadLength  u32
    120 Payload
"""

from __future__ import annotations

import enum
import hashlib
import struct
import uuid
from dataclasses import dataclass, field

from .errors import ProtocolError

HEADER_LENGTH = 116
PAYLOAD_OFFSET = HEADER_LENGTH + 4
MESSAGE_TYPE_LENGTH = 32
DIGEST_LENGTH = 32
# The largest AgentMessage Hatchway's ends accept in one WebSocket frame, on the control and
# the data channel alike: far above the 64 KiB port messages and any session document.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_HEADER = struct.Struct(">I32sIQqQ16s32sII")
assert _HEADER.size == PAYLOAD_OFFSET

_EMPTY_DIGEST = hashlib.sha256(b"").digest()
_ZERO_DIGEST = bytes(DIGEST_LENGTH)

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class MessageType(enum.StrEnum):
    """The message types that appear on a data channel, and those of the control channel."""

    INPUT_STREAM_DATA = "input_stream_data"
    OUTPUT_STREAM_DATA = "output_stream_data"
    ACKNOWLEDGE = "acknowledge"
    CHANNEL_CLOSED = "channel_closed"
    START_PUBLICATION = "start_publication"
    PAUSE_PUBLICATION = "pause_publication"
    # Control channel (agent.md §1.7).
    INTERACTIVE_SHELL = "interactive_shell"
    AGENT_SESSION_STATE = "agent_session_state"
    AGENT_TASK_COMPLETE = "agent_task_complete"
    AGENT_TASK_REPLY = "agent_task_reply"
    AGENT_TASK_ACKNOWLEDGE = "agent_task_acknowledge"
    AGENT_JOB = "agent_job"
    AGENT_JOB_ACKNOWLEDGE = "agent_job_ack"
    AGENT_JOB_REPLY = "agent_job_reply"
    AGENT_JOB_REPLY_ACK = "agent_job_reply_ack"
    # Hatchway's own control messages: doctor's questions to its agent, and the answers.
    # The official agent logs and ignores types it does not know.
    HATCHWAY_DIAGNOSE = "hatchway_diagnose"
    HATCHWAY_DIAGNOSE_RESULT = "hatchway_diagnose_result"
    # An agent that (re)opens its control channel lists the sessions it still runs.
    HATCHWAY_LIVE_SESSIONS = "hatchway_live_sessions"
    # Data channel, server -> client: the session's agent went away or came back. Only
    # for clients that asked for it (payloads.FEATURES_HEADER).
    HATCHWAY_AGENT_PRESENCE = "hatchway_agent_presence"


class PayloadType(enum.IntEnum):
    """What the payload of a stream message holds (data-channel.md §2.2)."""

    OUTPUT = 1
    ERROR = 2
    SIZE = 3
    PARAMETER = 4
    HANDSHAKE_REQUEST = 5
    HANDSHAKE_RESPONSE = 6
    HANDSHAKE_COMPLETE = 7
    ENC_CHALLENGE_REQUEST = 8
    ENC_CHALLENGE_RESPONSE = 9
    FLAG = 10
    STDERR = 11
    EXIT_CODE = 12


class Flags(enum.IntFlag):
    """Header flag bits."""

    NONE = 0
    SYN = 1
    FIN = 2
    ACK = SYN | FIN  # what both peers put on acknowledge messages


# Messages the real plugin accepts without the CreatedDate and HeaderLength checks.
_UNCHECKED_TYPES = frozenset({MessageType.START_PUBLICATION, MessageType.PAUSE_PUBLICATION})


def _known_payload_type(value: int) -> int:
    try:
        return PayloadType(value)
    except ValueError:
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentMessage:
    """One message of a Session Manager data or control channel.

    ``created_date`` is Unix epoch milliseconds; the caller supplies it because this
    layer never reads a clock.
    """

    message_type: str
    created_date: int
    sequence_number: int = 0
    payload: bytes = b""
    payload_type: int = 0
    flags: int = 0
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)
    schema_version: int = 1

    def encode(self) -> bytes:
        """Serialize to wire bytes. Raises ProtocolError for a field that does not fit."""
        try:
            type_bytes = self.message_type.encode("ascii")
        except UnicodeEncodeError:
            raise ProtocolError(f"message type {self.message_type!r} is not ASCII") from None
        if not type_bytes:
            raise ProtocolError("message type is empty")
        if len(type_bytes) > MESSAGE_TYPE_LENGTH:
            raise ProtocolError(
                f"message type {self.message_type!r} is longer than {MESSAGE_TYPE_LENGTH} bytes"
            )
        _check_range("schema_version", self.schema_version, 0, _U32_MAX)
        _check_range("created_date", self.created_date, 0, _U64_MAX)
        if self.created_date == 0 and self.message_type not in _UNCHECKED_TYPES:
            raise ProtocolError(f"{self.message_type} message needs a non-zero created_date")
        _check_range("sequence_number", self.sequence_number, _I64_MIN, _I64_MAX)
        _check_range("flags", self.flags, 0, _U64_MAX)
        _check_range("payload_type", self.payload_type, 0, _U32_MAX)
        if not isinstance(self.message_id, uuid.UUID):
            raise ProtocolError(f"message_id must be a uuid.UUID, not {type(self.message_id)}")
        payload = bytes(self.payload)
        _check_range("payload length", len(payload), 0, _U32_MAX)
        header = _HEADER.pack(
            HEADER_LENGTH,
            type_bytes.ljust(MESSAGE_TYPE_LENGTH, b" "),
            self.schema_version,
            self.created_date,
            self.sequence_number,
            self.flags,
            message_id_to_wire(self.message_id),
            hashlib.sha256(payload).digest(),
            self.payload_type,
            len(payload),
        )
        return header + payload


def _check_range(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{name} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise ProtocolError(f"{name} {value} is out of range [{low}, {high}]")


def message_id_to_wire(message_id: uuid.UUID) -> bytes:
    """The wire form of a message id: the least-significant half first."""
    raw = message_id.bytes
    return raw[8:] + raw[:8]


def message_id_from_wire(wire: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=wire[8:] + wire[:8])


def peek_message_type(data: bytes | bytearray | memoryview) -> str:
    """The MessageType of an encoded message, read from its header alone (it is never
    encrypted); "" when ``data`` is too short to hold one or the field is not ASCII."""
    if len(data) < 4 + MESSAGE_TYPE_LENGTH:
        return ""
    field_bytes = bytes(data[4 : 4 + MESSAGE_TYPE_LENGTH]).strip(b"\x00").strip()
    try:
        return field_bytes.decode("ascii")
    except UnicodeDecodeError:
        return ""


_SEQUENCE_NUMBER = struct.Struct(">q")
_SEQUENCE_NUMBER_OFFSET = 48


def peek_sequence_number(data: bytes | bytearray | memoryview) -> int | None:
    """The SequenceNumber of an encoded message, read from its header alone; None when
    ``data`` is too short to hold one."""
    if len(data) < _SEQUENCE_NUMBER_OFFSET + _SEQUENCE_NUMBER.size:
        return None
    (number,) = _SEQUENCE_NUMBER.unpack_from(data, _SEQUENCE_NUMBER_OFFSET)
    return int(number)


def decode(data: bytes | bytearray | memoryview) -> AgentMessage:
    """Parse one AgentMessage, validating it the way the reference client does.

    Raises ProtocolError, and nothing else, for any input that is not a valid message.
    """
    try:
        raw = bytes(data)
    except TypeError:
        raise ProtocolError(f"expected bytes, got {type(data).__name__}") from None
    if len(raw) < PAYLOAD_OFFSET:
        raise ProtocolError(
            f"message is {len(raw)} bytes, shorter than the {PAYLOAD_OFFSET}-byte header"
        )
    (
        header_length,
        type_field,
        schema_version,
        created_date,
        sequence_number,
        flags,
        wire_id,
        digest,
        payload_type,
        payload_length,
    ) = _HEADER.unpack_from(raw)

    message_type_bytes = type_field.strip(b"\x00").strip()
    try:
        message_type = message_type_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"message type {message_type_bytes!r} is not ASCII") from None
    if not message_type:
        raise ProtocolError("message type is empty")
    if not message_type.isprintable() or any(c.isspace() for c in message_type):
        raise ProtocolError(f"message type {message_type!r} holds non-printable characters")

    # Some peers may grow the header; the payload always starts 4 bytes after HeaderLength.
    if header_length < HEADER_LENGTH:
        raise ProtocolError(f"header length {header_length} is less than {HEADER_LENGTH}")
    payload_start = header_length + 4
    if payload_start > len(raw):
        raise ProtocolError(
            f"header length {header_length} points past the end of a {len(raw)}-byte message"
        )
    payload = raw[payload_start:]
    if payload_length != len(payload):
        raise ProtocolError(
            f"payload length field says {payload_length} bytes but {len(payload)} follow"
        )
    if message_type not in _UNCHECKED_TYPES and created_date == 0:
        raise ProtocolError(f"{message_type} message has no created date")
    if payload and hashlib.sha256(payload).digest() != digest:
        raise ProtocolError(f"payload digest mismatch on {message_type} seq {sequence_number}")
    if not payload and digest not in (_EMPTY_DIGEST, _ZERO_DIGEST):
        raise ProtocolError(f"empty {message_type} payload carries a non-empty digest")

    return AgentMessage(
        message_type=message_type,
        schema_version=schema_version,
        created_date=created_date,
        sequence_number=sequence_number,
        flags=flags,
        message_id=message_id_from_wire(wire_id),
        payload_type=_known_payload_type(payload_type),
        payload=payload,
    )
