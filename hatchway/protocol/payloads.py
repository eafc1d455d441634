"""Typed objects for the JSON payloads of the data channel.

Each class has ``to_json() -> bytes``, which writes the exact field order and compact
separators that the reference client uses, and ``from_json(bytes)``, which accepts what
real peers send and raises ProtocolError for anything else.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from .errors import ProtocolError

JsonObject = dict[str, Any]


def dump_json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_object(data: bytes | str, what: str) -> JsonObject:
    """Parse a JSON object, or raise ProtocolError naming the payload."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object, not {type(obj).__name__}")
    return obj


def get_field(
    obj: Mapping[str, Any],
    key: str,
    kinds: type | tuple[type, ...],
    what: str,
    *,
    default: Any = ...,
) -> Any:
    """Fetch ``obj[key]`` and check its JSON type; booleans never pass for numbers."""
    if key not in obj or obj[key] is None:
        if default is ...:
            raise ProtocolError(f"{what} lacks the field {key}")
        return default
    value = obj[key]
    kinds_tuple = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) and bool not in kinds_tuple:
        raise ProtocolError(f"{what} field {key} has the wrong type bool")
    if not isinstance(value, kinds_tuple):
        raise ProtocolError(f"{what} field {key} has the wrong type {type(value).__name__}")
    return value


def b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{what} is not valid base64") from None


def b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ProtocolError(f"{what} {value!r} is not a UUID") from None


