"""The agent's side of one session, sans-I/O: the handshake, then stream traffic.

Built on ``DataChannel(Role.AGENT)``. Hatchway's agent always runs the handshake, for
every session type: the reference client and third-party clients answer it for shells
too, and it tells us the client's version and whether it understands exit codes.

Exit codes travel as PayloadType 12 (``EXIT_CODE: <n>``) only to clients that accept the
optional ``ExitCodeReporting`` action; the reference client would print the text raw.
Sessions that run under a pty also offer ``PseudoTerminal``: a client whose input is not
a terminal declines the pty there, and its session runs on pipes (``SessionReady``
says so); any other answer, or none, keeps the pty.
"""

from __future__ import annotations

import enum
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .crypto import CHALLENGE_BYTES, Role, SessionCipher
from .errors import ProtocolError
from .message import PayloadType
from .payloads import (
    ActionType,
    EncChallengeRequest,
    EncChallengeResponse,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    PortFlag,
    RequestedClientAction,
    TerminalSize,
    b64encode,
)
from .port import ConnectError
from .stream import ChannelClosedReceived, ChannelFailed, DataChannel, StreamData

HANDSHAKE_TIMEOUT = 15.0
EARLY_INPUT_BYTES = 64 * 1024
EXIT_CODE_ACTION = ActionType.EXIT_CODE_REPORTING
# Hatchway's optional handshake actions; reference clients answer "unsupported" to each.
OPTIONAL_ACTIONS = (ActionType.EXIT_CODE_REPORTING, ActionType.PORT_ERROR_DETAILS)
# The session types that run under a pty, for which PseudoTerminal is offered.
PTY_SESSION_TYPES = ("Standard_Stream", "InteractiveCommands")
KMS_MESSAGE = "This session is encrypted using AWS KMS."
HANDSHAKE_TIMED_OUT = (
    "Encountered error while initiating handshake. Handshake timed out. Please ensure that "
    "you have the latest version of the session manager plugin."
)
CHALLENGE_TIMED_OUT = "Timed out waiting for encryption challenge."
CHALLENGE_MISMATCH = "Encryption challenge does not match!"


class State(enum.Enum):
    HANDSHAKING = "handshaking"
    AWAITING_KEY = "awaiting data key"  # the I/O layer is asking KMS to decrypt
    AWAITING_CHALLENGE = "awaiting challenge"
    READY = "ready"
    CLOSED = "closed"
    FAILED = "failed"


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KmsDecryptNeeded:
    """Decrypt the client's data key with KMS, then call ``provide_data_key``."""

    ciphertext: bytes
    key_id: str
    encryption_context: dict[str, str]


@dataclass(frozen=True, slots=True)
class SessionReady:
    client_version: str
    encrypted: bool
    exit_codes: bool
    pseudo_terminal: bool = True  # False: the client declined a pty; run on pipes


@dataclass(frozen=True, slots=True)
class InputReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class ResizeRequested:
    cols: int
    rows: int


@dataclass(frozen=True, slots=True)
class FlagReceived:
    flag: PortFlag


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """channel_closed arrived: the service ended the session."""

    reason: str


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """The session cannot go on; ``reason`` is the text for agent_task_complete."""

    reason: str


Event = (
    KmsDecryptNeeded
    | SessionReady
    | InputReceived
    | ResizeRequested
    | FlagReceived
    | SessionClosed
    | SessionFailed
)


