"""The loop every client session runs, whatever it carries (data-channel.md §4, §6).

One task owns the session. It handles the session's events, writes its frames, and waits
on one event, woken by the socket reader, an input pump, the KMS call or a signal, or by
the session's own retransmission deadline. Nothing sleeps to pace traffic.

``SessionRunner`` does the parts that shells and port forwarding share: connecting and
resuming the data channel, the handshake and KMS, retransmission, helper tasks, signals
and terminating the session. Subclasses say what the session's data means
(``_handle_data``) and what to do once it starts (``_on_started``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..protocol.client_session import (
    AgentPresenceChanged,
    ClientEvent,
    ClientSession,
    ClientState,
    EncryptionChallengeAnswered,
    HandshakeStarted,
    KmsDataKeyNeeded,
    SessionEnded,
    SessionFailed,
    SessionStarted,
)
from ..protocol.errors import ProtocolError
from ..protocol.payloads import AgentPresence, Presence
from .config import StartedSession
from .connection import DataChannelDialer, DataChannelLink, DataChannelSocket, RetryPolicy
from .controlplane import ControlPlane
from .errors import ClientFailure, ExitStatus, Interrupted, SessionBroken, UnsupportedSession
from .terminal import OutputClosed, Terminal

TERMINATE_TIMEOUT_SECONDS = 15.0
LEGACY_CLI_KMS_ERROR = (
    "Installed version of CLI does not support Session Manager encryption feature. "
    "Please upgrade to the latest version of your CLI (e.g., AWS CLI)."
)
INTERRUPTING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True, slots=True)
class SessionOptions:
    started: StartedSession
    target: str = ""
    accept_kms: bool = True  # False for the 4-argument legacy plugin call (§1.2)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    local_host: str | None = None  # port forwarding: the address to listen on


def closing_line(session_id: str, output: str) -> str:
    """What the reference client prints on channel_closed (§6.1)."""
    if output:
        return f"\n\nSessionId: {session_id} : {output}\n\n"
    return f"\n\nExiting session with sessionId: {session_id}.\n\n"


def presence_line(presence: AgentPresence) -> str:
    """What we print when the server says the session's agent went away or came back."""
    if presence.state is Presence.AWAY:
        return (
            f"\nThe agent on {presence.target} went away; waiting up to "
            f"{presence.grace_seconds:g} s for it to come back.\n"
        )
    return f"\nThe agent on {presence.target} is back.\n"


