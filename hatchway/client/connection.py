"""The data-channel WebSocket of one session, and keeping it open across drops
(data-channel.md §1.3, §6.3).

``DataChannelDialer.open`` makes one connection: the WebSocket to StreamUrl, a ``keepalive``
ping, then the OpenDataChannel text frame that carries the token. ``DataChannelLink`` makes
the first connection and, after a drop, resumes: ResumeSession for a fresh token, then the
*original* StreamUrl again with the same ClientId and a new RequestId, with bounded
exponential back-off between attempts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from ..aws.explain import hidden as mask
from ..aws.proxy import proxy_for
from ..protocol.client_session import CLIENT_VERSION
from ..protocol.payloads import AGENT_PRESENCE_FEATURE, FEATURES_HEADER, OpenDataChannel
from .errors import MissingConfiguration, ServiceFailure, SessionTimedOut, TransportFailure

# aiohttp pings after this much silence and drops the socket when no pong comes back within
# half of it, which starts a resume. The reference client pings every 5 minutes and never
# checks for pongs; 30 s also keeps idle proxies and load balancers from closing the socket.
KEEPALIVE_SECONDS = 30.0
OPEN_TIMEOUT_SECONDS = 45.0  # gorilla's handshake timeout, which the reference client uses
CLOSE_TIMEOUT_SECONDS = 2.0

RETRY_NOTICE = "Trying to open session (Retrying. Attempt #{attempt})"
FAILED_TO_OPEN = "Error: Failed to open session."


class ChannelOpenError(TransportFailure):
    """One attempt to open the data channel failed. ``retryable`` is False when trying the
    same token again cannot help (the server refused the upgrade with a 4xx)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential back-off. The defaults give 8 attempts over about 25 s, well
    above the reference client's 5 retries in about 3 s that long sessions outlive
    (aws/session-manager-plugin#135)."""

    attempts: int = 8
    first_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1-based), with jitter so that many
        clients cut off together do not come back together."""
        base = min(self.max_delay, self.first_delay * 2.0 ** (attempt - 1))
        return float(base * random.uniform(1.0, 1.5))


# --- one connection -------------------------------------------------------------------


def ssl_for(url: URL, ca_bundle: str | None) -> ssl.SSLContext | bool:
    """Certificate checks for wss: the system store, or AWS_CA_BUNDLE as botocore uses it."""
    if url.scheme != "wss" or not ca_bundle:
        return True
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        message = f"cannot use the CA bundle {ca_bundle}: {exc}"
        raise ChannelOpenError(message, retryable=False) from exc


def ensure_nodelay(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """Keystrokes are tiny messages: Nagle's algorithm would hold each one back for an ack.

    aiohttp already sets TCP_NODELAY on every client connection (BaseProtocol.connection_made);
    this checks it on the socket in hand and sets it if some transport did not.
    """
    sock = ws.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    if not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


class DataChannelSocket:
    """One open WebSocket of a data channel: binary frames in and out."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, request_id: str) -> None:
        self.ws = ws
        self.request_id = request_id

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, frames: list[bytes]) -> None:
        """Write frames in order. Raises ConnectionError when the socket is gone."""
        for frame in frames:
            try:
                await self.ws.send_bytes(frame)
            except (aiohttp.ClientError, RuntimeError) as exc:
                raise ConnectionResetError(f"the data channel socket closed: {exc}") from exc

    async def receive(self) -> bytes | None:
        """The next data frame, or None once the socket has closed or failed."""
        while True:
            message = await self.ws.receive()
            if message.type is aiohttp.WSMsgType.BINARY:
                return bytes(message.data)
            if message.type is aiohttp.WSMsgType.TEXT:
                # The reference client hands text frames to the binary parser too (§1.3).
                return str(message.data).encode("utf-8", errors="replace")
            if message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return None

    def close_reason(self) -> str:
        exc = self.ws.exception()
        if exc is not None:
            return f"the data channel socket failed: {exc}"
        return f"the data channel socket closed (code {self.ws.close_code})"

    async def close(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await self.ws.close()
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass  # the socket is being abandoned either way


class DataChannelDialer:
    """Opens connections to one StreamUrl, always as the same client (ClientId)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        stream_url: str,
        *,
        client_id: str,
        ca_bundle: str | None,
        log: logging.Logger,
    ) -> None:
        self._http = http
        self.stream_url = stream_url
        self.client_id = client_id
        self._ca_bundle = ca_bundle
        self._log = log

    async def open(self, token: str) -> DataChannelSocket:
        url = URL(self.stream_url)
        if url.scheme not in ("ws", "wss"):
            raise ChannelOpenError(f"StreamUrl {self.stream_url!r} is not ws:// or wss://")
        proxy, proxy_headers = proxy_for(url)
        self._log.debug("websocket: connecting to %s%s", url, f" via {proxy}" if proxy else "")
        ws = await self._connect(url, proxy, proxy_headers)
        nodelay = ensure_nodelay(ws)
        self._log.debug("websocket: upgrade status 101, TCP_NODELAY=%s", nodelay)
        request_id = str(uuid.uuid4())
        opening = OpenDataChannel(
            token=token,
            request_id=request_id,
            client_id=self.client_id,
            client_version=CLIENT_VERSION,
        )
        try:
            await ws.ping(b"keepalive")  # as the reference client does right after connecting
            await ws.send_str(opening.to_json().decode("utf-8"))
        except (aiohttp.ClientError, RuntimeError, OSError) as exc:
            await ws.close()
            raise ChannelOpenError(f"the data channel closed while opening: {exc}") from exc
        self._log.debug(
            "OpenDataChannel sent: request_id=%s client_id=%s client_version=%s token=%s",
            request_id,
            self.client_id,
            CLIENT_VERSION,
            mask(token),
        )
        return DataChannelSocket(ws, request_id)

    async def _connect(
        self, url: URL, proxy: URL | None, proxy_headers: dict[str, str]
    ) -> aiohttp.ClientWebSocketResponse:
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
                return await self._http.ws_connect(
                    url,
                    headers={FEATURES_HEADER: AGENT_PRESENCE_FEATURE},
                    proxy=proxy,
                    proxy_headers=proxy_headers or None,
                    ssl=ssl_for(url, self._ca_bundle),
                    heartbeat=KEEPALIVE_SECONDS,
                    autoping=True,
                    compress=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_SECONDS),
                )
        except aiohttp.WSServerHandshakeError as exc:
            self._log.debug("websocket: upgrade refused with HTTP %s", exc.status)
            # A 4xx means this token or URL is refused; the same request will not succeed.
            raise ChannelOpenError(
                f"the data channel refused the connection: HTTP {exc.status} {exc.message}",
                retryable=not 400 <= exc.status < 500,
            ) from exc
        except aiohttp.ClientSSLError as exc:
            # A certificate that fails today fails on every retry too.
            raise ChannelOpenError(
                f"TLS with {url.host} failed: {exc} (set AWS_CA_BUNDLE for a private CA)",
                retryable=False,
            ) from exc
        except TimeoutError as exc:
            raise ChannelOpenError(
                f"no answer from {url.host} within {OPEN_TIMEOUT_SECONDS:.0f} s"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ChannelOpenError(f"cannot connect to {url.host}: {exc}") from exc


# --- keeping it open ------------------------------------------------------------------


class DataChannelLink:
    """The first connection of a session, and every reconnection after a drop.

    ``resume_token`` calls ResumeSession and gives the new token, or None when the service
    has timed the session out. ``notice`` shows the retry lines to the user.
    """

    def __init__(
        self,
        dialer: DataChannelDialer,
        *,
        session_id: str,
        token: str,
        resume_token: Callable[[], Awaitable[str | None]],
        notice: Callable[[str], None],
        policy: RetryPolicy,
        log: logging.Logger,
    ) -> None:
        self._dialer = dialer
        self._session_id = session_id
        self._token = token
        self._resume_token = resume_token
        self._notice = notice
        self._policy = policy
        self._log = log

    async def connect(self) -> DataChannelSocket:
        """Open with StartSession's token, retrying network failures with the same token
        (the reference client does not call ResumeSession for the first connection)."""
        try:
            return await self._dialer.open(self._token)
        except ChannelOpenError as exc:
            if not exc.retryable:
                raise _open_failed(exc) from exc
            last = exc
        for attempt in range(1, self._policy.attempts + 1):
            await self._back_off(attempt)
            try:
                return await self._dialer.open(self._token)
            except ChannelOpenError as exc:
                if not exc.retryable:
                    raise _open_failed(exc) from exc
                last = exc
        raise _open_failed(last)

    async def reconnect(self, cause: str) -> DataChannelSocket:
        """After a drop: ResumeSession, then the original StreamUrl with the new token."""
        self._log.debug("resume: %s", cause)
        last: TransportFailure = TransportFailure(cause)
        for attempt in range(1, self._policy.attempts + 1):
            await self._back_off(attempt)
            try:
                token = await self._resume_token()
            except (ServiceFailure, MissingConfiguration) as exc:
                # An answer, not a network failure: asking again gets the same answer.
                raise type(exc)(f"{FAILED_TO_OPEN} {exc.message}") from exc
            except TransportFailure as exc:
                last = exc
                continue
            if token is None:
                raise SessionTimedOut(f"Session: {self._session_id} timed out.")
            self._token = token
            try:
                return await self._dialer.open(token)
            except ChannelOpenError as exc:
                last = exc  # a fresh token comes with the next attempt
        raise _open_failed(last)

    async def _back_off(self, attempt: int) -> None:
        self._notice(RETRY_NOTICE.format(attempt=attempt))
        delay = self._policy.delay(attempt)
        self._log.debug("retry %d of %d in %.2f s", attempt, self._policy.attempts, delay)
        await asyncio.sleep(delay)  # back-off between attempts, not flow control


def _open_failed(cause: TransportFailure) -> TransportFailure:
    return TransportFailure(f"{FAILED_TO_OPEN} {cause.message}")
