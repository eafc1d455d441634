"""An HTTP CONNECT proxy on loopback for tests: every tunnel goes to one local port, so
test host names need no DNS. It records what was asked, and closes its tunnels cleanly
with the event loop that runs them."""

from __future__ import annotations

import asyncio
import contextlib


class ConnectProxy:
    """``refuse`` answers every CONNECT with 403, as a proxy whose policy forbids the host;
    ``require_auth`` (a Proxy-Authorization value) answers 407 to requests without it;
    ``forward_plain`` forwards plain-HTTP requests (absolute-form, or origin-form as a
    reverse proxy) to the upstream port, and ``strip_upgrade`` drops their Upgrade and
    Connection headers on the way, as proxies that know nothing of WebSocket do."""

    def __init__(
        self,
        upstream_port: int,
        *,
        refuse: bool = False,
        require_auth: str | None = None,
        forward_plain: bool = False,
        strip_upgrade: bool = False,
    ) -> None:
        self.upstream_port = upstream_port
        self.refuse = refuse
        self.require_auth = require_auth
        self.forward_plain = forward_plain or strip_upgrade
        self.strip_upgrade = strip_upgrade
        self.tunnels: list[tuple[str, dict[str, str]]] = []  # CONNECT targets and headers
        self.url = ""
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def targets(self) -> list[str]:
        return [target for target, _ in self.tunnels]

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ")
        headers = dict(line.split(": ", 1) for line in head[1:] if line)
        self.tunnels.append((target, headers))
        if self.require_auth is not None and headers.get("Proxy-Authorization") != (
            self.require_auth
        ):
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
            )
            writer.close()
            return
        if method != "CONNECT" and self.forward_plain:
            await self._forward(head, reader, writer)
            return
        if method != "CONNECT" or self.refuse:
            status = b"403 Forbidden" if self.refuse else b"405 Method Not Allowed"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._pipe_both(reader, writer, up_reader, up_writer)

    async def _forward(
        self, head: list[str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        method, target, version = head[0].split(" ")
        if "://" in target:
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        dropped = {"proxy-authorization", "proxy-connection"}
        if self.strip_upgrade:
            dropped |= {"upgrade", "connection"}
        lines = [f"{method} {target} {version}"]
        lines += [line for line in head[1:] if line and line.split(":")[0].lower() not in dropped]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self._pipe_both(reader, writer, up_reader, up_writer)

    def _pipe_both(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await writer.wait_closed()
