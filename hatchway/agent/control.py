"""The agent's control channel: one WebSocket to the server, kept open, reopened with
back-off and jitter when it drops (agent.md §1.3-1.5)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp

from ..protocol import MAX_MESSAGE_BYTES, AgentMessage, ProtocolError, decode
from .api import ServiceError, connect_websocket, create_channel, websocket_url
from .identity import Identity
from .signing import signed_headers

log = logging.getLogger("hatchway.agent.control")

PING_SECONDS = 54.0  # as the official agent; the server answers with pongs
AGENT_VERSION = "3.3.987.0"  # what the handshake reports; see README for why


class Backoff:
    """Exponential back-off with full jitter, reset after a connection that lasted."""

    def __init__(self, first: float = 1.0, maximum: float = 60.0) -> None:
        self.first, self.maximum, self.attempt = first, maximum, 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.first * 2**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


MessageHandler = Callable[[AgentMessage], Awaitable[None]]
# What to send as soon as the channel is open (Hatchway's live-sessions report).
Greeting = Callable[[], AgentMessage | None]


class ControlChannel:
    def __init__(
        self,
        identity: Identity,
        http: aiohttp.ClientSession,
        on_message: MessageHandler,
        *,
        backoff: Backoff | None = None,
        greeting: Greeting | None = None,
    ) -> None:
        self.identity = identity
        self.http = http
        self.on_message = on_message
        self.greeting = greeting
        self.backoff = backoff or Backoff()
        self.connected = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()

    async def send(self, message: AgentMessage) -> bool:
        ws = self._ws
        if ws is None or ws.closed:
            return False
        async with self._send_lock:
            await ws.send_bytes(message.encode())
        return True

    async def open(self) -> aiohttp.ClientWebSocketResponse:
        instance_id = self.identity.instance_id
        token = await create_channel(self.http, self.identity, "control", instance_id)
        path = f"/v1/control-channel/{instance_id}?role=subscribe&stream=input"
        url = websocket_url(self.identity.server_url, path)
        http_url = self.identity.server_url.rstrip("/") + path
        headers = signed_headers(self.identity, "GET", http_url, "ssmmessages")
        ws = await connect_websocket(
            self.http, url, headers, heartbeat=PING_SECONDS, max_msg_size=MAX_MESSAGE_BYTES
        )
        opening = {
            "Cookie": None,
            "MessageSchemaVersion": "1.0",
            "RequestId": str(uuid.uuid4()),
            "TokenValue": token,
            "AgentVersion": AGENT_VERSION,
            "PlatformType": "linux",
        }
        await ws.send_str(json.dumps(opening))
        greeting = self.greeting() if self.greeting is not None else None
        if greeting is not None:
            await ws.send_bytes(greeting.encode())
        return ws

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Keep the channel open until ``stop`` is set."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self._ws = await self.open()
                self.connected.set()
                log.info("control channel open", extra={"target": self.identity.instance_id})
                await self._read(self._ws, stop)
                reason = "closed by the server"
            except (TimeoutError, aiohttp.ClientError, ServiceError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                self.connected.clear()
                if self._ws is not None:
                    await self._ws.close()
                    self._ws = None
            if stop.is_set():
                break
            if time.monotonic() - started > 30:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            log.warning(
                "control channel down; retrying",
                extra={
                    "target": self.identity.instance_id,
                    "reason": reason,
                    "delay": round(delay, 2),
                },
            )
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while True:
                receiver = asyncio.ensure_future(ws.receive())
                done, _ = await asyncio.wait(
                    {receiver, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                if stopper in done:
                    receiver.cancel()
                    return
                frame = receiver.result()
                if frame.type == aiohttp.WSMsgType.BINARY:
                    try:
                        message = decode(frame.data)
                    except ProtocolError as exc:
                        log.warning("dropped a bad control message", extra={"error": str(exc)})
                        continue
                    await self.on_message(message)
                elif frame.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return
        finally:
            stopper.cancel()