class AgentSession:
    def __init__(
        self,
        *,
        session_id: str,
        target: str,
        session_type: str,
        agent_version: str,
        properties: dict[str, Any] | None = None,
        kms_key_id: str | None = None,
        channel: DataChannel | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        max_payload: int = 32 * 1024,
    ) -> None:
        self.session_id = session_id
        self.target = target
        self.session_type = session_type
        self.agent_version = agent_version
        self.properties = properties
        self.kms_key_id = kms_key_id or None
        self.channel = channel or DataChannel(Role.AGENT)
        self.state = State.HANDSHAKING
        self.client_version = ""
        self.exit_codes = False
        self.port_error_details = False
        self.pseudo_terminal = True
        self.max_payload = max_payload
        self._random = random_bytes
        self._challenge = random_bytes(16) if self.kms_key_id else b""
        self._secret = b""
        self._deadline: float | None = None
        self._heard_client = False
        self._started = 0.0
        self._events: deque[Event] = deque()
        self._early: list[StreamData] = []
        self._early_bytes = 0

    # --- starting -----------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Send the HandshakeRequest (the agent's first stream message, seq 0)."""
        request = HandshakeRequest.build(
            self.agent_version,
            self.session_type,
            self.properties,
            self.kms_key_id,
            self._challenge if self.kms_key_id else None,
        )
        offered = list(OPTIONAL_ACTIONS)
        if self.session_type in PTY_SESSION_TYPES:
            offered.append(ActionType.PSEUDO_TERMINAL)
        optional = tuple(RequestedClientAction(action, {}) for action in offered)
        actions = (*request.actions, *optional)
        request = HandshakeRequest(request.agent_version, actions)
        self.channel.send(request.to_json(), PayloadType.HANDSHAKE_REQUEST, now=now)
        # The handshake's deadline runs from the client's first frame, not from here: a
        # client on a busy machine may open its data channel late, and until it does the
        # service's join deadline (ending the session with channel_closed) is the bound.
        self._heard_client = False
        self._started = now

    # --- I/O layer entry points ---------------------------------------------------------

    def receive(self, frame: bytes, now: float) -> None:
        if not self._heard_client:
            self._heard_client = True
            if self.state is State.HANDSHAKING:
                self._deadline = now + HANDSHAKE_TIMEOUT
        self.channel.receive(frame, now=now)
        while (event := self.channel.next_event()) is not None:
            if isinstance(event, StreamData):
                self._on_stream(event, now)
            elif isinstance(event, ChannelClosedReceived):
                self.state = State.CLOSED
                self._events.append(SessionClosed(event.closed.output))
            elif isinstance(event, ChannelFailed):
                self._fail(event.reason)

    def provide_data_key(self, plaintext: bytes, now: float) -> None:
        """KMS gave back the 64-byte data key: turn on encryption and send the challenge."""
        if self.state is not State.AWAITING_KEY:
            raise ProtocolError(f"no data key was asked for in state {self.state.value}")
        cipher = SessionCipher(plaintext, Role.AGENT, self._random)
        self.channel.set_cipher(cipher)
        self._secret = self._random(CHALLENGE_BYTES)
        challenge = EncChallengeRequest(cipher.encrypt(self._secret))
        self.channel.send(challenge.to_json(), PayloadType.ENC_CHALLENGE_REQUEST, now=now)
        self.state = State.AWAITING_CHALLENGE
        self._deadline = now + HANDSHAKE_TIMEOUT

    def data_key_timed_out(self, detail: str) -> None:
        """KMS did not answer in time: the handshake timed out, as the official agent says
        when the node cannot reach KMS (agent.md §6); ``detail`` says where it waited."""
        self._fail(f"{HANDSHAKE_TIMED_OUT} {detail}")

    def data_key_failed(self, error: str) -> None:
        """KMS would not or could not decrypt the client's data key (agent.md §6)."""
        self._fail(
            "Encountered error while initiating handshake. Fetching data key failed: Unable "
            f"to retrieve data key, Error when decrypting data key {error}"
        )

    def send_output(self, data: bytes, now: float) -> None:
        self._send_chunks(data, PayloadType.OUTPUT, now)

    def send_stderr(self, data: bytes, now: float) -> None:
        self._send_chunks(data, PayloadType.STDERR, now)

    def send_exit_code(self, code: int, now: float) -> None:
        if self.exit_codes:
            self.channel.send(f"EXIT_CODE: {code}".encode(), PayloadType.EXIT_CODE, now=now)

    def send_flag(self, flag: PortFlag, now: float) -> None:
        self.channel.send(flag.to_bytes_payload(), PayloadType.FLAG, now=now)

    def send_connect_error(self, error: ConnectError, now: float) -> None:
        """Flag ConnectToPortError, with the reason for clients that asked for it."""
        if self.port_error_details:
            self.channel.send(error.to_flag_payload(), PayloadType.FLAG, now=now)
        else:
            self.send_flag(PortFlag.CONNECT_TO_PORT_ERROR, now)

    @property
    def send_capacity(self) -> int:
        """Bytes ``send_output`` takes now (in messages of ``max_payload``, sealed if the
        session is encrypted); wait for acks when it is too small."""
        return self.channel.capacity(self.max_payload)

    def tick(self, now: float) -> None:
        self.channel.tick(now)
        while (event := self.channel.next_event()) is not None:
            if isinstance(event, ChannelFailed):
                self._fail(event.reason)
        if self._deadline is not None and now >= self._deadline:
            waiting_for_challenge = self.state is State.AWAITING_CHALLENGE
            self._fail(CHALLENGE_TIMED_OUT if waiting_for_challenge else HANDSHAKE_TIMED_OUT)

    def next_timeout(self) -> float | None:
        times = [t for t in (self.channel.next_timeout(), self._deadline) if t is not None]
        return min(times) if times else None

    def data_to_send(self) -> list[bytes]:
        return self.channel.data_to_send()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # --- internals ----------------------------------------------------------------------

    def _send_chunks(self, data: bytes, payload_type: int, now: float) -> None:
        view = memoryview(data)
        for start in range(0, len(view), self.max_payload):
            self.channel.send(bytes(view[start : start + self.max_payload]), payload_type, now=now)

    def _on_stream(self, event: StreamData, now: float) -> None:
        kind = event.payload_type
        if self.state in (State.CLOSED, State.FAILED):
            return
        try:
            if kind == PayloadType.HANDSHAKE_RESPONSE and self.state is State.HANDSHAKING:
                self._on_handshake_response(HandshakeResponse.from_json(event.payload), now)
            elif kind == PayloadType.ENC_CHALLENGE_RESPONSE and (
                self.state is State.AWAITING_CHALLENGE
            ):
                self._on_challenge(EncChallengeResponse.from_json(event.payload), now)
            elif self.state is not State.READY:
                # The official agent acks and drops input that beats the handshake; clients
                # that never resend (pyssm-client) then lose their first command. We keep
                # a bounded amount and hand it over once the session is ready.
                if self._early_bytes + len(event.payload) <= EARLY_INPUT_BYTES:
                    self._early.append(event)
                    self._early_bytes += len(event.payload)
                return
            elif kind == PayloadType.OUTPUT:
                self._events.append(InputReceived(event.payload))
            elif kind == PayloadType.SIZE:
                size = TerminalSize.from_json(event.payload)
                self._events.append(ResizeRequested(size.cols, size.rows))
            elif kind == PayloadType.FLAG:
                self._events.append(FlagReceived(PortFlag.from_payload(event.payload)))
        except ProtocolError as exc:
            if self.state is not State.READY:
                self._fail(f"Encountered error while initiating handshake. {exc}")

    def _on_handshake_response(self, response: HandshakeResponse, now: float) -> None:
        self.client_version = response.client_version
        for action in response.actions:
            required = action.action_type in (ActionType.SESSION_TYPE, ActionType.KMS_ENCRYPTION)
            if required and not action.succeeded:
                status = action.status if action.status else action.result
                self._fail(
                    f"Encountered error while initiating handshake. {action.action_type} failed "
                    f"on client with status {status} error: {action.error}"
                )
                return
        self.exit_codes = self._accepted(response, ActionType.EXIT_CODE_REPORTING)
        self.port_error_details = self._accepted(response, ActionType.PORT_ERROR_DETAILS)
        self.pseudo_terminal = not self._declines_pty(response)
        if self.kms_key_id:
            blob = response.kms_ciphertext_key
            if blob is None:
                self._fail(
                    "Encountered error while initiating handshake. KMSEncryption failed on "
                    "client: no KMSCipherTextKey in the HandshakeResponse"
                )
                return
            context = {"aws:ssm:SessionId": self.session_id, "aws:ssm:TargetId": self.target}
            if response.challenge_acknowledged:
                context["aws:ssm:RandomChallenge"] = b64encode(self._challenge)
            self.state = State.AWAITING_KEY
            self._deadline = None
            self._events.append(KmsDecryptNeeded(blob, self.kms_key_id, context))
            return
        self._complete("", now)

    def _declines_pty(self, response: HandshakeResponse) -> bool:
        """Only an answer to our offer with ``{"Allocate": false}`` turns the pty off."""
        if self.session_type not in PTY_SESSION_TYPES:
            return False
        action = response.action(ActionType.PSEUDO_TERMINAL)
        return (
            action is not None
            and action.succeeded
            and isinstance(action.result, dict)
            and action.result.get("Allocate") is False
        )

    @staticmethod
    def _accepted(response: HandshakeResponse, action_type: ActionType) -> bool:
        action = response.action(action_type)
        return action is not None and action.succeeded

    def _on_challenge(self, response: EncChallengeResponse, now: float) -> None:
        cipher = self.channel.cipher
        if cipher is None or not cipher.check_challenge(self._secret, response.challenge):
            self._fail(f"Encountered error while initiating handshake. {CHALLENGE_MISMATCH}")
            return
        self._complete(KMS_MESSAGE, now)

    def _complete(self, message: str, now: float) -> None:
        elapsed_ns = max(0, int((now - self._started) * 1e9))
        done = HandshakeComplete(elapsed_ns, message)
        self.channel.send(done.to_json(), PayloadType.HANDSHAKE_COMPLETE, now=now)
        self.state = State.READY
        self._deadline = None
        self._events.append(
            SessionReady(
                self.client_version,
                self.channel.cipher is not None,
                self.exit_codes,
                self.pseudo_terminal,
            )
        )
        early, self._early = self._early, []
        for event in early:
            self._on_stream(event, now)

    def _fail(self, reason: str) -> None:
        if self.state in (State.FAILED, State.CLOSED):
            return
        self.state = State.FAILED
        self._deadline = None
        self._events.append(SessionFailed(reason))
