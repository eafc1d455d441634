"""The reliable stream layer of a data channel (data-channel.md §3), sans-I/O.

One ``DataChannel`` is one end of a session's data channel: the client end sends
``input_stream_data`` and receives ``output_stream_data``; the agent end the reverse.
Frames go in through ``receive()``; events come out of ``next_event()``; frames to put
on the wire come out of ``data_to_send()``. The caller passes ``now`` (Unix time in
seconds) and calls ``tick(now)`` by ``next_timeout()`` so retransmission happens.

What it guarantees:
- every stream message the peer sends is delivered once, in sequence order, whatever
  the loss, duplication and reordering underneath, as long as the peer retransmits;
- our own stream messages are kept until acknowledged and resent with a TCP-style RTO
  (RTT gain 1/8, variation gain 1/4, RTO = RTT + max(10 ms, 4 x RTTVAR), capped at 1 s),
  backing off per message, and the channel fails after ``max_attempts`` sends;
- memory is bounded on both sides: ``send()`` refuses data beyond the send buffer, the
  reorder buffer drops (without acking) what does not fit, and stream data the caller
  has not pulled yet stops being acknowledged past a limit, so the peer must hold it.
"""

from __future__ import annotations

import enum
import heapq
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from .crypto import SEAL_OVERHEAD, Role, SessionCipher
from .errors import FlowControlError, ProtocolError
from .message import AgentMessage, Flags, MessageType, PayloadType, decode
from .payloads import Acknowledge, ChannelClosed

INITIAL_RTT = 0.1
INITIAL_RTO = 0.2
MAX_RTO = 1.0
MIN_RTO_VARIATION = 0.01
MAX_BACKOFF = 5.0

DEFAULT_SEND_BUFFER_BYTES = 8 * 1024 * 1024
DEFAULT_SEND_BUFFER_MESSAGES = 10_000
DEFAULT_REORDER_BYTES = 8 * 1024 * 1024
DEFAULT_REORDER_MESSAGES = 10_000
DEFAULT_UNDELIVERED_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_ATTEMPTS = 300  # about five minutes at the capped back-off


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamData:
    """An in-order stream message from the peer, decrypted if the session is encrypted."""

    payload_type: int
    payload: bytes
    sequence_number: int


@dataclass(frozen=True, slots=True)
class ChannelClosedReceived:
    """The peer (or the service) said the session is over."""

    closed: ChannelClosed


@dataclass(frozen=True, slots=True)
class PublicationPaused:
    """The peer asked us to stop sending new stream data."""


