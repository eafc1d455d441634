"""The client end of one session, sans-I/O (data-channel.md §1.4, §4, §5.1, §6).

``ClientSession`` sits on a ``DataChannel(Role.CLIENT)`` and does what a Session Manager
client does on top of the reliable stream: it answers the handshake, asks its caller for a
KMS data key and installs the session cipher, answers the encryption challenge, recognises
an agent that skipped the handshake, and turns stream payloads into events.

Like ``DataChannel`` it never touches a socket or a clock: frames and ``now`` (Unix time in
seconds) go in through ``receive()``; events come out of ``next_event()``; frames to write
come out of ``data_to_send()``; ``tick(now)`` runs retransmission when ``next_timeout()``
says so.

States and the moves between them::

    AWAITING_HANDSHAKE --HandshakeRequest, no KMS--> HANDSHAKING --HandshakeComplete--> ESTABLISHED
    AWAITING_HANDSHAKE --HandshakeRequest with KMS--> AWAITING_DATA_KEY
    AWAITING_DATA_KEY --provide_data_key / refuse_kms--> HANDSHAKING
    AWAITING_HANDSHAKE --first output, no handshake (legacy or skipped)--> ESTABLISHED
    any open state --channel_closed--> CLOSED;  any open state --failure--> FAILED
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

from .crypto import Role, SessionCipher
from .errors import FlowControlError, ProtocolError
from .message import AgentMessage, MessageType, PayloadType, decode
from .payloads import (
    ERROR_BANNER,
    ActionStatus,
    ActionType,
    AgentPresence,
    EncChallengeRequest,
    EncChallengeResponse,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    JsonObject,
    PortFlag,
    ProcessedClientAction,
    RequestedClientAction,
    SessionType,
    TerminalSize,
    b64encode,
)
from .port import ConnectError
from .stream import (
    ChannelClosedReceived,
    ChannelFailed,
    DataChannel,
    OtherMessage,
    StreamData,
)

# What we report as ClientVersion. Agents gate features on it: above 1.2.331.0 they turn
# smux keep-alive off, and at or below 1.2.295 they add an "update your plugin" notice
# (data-channel.md §4.2, §5.3), so we claim a modern plugin.
CLIENT_VERSION = "1.2.650.0"

# The reference client reads and sends at most this much stream data per message (§3.4).
MAX_INPUT_CHUNK = 1024

SHELL_SESSION_TYPES: frozenset[str] = frozenset(
    {
        SessionType.STANDARD_STREAM,
        SessionType.INTERACTIVE_COMMANDS,
        SessionType.NON_INTERACTIVE_COMMANDS,
    }
)
ALL_SESSION_TYPES: frozenset[str] = SHELL_SESSION_TYPES | {SessionType.PORT}

# Payload types that start a session when they arrive before any handshake (§4.3).
_SESSION_DATA_TYPES = frozenset({PayloadType.OUTPUT, PayloadType.STDERR, PayloadType.EXIT_CODE})

# Hatchway's optional handshake actions, which this client accepts.
_OPTIONAL_ACTIONS = frozenset({ActionType.EXIT_CODE_REPORTING, ActionType.PORT_ERROR_DETAILS})

_TRAILING_INTEGER = re.compile(r"(-?\d+)\s*$")


class ClientState(enum.Enum):
    AWAITING_HANDSHAKE = "awaiting_handshake"
    AWAITING_DATA_KEY = "awaiting_data_key"
    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    CLOSED = "closed"
    FAILED = "failed"


_ENDED = frozenset({ClientState.CLOSED, ClientState.FAILED})
_OPEN = frozenset(ClientState) - _ENDED
_MOVES: dict[ClientState, frozenset[ClientState]] = {
    ClientState.AWAITING_HANDSHAKE: frozenset(
        {ClientState.AWAITING_DATA_KEY, ClientState.HANDSHAKING, ClientState.ESTABLISHED}
    )
    | _ENDED,
    ClientState.AWAITING_DATA_KEY: frozenset({ClientState.HANDSHAKING}) | _ENDED,
    ClientState.HANDSHAKING: frozenset({ClientState.ESTABLISHED}) | _ENDED,
    ClientState.ESTABLISHED: _ENDED,
    ClientState.CLOSED: frozenset(),
    ClientState.FAILED: frozenset(),
}


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeStarted:
    """The agent sent its HandshakeRequest. ``session_type`` is None when it named none."""

    agent_version: str
    session_type: str | None
    properties: JsonObject = field(default_factory=dict)
    kms_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class KmsDataKeyNeeded:
    """Call KMS GenerateDataKey (64 bytes) with these, then ``provide_data_key`` or
    ``refuse_kms``. The handshake waits for the answer."""

    key_id: str
    encryption_context: dict[str, str]


@dataclass(frozen=True, slots=True)
class EncryptionChallengeAnswered:
    """We answered the agent's encryption challenge (PT 8 -> PT 9)."""


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """The session is running: after HandshakeComplete, or at the first output of an agent
    that skipped the handshake (``handshake`` False). Input may be sent from now on."""

    session_type: str
    properties: JsonObject = field(default_factory=dict)
    agent_version: str = ""
    customer_message: str = ""
    handshake: bool = True