# --- acknowledge and channel_closed ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """The payload of an ``acknowledge`` message (data-channel.md §3.1)."""

    message_type: str
    message_id: uuid.UUID
    sequence_number: int
    is_sequential: bool = True

    def to_json(self) -> bytes:
        return dump_json(
            {
                "AcknowledgedMessageType": self.message_type,
                "AcknowledgedMessageId": str(self.message_id),
                "AcknowledgedMessageSequenceNumber": self.sequence_number,
                "IsSequentialMessage": self.is_sequential,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        what = "acknowledge payload"
        obj = load_object(data, what)
        return cls(
            message_type=get_field(obj, "AcknowledgedMessageType", str, what, default=""),
            message_id=_parse_uuid(get_field(obj, "AcknowledgedMessageId", str, what), what),
            sequence_number=get_field(obj, "AcknowledgedMessageSequenceNumber", int, what),
            is_sequential=get_field(obj, "IsSequentialMessage", bool, what, default=True),
        )


# What an agent's channel_closed Output starts with when the session failed, before the
# reason (agent.md §1.13, the "mark failed" path): a newline, 10 dashes, ERROR, 7 dashes.
ERROR_BANNER = "\n----------ERROR-------\n"


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """The payload of ``channel_closed`` (data-channel.md §6.1)."""

    session_id: str
    message_id: uuid.UUID
    created_date: str
    destination_id: str = ""
    output: str = ""
    schema_version: int = 1

    def to_json(self) -> bytes:
        return dump_json(
            {
                "MessageId": str(self.message_id),
                "CreatedDate": self.created_date,
                "DestinationId": self.destination_id,
                "SessionId": self.session_id,
                "MessageType": "channel_closed",
                "SchemaVersion": self.schema_version,
                "Output": self.output,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        what = "channel_closed payload"
        obj = load_object(data, what)
        raw_id = get_field(obj, "MessageId", str, what, default="")
        return cls(
            session_id=get_field(obj, "SessionId", str, what, default=""),
            message_id=_parse_uuid(raw_id, what) if raw_id else uuid.UUID(int=0),
            created_date=get_field(obj, "CreatedDate", str, what, default=""),
            destination_id=get_field(obj, "DestinationId", str, what, default=""),
            output=get_field(obj, "Output", str, what, default=""),
            schema_version=get_field(obj, "SchemaVersion", int, what, default=1),
        )


# --- handshake ------------------------------------------------------------------------


class ActionType(enum.StrEnum):
    SESSION_TYPE = "SessionType"
    KMS_ENCRYPTION = "KMSEncryption"
    # Hatchway's optional action: a client that accepts it gets the exit status as
    # PayloadType 12. Reference clients answer "unsupported", and get none.
    EXIT_CODE_REPORTING = "ExitCodeReporting"
    # Hatchway's optional action: a client that accepts it gets the reason after a
    # ConnectToPortError flag (protocol/port.py, ConnectError).
    PORT_ERROR_DETAILS = "PortErrorDetails"
    # Hatchway's optional action, offered for sessions that run under a pty: a client
    # whose input is not a terminal answers it with {"Allocate": false}, and the session
    # then runs on pipes (like `ssh -T`); it ends its input with an empty input message.
    # A client with a terminal answers {"Allocate": true}; reference clients answer
    # "unsupported". Either way the session keeps its pty.
    PSEUDO_TERMINAL = "PseudoTerminal"


class ActionStatus(enum.IntEnum):
    SUCCESS = 1
    FAILED = 2
    UNSUPPORTED = 3


class SessionType(enum.StrEnum):
    STANDARD_STREAM = "Standard_Stream"
    INTERACTIVE_COMMANDS = "InteractiveCommands"
    NON_INTERACTIVE_COMMANDS = "NonInteractiveCommands"
    PORT = "Port"


@dataclass(frozen=True, slots=True)
class RequestedClientAction:
    action_type: str
    parameters: JsonObject = field(default_factory=dict)

    def to_obj(self) -> JsonObject:
        return {"ActionType": self.action_type, "ActionParameters": self.parameters}


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """PayloadType 5, agent to client (data-channel.md §4.1)."""

    agent_version: str
    actions: tuple[RequestedClientAction, ...] = ()

    @classmethod
    def build(
        cls,
        agent_version: str,
        session_type: str,
        properties: JsonObject | None = None,
        kms_key_id: str | None = None,
        challenge: bytes | None = None,
    ) -> Self:
        actions = [
            RequestedClientAction(
                ActionType.SESSION_TYPE,
                {"SessionType": session_type, "Properties": properties},
            )
        ]
        if kms_key_id:
            kms: JsonObject = {"KMSKeyId": kms_key_id}
            if challenge is not None:
                kms["Challenge"] = b64encode(challenge)
            actions.append(RequestedClientAction(ActionType.KMS_ENCRYPTION, kms))
        return cls(agent_version, tuple(actions))

    @property
    def session_type(self) -> str | None:
        for action in self.actions:
            if action.action_type == ActionType.SESSION_TYPE:
                value = action.parameters.get("SessionType")
                return value if isinstance(value, str) else None
        return None

    @property
    def session_properties(self) -> JsonObject:
        for action in self.actions:
            if action.action_type == ActionType.SESSION_TYPE:
                props = action.parameters.get("Properties")
                return props if isinstance(props, dict) else {}
        return {}

    @property
    def kms_key_id(self) -> str | None:
        for action in self.actions:
            if action.action_type == ActionType.KMS_ENCRYPTION:
                value = action.parameters.get("KMSKeyId")
                return value if isinstance(value, str) else None
        return None

    def to_json(self) -> bytes:
        return dump_json(
            {
                "AgentVersion": self.agent_version,
                "RequestedClientActions": [a.to_obj() for a in self.actions],
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        what = "HandshakeRequest"
        obj = load_object(data, what)
        actions = []
        for item in get_field(obj, "RequestedClientActions", list, what, default=[]):
            if not isinstance(item, dict):
                raise ProtocolError(f"{what} action is not an object")
            actions.append(
                RequestedClientAction(
                    get_field(item, "ActionType", str, what),
                    get_field(item, "ActionParameters", dict, what, default={}),
                )
            )
        return cls(get_field(obj, "AgentVersion", str, what, default=""), tuple(actions))


@dataclass(frozen=True, slots=True)
class ProcessedClientAction:
    action_type: str
    status: int
    result: Any = None
    error: str = ""

    @classmethod
    def unsupported(cls, action_type: str) -> Self:
        # The reference client puts 3 in ActionResult and 0 in ActionStatus (§4.2).
        return cls(action_type, 0, ActionStatus.UNSUPPORTED, f"Unsupported action {action_type}")

    @property
    def succeeded(self) -> bool:
        return self.status == ActionStatus.SUCCESS

    def to_obj(self) -> JsonObject:
        return {
            "ActionType": self.action_type,
            "ActionStatus": int(self.status),
            "ActionResult": self.result,
            "Error": self.error,
        }


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """PayloadType 6, client to agent (data-channel.md §4.2)."""

    client_version: str
    actions: tuple[ProcessedClientAction, ...] = ()
    errors: tuple[str, ...] | None = None

    def to_json(self) -> bytes:
        return dump_json(
            {
                "ClientVersion": self.client_version,
                "ProcessedClientActions": [a.to_obj() for a in self.actions],
                "Errors": list(self.errors) if self.errors is not None else None,
            }
        )

    def action(self, action_type: str) -> ProcessedClientAction | None:
        return next((a for a in self.actions if a.action_type == action_type), None)

    @property
    def kms_ciphertext_key(self) -> bytes | None:
        action = self.action(ActionType.KMS_ENCRYPTION)
        if action is None or not isinstance(action.result, dict):
            return None
        blob = action.result.get("KMSCipherTextKey")
        if not isinstance(blob, str):
            return None
        return b64decode(blob, "KMSCipherTextKey")

    @property
    def challenge_acknowledged(self) -> bool:
        action = self.action(ActionType.KMS_ENCRYPTION)
        return bool(
            action is not None
            and isinstance(action.result, dict)
            and action.result.get("ChallengeAcknowledgement") is True
        )

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        what = "HandshakeResponse"
        obj = load_object(data, what)
        actions = []
        for item in get_field(obj, "ProcessedClientActions", list, what, default=[]):
            if not isinstance(item, dict):
                raise ProtocolError(f"{what} action is not an object")
            actions.append(
                ProcessedClientAction(
                    action_type=get_field(item, "ActionType", str, what),
                    status=get_field(item, "ActionStatus", int, what, default=0),
                    result=item.get("ActionResult"),
                    error=get_field(item, "Error", str, what, default=""),
                )
            )
        errors = get_field(obj, "Errors", list, what, default=None)
        if errors is not None and not all(isinstance(e, str) for e in errors):
            raise ProtocolError(f"{what} Errors must be a list of strings")
        # ClientVersion is free text: source builds say 1.2.0.0, forks say anything.
        version = get_field(obj, "ClientVersion", (str, int, float), what, default="")
        return cls(str(version), tuple(actions), tuple(errors) if errors is not None else None)


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """PayloadType 7, agent to client; the duration is in nanoseconds."""

    time_to_complete_ns: int = 0
    customer_message: str = ""

    def to_json(self) -> bytes:
        return dump_json(
            {
                "HandshakeTimeToComplete": self.time_to_complete_ns,
                "CustomerMessage": self.customer_message,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        what = "HandshakeComplete"
        obj = load_object(data, what)
        return cls(
            get_field(obj, "HandshakeTimeToComplete", int, what, default=0),
            get_field(obj, "CustomerMessage", str, what, default=""),
        )


@dataclass(frozen=True, slots=True)
class EncChallenge:
    """``{"Challenge": base64}``: the body of both EncChallengeRequest and -Response."""

    challenge: bytes

    def to_json(self) -> bytes:
        return dump_json({"Challenge": b64encode(self.challenge)})

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        what = f"{cls.__name__} payload"
        obj = load_object(data, what)
        return cls(b64decode(get_field(obj, "Challenge", str, what), f"{what} Challenge"))


class EncChallengeRequest(EncChallenge):
    """PayloadType 8, agent to client."""

    __slots__ = ()


class EncChallengeResponse(EncChallenge):
    """PayloadType 9, client to agent."""

    __slots__ = ()


# --- terminal size and flags ----------------------------------------------------------

_U32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class TerminalSize:
    """PayloadType 3, ``{"cols":C,"rows":R}``."""

    cols: int
    rows: int

    def to_json(self) -> bytes:
        return dump_json({"cols": self.cols, "rows": self.rows})

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        what = "terminal size"
        obj = load_object(data, what)
        cols = get_field(obj, "cols", int, what)
        rows = get_field(obj, "rows", int, what)
        if not (0 <= cols <= _U32_MAX and 0 <= rows <= _U32_MAX):
            raise ProtocolError(f"{what} {cols}x{rows} is out of range")
        return cls(cols, rows)


class PortFlag(enum.IntEnum):
    """PayloadType 10: a 4-byte big-endian value (data-channel.md §2.2)."""

    DISCONNECT_TO_PORT = 1
    TERMINATE_SESSION = 2
    CONNECT_TO_PORT_ERROR = 3

    def to_bytes_payload(self) -> bytes:
        return struct.pack(">I", self.value)

    @classmethod
    def from_payload(cls, data: bytes) -> PortFlag:
        if len(data) != 4:
            raise ProtocolError(f"flag payload is {len(data)} bytes, not 4")
        (value,) = struct.unpack(">I", data)
        try:
            return cls(value)
        except ValueError:
            raise ProtocolError(f"unknown flag value {value}") from None


# --- the first text frame of a data channel -------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenDataChannel:
    """The text frame a peer sends first on a data channel (data-channel.md §1.3, agent.md §1.9).

    Clients send ``ClientId`` and ``ClientVersion``; agents send ``ClientInstanceId``.
    """

    token: str
    request_id: str = ""
    client_id: str = ""
    client_version: str = ""
    client_instance_id: str = ""
    schema_version: str = "1.0"

    def to_json(self) -> bytes:
        obj: JsonObject = {
            "MessageSchemaVersion": self.schema_version,
            "RequestId": self.request_id,
            "TokenValue": self.token,
        }
        if self.client_instance_id:
            obj["ClientInstanceId"] = self.client_instance_id
        obj["ClientId"] = self.client_id
        if self.client_version:
            obj["ClientVersion"] = self.client_version
        return dump_json(obj)

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        what = "open-data-channel message"
        obj = load_object(data, what)
        schema = get_field(obj, "MessageSchemaVersion", (str, int, float), what, default="1.0")
        if str(schema) not in ("1.0", "1"):
            raise ProtocolError(f"{what} has unsupported MessageSchemaVersion {schema!r}")
        token = get_field(obj, "TokenValue", str, what)
        if not token:
            raise ProtocolError(f"{what} has an empty TokenValue")
        version = get_field(obj, "ClientVersion", (str, int, float), what, default="")
        return cls(
            token=token,
            request_id=get_field(obj, "RequestId", str, what, default=""),
            client_id=get_field(obj, "ClientId", str, what, default=""),
            client_version=str(version),
            client_instance_id=get_field(obj, "ClientInstanceId", str, what, default=""),
            schema_version="1.0",
        )


# Hatchway's own extras a client understands, named in a header of its data-channel
# upgrade request (comma-separated): other servers ignore an unknown header, and the
# OpenDataChannel frame stays exactly as the reference client writes it.
FEATURES_HEADER = "X-Hatchway-Features"
AGENT_PRESENCE_FEATURE = "agent_presence"


def parse_features(value: str) -> frozenset[str]:
    return frozenset(item.strip() for item in value.split(",") if item.strip())


class Presence(enum.StrEnum):
    AWAY = "away"
    BACK = "back"


@dataclass(frozen=True, slots=True)
class AgentPresence:
    """The payload of ``hatchway_agent_presence``: the session's agent went away (and how
    long the server waits for it, in seconds) or came back."""

    state: Presence
    target: str
    grace_seconds: float = 0.0

    def to_json(self) -> bytes:
        return dump_json(
            {"State": str(self.state), "Target": self.target, "GraceSeconds": self.grace_seconds}
        )

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        what = "hatchway_agent_presence payload"
        obj = load_object(data, what)
        state = get_field(obj, "State", str, what)
        try:
            presence = Presence(state)
        except ValueError:
            raise ProtocolError(f"{what} has an unknown State {state!r}") from None
        grace = get_field(obj, "GraceSeconds", (int, float), what, default=0.0)
        return cls(presence, get_field(obj, "Target", str, what, default=""), float(grace))