@dataclass(frozen=True, slots=True)
class PublicationResumed:
    """The peer asked us to send again."""


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A message that is not part of the stream layer, such as ``agent_session_state``."""

    message: AgentMessage


@dataclass(frozen=True, slots=True)
class ChannelFailed:
    """The stream cannot go on: a message was never acknowledged, or failed to decrypt."""

    reason: str


Event = (
    StreamData
    | ChannelClosedReceived
    | PublicationPaused
    | PublicationResumed
    | OtherMessage
    | ChannelFailed
)


class ChannelState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"  # channel_closed received
    FAILED = "failed"


# --- internals ------------------------------------------------------------------------


@dataclass(slots=True)
class _Outgoing:
    sequence_number: int
    frame: bytes
    size: int
    first_sent: float | None = None
    retry_at: float = 0.0
    attempts: int = 0


class RttEstimator:
    """RTT and RTO estimation as both reference peers do it (data-channel.md §3.4)."""

    def __init__(self) -> None:
        self.rtt = INITIAL_RTT
        self.rttvar = 0.0
        self.rto = INITIAL_RTO

    def sample(self, measured: float) -> None:
        measured = max(measured, 0.0)
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.rtt - measured)
        self.rtt = 0.875 * self.rtt + 0.125 * measured
        self.rto = min(MAX_RTO, self.rtt + max(MIN_RTO_VARIATION, 4 * self.rttvar))


def to_millis(now: float) -> int:
    return max(1, int(now * 1000))


class DataChannel:
    """One end of a data channel's reliable, ordered stream."""

    def __init__(
        self,
        role: Role,
        *,
        send_buffer_bytes: int = DEFAULT_SEND_BUFFER_BYTES,
        send_buffer_messages: int = DEFAULT_SEND_BUFFER_MESSAGES,
        reorder_bytes: int = DEFAULT_REORDER_BYTES,
        reorder_messages: int = DEFAULT_REORDER_MESSAGES,
        undelivered_bytes: int = DEFAULT_UNDELIVERED_BYTES,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        id_source: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        self.role = role
        self.outgoing_type = (
            MessageType.INPUT_STREAM_DATA if role is Role.CLIENT else MessageType.OUTPUT_STREAM_DATA
        )
        self.incoming_type = (
            MessageType.OUTPUT_STREAM_DATA if role is Role.CLIENT else MessageType.INPUT_STREAM_DATA
        )
        self.state = ChannelState.OPEN
        self.rtt = RttEstimator()
        self.cipher: SessionCipher | None = None
        self._new_id = id_source

        # sending
        self._next_seq = 0
        self._send_limit_bytes = send_buffer_bytes
        self._send_limit_messages = send_buffer_messages
        self._unacked: OrderedDict[int, _Outgoing] = OrderedDict()
        self._held: deque[_Outgoing] = deque()  # queued while the peer paused publication
        self._buffered_bytes = 0
        self._timers: list[tuple[float, int, int]] = []  # (retry_at, seq, attempts)
        self._max_attempts = max_attempts
        self.peer_paused = False
        self.retransmissions = 0  # sends beyond the first, for diagnostics
        self._quiet_until = 0.0  # no other timed-out message is resent before this

        # receiving
        self._expected = 0
        self._reorder: dict[int, AgentMessage] = {}
        self._reorder_bytes = 0
        self._reorder_limit_bytes = reorder_bytes
        self._reorder_limit_messages = reorder_messages
        self._undelivered_limit = undelivered_bytes
        self._undelivered_bytes = 0
        self._we_paused_peer = False
        self._holding = False

        self._events: deque[Event] = deque()
        self._wire: list[bytes] = []

    # --- public: sending --------------------------------------------------------------

    @property
    def next_sequence_number(self) -> int:
        return self._next_seq

    @property
    def expected_sequence_number(self) -> int:
        return self._expected

    @property
    def unacked_count(self) -> int:
        return len(self._unacked) + len(self._held)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of our own stream data kept for retransmission or held while paused."""
        return self._buffered_bytes

    @property
    def send_capacity(self) -> int:
        """How many bytes of stream data (``PayloadType.OUTPUT``) one ``send()`` accepts
        right now (0 when full)."""
        return self.capacity(self._send_limit_bytes)

    def capacity(self, chunk: int, payload_type: int = PayloadType.OUTPUT) -> int:
        """How many payload bytes ``send()`` accepts right now when they are cut into
        messages of at most ``chunk`` bytes, as sessions cut their input and output.

        The send buffer keeps the messages as they go on the wire, so it counts what
        sealing adds to each one (nonce and tag, 28 bytes), and the message limit too.
        """
        messages = self._send_limit_messages - self.unacked_count
        if messages <= 0 or chunk <= 0:
            return 0
        overhead = self._overhead(payload_type)
        room = self._send_limit_bytes - self._buffered_bytes
        if room <= overhead:
            return 0
        whole, rest = divmod(room, chunk + overhead)
        if whole >= messages:
            return messages * chunk
        return whole * chunk + max(0, rest - overhead)

    def send(self, payload: bytes, payload_type: int = PayloadType.OUTPUT, *, now: float) -> int:
        """Queue one stream message; returns its sequence number.

        Payload types that the session encrypts are sealed here once a cipher is set.
        Raises FlowControlError when the send buffer is full: wait for acks first.
        """
        if self.state is not ChannelState.OPEN:
            raise ProtocolError(f"cannot send on a {self.state.value} channel")
        if self.unacked_count >= self._send_limit_messages or (
            self._buffered_bytes and self._buffered_bytes + len(payload) > self._send_limit_bytes
        ):
            raise FlowControlError(
                f"send buffer full ({self.unacked_count} messages, {self._buffered_bytes} bytes "
                "unacknowledged)"
            )
        body = bytes(payload)
        if self.cipher is not None and self.cipher.encrypts_outgoing(payload_type):
            body = self.cipher.encrypt(body)
        seq = self._next_seq
        message = AgentMessage(
            message_type=self.outgoing_type,
            created_date=to_millis(now),
            sequence_number=seq,
            flags=Flags.SYN if seq == 0 and self.role is Role.AGENT else Flags.NONE,
            message_id=self._new_id(),
            payload_type=payload_type,
            payload=body,
        )
        self._next_seq += 1
        entry = _Outgoing(seq, message.encode(), len(body))
        self._buffered_bytes += entry.size
        if self.peer_paused:
            self._held.append(entry)
        else:
            self._transmit(entry, now)
        return seq

    def _overhead(self, payload_type: int) -> int:
        """What sealing adds to a message of ``payload_type``."""
        if self.cipher is not None and self.cipher.encrypts_outgoing(payload_type):
            return SEAL_OVERHEAD
        return 0

    def resend_unacked(self, now: float) -> None:
        """Send every unacknowledged message again at once, as after a reconnect."""
        for entry in self._unacked.values():
            self._wire.append(entry.frame)
            # Counting the send retires the entry's old timer, which would otherwise fire
            # on the next tick and send the message a second time.
            entry.attempts += 1
            entry.retry_at = now + self.rtt.rto
            heapq.heappush(self._timers, (entry.retry_at, entry.sequence_number, entry.attempts))

    def set_cipher(self, cipher: SessionCipher) -> None:
        """Turn on encryption for what is sent and delivered from now on."""
        if cipher.role is not self.role:
            raise ProtocolError(f"a {cipher.role.value} cipher cannot serve the {self.role.value}")
        self.cipher = cipher

    def pause_peer(self, now: float) -> None:
        """Ask the peer to stop publishing (our consumer is congested)."""
        if not self._we_paused_peer:
            self._we_paused_peer = True
            self._wire.append(self._control(MessageType.PAUSE_PUBLICATION, now))

    def resume_peer(self, now: float) -> None:
        if self._we_paused_peer:
            self._we_paused_peer = False
            self._wire.append(self._control(MessageType.START_PUBLICATION, now))

    def hold_incoming(self, now: float) -> None:
        """Our consumer is congested: take no new stream data until ``release_incoming``.
        What arrives meanwhile stays unacknowledged, so the peer keeps it and sends it
        again; the peer is also asked to pause, which Hatchway peers and the official
        agent honour (the reference plugin ignores it and just retransmits)."""
        self._holding = True
        self.pause_peer(now)

    def release_incoming(self, now: float) -> None:
        self._holding = False
        self.resume_peer(now)

    @property
    def holding(self) -> bool:
        return self._holding

    def send_message(self, message: AgentMessage) -> None:
        """Put an unsequenced message (channel_closed, agent_session_state...) on the wire."""
        self._wire.append(message.encode())

    # --- public: receiving ------------------------------------------------------------

    def receive(self, frame: bytes | AgentMessage, *, now: float) -> None:
        """Take one frame from the wire. Raises ProtocolError for a malformed frame,
        which leaves the channel as it was: the caller logs it and carries on."""
        message = frame if isinstance(frame, AgentMessage) else decode(frame)
        kind = message.message_type
        if kind == MessageType.ACKNOWLEDGE:
            self._on_ack(Acknowledge.from_json(message.payload), now)
        elif kind == self.incoming_type:
            self._on_stream(message, now)
        elif kind == MessageType.CHANNEL_CLOSED:
            closed = ChannelClosed.from_json(message.payload) if message.payload else None
            self.state = ChannelState.CLOSED
            self._events.append(
                ChannelClosedReceived(closed or ChannelClosed("", uuid.UUID(int=0), ""))
            )
        elif kind == MessageType.PAUSE_PUBLICATION:
            if not self.peer_paused:
                self.peer_paused = True
                self._events.append(PublicationPaused())
        elif kind == MessageType.START_PUBLICATION:
            # The peer may have dropped what we sent while it was congested; sending it
            # now beats waiting out a backed-off retransmission timer.
            self.resend_unacked(now)
            if self.peer_paused:
                self.peer_paused = False
                self._events.append(PublicationResumed())
                while self._held:
                    self._transmit(self._held.popleft(), now)
        else:
            self._events.append(OtherMessage(message))

    def next_event(self) -> Event | None:
        if not self._events:
            return None
        event = self._events.popleft()
        if isinstance(event, StreamData):
            self._undelivered_bytes -= len(event.payload)
        return event

    def data_to_send(self) -> list[bytes]:
        """Frames to write to the WebSocket, each as one binary message."""
        frames, self._wire = self._wire, []
        return frames

    # --- public: time -----------------------------------------------------------------

    def next_timeout(self) -> float | None:
        """When ``tick`` should next be called, or None when nothing waits for an ack."""
        self._drop_stale_timers()
        return self._timers[0][0] if self._timers else None

    def tick(self, now: float) -> None:
        """Retransmit what has waited longer than its timeout.

        At most one message per RTO: when many time out together, the cause is nearly
        always a queue (a busy peer, a full socket), not many losses, and resending them
        all would double the load on that queue and feed the delay that caused it. The
        oldest goes again; the others wait one more RTO, and are usually acked by then.
        Real losses are rare on a WebSocket, and a reconnect resends everything anyway.
        """
        if self.state is not ChannelState.OPEN:
            return
        while True:
            self._drop_stale_timers()
            if not self._timers or self._timers[0][0] > now:
                return
            _, seq, attempts = heapq.heappop(self._timers)
            entry = self._unacked[seq]
            if now < self._quiet_until:
                entry.retry_at = self._quiet_until
                heapq.heappush(self._timers, (entry.retry_at, seq, attempts))
                continue
            if entry.attempts >= self._max_attempts:
                self._fail(
                    f"message {seq} was not acknowledged after {entry.attempts} sends; "
                    "the peer is gone or not reading"
                )
                return
            self._wire.append(entry.frame)
            entry.attempts += 1
            self.retransmissions += 1
            backoff = min(MAX_BACKOFF, self.rtt.rto * 2 ** min(entry.attempts - 1, 16))
            entry.retry_at = now + backoff
            heapq.heappush(self._timers, (entry.retry_at, seq, entry.attempts))
            self._quiet_until = now + self.rtt.rto

    # --- internals --------------------------------------------------------------------

    def _transmit(self, entry: _Outgoing, now: float) -> None:
        self._wire.append(entry.frame)
        entry.first_sent = now
        entry.attempts = 1
        entry.retry_at = now + self.rtt.rto
        self._unacked[entry.sequence_number] = entry
        heapq.heappush(self._timers, (entry.retry_at, entry.sequence_number, entry.attempts))

    def _drop_stale_timers(self) -> None:
        timers = self._timers
        while timers:
            _, seq, attempts = timers[0]
            entry = self._unacked.get(seq)
            if entry is not None and entry.attempts == attempts:
                return
            heapq.heappop(timers)

    def _on_ack(self, ack: Acknowledge, now: float) -> None:
        # Acks are selective and matched by sequence number only (§3.1).
        entry = self._unacked.pop(ack.sequence_number, None)
        if entry is None:
            return
        self._buffered_bytes -= entry.size
        # Karn's rule: a retransmitted message gives an ambiguous sample.
        if entry.attempts == 1 and entry.first_sent is not None:
            self.rtt.sample(now - entry.first_sent)

    def _on_stream(self, message: AgentMessage, now: float) -> None:
        seq = message.sequence_number
        if self.state is not ChannelState.OPEN:
            return
        if seq < self._expected:
            self._ack(message, now)  # a duplicate: its ack was lost, so ack again
            return
        if self._holding:
            return  # our consumer is congested: the peer keeps it and sends it again
        if self._undelivered_bytes and (
            self._undelivered_bytes + len(message.payload) > self._undelivered_limit
        ):
            return  # our consumer is behind: leave it unacked so the peer holds it
        if seq > self._expected:
            if seq in self._reorder:
                self._ack(message, now)
            elif (
                len(self._reorder) < self._reorder_limit_messages
                and self._reorder_bytes + len(message.payload) <= self._reorder_limit_bytes
            ):
                self._reorder[seq] = message
                self._reorder_bytes += len(message.payload)
                self._ack(message, now)
            # else: no room; without an ack the peer sends it again later
            return
        self._ack(message, now)
        self._deliver(message)
        while self.state is ChannelState.OPEN and self._expected in self._reorder:
            buffered = self._reorder.pop(self._expected)
            self._reorder_bytes -= len(buffered.payload)
            self._deliver(buffered)

    def _deliver(self, message: AgentMessage) -> None:
        payload = message.payload
        if self.cipher is not None and self.cipher.decrypts_incoming(message.payload_type):
            try:
                payload = self.cipher.decrypt(payload)
            except ProtocolError as exc:
                self._fail(f"message {message.sequence_number}: {exc}")
                return
        self._expected += 1
        self._undelivered_bytes += len(payload)
        self._events.append(StreamData(message.payload_type, payload, message.sequence_number))

    def _ack(self, message: AgentMessage, now: float) -> None:
        ack = Acknowledge(message.message_type, message.message_id, message.sequence_number)
        self._wire.append(
            AgentMessage(
                message_type=MessageType.ACKNOWLEDGE,
                created_date=to_millis(now),
                flags=Flags.ACK,
                message_id=self._new_id(),
                payload=ack.to_json(),
            ).encode()
        )

    def _control(self, kind: MessageType, now: float) -> bytes:
        return AgentMessage(
            message_type=kind, created_date=to_millis(now), message_id=self._new_id()
        ).encode()

    def _fail(self, reason: str) -> None:
        self.state = ChannelState.FAILED
        self._timers.clear()
        self._events.append(ChannelFailed(reason))