@dataclass(frozen=True, slots=True)
class OutputReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class StdErrReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class ExitCodeReceived:
    """The remote command's status. ``code`` is None when ``text`` holds no integer."""

    code: int | None
    text: str


@dataclass(frozen=True, slots=True)
class FlagReceived:
    """A Flag payload; ``flag`` is a PortFlag when the value is a known one. A
    ConnectToPortError from a Hatchway agent carries its reason in ``error``."""

    flag: int
    error: ConnectError | None = None


@dataclass(frozen=True, slots=True)
class UnknownPayloadReceived:
    """Stream data of a payload type a client has no use for (Error, Parameter...)."""

    payload_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class AgentPresenceChanged:
    """The server says the session's agent went away (it waits ``grace_seconds`` for it)
    or came back. Only sent to clients that asked for it (FEATURES_HEADER)."""

    presence: AgentPresence


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """channel_closed arrived; ``output`` is its Output text (often a reason)."""

    output: str

    @property
    def failed(self) -> bool:
        """Agents mark a session that failed with an error banner before the reason
        (agent.md §1.13, "mark failed"); a clean end has no banner."""
        return self.output.startswith(ERROR_BANNER)


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """The session cannot go on; ``reason`` says why, for the user."""

    reason: str


ClientEvent = (
    HandshakeStarted
    | KmsDataKeyNeeded
    | EncryptionChallengeAnswered
    | SessionStarted
    | OutputReceived
    | StdErrReceived
    | ExitCodeReceived
    | FlagReceived
    | UnknownPayloadReceived
    | AgentPresenceChanged
    | SessionEnded
    | SessionFailed
)


def parse_exit_code(text: str) -> int | None:
    """The trailing integer of an ExitCode payload such as ``EXIT_CODE: 3``; agents may
    put a configured prefix before it (agent.md §4.5)."""
    match = _TRAILING_INTEGER.search(text)
    return int(match.group(1)) if match else None


# --- the session ----------------------------------------------------------------------


@dataclass(slots=True)
class _PendingHandshake:
    """Our answer to a HandshakeRequest while the KMS action waits for a data key."""

    actions: list[ProcessedClientAction | None]
    errors: list[str]
    # The agent's random challenge from the KMSEncryption action, which we bind into the
    # data key's encryption context and acknowledge (data-channel.md §4.5).
    challenge: str | None = None