class SessionRunner:
    """Runs one session from the first connection to its exit status."""

    def __init__(
        self,
        options: SessionOptions,
        api: ControlPlane,
        terminal: Terminal,
        log: logging.Logger,
        session: ClientSession,
    ) -> None:
        self._options = options
        self._api = api
        self._terminal = terminal
        self._log = log
        self._session_id = options.started.session_id
        self._session = session
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()  # set whenever frames arrive, since acks free the buffer
        self._link: DataChannelLink | None = None
        self._socket: DataChannelSocket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._dropped: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._exit_code: int | None = None
        self._interrupted: str | None = None
        self._helper_error: BaseException | None = None
        self._main: asyncio.Task[Any] | None = None
        self._ending: int | ClientFailure | None = None

    # --- what subclasses fill in ---------------------------------------------------------

    def _on_connected(self) -> None:
        """The data channel is open for the first time."""

    def _on_handshake(self, event: HandshakeStarted) -> None:
        """The agent named its session type; raise UnsupportedSession to refuse it."""

    def _on_started(self, event: SessionStarted) -> None:
        raise NotImplementedError

    def _handle_data(self, event: ClientEvent) -> None:
        """Output, errors, exit codes and flags: what the session carries."""

    async def _on_interrupt(self) -> int | None:
        """A signal arrived: return an exit status to end quietly with it, or None for
        the default (terminate the session and report the interruption)."""
        return None

    def _extra_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        return []

    def _before_flush(self) -> None:
        """Move whatever the subclass has queued into the session before frames go out."""

    async def _close(self) -> None:
        """Release what the subclass holds (listeners, connections) as the session ends."""

    def _end_with(self, outcome: int | ClientFailure) -> None:
        """End the session from a helper: with an exit status, or by raising a failure."""
        if self._ending is None:
            self._ending = outcome
        self._wakeup.set()

    # --- the session ---------------------------------------------------------------------

    async def run(self) -> int:
        """Run the session to its end; returns the exit status or raises ClientFailure."""
        self._main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        extra = self._install_signals(loop)
        try:
            async with aiohttp.ClientSession() as http:
                try:
                    return await self._run(http)
                finally:
                    await self._shutdown()
        except asyncio.CancelledError:
            if self._main is None or (self._interrupted is None and self._helper_error is None):
                raise
            self._main.uncancel()
            self._terminal.restore()
            if self._helper_error is not None:
                await self._terminate_quietly()
                raise SessionBroken(f"Error: internal error: {self._helper_error!r}") from None
            status = await self._on_interrupt()
            if status is not None:
                return status
            terminated = await self._terminate_quietly()
            outcome = f"; session {self._session_id} terminated" if terminated else ""
            raise Interrupted(f"Interrupted by {self._interrupted}{outcome}.") from None
        finally:
            self._remove_signals(loop, extra)
            self._terminal.restore()

    async def _run(self, http: aiohttp.ClientSession) -> int:
        dialer = DataChannelDialer(
            http,
            self._options.started.stream_url,
            client_id=self._options.client_id,
            ca_bundle=self._api.ca_bundle,
            log=self._log,
        )
        self._link = DataChannelLink(
            dialer,
            session_id=self._session_id,
            token=self._options.started.token,
            resume_token=self._resume_token,
            notice=lambda text: self._terminal.error(text + "\n"),
            policy=self._options.retry,
            log=self._log,
        )
        self._attach(await self._link.connect())
        self._on_connected()
        try:
            return await self._serve()
        except (UnsupportedSession, SessionBroken):
            await self._flush()  # the agent should see a failed HandshakeResponse
            await self._terminate_quietly()
            raise
        except OutputClosed:
            # Whoever read our output has gone (``| head``): nobody is left to serve.
            await self._terminate_quietly()
            raise Interrupted("") from None

    # --- the loop ------------------------------------------------------------------------

    async def _serve(self) -> int:
        while True:
            self._wakeup.clear()
            code = self._handle_events()
            if code is not None:
                return code
            if isinstance(self._ending, ClientFailure):
                raise self._ending
            if self._ending is not None:
                return self._ending
            if self._dropped is not None:
                await self._resume()
                continue
            self._before_flush()
            await self._flush()
            if not self._wakeup.is_set():
                await self._sleep_until(self._session.next_timeout())
            self._session.tick(time.time())

    async def _sleep_until(self, deadline: float | None) -> None:
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    async def _flush(self) -> None:
        frames = self._session.data_to_send()
        if not frames or self._socket is None or self._dropped is not None:
            return  # unsent stream messages stay unacked and go again after the resume
        try:
            await self._socket.send(frames)
        except ConnectionError as exc:
            self._dropped = str(exc)

    async def _resume(self) -> None:
        assert self._link is not None
        cause, self._dropped = self._dropped or "the data channel closed", None
        await self._detach()
        socket = await self._link.reconnect(cause)
        # Whatever queued meanwhile is unacked stream data, which goes again now, in order.
        self._session.data_to_send()
        self._session.resend_unacked(time.time())
        self._attach(socket)
        self._log.debug("resume: connected again, %d messages resent", self._unacked())

    def _unacked(self) -> int:
        return self._session.channel.unacked_count

    def _attach(self, socket: DataChannelSocket) -> None:
        self._socket = socket
        self._dropped = None
        self._reader = self._spawn(self._read(socket))

    async def _detach(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            # A reader that failed has been reported by _task_done already.
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._socket is not None:
            await self._socket.close()
            self._socket = None

    async def _read(self, socket: DataChannelSocket) -> None:
        while (frame := await socket.receive()) is not None:
            try:
                self._session.receive(frame, time.time())
            except ProtocolError as exc:
                # The reference client logs and drops frames it cannot parse (§2).
                self._log.debug("dropped a frame: %s", exc)
            self._room.set()
            self._wakeup.set()
        self._dropped = socket.close_reason()
        self._wakeup.set()

    async def _send_stdin(self, chunk: int) -> bool:
        """Send stdin as it comes, ``chunk`` bytes at the most per read, while the data
        channel has room. True at the end of stdin; False if the session ended first."""
        while True:
            await self._room_for(chunk)
            data = await self._terminal.read_input(chunk)
            if self._session.state is not ClientState.ESTABLISHED:
                return False
            if not data:
                return True
            self._session.send_input(data, time.time())
            self._wakeup.set()

    async def _room_for(self, size: int) -> None:
        """Wait until the send buffer takes ``size`` bytes: flow control towards the agent."""
        while self._session.send_capacity < size:
            self._room.clear()
            await self._room.wait()

    # --- session events ------------------------------------------------------------------

    def _handle_events(self) -> int | None:
        while (event := self._session.next_event()) is not None:
            code = self._handle(event)
            if code is not None:
                return code
        return None

    def _handle(self, event: ClientEvent) -> int | None:
        if isinstance(event, SessionEnded):
            self._terminal.restore()  # so the exit line is laid out normally
            self._terminal.status(closing_line(self._session_id, event.output))
            if self._exit_code is not None:
                return self._exit_code
            # The agent could not open the session (KMS, RunAs, the shell): not a success.
            return ExitStatus.TRANSPORT_FAILURE if event.failed else ExitStatus.OK
        if isinstance(event, SessionFailed):
            raise SessionBroken(f"Error: the session failed: {event.reason}")
        if isinstance(event, HandshakeStarted):
            self._log.debug(
                "handshake: request from agent %s, session type %s, kms key %s",
                event.agent_version,
                event.session_type,
                event.kms_key_id,
            )
            if event.kms_key_id is None:
                self._log.debug("handshake: response sent")
            self._on_handshake(event)
        elif isinstance(event, AgentPresenceChanged):
            self._terminal.status(presence_line(event.presence))
        elif isinstance(event, KmsDataKeyNeeded):
            self._spawn(self._provide_data_key(event))
        elif isinstance(event, EncryptionChallengeAnswered):
            self._log.debug("handshake: encryption challenge answered")
        elif isinstance(event, SessionStarted):
            self._log.debug(
                "session started: type %s, %s",
                event.session_type,
                "after the handshake" if event.handshake else "without a handshake",
            )
            if event.customer_message:
                self._terminal.status(event.customer_message + "\n")
            self._on_started(event)
        else:
            self._handle_data(event)
        return None

    # --- helpers that run beside the loop ------------------------------------------------

    async def _provide_data_key(self, event: KmsDataKeyNeeded) -> None:
        error: str | None = None
        key: tuple[bytes, bytes] | None = None
        if not self._options.accept_kms:
            error = LEGACY_CLI_KMS_ERROR
        else:
            self._log.debug("handshake: KMS GenerateDataKey for %s", event.key_id)
            try:
                key = await asyncio.to_thread(
                    self._api.generate_data_key, event.key_id, event.encryption_context
                )
            except ClientFailure as exc:
                error = exc.message
        if self._session.state is not ClientState.AWAITING_DATA_KEY:
            return
        now = time.time()
        if key is not None:
            try:
                self._session.provide_data_key(*key, now)
            except ProtocolError as exc:
                error = str(exc)
            else:
                self._log.debug("handshake: response sent with the data key; encryption on")
        if error is not None:
            # The agent then ends the session and its reason reaches us in channel_closed.
            self._log.debug("handshake: KMS refused: %s", error)
            self._session.refuse_kms(error, now)
        self._wakeup.set()

    async def _resume_token(self) -> str | None:
        return await asyncio.to_thread(self._api.resume_session, self._session_id)

    async def _terminate_quietly(self) -> bool:
        """End the session at the service so it does not linger until its idle timeout."""
        try:
            async with asyncio.timeout(TERMINATE_TIMEOUT_SECONDS):
                await asyncio.to_thread(self._api.terminate_session, self._session_id)
        except (ClientFailure, TimeoutError) as exc:
            self._terminal.error(
                f"Warning: could not terminate session {self._session_id}: {exc}\n"
            )
            return False
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        # A helper that fails unexpectedly must not fail silently: end the session with it.
        self._log.debug("helper task failed: %r", task.exception())
        if self._helper_error is None and self._main is not None and not self._main.done():
            self._helper_error = task.exception()
            self._main.cancel()

    async def _shutdown(self) -> None:
        channel = self._session.channel
        self._log.debug(
            "data channel: %d messages sent, %d retransmitted, rtt %.1f ms, rto %.1f ms",
            channel.next_sequence_number,
            channel.retransmissions,
            channel.rtt.rtt * 1000,
            channel.rtt.rto * 1000,
        )
        await self._close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._detach()

    # --- signals -------------------------------------------------------------------------

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        extra: list[int] = []
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            for signum in INTERRUPTING_SIGNALS:
                loop.add_signal_handler(signum, self._on_signal, signum)
            extra = self._extra_signals(loop)
        return extra

    def _remove_signals(self, loop: asyncio.AbstractEventLoop, extra: list[int]) -> None:
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            for signum in (*INTERRUPTING_SIGNALS, *extra):
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        if self._interrupted is not None:
            # A second signal while we clean up: the user wants out now.
            self._terminal.restore()
            os._exit(ExitStatus.INTERRUPTED)
        if self._main is not None:
            self._interrupted = signal.Signals(signum).name
            self._main.cancel()
