"""A reverse proxy on loopback for the console's tests, the way people deploy it: under a
path prefix, optionally terminating TLS, with X-Forwarded-Proto/-Host/-Prefix. It can
misbehave as real proxies do with WebSockets (strip the Upgrade header, or refuse the
upgrade), and ``cut()`` drops every WebSocket it carries, as a network blip would."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ssl
from collections.abc import Iterator

import aiohttp
from aiohttp import web

from hatchway.server.forwarded import parse_trusted_proxies
from tests.helpers import LoopThread

# The server believes this proxy's X-Forwarded-* headers only when told to
# (--trusted-proxies): give running_server(..., trusted_proxies=LOOPBACK) or set_config.
LOOPBACK = parse_trusted_proxies("127.0.0.0/8, ::1")

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "content-length",
}


class WebSocketMode(enum.Enum):
    PASS = "pass"  # forward WebSockets
    STRIP = "strip"  # forward the handshake as a plain GET, without Upgrade/Connection
    REFUSE = "refuse"  # answer every upgrade with 403 and never ask the server


class ReverseProxy:
    def __init__(
        self,
        upstream: str,
        prefix: str = "",
        mode: WebSocketMode = WebSocketMode.PASS,
        keep_host: bool = True,
    ):
        self.upstream = upstream.rstrip("/")
        self.keep_host = (
            keep_host  # False: the upstream's own host goes instead, as misconfigured proxies do
        )
        self.prefix = prefix.rstrip("/")
        self.mode = mode
        self.url = ""
        self.tls = False
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._sockets: dict[int, asyncio.Transport] = {}  # the browser side of each WebSocket

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._client = aiohttp.ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.tls = ssl_context is not None
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}{self.prefix}"
        return self.url

    async def close(self) -> None:
        await self.cut()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    async def cut(self) -> None:
        """Drop every WebSocket mid-stream: the TCP connections go, with no close frame."""
        for transport in list(self._sockets.values()):
            transport.abort()
        self._sockets.clear()

    def _headers(self, request: web.Request) -> dict[str, str]:
        # Host goes through unchanged, as proxies are set up for Hatchway (and as SigV4,
        # which signs it, needs).
        dropped = HOP_BY_HOP if self.keep_host else {*HOP_BY_HOP, "host"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in dropped}
        headers["X-Forwarded-Proto"] = "https" if self.tls else "http"
        headers["X-Forwarded-Host"] = request.host
        if self.prefix:
            headers["X-Forwarded-Prefix"] = self.prefix
        return headers

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return web.Response(status=404, text="not under the prefix")
            path = path[len(self.prefix) :]
        url = self.upstream + path + (f"?{request.query_string}" if request.query_string else "")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade and self.mode is WebSocketMode.REFUSE:
            return web.Response(status=403, text="WebSocket is not allowed through this proxy")
        if upgrade and self.mode is WebSocketMode.PASS:
            return await self._websocket(request, url)
        assert self._client is not None
        async with self._client.request(
            request.method,
            url,
            headers=self._headers(request),
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=upstream.status, body=body, headers=headers)

    async def _websocket(self, request: web.Request, url: str) -> web.StreamResponse:
        assert self._client is not None
        headers = {
            k: v
            for k, v in self._headers(request).items()
            if not k.lower().startswith("sec-websocket")
        }
        browser = web.WebSocketResponse(max_msg_size=0)
        await browser.prepare(request)
        assert request.transport is not None
        self._sockets[id(browser)] = request.transport  # type: ignore[assignment]
        try:
            async with self._client.ws_connect(
                url.replace("http", "ws", 1), headers=headers, max_msg_size=0
            ) as server:

                async def pump(source, sink) -> None:
                    async for message in source:
                        if message.type == aiohttp.WSMsgType.BINARY:
                            await sink.send_bytes(message.data)
                        elif message.type == aiohttp.WSMsgType.TEXT:
                            await sink.send_str(message.data)
                        else:
                            break

                tasks = [
                    asyncio.ensure_future(pump(browser, server)),
                    asyncio.ensure_future(pump(server, browser)),
                ]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        except (aiohttp.ClientError, ConnectionError):
            pass  # either side went away: the browser sees its WebSocket close
        finally:
            self._sockets.pop(id(browser), None)
            with contextlib.suppress(Exception):
                await browser.close()
        return browser


@contextlib.contextmanager
def reverse_proxy(
    upstream: str,
    prefix: str = "",
    mode: WebSocketMode = WebSocketMode.PASS,
    ssl_context: ssl.SSLContext | None = None,
    keep_host: bool = True,
) -> Iterator[tuple[ReverseProxy, LoopThread]]:
    loop = LoopThread()
    proxy = ReverseProxy(upstream, prefix, mode, keep_host)
    loop.run(proxy.start(ssl_context))
    try:
        yield proxy, loop
    finally:
        loop.run(proxy.close())
        loop.stop()
