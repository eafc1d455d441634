"""The listening socket, guarded: each connection is wrapped so that ``guard.py``'s rules
apply to it before aiohttp sees a byte.

- A connection must finish its first request's headers within the header timeout, or it
  is closed (slowloris).
- One source address may hold only so many connections that have not finished their first
  request's headers; more are closed as soon as they are accepted. Trusted proxies, which
  carry many clients' connections, are not capped.
- When accept() runs out of file descriptors, asyncio pauses accepting for a second and
  retries, reporting each failure with a traceback: we log one line instead (``AcceptAlarm``),
  and the header timeout frees the descriptors that slow clients hold.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from typing import Any, cast

from aiohttp import web

from .forwarded import Network, is_trusted
from .guard import AcceptAlarm, HeaderEnd, PendingConnections

log = logging.getLogger("hatchway.server.listener")

_ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"


class _GuardedConnection(asyncio.Protocol):
    """One accepted connection: counts as pending for its address until the end of its
    first request's headers, and is cut at the header deadline if they never come."""

    def __init__(self, site: GuardedTCPSite) -> None:
        self._site = site
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._address = ""
        self._pending = False
        self._counted = False
        self._headers = HeaderEnd()
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        site = self._site
        site.accepted()
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        # A trusted proxy carries many clients' connections: it is not capped as one.
        counted = not is_trusted(self._address, site.trusted_proxies)
        if counted and not site.pending.admit(self._address):
            log.debug("too many pending connections", extra={"address": self._address})
            self._transport.abort()
            return
        self._counted = counted
        self._pending = True
        self._deadline = asyncio.get_running_loop().call_later(
            site.header_timeout, self._header_deadline
        )
        self._inner = site.make_handler()
        self._inner.connection_made(transport)

    def _header_deadline(self) -> None:
        self._deadline = None
        if self._pending and self._transport is not None:
            log.debug("no request headers before the deadline", extra={"address": self._address})
            self._transport.abort()

    def _headers_arrived(self) -> None:
        self._pending = False
        if self._counted:
            self._site.pending.release(self._address)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def data_received(self, data: bytes) -> None:
        if self._pending and self._headers.feed(data):
            self._headers_arrived()
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._pending:
            self._headers_arrived()  # releases its place, and the deadline
        if self._inner is not None:
            self._inner.connection_lost(exc)
            self._inner = None
        self._transport = None


class GuardedTCPSite(web.TCPSite):
    """aiohttp's TCPSite, with every connection wrapped in ``_GuardedConnection``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        header_timeout: float,
        pending_per_address: int,
        trusted_proxies: Sequence[Network] = (),
        sock: socket.socket | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, host, port, **kwargs)
        # A socket bound already (run.serve binds port 0 before the app starts), if any.
        self._sock = sock
        self.header_timeout = header_timeout
        self.trusted_proxies = trusted_proxies
        self.pending = PendingConnections(pending_per_address)
        self.alarm = AcceptAlarm()

    def make_handler(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        return cast(asyncio.Protocol, server())

    def accepted(self) -> None:
        said = self.alarm.accepted(asyncio.get_running_loop().time())
        if said:
            log.warning(said)

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(
                lambda: _GuardedConnection(self),
                sock=self._sock,
                ssl=self._ssl_context,
                backlog=self._backlog,
            )
        else:
            self._server = await loop.create_server(
                lambda: _GuardedConnection(self),
                self._host,
                self._port,
                ssl=self._ssl_context,
                backlog=self._backlog,
                reuse_address=self._reuse_address,
                reuse_port=self._reuse_port,
            )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
        _install_accept_alarm(loop, self.alarm)


def _install_accept_alarm(loop: asyncio.AbstractEventLoop, alarm: AcceptAlarm) -> None:
    """Route asyncio's "out of system resource" reports to ``alarm``; anything else goes
    where it went before."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_OUT_OF_RESOURCES:
            said = alarm.failed(loop.time())
            if said:
                log.error(said, extra={"error": str(context.get("exception"))})
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
