"""One session on the agent: the data channel, the handshake, and the process it serves."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from ..protocol import AgentMessage, PortFlag, ProtocolError
from ..protocol.agent_session import (
    AgentSession,
    FlagReceived,
    InputReceived,
    KmsDecryptNeeded,
    ResizeRequested,
    SessionClosed,
    SessionFailed,
    SessionReady,
)
from ..protocol.payloads import ERROR_BANNER
from ..protocol.port import Destination, agent_port_mode, destination_from
from .api import ServiceError, kms_decrypt
from .datachannel import open_data_channel, session_state_message
from .identity import Identity
from .port import Forwarder, forwarder_for
from .shell import READ_CHUNK, ShellError, ShellProcess, ShellSpec
from .users import SessionUserError, ensure_session_user

log = logging.getLogger("hatchway.agent.session")

DRAIN_SECONDS = 5.0
RECONNECT_ATTEMPTS = 10  # about a minute: long enough for a server restart
SHELL_TYPES = ("Standard_Stream", "InteractiveCommands", "NonInteractiveCommands")
PORT_TYPE = "Port"
KMS_TIMEOUT = 10.0  # below the handshake's 15 s, so the user sees why
# Input kept for a process (or forwarder) still starting: the data channel's own bound on
# what is delivered but not yet taken (data-channel.md §3.7).
EARLY_INPUT_BYTES = 8 * 1024 * 1024
PORT_MESSAGE_BYTES = 64 * 1024  # port data goes in large messages; shells keep 32 KiB


def now() -> float:
    return time.time()


def now_ms() -> int:
    return int(time.time() * 1000)


class SessionFailure(Exception):
    """The session cannot run; the message is what the user sees."""


@dataclass(frozen=True)
class SessionTask:
    """What ``interactive_shell`` asks for (agent.md §1.8)."""

    session_id: str
    document_name: str
    content: dict[str, Any]
    parameters: dict[str, Any]
    run_as_user: str
    owner: str

    @classmethod
    def from_message(cls, message: AgentMessage) -> SessionTask:
        try:
            outer = json.loads(message.payload)
            inner = json.loads(outer["Content"])
            content = inner["DocumentContent"]
            if not isinstance(content, dict):
                raise TypeError("DocumentContent is not an object")
            if content.get("schemaVersion") != "1.0":
                raise ValueError(
                    f"Document with schema version {content.get('schemaVersion')} is not "
                    "supported by this version of the agent"
                )
            return cls(
                session_id=str(inner["SessionId"]),
                document_name=str(inner.get("DocumentName", "")),
                content=content,
                parameters=dict(inner.get("Parameters") or {}),
                run_as_user=str(inner.get("RunAsUser") or ""),
                owner=str(inner.get("SessionOwner") or ""),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"interactive_shell payload is not usable: {exc}") from None

    @property
    def session_type(self) -> str:
        return str(self.content.get("sessionType", ""))

    @property
    def inputs(self) -> dict[str, Any]:
        inputs = self.content.get("inputs")
        return inputs if isinstance(inputs, dict) else {}

    @property
    def properties(self) -> dict[str, Any]:
        props = self.content.get("properties")
        return props if isinstance(props, dict) else {}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def shell_spec(task: SessionTask, session_user: str | None = None) -> ShellSpec:
    """The process a shell-type session runs (agent.md §4.1-4.3). Without RunAs it runs
    as ``session_user`` (see users.py), or as the agent's own user when that is None;
    ``runAsElevated`` commands run as the agent's user."""
    inputs, kind = task.inputs, task.session_type
    linux = task.properties.get("linux") if kind != "Standard_Stream" else None
    command = None
    elevated = False
    if isinstance(linux, dict):
        command = linux.get("commands")
        if not isinstance(command, str) or not command.strip():
            raise SessionFailure(f"Commands cannot be empty for session type {kind}")
        elevated = _truthy(linux.get("runAsElevated"))
    elif kind != "Standard_Stream":
        raise SessionFailure(f"Commands cannot be empty for session type {kind}")
    run_as = None
    if _truthy(inputs.get("runAsEnabled")) and not elevated:
        run_as = task.run_as_user or str(inputs.get("runAsDefaultUser") or "")
        if not run_as:
            raise SessionFailure("Unable to start command: please set the RunAs default user\n")
        if os.geteuid() != 0:
            raise SessionFailure(
                "Unable to start command: the agent must run as root to use RunAs\n"
            )
    elif not elevated:
        run_as = session_user
    profile = inputs.get("shellProfile")
    shell_profile = profile.get("linux", "") if isinstance(profile, dict) else ""
    separate = isinstance(linux, dict) and _truthy(linux.get("separateOutputStream"))
    return ShellSpec(
        command=command,
        interactive=kind != "NonInteractiveCommands",
        separate_stderr=separate,
        shell_profile=shell_profile if kind == "Standard_Stream" else "",
        run_as=run_as,
    )


