"""Which session results count, and in what order they are recorded.

An agent reports a session's end with ``agent_task_complete``; the official agent reports
a failed session twice, and retries one it sees no acknowledgement for. The first result
a node sends for a session is the one that counts; the rest are dropped here, before they
reach the database. The results that count are recorded one at a time, in the order they
arrived.

Pure: the message gateway feeds it what arrives and records what ``next`` gives.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

# How many sessions' results are remembered to drop repeats (the database's "already in
# history" check stands behind it, for anything older and across restarts).
REMEMBERED = 4096


@dataclass(frozen=True)
class SessionResult:
    session_id: str
    instance_id: str  # the node that reported it
    status: str
    output: str


class ResultRecorder:
    def __init__(self, remembered: int = REMEMBERED) -> None:
        self.remembered = remembered
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._queue: deque[SessionResult] = deque()

    def received(self, result: SessionResult) -> bool:
        """A result arrived; true when it counts (the first from that node for that
        session) and waits to be recorded. A node's result never shadows another's: the
        target check happens when it is recorded."""
        key = (result.instance_id, result.session_id)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > self.remembered:
            self._seen.popitem(last=False)
        self._queue.append(result)
        return True

    def next(self) -> SessionResult | None:
        """The oldest result not recorded yet (it stays first until ``recorded``)."""
        return self._queue[0] if self._queue else None

    def recorded(self, result: SessionResult) -> None:
        if self._queue and self._queue[0] is result:
            self._queue.popleft()

    def __len__(self) -> int:
        return len(self._queue)
