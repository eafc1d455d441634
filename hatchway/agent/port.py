"""Port sessions on the agent: dial the destination and carry its bytes (agent.md §5).

Two forwarders share the session plumbing of ``SessionWorker`` through ``PortHost``:

* ``MuxForwarder`` serves ``LocalPortForwarding`` for modern clients. The client's
  stream messages carry smux v1 frames; each stream it opens is one TCP connection that
  we dial. A failed dial costs that connection only: the client gets ConnectToPortError
  (with the reason, if it asked for details) and the session takes new connections.
* ``StreamForwarder`` serves ``AWS-StartSSHSession`` (no ``type``) and old clients: one
  connection, its bytes as the session's stream. For SSH the destination's EOF ends the
  session; for an old LocalPortForwarding client the next data dials again.

Flow control, both ways. Reading: a connection is read only while the data channel has
room to send, so a client that stops acknowledging stops the reads and the destination's
sender blocks. Writing: when a connection's unsent bytes pass ``WRITE_HIGH`` the session
holds incoming data (unacknowledged, so the client keeps it) until they fall below
``WRITE_LOW``. Memory per connection is therefore about ``WRITE_HIGH`` plus one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..protocol import PortFlag, ProtocolError
from ..protocol.agent_session import AgentSession
from ..protocol.port import (
    ConnectError,
    Destination,
    PortMode,
    agent_sends_keepalive,
    denied_address,
    forbidden_text,
)
from ..protocol.smux import SmuxSession, StreamData, StreamEnded, StreamOpened

log = logging.getLogger("hatchway.agent.port")

DIAL_TIMEOUT = 15.0
READ_CHUNK = 32 * 1024  # one smux frame at the library's default MaxFrameSize
WRITE_HIGH = 1024 * 1024
WRITE_LOW = 256 * 1024
BACKLOG = 256 * 1024  # smux frames queued for the data channel before reads pause
KEEPALIVE_SECONDS = 10.0  # smux's default interval, for clients that keep keep-alive on


class PortHost(Protocol):
    """What a forwarder needs from the session that runs it."""

    session: AgentSession
    extra: dict[str, Any]

    async def flush(self) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[None]: ...
    async def room(self, size: int = ...) -> None: ...
    def hold_input(self, key: object) -> None: ...
    def release_input(self, key: object) -> None: ...
    def finish(self, status: str, output: str) -> None: ...
    async def end_when_delivered(self) -> None: ...
    def now(self) -> float: ...


class DialError(Exception):
    """The destination cannot be reached; the message says why, for the user."""


def dial_error_text(exc: BaseException, destination: Destination) -> str:
    """Why a dial failed, in the four words users look for (issue: name not found,
    refused, timed out, unreachable), then the system's own message."""
    if isinstance(exc, socket.gaierror):
        return f"name not found: cannot resolve {destination.host} ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {destination}"
    if isinstance(exc, TimeoutError):
        return f"timed out after {DIAL_TIMEOUT:.0f} s connecting to {destination}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"network unreachable: cannot reach {destination} ({exc.strerror})"
    return f"cannot connect to {destination}: {exc}"


async def dial(destination: Destination) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Resolve, refuse the addresses a remote forward must not reach, then try each
    address in turn, as the official agent does. Raises DialError."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(DIAL_TIMEOUT):
            infos = await loop.getaddrinfo(
                destination.host, destination.port, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError) as exc:
        raise DialError(dial_error_text(exc, destination)) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if destination.remote and any(denied_address(address) for address in addresses):
        raise DialError(forbidden_text(destination.host))
    last: BaseException = OSError(f"{destination.host} has no address")
    for address in addresses:
        try:
            async with asyncio.timeout(DIAL_TIMEOUT):
                reader, writer = await asyncio.open_connection(address, destination.port)
        except (OSError, TimeoutError) as exc:
            last = exc
            continue
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer
    raise DialError(dial_error_text(last, destination))


