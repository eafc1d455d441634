"""Decisions that keep unauthenticated connections from holding the server: pure logic,
no sockets, the time passed in. ``listener.py`` applies them to real connections.

A connection is *pending* from accept until the end of its first request's headers. Until
then nobody knows who is on the other end, so pending connections are what slowloris
holds: they get a deadline (``--header-timeout``), and one source address may hold only
so many at once. Once a request has arrived, aiohttp's keep-alive timeout and each
endpoint's own checks (SigV4, channel tokens) take over.
"""

from __future__ import annotations

from dataclasses import dataclass

_HEADER_END = b"\r\n\r\n"


class HeaderEnd:
    """Finds the end of the first request's headers in a byte stream fed in pieces."""

    def __init__(self) -> None:
        self._tail = b""
        self.found = False

    def feed(self, data: bytes) -> bool:
        """True once the blank line that ends the headers has been seen."""
        if not self.found:
            window = self._tail + data
            self.found = _HEADER_END in window
            self._tail = window[-(len(_HEADER_END) - 1) :]
        return self.found


class PendingConnections:
    """Pending connections by source address, at most ``per_address`` for each."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._counts: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        count = self._counts.get(address, 0)
        if count >= self.per_address:
            return False
        self._counts[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self._counts.get(address, 0) - 1
        if count > 0:
            self._counts[address] = count
        else:
            self._counts.pop(address, None)

    def held(self, address: str) -> int:
        return self._counts.get(address, 0)

    def __len__(self) -> int:
        return len(self._counts)


@dataclass
class AcceptAlarm:
    """Out of file descriptors: asyncio retries accept() every second and reports each
    failure with a traceback (239,000 of them in 40 s). This says what to log instead:
    one line when a shortage starts, a summary every ``every`` seconds while it lasts, and
    one line when it is over. At the limit, accept() fails and succeeds by turns as
    descriptors come and go; the shortage is over only once ``settle`` seconds have passed
    without a failure."""

    every: float = 60.0
    settle: float = 5.0
    failures: int = 0
    since: float | None = None
    _last_failure: float = 0.0
    _last_said: float = 0.0

    def failed(self, now: float) -> str | None:
        self.failures += 1
        self._last_failure = now
        if self.since is None:
            self.since = self._last_said = now
            return (
                "out of file descriptors: new connections wait until some close "
                "(raise the limit with ulimit -n, or look for clients holding connections)"
            )
        if now - self._last_said >= self.every:
            self._last_said = now
            return (
                f"still out of file descriptors: {self.failures} accept() failures in "
                f"{now - self.since:.0f} s"
            )
        return None

    def accepted(self, now: float) -> str | None:
        """A connection was accepted: if that ends a shortage, the line that says so."""
        if self.since is None or now - self._last_failure < self.settle:
            return None
        said = (
            f"accepting connections again after {self._last_failure - self.since:.0f} s out "
            f"of file descriptors ({self.failures} accept() failures)"
        )
        self.failures, self.since = 0, None
        return said
