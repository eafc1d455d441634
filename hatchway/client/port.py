"""Port forwarding on the client (data-channel.md §5.2).

* **mux** (``AWS-StartPortForwardingSession``, ``...ToRemoteHost``): a local TCP listener;
  each accepted connection is one smux v1 stream in the session, so many connections
  share it. We read and send 32 KiB at a time in messages of up to 64 KiB, where the
  reference plugin sends 1 KiB and sleeps.
* **stream** (``AWS-StartSSHSession``): stdin and stdout are the session's byte stream,
  for ``ssh -o ProxyCommand=...``. Nothing else is written to stdout.

Flow control: a local connection is read only while the data channel has room, and when
a local reader falls behind by more than ``WRITE_HIGH`` the session takes no more data
from the agent (it keeps it unacknowledged) until the reader catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass

from ..protocol.client_session import (
    ClientEvent,
    ClientSession,
    ClientState,
    FlagReceived,
    HandshakeStarted,
    OutputReceived,
    SessionStarted,
)
from ..protocol.errors import ProtocolError
from ..protocol.payloads import PortFlag, SessionType
from ..protocol.port import (
    CONNECT_FAILED_TEXT,
    MUX_AFTER_AGENT_VERSION,
    PortMode,
    client_port_mode,
)
from ..protocol.smux import SmuxSession, StreamData, StreamEnded, StreamOpened
from .controlplane import ControlPlane
from .errors import ClientFailure, InvalidArguments, SessionBroken, UnsupportedSession
from .runner import SessionOptions, SessionRunner, closing_line
from .terminal import Terminal

MESSAGE_BYTES = 256 * 1024  # data-channel message payloads we send
READ_CHUNK = 256 * 1024
WRITE_HIGH = 1024 * 1024
WRITE_LOW = 256 * 1024
DRAIN_SECONDS = 5.0  # stream mode: after stdin ends, how long to wait for acks
DEFAULT_LOCAL_HOST = "127.0.0.1"


def local_port_from(properties: dict[str, object]) -> int:
    text = str(properties.get("localPortNumber") or "0").strip() or "0"
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise InvalidArguments(f"localPortNumber {text!r} is not a port between 0 and 65535")
    return int(text)


@dataclass(eq=False)
class LocalConnection:
    stream_id: int
    writer: asyncio.StreamWriter
    agent_done: bool = False  # the agent sent FIN
    local_done: bool = False  # we sent FIN
    draining: bool = False


class PortRunner(SessionRunner):
    """Runs one port session: a listener (mux) or stdin/stdout (stream)."""

    def __init__(
        self,
        options: SessionOptions,
        api: ControlPlane,
        terminal: Terminal,
        log: logging.Logger,
    ) -> None:
        session = ClientSession(
            options.started.session_id,
            options.target,
            session_types={SessionType.PORT},
            max_input_chunk=MESSAGE_BYTES,
        )
        super().__init__(options, api, terminal, log, session)
        self._mode: PortMode | None = None
        self._smux = SmuxSession(client=True, max_frame_size=65535)
        self._connections: dict[int, LocalConnection] = {}
        self._server: asyncio.Server | None = None
        self._holders: set[object] = set()
        self._accepted = 0

    # --- starting ------------------------------------------------------------------------

    def _on_handshake(self, event: HandshakeStarted) -> None:
        if event.session_type not in (None, SessionType.PORT):
            raise UnsupportedSession(
                f"Error: the document starts a {event.session_type} session, not port forwarding."
            )

    def _on_started(self, event: SessionStarted) -> None:
        self._mode = client_port_mode(event.properties, event.agent_version)
        self._log.debug("port forwarding: %s mode", self._mode.value)
        if self._mode is PortMode.MUX:
            self._spawn(self._listen(event.properties))
        elif self._mode is PortMode.STREAM:
            self._spawn(self._pump_stdin())
        else:
            raise UnsupportedSession(
                f"Error: the agent's version {event.agent_version or 'unknown'} is too old "
                f"for port forwarding from this client, which needs a version above "
                f"{MUX_AFTER_AGENT_VERSION}; update the agent."
            )

    async def _listen(self, properties: dict[str, object]) -> None:
        host = self._options.local_host or DEFAULT_LOCAL_HOST
        try:
            port = local_port_from(properties)
            self._server = await asyncio.start_server(self._serve_connection, host, port)
        except OSError as exc:
            self._end_with(
                InvalidArguments(
                    f"Cannot perform start session: listen tcp {host}:{port}: {exc.strerror}"
                )
            )
            return
        except ClientFailure as failure:
            self._end_with(failure)
            return
        bound = self._server.sockets[0].getsockname()[1]
        self._terminal.status(
            f"Port {bound} opened for session {self._session_id}. Waiting for connections...\n"
        )

    # --- local connections (mux) ---------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._session.state is not ClientState.ESTABLISHED:
            writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        sid = self._smux.open_stream()
        connection = LocalConnection(sid, writer)
        self._connections[sid] = connection
        self._accepted += 1
        if self._accepted == 1:
            self._terminal.status(f"\nConnection accepted for session [{self._session_id}]\n")
        self._log.debug("stream %d: connection from %s", sid, writer.get_extra_info("peername"))
        self._wakeup.set()
        try:
            while sid in self._smux.streams:
                await self._room_for(READ_CHUNK + self._smux.bytes_to_send)
                data = await reader.read(READ_CHUNK)
                if not data or sid not in self._smux.streams:
                    break
                self._smux.send(sid, data)
                self._wakeup.set()
        except (OSError, ProtocolError) as exc:
            self._log.debug("stream %d: %s", sid, exc)
        connection.local_done = True
        self._smux.close_stream(sid)  # FIN: harmless if the stream is already gone
        self._wakeup.set()
        if connection.agent_done:
            self._forget(connection)

    def _before_flush(self) -> None:
        if self._smux.bytes_to_send and self._session.state is ClientState.ESTABLISHED:
            room = self._session.send_capacity
            if room > 0:
                self._session.send_input(self._smux.data_to_send(room), time.time())

    def _deliver(self, data: bytes) -> None:
        try:
            self._smux.receive_data(data)
        except ProtocolError as exc:
            raise SessionBroken(f"Error: the agent sent a bad smux frame: {exc}") from None
        while (event := self._smux.next_event()) is not None:
            if isinstance(event, StreamData):
                self._write(event.stream_id, event.data)
            elif isinstance(event, StreamEnded):
                connection = self._connections.get(event.stream_id)
                if connection is not None:
                    connection.agent_done = True
                    with contextlib.suppress(OSError, RuntimeError):
                        if connection.writer.can_write_eof():
                            connection.writer.write_eof()
                    if connection.local_done:
                        self._forget(connection)
            elif isinstance(event, StreamOpened):
                self._smux.close_stream(event.stream_id)  # agents do not open streams

    def _write(self, stream_id: int, data: bytes) -> None:
        connection = self._connections.get(stream_id)
        if connection is None or connection.writer.is_closing():
            return
        connection.writer.write(data)
        buffered = connection.writer.transport.get_write_buffer_size()
        if buffered > WRITE_HIGH and not connection.draining:
            connection.draining = True
            self._hold(connection)
            self._spawn(self._drain(connection))

    async def _drain(self, connection: LocalConnection) -> None:
        try:
            with contextlib.suppress(OSError, ConnectionError):
                await connection.writer.drain()
        finally:
            connection.draining = False
            self._release(connection)

    def _hold(self, key: object) -> None:
        if not self._holders:
            self._session.channel.hold_incoming(time.time())
            self._log.debug("a local reader is behind: holding data from the agent")
        self._holders.add(key)
        self._wakeup.set()

    def _release(self, key: object) -> None:
        if key in self._holders:
            self._holders.discard(key)
            if not self._holders:
                self._session.channel.release_incoming(time.time())
                self._wakeup.set()

    def _forget(self, connection: LocalConnection) -> None:
        self._connections.pop(connection.stream_id, None)
        self._release(connection)
        connection.writer.close()

    # --- stdin and stdout (stream) -------------------------------------------------------

    async def _pump_stdin(self) -> None:
        if not await self._send_stdin(READ_CHUNK):
            return
        # Our side is done (ssh closed its end): let the agent have what is in flight,
        # then end the session rather than leave it to the idle timeout.
        self._log.debug("stdin ended; waiting for %d messages to be acked", self._unacked())
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._unacked() and time.monotonic() < deadline:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - time.monotonic()):
                    await self._room.wait()
        await self._terminate_quietly()
        self._end_with(0)

    # --- what the agent sends ------------------------------------------------------------

    def _handle_data(self, event: ClientEvent) -> None:
        if isinstance(event, OutputReceived):
            if self._mode is PortMode.MUX:
                self._deliver(event.data)
            else:
                self._terminal.write_output(event.data)
        elif isinstance(event, FlagReceived):
            if event.flag == PortFlag.CONNECT_TO_PORT_ERROR:
                self._report_connect_error(event)
            else:
                self._log.debug("flag %s ignored", event.flag)
        else:
            self._log.debug("ignored: %s", event)

    def _report_connect_error(self, event: FlagReceived) -> None:
        error = event.error
        if error is None:
            self._terminal.error(CONNECT_FAILED_TEXT)
            return
        self._terminal.error(
            f"\nConnection to {error.destination} failed: {error.error}. The session goes "
            "on; new connections are tried again.\n"
        )
        connection = self._connections.get(error.stream_id)
        if connection is not None:
            self._forget(connection)  # the local side is closed, not just half-closed

    # --- ending --------------------------------------------------------------------------

    async def _on_interrupt(self) -> int | None:
        """Ctrl-C ends a port session cleanly and exits 0, as the reference plugin does.
        The data channel is already closed here, so the service ends the session (the
        reference sends Flag TerminateSession in band, to the same effect)."""
        self._terminal.status("Terminate signal received, exiting.\n")
        await self._terminate_quietly()
        self._terminal.status(closing_line(self._session_id, ""))
        return 0

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.writer.close()
        self._connections.clear()