class ControlSender(Protocol):
    async def report_complete(self, session_id: str, status: str, output: str) -> None: ...


ChannelOpener = Callable[
    [aiohttp.ClientSession, Identity, str, int], Awaitable[aiohttp.ClientWebSocketResponse]
]


class _SessionOver(Exception):
    """Raised inside the task group once the session has an outcome: it cancels the rest."""


class SessionWorker:
    """Runs one shell session from ``interactive_shell`` to ``agent_task_complete``."""

    def __init__(
        self,
        identity: Identity,
        http: aiohttp.ClientSession,
        task: SessionTask,
        control: ControlSender,
        agent_version: str,
        kms_url: str | None = None,
        session_user: str | None = None,
        *,
        open_channel: ChannelOpener = open_data_channel,
    ) -> None:
        self.identity = identity
        self.open_channel = open_channel
        self.session_user = session_user
        self.kms_url = kms_url or identity.server_url
        self.http = http
        self.task = task
        self.control = control
        self.session = AgentSession(
            session_id=task.session_id,
            target=identity.instance_id,
            session_type=task.session_type,
            agent_version=agent_version,
            properties=task.properties if task.session_type == PORT_TYPE else None,
            # Unlike the official agent (agent.md §5), Port sessions are encrypted too when
            # their document names a key: what goes through the relay is the user's data.
            kms_key_id=str(task.inputs.get("kmsKeyId") or "") or None,
            max_payload=PORT_MESSAGE_BYTES if task.session_type == PORT_TYPE else 32 * 1024,
        )
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.shell: ShellProcess | None = None
        self.spec: ShellSpec | None = None
        # Input that arrived before the process (or the forwarder) was up.
        self.early_input: list[bytes] = []
        self.early_bytes = 0
        self.destination: Destination | None = None
        self.forwarder: Forwarder | None = None
        self.holders: set[object] = set()
        self.size = (80, 24)
        self.done = asyncio.Event()
        self.outcome: tuple[str, str] = ("Success", "")
        self.capacity = asyncio.Event()
        self.capacity.set()
        self.timer_changed = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.group: asyncio.TaskGroup | None = None
        self.extra = {"session_id": task.session_id, "target": identity.instance_id}

    # --- the whole session ------------------------------------------------------------

    async def run(self) -> None:
        status, output = "Failed", ""
        try:
            if self.task.session_type == PORT_TYPE:
                try:
                    self.destination = destination_from(self.task.properties)
                except ProtocolError as exc:
                    raise SessionFailure(str(exc)) from None
            elif self.task.session_type in SHELL_TYPES:
                self.spec = shell_spec(self.task, self.session_user)
                if self.session_user is not None and self.spec.run_as == self.session_user:
                    await self.prepare_session_user(self.session_user)
            else:
                raise SessionFailure(
                    f"Plugin with name {self.task.session_type} is not supported by this "
                    "version of the agent"
                )
            try:
                self.ws = await self.open_channel(
                    self.http, self.identity, self.task.session_id, now_ms()
                )
            except (aiohttp.ClientError, OSError) as exc:
                raise SessionFailure(
                    f"Setting up data channel with id {self.task.session_id} failed: {exc}"
                ) from None
            self.session.start(now())
            await self.flush()
            await self.supervise()
            status, output = self.outcome
        except SessionFailure as exc:
            status, output = "Failed", ERROR_BANNER + str(exc)
        except Exception as exc:  # one session's bug must not kill the agent
            log.exception("session crashed", extra=self.extra)
            status, output = "Failed", ERROR_BANNER + f"Internal agent error: {exc}"
        finally:
            await self.cleanup()
        log.info("session finished", extra={**self.extra, "status": status})
        await self.control.report_complete(self.task.session_id, status, output)

    async def prepare_session_user(self, name: str) -> None:
        try:
            await asyncio.to_thread(ensure_session_user, name)
        except SessionUserError as exc:
            raise SessionFailure(
                f"Unable to start command: cannot create the session user {name}: {exc}\n"
            ) from None

    async def supervise(self) -> None:
        """Run the session's tasks (the channel, the timers, the process or the port
        forwarding) until the session has an outcome, then cancel what is left. Every task
        runs in this group through ``spawn``, so none outlives the session, and one that
        fails ends the session with the reason instead of leaving it hanging."""
        try:
            async with asyncio.TaskGroup() as group:
                self.group = group
                self.spawn(self.pump_channel(), "the data channel")
                self.spawn(self.run_timers(), "the data channel's timers")
                await self.done.wait()
                raise _SessionOver
        except* _SessionOver:
            pass
        finally:
            self.group = None

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[None]:
        """Run ``coro`` in the session's task group. If it fails, the session ends Failed
        with the error, which the client prints; a session that is over starts nothing."""
        group = self.group
        if group is None or self.done.is_set():
            coro.close()
            return _finished_task()
        try:
            return group.create_task(self._guarded(coro, what))
        except RuntimeError:  # the group is shutting down: the session is ending
            coro.close()
            return _finished_task()

    async def _guarded(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        try:
            await coro
        except Exception as exc:
            log.error("session task failed", exc_info=exc, extra={**self.extra, "task": what})
            self.finish("Failed", f"Internal agent error in {what}: {exc!r}")

    async def cleanup(self) -> None:
        if self.shell is not None:
            with contextlib.suppress(Exception):
                await self.shell.terminate()
        if self.forwarder is not None:
            with contextlib.suppress(Exception):
                await self.forwarder.close()
        if self.ws is not None:
            await self.ws.close()

    def finish(self, status: str, output: str) -> None:
        """The session's outcome; the first one stands. A failure's text always follows
        the error banner, as the official agent marks it: clients tell a failed session
        from a clean end by that banner (and exit 255)."""
        if status == "Failed" and not output.startswith(ERROR_BANNER):
            output = ERROR_BANNER + output
        if not self.done.is_set():
            self.outcome = (status, output)
            self.done.set()

    # --- the channel ------------------------------------------------------------------

    async def flush(self) -> None:
        frames = self.session.data_to_send()
        if not frames or self.ws is None:
            return
        async with self.send_lock:
            for frame in frames:
                if self.ws.closed:
                    return  # retransmission resends them after a reconnect
                try:
                    await self.ws.send_bytes(frame)
                except ConnectionError as exc:
                    # The socket is going away (aiohttp raises ConnectionResetError for a
                    # closing transport): the read loop reconnects, and what was not
                    # acknowledged is sent again then.
                    log.info("data channel send failed", extra={**self.extra, "error": str(exc)})
                    return
        self.timer_changed.set()

    async def pump_channel(self) -> None:
        attempts = 0
        while not self.done.is_set():
            assert self.ws is not None
            async for frame in self.ws:
                if frame.type == aiohttp.WSMsgType.BINARY:
                    attempts = 0
                    try:
                        self.session.receive(frame.data, now())
                    except ProtocolError as exc:
                        log.warning("dropped a bad frame", extra={**self.extra, "error": str(exc)})
                        continue
                    await self.handle_events()
                    await self.flush()
                    if self.session.send_capacity > 0:
                        self.capacity.set()
            if self.done.is_set():
                return
            attempts += 1
            if attempts > RECONNECT_ATTEMPTS:
                self.finish("Failed", "The data channel was lost.")
                return
            await asyncio.sleep(min(8.0, 0.1 * 2**attempts))
            log.warning(
                "data channel dropped; reopening", extra={**self.extra, "attempt": attempts}
            )
            with contextlib.suppress(aiohttp.ClientError, OSError):
                self.ws = await self.open_channel(
                    self.http, self.identity, self.task.session_id, now_ms()
                )
                self.session.channel.resend_unacked(now())
                await self.flush()

    async def run_timers(self) -> None:
        while not self.done.is_set():
            deadline = self.session.next_timeout()
            self.timer_changed.clear()
            timeout = None if deadline is None else max(0.0, deadline - now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.timer_changed.wait(), timeout)
            self.session.tick(now())
            await self.handle_events()
            await self.flush()

    async def handle_events(self) -> None:
        while (event := self.session.next_event()) is not None:
            if isinstance(event, InputReceived):
                await self.deliver_input(event.data)
            elif isinstance(event, ResizeRequested):
                self.size = (event.cols, event.rows)
                if self.shell is not None:
                    self.shell.resize(event.cols, event.rows)
            elif isinstance(event, SessionReady):
                if self.destination is not None:
                    await self.start_forwarding(event.client_version)
                else:
                    await self.start_process(pty=event.pseudo_terminal)
            elif isinstance(event, SessionClosed):
                self.finish("Success", "")
            elif isinstance(event, SessionFailed):
                self.finish("Failed", event.reason)
            elif isinstance(event, FlagReceived):
                if event.flag is PortFlag.TERMINATE_SESSION:
                    self.finish("Success", "")
                elif self.forwarder is not None:
                    await self.forwarder.on_flag(event.flag)
            elif isinstance(event, KmsDecryptNeeded):
                # Off the read loop: the handshake's own 15 s deadline bounds the wait.
                self.spawn(self.fetch_data_key(event), "the KMS request")

    async def fetch_data_key(self, event: KmsDecryptNeeded) -> None:
        try:
            async with asyncio.timeout(KMS_TIMEOUT):
                key = await kms_decrypt(
                    self.http,
                    self.kms_url,
                    self.identity,
                    event.ciphertext,
                    event.key_id,
                    event.encryption_context,
                )
        except ServiceError as exc:
            self.kms_failed(f"{exc.code}: {exc.message}" if exc.code else exc.message)
        except TimeoutError:
            log.warning("KMS Decrypt timed out", extra={**self.extra, "kms": self.kms_url})
            self.session.data_key_timed_out(
                f"(KMS at {self.kms_url} did not answer within {KMS_TIMEOUT:.0f} s: check that "
                "this node can reach it.)"
            )
        except (aiohttp.ClientError, OSError) as exc:
            self.kms_failed(f": KMS at {self.kms_url} is unreachable ({exc})")
        else:
            try:
                self.session.provide_data_key(key, now())
            except ProtocolError as exc:
                self.kms_failed(f": {exc}")
        await self.handle_events()
        await self.flush()

    def kms_failed(self, reason: str) -> None:
        log.warning("KMS Decrypt failed", extra={**self.extra, "error": reason})
        self.session.data_key_failed(reason)

    # --- the process ------------------------------------------------------------------

    async def deliver_input(self, data: bytes) -> None:
        if self.forwarder is not None:
            await self.forwarder.on_input(data)
            return
        if self.shell is None or self.spec is None:
            self.keep_early_input(data)
            return
        if self.spec.interactive:
            if data or self.spec.on_pty:
                await self.shell.write(data)
            else:
                await self.shell.close_input()  # the end of a piped client's input
            return
        # A command on pipes has no terminal: Ctrl-C and Ctrl-\ become signals (agent.md
        # §4.4), and other input is dropped.
        if b"\x03" in data:
            self.shell.send_signal(signal.SIGINT)
        if b"\x1c" in data:
            self.shell.send_signal(signal.SIGQUIT)

    def keep_early_input(self, data: bytes) -> None:
        """Input that came before the process or the forwarder was up: events are handled
        by more than one loop, so a client's first keys (pyssm-client sends its command
        0.1 s after the handshake) can overtake a slow start. It was acknowledged, so it
        is kept, in order, for the process (bounded; past the bound it is dropped, said)."""
        if self.early_bytes + len(data) > EARLY_INPUT_BYTES:
            log.warning("input before the process started was dropped", extra=self.extra)
            return
        self.early_input.append(data)
        self.early_bytes += len(data)

    async def replay_early_input(self) -> None:
        """In one write, before anything newer: a writer takes its data when called."""
        early, self.early_input, self.early_bytes = self.early_input, [], 0
        if data := b"".join(early):
            await self.deliver_input(data)
        if any(not chunk for chunk in early):  # a piped client's end of input came too
            await self.deliver_input(b"")

    async def start_process(self, *, pty: bool = True) -> None:
        """Start the session's process; ``pty=False`` when the client declined a pty (its
        input is not a terminal): then the shell runs on pipes, with stderr apart."""
        assert self.spec is not None
        cols, rows = self.size
        changes: dict[str, Any] = {"cols": cols, "rows": rows}
        if not pty and self.spec.interactive:
            changes.update(pty=False, separate_stderr=True)
        self.spec = spec = dataclasses.replace(self.spec, **changes)
        try:
            self.shell = await ShellProcess.start(spec)
        except ShellError as exc:
            # A shell session says "shell", as the support articles quote it; a command
            # document says "command", as agents since 3.0.1181 say for every session.
            what = "shell" if spec.command is None else "command"
            self.finish("Failed", f"Unable to start {what}: {exc}\n")
            return
        log.info("process started", extra={**self.extra, "pid": self.shell.pid})
        self.spawn(self.pump_process(), "the shell's output")
        await self.replay_early_input()

    async def room(self, size: int = READ_CHUNK) -> None:
        """Wait until the data channel takes ``size`` more bytes: flow control towards
        the client."""
        while self.session.send_capacity < size:
            self.capacity.clear()
            await self.capacity.wait()

    async def pump_output(self, read: Any, send: Any) -> None:
        while True:
            await self.room()  # read no more from the process while the peer is behind
            data = await read()
            if not data:
                return
            send(data, now())
            await self.flush()

    async def pump_process(self) -> None:
        shell = self.shell
        assert shell is not None and self.spec is not None
        readers = [self.pump_output(shell.read, self.session.send_output)]
        if self.spec.separate_stderr:
            readers.append(self.pump_output(shell.read_stderr, self.session.send_stderr))
        await asyncio.gather(*readers)
        code = await shell.wait()
        self.session.send_exit_code(code, now())
        await self.end_when_delivered()

    async def end_when_delivered(self) -> None:
        """The session's source is done: say so, let the client ack what is in flight
        (bounded), then end with Success."""
        await self.flush()
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_bytes(
                    session_state_message("Terminating", self.task.session_id, now_ms())
                )
        await self.wait_until_acked()
        self.finish("Success", "")

    async def wait_until_acked(self) -> None:
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.session.channel.unacked_count and time.monotonic() < deadline:
            self.capacity.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.capacity.wait(), deadline - time.monotonic())

    # --- port forwarding ----------------------------------------------------------------

    async def start_forwarding(self, client_version: str) -> None:
        assert self.destination is not None
        mode = agent_port_mode(self.task.properties, client_version)
        self.forwarder = forwarder_for(self, self.destination, mode, client_version)
        await self.forwarder.start()
        await self.replay_early_input()

    def now(self) -> float:
        return now()

    def hold_input(self, key: object) -> None:
        """A destination is not taking data as fast as it comes: stop accepting more."""
        if not self.holders:
            self.session.channel.hold_incoming(now())
            self.timer_changed.set()  # the timer loop flushes the pause_publication
        self.holders.add(key)

    def release_input(self, key: object) -> None:
        if key in self.holders:
            self.holders.discard(key)
            if not self.holders:
                self.session.channel.release_incoming(now())
                self.timer_changed.set()  # the timer loop flushes the start_publication


def _finished_task() -> asyncio.Task[None]:
    """A task that does nothing, for a session that starts no more work."""

    async def nothing() -> None:
        return None

    return asyncio.create_task(nothing())