async def close_writer(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    writer.close()
    with contextlib.suppress(OSError, ConnectionError):
        await writer.wait_closed()


def write_eof(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof() and not writer.transport.is_closing():
            writer.write_eof()


class Forwarder:
    """The interface ``SessionWorker`` drives."""

    host: PortHost

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task of the session's: its unexpected failure ends the session loudly
        instead of hanging it."""
        return self.host.spawn(coro, "port forwarding")

    async def start(self) -> None:
        raise NotImplementedError

    async def on_input(self, data: bytes) -> None:
        raise NotImplementedError

    async def on_flag(self, flag: PortFlag) -> None:
        """Flags other than TerminateSession, which the worker handles itself."""

    async def close(self) -> None:
        raise NotImplementedError


def forwarder_for(
    host: PortHost, destination: Destination, mode: PortMode, client_version: str
) -> Forwarder:
    if mode is PortMode.MUX:
        return MuxForwarder(host, destination, keepalive=agent_sends_keepalive(client_version))
    return StreamForwarder(host, destination, redial=mode is PortMode.BASIC)


# --- one connection per session -----------------------------------------------------------


class StreamForwarder(Forwarder):
    def __init__(self, host: PortHost, destination: Destination, *, redial: bool) -> None:
        self.host = host
        self.destination = destination
        self.redial = redial
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.drainer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._connect()
        except DialError as exc:
            self.host.finish("Failed", f"Unable to connect to specified port: {exc}")

    async def _connect(self) -> None:
        reader, self.writer = await dial(self.destination)
        log.info("connected", extra={**self.host.extra, "destination": str(self.destination)})
        self.reader_task = self.spawn(self._pump(reader, self.writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self.host.room(READ_CHUNK)
            try:
                data = await reader.read(READ_CHUNK)
            except OSError as exc:
                log.info("destination read failed", extra={**self.host.extra, "error": str(exc)})
                data = b""
            if not data:
                break
            self.host.session.send_output(data, self.host.now())
            await self.host.flush()
        if writer is not self.writer:
            return  # a Flag DisconnectToPort closed this one on purpose
        if self.redial:
            # An old client's LocalPortForwarding: wait for the next local connection.
            self.writer = None
            await close_writer(writer)
            return
        # SSH: the server hung up, so the session is over once the client has it all.
        await self.host.end_when_delivered()

    async def on_input(self, data: bytes) -> None:
        if self.writer is None:
            if not self.redial:
                return  # the connection is gone and the session is ending
            try:
                await self._connect()
            except DialError as exc:
                self.host.finish("Failed", f"Unable to connect to specified port: {exc}")
                return
        assert self.writer is not None
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > WRITE_HIGH and self.drainer is None:
            self.drainer = self.spawn(self._drain(self.writer))

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        self.host.hold_input(self)
        try:
            with contextlib.suppress(OSError, ConnectionError):
                await writer.drain()
        finally:
            self.drainer = None
            self.host.release_input(self)

    async def on_flag(self, flag: PortFlag) -> None:
        if flag is PortFlag.DISCONNECT_TO_PORT and self.writer is not None:
            writer, self.writer = self.writer, None
            await close_writer(writer)
            if not self.redial:
                # Not awaited here: this runs in the channel's read loop, which must go
                # on reading the acks that the ending waits for.
                self.spawn(self.host.end_when_delivered())

    async def close(self) -> None:
        for task in (self.reader_task, self.drainer):
            if task is not None:
                task.cancel()
        writer, self.writer = self.writer, None
        await close_writer(writer)


# --- many connections over smux ---------------------------------------------------------


@dataclass(eq=False)
class Connection:
    """One smux stream and the TCP connection it maps to."""

    stream_id: int
    writer: asyncio.StreamWriter | None = None
    pending: list[bytes] = field(default_factory=list)  # data that beat the dial
    pending_bytes: int = 0
    client_done: bool = False  # the client sent FIN
    task: asyncio.Task[None] | None = None  # dial, then copy from the destination
    drainer: asyncio.Task[None] | None = None  # waits out a destination that is behind
    draining: bool = False


class MuxForwarder(Forwarder):
    def __init__(self, host: PortHost, destination: Destination, *, keepalive: bool) -> None:
        self.host = host
        self.destination = destination
        self.keepalive = keepalive
        self.smux = SmuxSession(client=False)
        self.connections: dict[int, Connection] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.frames_ready = asyncio.Event()
        self.backlog_room = asyncio.Event()
        self.backlog_room.set()

    async def start(self) -> None:
        log.info(
            "port forwarding ready",
            extra={**self.host.extra, "destination": str(self.destination), "mode": "mux"},
        )
        self.tasks.append(self.spawn(self._send_loop()))
        if self.keepalive:
            self.tasks.append(self.spawn(self._keep_alive()))

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            self.smux.keepalive()
            self._queue_frames()

    def _queue_frames(self) -> None:
        """smux produced frames: the send loop takes them as the data channel has room."""
        if self.smux.bytes_to_send:
            self.frames_ready.set()
            if self.smux.bytes_to_send >= BACKLOG:
                self.backlog_room.clear()

    async def _send_loop(self) -> None:
        """The one writer of smux frames into the session. Frames are a byte stream, so
        each message takes as much as the send buffer has room for."""
        session = self.host.session
        while True:
            await self.frames_ready.wait()
            self.frames_ready.clear()
            while self.smux.bytes_to_send:
                await self.host.room(1)
                session.send_output(self.smux.data_to_send(session.send_capacity), self.host.now())
                await self.host.flush()
                if self.smux.bytes_to_send < BACKLOG:
                    self.backlog_room.set()

    async def on_input(self, data: bytes) -> None:
        try:
            self.smux.receive_data(data)
        except ProtocolError as exc:
            self.host.finish("Failed", f"The client sent a bad smux frame: {exc}")
            return
        while (event := self.smux.next_event()) is not None:
            if isinstance(event, StreamOpened):
                self._open(event.stream_id)
            elif isinstance(event, StreamData):
                self._write(event.stream_id, event.data)
            elif isinstance(event, StreamEnded):
                self._client_finished(event.stream_id)
        self._queue_frames()

    def _open(self, stream_id: int) -> None:
        connection = Connection(stream_id)
        self.connections[stream_id] = connection
        connection.task = self.spawn(self._serve(connection))

    async def _serve(self, connection: Connection) -> None:
        try:
            reader, writer = await dial(self.destination)
        except DialError as exc:
            await self._refuse(connection, str(exc))
            return
        connection.writer = writer
        for chunk in connection.pending:
            writer.write(chunk)
        connection.pending, connection.pending_bytes = [], 0
        if connection.draining:
            connection.draining = False
            self.host.release_input(connection)
        self._check_congestion(connection)
        if connection.client_done:
            write_eof(writer)
        await self._pump(connection, reader)

    async def _refuse(self, connection: Connection, reason: str) -> None:
        sid = connection.stream_id
        log.warning(
            "cannot reach the destination",
            extra={**self.host.extra, "stream": sid, "error": reason},
        )
        error = ConnectError(sid, str(self.destination), reason)
        await self.host.room(1024)
        self.host.session.send_connect_error(error, self.host.now())
        await self.host.flush()
        self._forget(connection)

    async def _pump(self, connection: Connection, reader: asyncio.StreamReader) -> None:
        sid = connection.stream_id
        while True:
            await self.backlog_room.wait()
            try:
                data = await reader.read(READ_CHUNK)
            except OSError:
                data = b""
            if not data or sid not in self.smux.streams:
                break
            self.smux.send(sid, data)
            self._queue_frames()
        # The destination is done sending: FIN tells the client, and once the client
        # has said FIN too, the connection is over.
        if connection.client_done:
            self._forget(connection)
        elif sid in self.smux.streams:
            self.smux.close_stream(sid)
        self._queue_frames()

    def _write(self, stream_id: int, data: bytes) -> None:
        connection = self.connections.get(stream_id)
        if connection is None:
            return
        if connection.writer is None:
            connection.pending.append(data)
            connection.pending_bytes += len(data)
            if connection.pending_bytes > WRITE_HIGH and not connection.draining:
                connection.draining = True  # released once the dial is done
                self.host.hold_input(connection)
            return
        if connection.writer.is_closing():
            return  # the destination hung up; our FIN is on its way to the client
        connection.writer.write(data)
        self._check_congestion(connection)

    def _check_congestion(self, connection: Connection) -> None:
        writer = connection.writer
        if writer is None or connection.draining:
            return
        if writer.transport.get_write_buffer_size() > WRITE_HIGH:
            connection.draining = True
            self.host.hold_input(connection)
            connection.drainer = self.spawn(self._drain(connection, writer))

    async def _drain(self, connection: Connection, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(OSError, ConnectionError):
                await writer.drain()
        finally:
            connection.draining = False
            self.host.release_input(connection)

    def _client_finished(self, stream_id: int) -> None:
        connection = self.connections.get(stream_id)
        if connection is None:
            return
        connection.client_done = True
        if connection.writer is not None:
            write_eof(connection.writer)
        if stream_id not in self.smux.streams:  # we had sent FIN already
            self._forget(connection)

    def _forget(self, connection: Connection) -> None:
        """The connection is over: close the socket, and the stream if it is open."""
        self.connections.pop(connection.stream_id, None)
        self.smux.close_stream(connection.stream_id)
        self._queue_frames()
        if connection.draining:
            connection.draining = False
            self.host.release_input(connection)
        if connection.writer is not None:
            connection.writer.close()

    async def close(self) -> None:
        connections, self.connections = list(self.connections.values()), {}
        tasks = [*self.tasks]
        for connection in connections:
            tasks += [task for task in (connection.task, connection.drainer) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for connection in connections:
            await close_writer(connection.writer)
