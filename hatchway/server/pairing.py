"""Relay pairing: a session's two ends (client and agent), which socket each has, and the
frames that wait for a side that is not connected.

Pure: the socket is any object (the relay's WebSocket, a test's stand-in); nothing here
sends, reads a clock, or awaits.
"""

from __future__ import annotations

import bisect
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

PENDING_FRAMES = 256
PENDING_BYTES = 4 * 1024 * 1024
# How many separate runs of acknowledged sequence numbers a side's record keeps (the
# oldest go first). Acknowledgements come nearly in order, so the runs merge into a few.
ACKNOWLEDGED_RUNS = 1024
ROLES = ("client", "agent")
# The statuses in which a side may (re)join its session.
JOINABLE = ("Connecting", "Connected", "Disconnected")

S = TypeVar("S")


def role_of(client_instance_id: str | None) -> str:
    """Who opened a data channel: agents name their instance in OpenDataChannel."""
    return "agent" if client_instance_id else "client"


def may_join(status: str | None, role: str, target: str, signed_by_node: str | None) -> bool:
    """Whether a side may join a session in ``status`` (None: no such session) before
    its token is redeemed: the session is live, and an agent signed as its target node."""
    if status is None or status not in JOINABLE:
        return False
    return role == "client" or signed_by_node == target


@dataclass
class Side(Generic[S]):
    """One end of a session: its socket (when connected) and what waits for it."""

    name: str  # "client" or "agent"
    ws: S | None = None
    pending: deque[bytes] = field(default_factory=deque)
    pending_bytes: int = 0
    dropped: int = 0
    features: frozenset[str] = frozenset()  # what the side asked for on its upgrade
    attached_before: bool = False  # it had a socket once: its next one is a rejoin
    # The highest stream-data sequence number this side sent on its current socket.
    highest_sent: int | None = None

    def sends_new_data(self, sequence_number: int) -> bool:
        """Whether this side's stream-data message numbered ``sequence_number`` is new,
        rather than a resend of one it already sent on its current socket. Only new data
        is activity for the idle timeout: the official agent resends its oldest
        unacknowledged message until it is acknowledged, and AWS's plugin never
        acknowledges a message twice, so one lost acknowledgement (a node died with it)
        would otherwise keep the session busy for good."""
        if self.highest_sent is not None and sequence_number <= self.highest_sent:
            return False
        self.highest_sent = sequence_number
        return True

    # The sequence numbers of this side's messages that its peer acknowledged through the
    # relay, as runs: the i-th run is run_starts[i]..run_ends[i], in increasing order.
    run_starts: list[int] = field(default_factory=list)
    run_ends: list[int] = field(default_factory=list)
    # Resends of this side's messages passed to a peer that did not acknowledge them (yet):
    # sequence number -> (message id, the first new message passed after it, if any yet).
    unanswered: dict[int, tuple[uuid.UUID, int | None]] = field(default_factory=dict)

    def peer_acknowledged(self, sequence_number: int) -> None:
        """The peer acknowledged this side's message ``sequence_number``. A resend of it may
        come long after (the official agent resends only its oldest unacknowledged
        message), so the record covers the whole session, in runs."""
        starts, ends = self.run_starts, self.run_ends
        at = bisect.bisect_right(starts, sequence_number) - 1
        if at >= 0 and sequence_number <= ends[at]:
            return
        joins_left = at >= 0 and ends[at] == sequence_number - 1
        joins_right = at + 1 < len(starts) and starts[at + 1] == sequence_number + 1
        if joins_left and joins_right:
            ends[at] = ends[at + 1]
            del starts[at + 1], ends[at + 1]
        elif joins_left:
            ends[at] = sequence_number
        elif joins_right:
            starts[at + 1] = sequence_number
        else:
            starts.insert(at + 1, sequence_number)
            ends.insert(at + 1, sequence_number)
            if len(starts) > ACKNOWLEDGED_RUNS:
                del starts[0], ends[0]

    def resend_passed(self, sequence_number: int, message_id: uuid.UUID) -> None:
        """A resend of this side's message ``sequence_number``, whose acknowledgement the
        relay never saw, went to the peer."""
        self.unanswered[sequence_number] = (message_id, None)

    def new_message_passed(self, sequence_number: int) -> None:
        """A new message of this side went to the peer: the first one after each resend
        still unanswered marks it."""
        for resent, (message_id, marker) in self.unanswered.items():
            if marker is None:
                self.unanswered[resent] = (message_id, sequence_number)

    def peer_skipped(self, acknowledged: int) -> list[tuple[int, uuid.UUID]]:
        """The peer acknowledged this side's message ``acknowledged``: the resends (number
        and id) it received before that message and left unacknowledged. A peer that, as
        AWS's plugin does, takes messages in order over one connection and acknowledges
        each one it takes or keeps for later, but drops one it has already processed
        without a word, leaves a resend unanswered only because it had it."""
        self.unanswered.pop(acknowledged, None)
        skipped = [
            (resent, message_id)
            for resent, (message_id, marker) in self.unanswered.items()
            if marker is not None and acknowledged >= marker
        ]
        for resent, _ in skipped:
            del self.unanswered[resent]
        return skipped

    def was_acknowledged(self, sequence_number: int) -> bool:
        """Whether the peer acknowledged this side's message ``sequence_number`` through
        the relay."""
        at = bisect.bisect_right(self.run_starts, sequence_number) - 1
        return at >= 0 and sequence_number <= self.run_ends[at]

    def queue(self, frame: bytes) -> None:
        """Keep a frame for when this side (re)connects, within bounds; past them it is
        dropped, and the sender's retransmission brings it again."""
        if len(self.pending) >= PENDING_FRAMES or self.pending_bytes + len(frame) > PENDING_BYTES:
            self.dropped += 1
            return
        self.pending.append(frame)
        self.pending_bytes += len(frame)


@dataclass(frozen=True)
class Attached(Generic[S]):
    """What the relay must do after a side attached a socket."""

    previous: S | None  # close it: a newer connection replaced it
    waiting: list[bytes]  # send these first, in order
    both_connected: bool  # the session is Connected
    # The side had a socket before: what its peer sent it meanwhile may have been lost (a
    # dropped socket, a full queue, a dead node), so the peer should resend its unacked.
    rejoined: bool = False


@dataclass
class Pairing(Generic[S]):
    session_id: str
    target: str
    client: Side[S] = field(default_factory=lambda: Side("client"))
    agent: Side[S] = field(default_factory=lambda: Side("agent"))
    closed: bool = False

    def side(self, role: str) -> Side[S]:
        return self.client if role == "client" else self.agent

    def peer(self, role: str) -> Side[S]:
        return self.agent if role == "client" else self.client

    def attach(self, role: str, ws: S) -> Attached[S]:
        """``ws`` is now ``role``'s socket: it takes over from any earlier one and gets
        the frames that waited for it."""
        side = self.side(role)
        previous, side.ws = side.ws, ws
        rejoined, side.attached_before = side.attached_before, True
        side.highest_sent = None  # a new client may number its messages from 0 again
        self.peer(role).unanswered.clear()  # what the peer's resends went to has gone
        waiting = list(side.pending)
        side.pending.clear()
        side.pending_bytes = 0
        return Attached(
            previous if previous is not ws else None,
            waiting,
            self.client.ws is not None and self.agent.ws is not None,
            rejoined,
        )

    def detach(self, role: str, ws: S) -> bool:
        """``ws`` went away; false when a newer socket had already replaced it."""
        side = self.side(role)
        if side.ws is not ws:
            return False
        side.ws = None
        return True
