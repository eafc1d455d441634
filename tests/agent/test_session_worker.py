"""The agent's SessionWorker, with real ptys and a loopback data channel: the client end
is the sans-I/O ClientSession, joined to the worker by an in-memory socket."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from hatchway.agent.identity import Identity
from hatchway.agent.session import SessionTask, SessionWorker
from hatchway.protocol import AgentMessage, MessageType, PayloadType, decode
from hatchway.protocol.client_session import (
    ClientSession,
    ExitCodeReceived,
    OutputReceived,
    SessionStarted,
    StdErrReceived,
)
from hatchway.protocol.payloads import ERROR_BANNER

TIMEOUT = 30.0
IDENTITY = Identity("mi-0123456789abcdef0", "http://127.0.0.1:9", "us-east-1", "AK", "SK")


class Frame:
    """What iterating an aiohttp WebSocket yields."""

    type = aiohttp.WSMsgType.BINARY

    def __init__(self, data: bytes) -> None:
        self.data = data


class Client:
    """The client end: a ClientSession that answers the handshake, sends ``commands``
    once the session starts, and collects what the agent sends."""

    def __init__(self, commands: bytes = b"", *, pty: bool = True, early: bool = False) -> None:
        self.session = ClientSession("sess-1", IDENTITY.instance_id, pseudo_terminal=pty)
        self.commands = commands
        # Send the commands before answering the handshake, as pyssm-client can on a busy
        # machine (it sends its command 0.1 s after opening the channel, come what may).
        self.early = early
        self.output = bytearray()
        self.stderr = bytearray()
        self.exit_code: int | None = None
        self.socket: LoopbackSocket | None = None

    def receive(self, frame: bytes) -> None:
        now = time.time()
        if self.early and self.commands:
            self.session.channel.send(self.commands, PayloadType.OUTPUT, now=now)
            self.commands = b""
        self.session.receive(frame, now)
        while (event := self.session.next_event()) is not None:
            if isinstance(event, SessionStarted) and self.commands:
                self.session.send_input(self.commands, now)
                if not self.session.pseudo_terminal:
                    self.session.end_input(now)
            elif isinstance(event, OutputReceived):
                self.output += event.data
            elif isinstance(event, StdErrReceived):
                self.stderr += event.data
            elif isinstance(event, ExitCodeReceived):
                self.exit_code = event.code
        assert self.socket is not None
        for reply in self.session.data_to_send():
            self.socket.deliver(reply)


class LoopbackSocket:
    """Stands in for the agent's data-channel WebSocket. ``breaks(frame)`` picks a frame
    whose sending fails as aiohttp's does on a closing transport: ConnectionResetError,
    and the socket is closed."""

    def __init__(self, client: Client, breaks: Callable[[bytes], bool] | None = None) -> None:
        self.client = client
        self.breaks = breaks
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    def deliver(self, frame: bytes) -> None:
        if not self.closed:
            self.incoming.put_nowait(frame)

    async def send_bytes(self, frame: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("Cannot write to closing transport")
        if self.breaks is not None and self.breaks(frame):
            self.closed = True
            self.incoming.put_nowait(None)
            raise ConnectionResetError("Cannot write to closing transport")
        if decode(frame).message_type != MessageType.AGENT_SESSION_STATE:
            self.client.receive(frame)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.incoming.put_nowait(None)

    def __aiter__(self) -> LoopbackSocket:
        return self

    async def __anext__(self) -> Frame:
        frame = await self.incoming.get()
        if frame is None:
            raise StopAsyncIteration
        return Frame(frame)


class BrokenSocket(LoopbackSocket):
    """A data channel whose reading fails with an error nobody expects, once the client
    has sent something after the handshake."""

    async def __anext__(self) -> Frame:
        frame = await super().__anext__()
        if decode(frame.data).payload_type == PayloadType.OUTPUT:
            raise RuntimeError("the relay sent nonsense")
        return frame


class Control:
    def __init__(self) -> None:
        self.reported: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()

    async def report_complete(self, session_id: str, status: str, output: str) -> None:
        assert not self.reported.done(), "the session was reported twice"
        self.reported.set_result((status, output))


def command_task(command: str) -> SessionTask:
    return session_task(
        {
            "schemaVersion": "1.0",
            "sessionType": "InteractiveCommands",
            "properties": {"linux": {"commands": command}},
        }
    )


def session_task(content: dict[str, Any]) -> SessionTask:
    payload = {
        "Content": json.dumps(
            {"SessionId": "sess-1", "DocumentName": "test", "DocumentContent": content}
        )
    }
    message = AgentMessage(
        message_type=MessageType.INTERACTIVE_SHELL,
        created_date=1,
        payload=json.dumps(payload).encode(),
    )
    return SessionTask.from_message(message)


async def run_worker(task: SessionTask, *sockets: LoopbackSocket) -> tuple[SessionWorker, Any]:
    """Run the worker until it reports its outcome; each socket serves one connection."""
    control = Control()
    opened = iter(sockets)

    async def open_channel(*_: Any) -> LoopbackSocket:
        socket = next(opened)
        socket.client.socket = socket  # the client answers on the newest connection
        return socket

    worker = SessionWorker(
        IDENTITY,
        None,
        task,
        control,
        "3.3.0.0",
        open_channel=open_channel,  # type: ignore[arg-type]
    )
    runner = asyncio.create_task(worker.run())
    try:
        # The outcome is what the tests assert: wait for it, bounded, and nothing else.
        outcome = await asyncio.wait_for(asyncio.shield(control.reported), TIMEOUT)
        await asyncio.wait_for(runner, TIMEOUT)
    finally:
        runner.cancel()
    return worker, outcome


async def test_a_command_runs_and_reports_its_exit_code() -> None:
    client = Client()
    _, outcome = await run_worker(command_task("echo hi; exit 3"), LoopbackSocket(client))
    assert outcome == ("Success", "")
    assert b"hi" in client.output
    assert client.exit_code == 3


async def test_a_pump_that_fails_ends_the_session_with_the_reason() -> None:
    """Nothing else would end this session: the command never exits."""
    client = Client(commands=b"input that breaks the relay\r")
    worker, (status, output) = await run_worker(command_task("sleep 600"), BrokenSocket(client))
    assert status == "Failed"
    assert output == (
        ERROR_BANNER
        + "Internal agent error in the data channel: RuntimeError('the relay sent nonsense')"
    )
    assert worker.shell is not None
    assert worker.shell._process.returncode is not None  # the command was stopped


def output_data(frame: bytes) -> bool:
    message = decode(frame)
    return (
        message.message_type == MessageType.OUTPUT_STREAM_DATA
        and message.payload_type == PayloadType.OUTPUT
    )


async def test_a_reset_while_sending_output_reconnects_and_loses_nothing() -> None:
    """aiohttp raises ConnectionResetError from send_bytes when the socket is closing.
    The output pump must not die of it: the channel reconnects and sends it again."""
    client = Client()
    first = LoopbackSocket(client, breaks=output_data)
    second = LoopbackSocket(client)
    _, outcome = await run_worker(command_task("echo hi; exit 3"), first, second)
    assert first.closed
    assert outcome == ("Success", "")
    assert b"hi" in client.output
    assert client.exit_code == 3


async def test_a_port_session_that_cannot_connect_fails_after_the_error_banner() -> None:
    """Clients tell a failed session from a clean end by the banner (issue 13: the port
    path reported its failures without it, and `hatchway start-session` exited 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        content = {
            "schemaVersion": "1.0",
            "sessionType": "Port",
            "properties": {"portNumber": str(port)},  # no type: one connection, as for SSH
        }
        _, (status, output) = await run_worker(session_task(content), LoopbackSocket(Client()))
    assert status == "Failed"
    assert output.startswith(ERROR_BANNER + "Unable to connect to specified port: "), output
    assert "connection refused" in output


async def test_a_client_that_declines_a_pty_gets_pipes_and_an_end_of_input() -> None:
    client = Client(b"input line\n", pty=False)
    command = "tty; echo to-stderr >&2; cat; echo after-eof"
    _, outcome = await run_worker(command_task(command), LoopbackSocket(client))
    assert outcome == ("Success", "")
    assert bytes(client.output) == b"not a tty\ninput line\nafter-eof\n"
    assert bytes(client.stderr) == b"to-stderr\n"


async def test_input_that_overtakes_a_slow_start_reaches_the_process(monkeypatch) -> None:
    """pyssm-client sends its command 0.1 s after answering the handshake, which on a busy
    machine is before the agent has finished it: the protocol keeps that input and hands
    it over just after SessionReady. The read loop then starts the process; if that is slow,
    the timer loop handles the next event, the input, while no process exists yet. It must
    reach the process, not vanish (a pyssm-client session hung for 2 minutes under load)."""
    from hatchway.agent import session as session_module

    real_start = session_module.ShellProcess.start
    real_start_process = SessionWorker.start_process
    real_deliver = SessionWorker.deliver_input
    workers: list[SessionWorker] = []
    early = asyncio.Event()

    async def start_process(worker: SessionWorker, *, pty: bool = True) -> None:
        workers.append(worker)
        await real_start_process(worker, pty=pty)

    async def deliver(worker: SessionWorker, data: bytes) -> None:
        if worker.shell is None:
            early.set()
        await real_deliver(worker, data)

    async def slow_start(spec: Any) -> Any:
        # While the process starts, the timer loop wakes (a retransmission is due) and
        # handles the next event: the input.
        workers[0].timer_changed.set()
        await asyncio.wait_for(early.wait(), TIMEOUT)
        return await real_start(spec)

    monkeypatch.setattr(SessionWorker, "start_process", start_process)
    monkeypatch.setattr(SessionWorker, "deliver_input", deliver)
    monkeypatch.setattr(session_module.ShellProcess, "start", slow_start)
    client = Client(commands=b"early-bird\r", early=True)
    _, outcome = await run_worker(
        command_task("read line; echo got-$line; exit 4"), LoopbackSocket(client)
    )
    assert outcome == ("Success", "")
    assert b"got-early-bird" in client.output, bytes(client.output)
    assert client.exit_code == 4