class ClientSession:
    """One client session on top of a ``DataChannel(Role.CLIENT)``.

    ``session_id`` and ``target`` form the KMS encryption context. ``session_types`` are
    the types this client can serve: the SessionType action fails for any other, so the
    agent ends the session cleanly instead of waiting for a client that will not come.
    """

    def __init__(
        self,
        session_id: str,
        target: str = "",
        *,
        session_types: Collection[str] = ALL_SESSION_TYPES,
        client_version: str = CLIENT_VERSION,
        channel: DataChannel | None = None,
        max_input_chunk: int = MAX_INPUT_CHUNK,
        pseudo_terminal: bool = True,
    ) -> None:
        self.channel = channel if channel is not None else DataChannel(Role.CLIENT)
        if self.channel.role is not Role.CLIENT:
            raise ProtocolError("a client session needs a client data channel")
        self.session_id = session_id
        self.target = target
        self.client_version = client_version
        self.max_input_chunk = max_input_chunk
        # What we ask for when the agent offers PseudoTerminal; ``pseudo_terminal`` is
        # what was agreed: False only once an agent that offered it was told no.
        self.wants_pseudo_terminal = pseudo_terminal
        self.pseudo_terminal = True
        self.state = ClientState.AWAITING_HANDSHAKE
        self.session_type: str | None = None
        self.session_properties: JsonObject = {}
        self.agent_version = ""
        self._session_types = frozenset(session_types)
        self._pending: _PendingHandshake | None = None
        self._events: deque[ClientEvent] = deque()

    # --- pass-through to the stream ---------------------------------------------------

    def receive(self, frame: bytes | AgentMessage, now: float) -> None:
        """Take one frame from the wire. Raises ProtocolError for a malformed frame, which
        changes nothing: the caller logs it and carries on, as the reference client does."""
        if self.state in _ENDED:
            return
        message = frame if isinstance(frame, AgentMessage) else decode(frame)
        try:
            self.channel.receive(message, now=now)
        except ProtocolError:
            if message.message_type != MessageType.CHANNEL_CLOSED:
                raise
            # The reference client ends the session even when it cannot parse the
            # channel_closed payload (§6.1); so do we, without a reason to show.
            self._end("")
            return
        self._pull(now)

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> list[bytes]:
        return self.channel.data_to_send()

    def tick(self, now: float) -> None:
        self.channel.tick(now)
        self._pull(now)

    def next_timeout(self) -> float | None:
        return None if self.state in _ENDED else self.channel.next_timeout()

    def resend_unacked(self, now: float) -> None:
        """After a reconnect: put every unacknowledged message on the new socket."""
        self.channel.resend_unacked(now)

    @property
    def send_capacity(self) -> int:
        """Input bytes ``send_input`` accepts now; wait for acks when it is too small."""
        return self.channel.capacity(self.max_input_chunk)

    # --- what the caller sends --------------------------------------------------------

    def send_input(self, data: bytes, now: float) -> None:
        """Send keystrokes or piped bytes, in messages of at most ``max_input_chunk`` bytes.

        Only once the session has started: agents drop input that arrives during a
        handshake (agent.md §1.12). Raises FlowControlError when the send buffer cannot
        take all of ``data``; nothing is sent then.
        """
        self._require({ClientState.ESTABLISHED}, "send input")
        if self.channel.buffered_bytes and len(data) > self.send_capacity:
            raise FlowControlError(
                f"{len(data)} bytes of input do not fit in the send buffer "
                f"({self.send_capacity} bytes free)"
            )
        step = self.max_input_chunk
        for start in range(0, len(data), step):
            self.channel.send(data[start : start + step], PayloadType.OUTPUT, now=now)

    def end_input(self, now: float) -> None:
        """Our input has ended (stdin reached EOF). Only in a session without a pty: an
        empty input message, and the agent closes the process's stdin. (With a pty, end
        of input is a Ctrl-D typed at the start of a line, as in a terminal.)"""
        self._require({ClientState.ESTABLISHED}, "end input")
        if self.pseudo_terminal:
            raise ProtocolError("a session with a pty has no end of input: send Ctrl-D")
        self.channel.send(b"", PayloadType.OUTPUT, now=now)

    def send_size(self, cols: int, rows: int, now: float) -> None:
        """Send the terminal size. Allowed before the session starts: an agent without a
        handshake uses it at once, and one in a handshake acks and ignores it, so callers
        send it again on SessionStarted."""
        self._require(_OPEN, "send size")
        for name, value in (("cols", cols), ("rows", rows)):
            if not 0 <= value <= 2**32 - 1:
                raise ProtocolError(f"terminal {name} {value} is out of range")
        self.channel.send(TerminalSize(cols, rows).to_json(), PayloadType.SIZE, now=now)

    def send_flag(self, flag: PortFlag, now: float) -> None:
        self._require({ClientState.ESTABLISHED}, "send a flag")
        self.channel.send(PortFlag(flag).to_bytes_payload(), PayloadType.FLAG, now=now)

    def provide_data_key(self, ciphertext_blob: bytes, plaintext: bytes, now: float) -> None:
        """Answer KmsDataKeyNeeded with GenerateDataKey's result and turn encryption on."""
        self._require({ClientState.AWAITING_DATA_KEY}, "provide a data key")
        cipher = SessionCipher(plaintext, Role.CLIENT)  # checks the key length first
        result: JsonObject = {
            "KMSCipherTextKey": b64encode(ciphertext_blob),
            "KMSCipherTextHash": None,
        }
        assert self._pending is not None
        if self._pending.challenge is not None:
            # The data key is bound to the agent's challenge: agents that require it
            # (Kms.RequireKMSChallengeResponse) check this.
            result["ChallengeAcknowledgement"] = True
        answer = ProcessedClientAction(ActionType.KMS_ENCRYPTION, ActionStatus.SUCCESS, result)
        self._finish_kms(answer, None, now)
        # From here the agent encrypts its output and expects ours encrypted (§4.4 step 2).
        self.channel.set_cipher(cipher)

    def refuse_kms(self, error: str, now: float) -> None:
        """Answer KmsDataKeyNeeded with a failure; the agent then ends the session."""
        self._require({ClientState.AWAITING_DATA_KEY}, "refuse KMS encryption")
        self._finish_kms(_failed(ActionType.KMS_ENCRYPTION, error), error, now)

    # --- internals: state -------------------------------------------------------------

    def _require(self, states: Collection[ClientState], action: str) -> None:
        if self.state not in states:
            raise ProtocolError(f"cannot {action} while the session is {self.state.value}")

    def _move(self, new: ClientState) -> None:
        if new not in _MOVES[self.state]:
            raise ProtocolError(f"session cannot go from {self.state.value} to {new.value}")
        self.state = new

    def _end(self, output: str) -> None:
        self._move(ClientState.CLOSED)
        self._events.append(SessionEnded(output))

    def _fail(self, reason: str) -> None:
        self._move(ClientState.FAILED)
        self._events.append(SessionFailed(reason))

    def _pull(self, now: float) -> None:
        while self.state not in _ENDED and (event := self.channel.next_event()) is not None:
            if isinstance(event, StreamData):
                self._on_stream(event, now)
            elif isinstance(event, ChannelClosedReceived):
                self._end(event.closed.output)
            elif isinstance(event, ChannelFailed):
                self._fail(event.reason)
            elif (
                isinstance(event, OtherMessage)
                and event.message.message_type == MessageType.HATCHWAY_AGENT_PRESENCE
            ):
                try:
                    presence = AgentPresence.from_json(event.message.payload)
                except ProtocolError:
                    continue  # a notice, not the session: a bad one is dropped
                self._events.append(AgentPresenceChanged(presence))
            # Pause and resume are handled inside DataChannel; other message types, such
            # as agent_session_state, are not meant for a client.

    # --- internals: stream payloads ---------------------------------------------------

    def _on_stream(self, event: StreamData, now: float) -> None:
        kind, payload = event.payload_type, event.payload
        try:
            if kind == PayloadType.HANDSHAKE_REQUEST:
                self._on_handshake_request(payload, now)
            elif kind == PayloadType.ENC_CHALLENGE_REQUEST:
                self._on_challenge(payload, now)
            elif kind == PayloadType.HANDSHAKE_COMPLETE:
                self._on_handshake_complete(payload)
            else:
                if self.state is ClientState.AWAITING_HANDSHAKE and kind in _SESSION_DATA_TYPES:
                    self._start_without_handshake()
                if self.state not in _ENDED:
                    self._events.append(_data_event(kind, payload))
        except ProtocolError as exc:
            # The message is consumed and acked, so the agent will not send it again:
            # the session cannot recover from a payload it could not use.
            self._fail(str(exc))

    def _on_handshake_request(self, payload: bytes, now: float) -> None:
        if self.state is not ClientState.AWAITING_HANDSHAKE:
            raise ProtocolError(f"unexpected HandshakeRequest while {self.state.value}")
        request = HandshakeRequest.from_json(payload)
        self.agent_version = request.agent_version
        pending = _PendingHandshake([], [])
        key_id: str | None = None
        for action in request.actions:
            processed: ProcessedClientAction | None
            if action.action_type == ActionType.SESSION_TYPE:
                processed = self._session_type_action(action, pending.errors)
            elif action.action_type == ActionType.KMS_ENCRYPTION:
                key_id, processed = self._kms_action(action, key_id, pending.errors)
                challenge = action.parameters.get("Challenge")
                if isinstance(challenge, str) and challenge:
                    pending.challenge = challenge
            elif action.action_type == ActionType.PSEUDO_TERMINAL:
                result: JsonObject = {"Allocate": self.wants_pseudo_terminal}
                processed = ProcessedClientAction(action.action_type, ActionStatus.SUCCESS, result)
                self.pseudo_terminal = self.wants_pseudo_terminal
            elif action.action_type in _OPTIONAL_ACTIONS:
                processed = ProcessedClientAction(action.action_type, ActionStatus.SUCCESS)
            else:
                processed = ProcessedClientAction.unsupported(action.action_type)
                pending.errors.append(processed.error)
            pending.actions.append(processed)
        self._pending = pending
        self._events.append(
            HandshakeStarted(
                request.agent_version,
                request.session_type,
                request.session_properties,
                request.kms_key_id,
            )
        )
        if any(action is None for action in pending.actions):
            assert key_id is not None
            self._move(ClientState.AWAITING_DATA_KEY)
            context = {"aws:ssm:SessionId": self.session_id, "aws:ssm:TargetId": self.target}
            if pending.challenge is not None:
                context["aws:ssm:RandomChallenge"] = pending.challenge
            self._events.append(KmsDataKeyNeeded(key_id, context))
        else:
            self._send_handshake_response(now)

    def _session_type_action(
        self, action: RequestedClientAction, errors: list[str]
    ) -> ProcessedClientAction:
        value = action.parameters.get("SessionType")
        if not isinstance(value, str) or value not in ALL_SESSION_TYPES:
            error = f"Unknown session type {value}"
        elif value not in self._session_types:
            error = f"session type {value} is not supported by this client"
        else:
            self.session_type = str(value)
            properties = action.parameters.get("Properties")
            self.session_properties = properties if isinstance(properties, dict) else {}
            return ProcessedClientAction(ActionType.SESSION_TYPE, ActionStatus.SUCCESS)
        errors.append(error)
        return _failed(ActionType.SESSION_TYPE, error)

    @staticmethod
    def _kms_action(
        action: RequestedClientAction, key_id: str | None, errors: list[str]
    ) -> tuple[str | None, ProcessedClientAction | None]:
        """None stands for "answered once the data key arrives"."""
        requested = action.parameters.get("KMSKeyId")
        if not isinstance(requested, str) or not requested:
            error = "the request names no KMSKeyId"
        elif key_id is not None and requested != key_id:
            error = "the request names two different KMS keys"
        else:
            return requested, None
        errors.append(error)
        return key_id, _failed(ActionType.KMS_ENCRYPTION, error)

    def _finish_kms(self, answer: ProcessedClientAction, error: str | None, now: float) -> None:
        assert self._pending is not None
        self._pending.actions = [answer if a is None else a for a in self._pending.actions]
        if error is not None:
            self._pending.errors.append(error)
        self._send_handshake_response(now)

    def _send_handshake_response(self, now: float) -> None:
        assert self._pending is not None
        actions = tuple(a for a in self._pending.actions if a is not None)
        errors = tuple(self._pending.errors) or None
        response = HandshakeResponse(self.client_version, actions, errors)
        self.channel.send(response.to_json(), PayloadType.HANDSHAKE_RESPONSE, now=now)
        self._pending = None
        self._move(ClientState.HANDSHAKING)

    def _on_challenge(self, payload: bytes, now: float) -> None:
        cipher = self.channel.cipher
        if self.state is not ClientState.HANDSHAKING or cipher is None:
            raise ProtocolError("EncChallengeRequest arrived before a data key was agreed")
        request = EncChallengeRequest.from_json(payload)
        try:
            answer = cipher.answer_challenge(request.challenge)
        except ProtocolError as exc:
            raise ProtocolError(f"cannot answer the encryption challenge: {exc}") from None
        response = EncChallengeResponse(answer)
        self.channel.send(response.to_json(), PayloadType.ENC_CHALLENGE_RESPONSE, now=now)
        self._events.append(EncryptionChallengeAnswered())

    def _on_handshake_complete(self, payload: bytes) -> None:
        if self.state is not ClientState.HANDSHAKING:
            raise ProtocolError(f"unexpected HandshakeComplete while {self.state.value}")
        complete = HandshakeComplete.from_json(payload)
        if self.session_type is None:
            # The reference client's words for the same case (§4.3).
            raise ProtocolError("unable to determine SessionType")
        self._move(ClientState.ESTABLISHED)
        self._events.append(
            SessionStarted(
                self.session_type,
                self.session_properties,
                self.agent_version,
                complete.customer_message,
                handshake=True,
            )
        )

    def _start_without_handshake(self) -> None:
        # Legacy agents, and current ones for shells without KMS (agent.md §1.12), send no
        # handshake: their first output means a shell (§4.3).
        if SessionType.STANDARD_STREAM not in self._session_types:
            raise ProtocolError("the agent started a shell without a handshake")
        self.session_type = SessionType.STANDARD_STREAM
        self._move(ClientState.ESTABLISHED)
        self._events.append(SessionStarted(self.session_type, {}, "", "", handshake=False))


def _failed(action_type: str, error: str) -> ProcessedClientAction:
    # The reference client's text for a failed action (§4.2).
    return ProcessedClientAction(
        action_type, ActionStatus.FAILED, None, f"Failed to process action {action_type}: {error}"
    )


def _data_event(kind: int, payload: bytes) -> ClientEvent:
    if kind == PayloadType.OUTPUT:
        return OutputReceived(payload)
    if kind == PayloadType.STDERR:
        return StdErrReceived(payload)
    if kind == PayloadType.EXIT_CODE:
        text = payload.decode("utf-8", errors="replace")
        return ExitCodeReceived(parse_exit_code(text), text)
    if kind == PayloadType.FLAG and len(payload) >= 4:
        value = int.from_bytes(payload[:4], "big")
        known = {flag.value: flag for flag in PortFlag}
        return FlagReceived(known.get(value, value), ConnectError.from_flag_payload(payload))
    return UnknownPayloadReceived(kind, payload)
