"""The WebSockets between the nodes of a cluster (hatchway.protocol.peer says what travels
on them): dialling and accepting them, proving the cluster key both ways, calls with
answers, and streams with credit.

One link per pair of nodes is the rule; when two nodes dial each other at the same moment
both links work, and the newer one is used for what comes next. A link that drops ends
every stream on it: the edge nodes close those sides' WebSockets with 1001, and the
clients and agents reconnect (through the load balancer) and resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from ...protocol import MAX_MESSAGE_BYTES, ProtocolError
from ...protocol.peer import (
    Handshake,
    ReceiveGrants,
    SendWindow,
    StreamIds,
    call,
    data_frame,
    parse_call,
    split_data_frame,
)
from .registry import NodeRegistry

log = logging.getLogger("hatchway.server.cluster")

PEER_PATH = "/v1/cluster/peer"
# Dialling a peer, its handshake, and a call's answer must each come within these.
DIAL_SECONDS = 3.0
ANSWER_SECONDS = 10.0
# Pings find a peer that vanished without closing TCP (a host lost, a partition).
PING_SECONDS = 5.0
# A link carries data-channel frames (with a stream id) and calls holding one (base64).
LINK_MESSAGE_BYTES = 2 * MAX_MESSAGE_BYTES


class PeerUnreachable(Exception):
    """No link to a node: it is dead, unknown, or does not answer."""


Handler = Callable[["Link", dict[str, Any]], Awaitable[dict[str, Any]]]


class StreamEnd:
    """One stream of a link, as this node holds it: the frames that came (bounded by the
    window the sender keeps to) and the credit to send more.

    At a session's home it stands in for the WebSocket of a side that reached another node
    (``send_bytes``, ``close``, ``closed``, as the relay uses a WebSocket)."""

    def __init__(self, link: Link, stream_id: int) -> None:
        self.link = link
        self.id = stream_id
        self.window = SendWindow()
        self.grants = ReceiveGrants()
        self._credit = asyncio.Event()
        self._incoming: deque[bytes] = deque()
        self._arrived = asyncio.Event()
        self.ended = False
        # How the other node closed it (what the edge closes its WebSocket with).
        self.close_code = int(WSCloseCode.GOING_AWAY)
        self.close_message = b"peer node lost"

    @property
    def closed(self) -> bool:
        return self.ended

    async def send_bytes(self, frame: bytes) -> None:
        """Send one frame once the window has room: a slow reader on the far side holds
        back this stream only."""
        while not self.window.may_send(len(frame)):
            if self.ended:
                break
            self._credit.clear()
            await self._credit.wait()
        if self.ended:
            raise ConnectionResetError(f"stream {self.id} to node {self.link.peer} is closed")
        self.window.sent(len(frame))
        await self.link.send_data(self.id, frame)

    async def close(self, *, code: int = int(WSCloseCode.OK), message: bytes = b"") -> bool:
        if self.ended:
            return False
        self.finish(code, message)
        with contextlib.suppress(ConnectionError, RuntimeError):
            reason = message.decode("utf-8", errors="replace")
            await self.link.send_call("close", stream=self.id, code=code, reason=reason)
        return True

    async def frames(self) -> AsyncIterator[bytes]:
        """The frames the other node sent, each handed on before credit for it goes back;
        the ones that came before the end are still given."""
        while True:
            while not self._incoming:
                if self.ended:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            frame = self._incoming.popleft()
            yield frame
            grant = self.grants.written(len(frame))
            if grant and not self.ended:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.link.send_call("credit", stream=self.id, bytes=grant)

    # --- what the link's reader tells it ---------------------------------------------

    def arrived(self, frame: bytes) -> None:
        self.grants.arrived(len(frame))  # a peer past its window is refused (ProtocolError)
        self._incoming.append(frame)
        self._arrived.set()

    def credited(self, length: int) -> None:
        self.window.granted(length)
        self._credit.set()

    def finish(self, code: int, message: bytes) -> None:
        if not self.ended:
            self.ended = True
            self.close_code, self.close_message = code, message
            self.link.streams.pop(self.id, None)
        self._arrived.set()
        self._credit.set()


class Link:
    """One WebSocket to a peer node."""

    def __init__(
        self,
        peer: str,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        *,
        dialled: bool,
        handlers: dict[str, Handler],
    ) -> None:
        self.peer = peer
        self.ws = ws
        self.ids = StreamIds(dialled)
        self.streams: dict[int, StreamEnd] = {}
        self.handlers = handlers
        self._send_lock = asyncio.Lock()
        self._calls = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._handling: set[asyncio.Task[None]] = set()

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send_data(self, stream: int, frame: bytes) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(data_frame(stream, frame))

    async def send_call(self, op: str, **fields: Any) -> None:
        async with self._send_lock:
            await self.ws.send_str(call(op, **fields))

    async def request(
        self, op: str, *, answer_within: float = ANSWER_SECONDS, **fields: Any
    ) -> dict[str, Any]:
        """A call and its answer; PeerUnreachable when the link fails or the answer is
        late."""
        number = next(self._calls)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[number] = answer
        try:
            await self.send_call(op, call=number, **fields)
            return await asyncio.wait_for(answer, answer_within)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            raise PeerUnreachable(f"node {self.peer} did not answer {op}: {exc}") from None
        finally:
            self._answers.pop(number, None)

    def open_stream(self) -> StreamEnd:
        end = StreamEnd(self, self.ids.next())
        self.streams[end.id] = end
        return end

    def accept_stream(self, stream_id: int) -> StreamEnd:
        if stream_id in self.streams:
            raise ProtocolError(f"stream {stream_id} is already open")
        end = StreamEnd(self, stream_id)
        self.streams[stream_id] = end
        return end

    async def run(self) -> None:
        """Read until the link drops; then end its streams and its unanswered calls."""
        try:
            async for message in self.ws:
                if message.type == WSMsgType.BINARY:
                    self._data(message.data)
                elif message.type == WSMsgType.TEXT:
                    self._call(parse_call(message.data))
                elif message.type == WSMsgType.ERROR:
                    break
        except ProtocolError as exc:
            log.warning("peer link broken", extra={"peer": self.peer, "error": str(exc)})
        finally:
            await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"link closed")
            for end in list(self.streams.values()):
                end.finish(int(WSCloseCode.GOING_AWAY), b"peer node lost")
            for answer in self._answers.values():
                if not answer.done():
                    answer.set_exception(ConnectionResetError(f"link to {self.peer} closed"))
            for task in list(self._handling):
                task.cancel()

    def _data(self, data: bytes) -> None:
        stream, frame = split_data_frame(data)
        end = self.streams.get(stream)
        if end is not None:  # else it closed a moment ago: the frame has nowhere to go
            end.arrived(frame)

    def _call(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "credit":
            end = self.streams.get(_int(message, "stream"))
            if end is not None:
                end.credited(_int(message, "bytes"))
        elif op == "close":
            end = self.streams.get(_int(message, "stream"))
            if end is not None:
                reason = str(message.get("reason", ""))[:120].encode()
                end.finish(_int(message, "code"), reason)
        elif op == "answer":
            answer = self._answers.get(_int(message, "call"))
            if answer is not None and not answer.done():
                answer.set_result(message)
        else:
            task = asyncio.create_task(self._answer(op, message))
            self._handling.add(task)
            task.add_done_callback(self._handled)

    async def _answer(self, op: str, message: dict[str, Any]) -> None:
        handler = self.handlers.get(op)
        number = message.get("call")
        if handler is None:
            result: dict[str, Any] = {"ok": False, "reason": f"unknown call {op!r}"}
        else:
            try:
                result = await handler(self, message)
            except ProtocolError as exc:
                result = {"ok": False, "reason": str(exc)}
        if isinstance(number, int):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send_call("answer", call=number, **result)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a peer call failed", extra={"peer": self.peer}, exc_info=task.exception())


def _int(message: dict[str, Any], name: str) -> int:
    value = message.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"peer call {message.get('op')!r} without an integer {name!r}")
    return value


class PeerLinks:
    """This node's links to the others, by node name."""

    def __init__(self, me: str, key: bytes, registry: NodeRegistry, open_seconds: float) -> None:
        self.me = me
        self.handshake = Handshake(key, me)
        self.registry = registry
        self.open_seconds = open_seconds
        self.links: dict[str, Link] = {}
        self.handlers: dict[str, Handler] = {}
        self._every: set[Link] = set()
        self._dialling: dict[str, asyncio.Lock] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    def handle(self, op: str, handler: Handler) -> None:
        self.handlers[op] = handler

    async def link_to(self, node: str) -> Link:
        link = self.links.get(node)
        if link is not None and not link.closed:
            return link
        async with self._dialling.setdefault(node, asyncio.Lock()):
            link = self.links.get(node)
            if link is not None and not link.closed:
                return link
            url = await self.registry.url_of(node)
            if url is None:
                raise PeerUnreachable(f"node {node} is not alive")
            return await self._dial(node, url)

    async def request(
        self, node: str, op: str, *, answer_within: float = ANSWER_SECONDS, **fields: Any
    ) -> dict[str, Any]:
        link = await self.link_to(node)
        return await link.request(op, answer_within=answer_within, **fields)

    async def _dial(self, node: str, url: str) -> Link:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        ws_url = url.replace("http", "ws", 1) + PEER_PATH
        try:
            async with asyncio.timeout(DIAL_SECONDS):
                ws = await self._http.ws_connect(
                    ws_url,
                    heartbeat=PING_SECONDS,
                    max_msg_size=LINK_MESSAGE_BYTES,
                    compress=0,
                    autoping=True,
                )
                challenge = _json(await ws.receive())
                _, hello = self.handshake.hello(challenge, node)
                await ws.send_str(json.dumps(hello))
                welcome = _json(await ws.receive())
                self.handshake.check_welcome(node, challenge, hello, welcome)
        except (aiohttp.ClientError, OSError, TimeoutError, ProtocolError) as exc:
            raise PeerUnreachable(f"cannot link to node {node} at {url}: {exc}") from None
        link = Link(node, ws, dialled=True, handlers=self.handlers)
        self._adopt(link)
        task = asyncio.create_task(self._read(link), name=f"peer link to {node}")
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)
        log.info("peer link open", extra={"peer": node, "dialled": True})
        return link

    async def accept(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/cluster/peer``: a peer dials in. Nothing but the handshake is read
        before it proves the cluster key."""
        ws = web.WebSocketResponse(heartbeat=PING_SECONDS, max_msg_size=LINK_MESSAGE_BYTES)
        await ws.prepare(request)
        nonce, challenge = self.handshake.challenge()
        try:
            await ws.send_str(json.dumps(challenge))
            async with asyncio.timeout(self.open_seconds):
                hello = _json(await ws.receive())
            peer, welcome = self.handshake.welcome(nonce, hello)
            await ws.send_str(json.dumps(welcome))
        except (ProtocolError, TimeoutError, ConnectionError, RuntimeError) as exc:
            log.warning("peer link refused", extra={"remote": request.remote, "error": str(exc)})
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"cluster key not proven")
            return ws
        link = Link(peer, ws, dialled=False, handlers=self.handlers)
        self._adopt(link)
        log.info("peer link open", extra={"peer": peer, "dialled": False})
        await self._read(link)
        return ws

    def _adopt(self, link: Link) -> None:
        self.links[link.peer] = link
        self._every.add(link)

    async def _read(self, link: Link) -> None:
        try:
            await link.run()
        finally:
            self._every.discard(link)
            if self.links.get(link.peer) is link:
                del self.links[link.peer]
            log.info("peer link closed", extra={"peer": link.peer})

    async def close(self) -> None:
        """Going away: every link closes with 1001, which ends its streams on both nodes."""
        for link in list(self._every):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await link.ws.close(code=WSCloseCode.GOING_AWAY, message=b"node shutdown")
        for task in list(self._readers):
            task.cancel()
        for task in list(self._readers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.close()


def _json(message: aiohttp.WSMessage) -> Any:
    if message.type != WSMsgType.TEXT:
        raise ProtocolError("the peer link's handshake is text")
    try:
        return json.loads(message.data)
    except ValueError:
        raise ProtocolError("the peer link's handshake is not JSON") from None
