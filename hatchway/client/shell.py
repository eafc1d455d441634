"""A shell session on the client: the terminal joined to a ``ClientSession``
(data-channel.md §5.1, §6).

Pipe mode (stdin is not a terminal): we decline a pty through the agent's optional
``PseudoTerminal`` action, as ``ssh -T`` does, so the remote shell runs on pipes: no
prompts, no echo, no escape codes, and its stderr comes apart from its stdout. stdin is
sent as it comes, and its end is an empty input message, after which the agent closes
the shell's stdin. The session then ends as usual, with the exit code and channel_closed.

An agent that does not offer the action (the official one, older Hatchway ones) runs the
shell under a pty anyway. Then we send a single Ctrl-D (0x04) at the end of stdin: at the
start of a line it is the pty's end of input and the shell exits, as it would for a user
typing it. (The reference client instead ends the session at once on stdin EOF, losing
output still in flight.) Input that does not end in a newline leaves its last line
unsubmitted, exactly as typed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from ..protocol.client_session import (
    MAX_INPUT_CHUNK,
    SHELL_SESSION_TYPES,
    ClientEvent,
    ClientSession,
    ClientState,
    ExitCodeReceived,
    FlagReceived,
    HandshakeStarted,
    OutputReceived,
    SessionStarted,
    StdErrReceived,
    UnknownPayloadReceived,
)
from ..protocol.errors import ProtocolError
from .controlplane import ControlPlane
from .errors import UnsupportedSession
from .runner import SessionOptions, SessionRunner
from .terminal import Terminal

END_OF_INPUT = b"\x04"


def exit_status_for(code: int) -> int:
    """A remote status as ours: 0-255 as it is. Others (Windows reports 32-bit codes) are
    cut to 8 bits as a shell would, except that a failure never becomes 0."""
    if 0 <= code <= 255:
        return code
    return code & 0xFF or 1


class ShellRunner(SessionRunner):
    """Runs one shell session from the first connection to its exit status."""

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
            session_types=SHELL_SESSION_TYPES,
            pseudo_terminal=terminal.stdin_is_tty,
        )
        super().__init__(options, api, terminal, log, session)
        self._last_size: tuple[int, int] | None = None

    def _on_connected(self) -> None:
        # Agents that skip the handshake size the pty from this at once; one that runs a
        # handshake acks and ignores it, and we send it again when the session starts.
        self._send_size(force=True)

    def _on_handshake(self, event: HandshakeStarted) -> None:
        if event.session_type is not None and event.session_type not in SHELL_SESSION_TYPES:
            raise UnsupportedSession(
                f"Error: the document starts a {event.session_type} session, not a shell. "
                "For port forwarding, pass its portNumber (and localPortNumber) in "
                "--parameters."
            )

    def _on_started(self, event: SessionStarted) -> None:
        self._terminal.enter_raw()
        if event.handshake:
            self._send_size(force=True)
        self._spawn(self._pump_input())

    def _handle_data(self, event: ClientEvent) -> None:
        if isinstance(event, OutputReceived):
            self._terminal.write_output(event.data)
        elif isinstance(event, StdErrReceived):
            self._terminal.write_remote_stderr(event.data)
        elif isinstance(event, ExitCodeReceived):
            self._log.debug("exit code: %r", event.text)
            if event.code is not None:
                self._exit_code = exit_status_for(event.code)
        elif isinstance(event, FlagReceived | UnknownPayloadReceived):
            self._log.debug("ignored: %s", event)

    def _send_size(self, *, force: bool) -> None:
        if self._session.state in (ClientState.CLOSED, ClientState.FAILED):
            return
        size = self._terminal.size()
        if force or size != self._last_size:
            self._session.send_size(*size, time.time())
            self._last_size = size
            self._log.debug("terminal size sent: %dx%d", *size)
            self._wakeup.set()

    async def _pump_input(self) -> None:
        if not await self._send_stdin(MAX_INPUT_CHUNK):
            return
        if not self._session.pseudo_terminal:
            self._session.end_input(time.time())
            self._log.debug("stdin ended: sent the end of input")
        elif not self._terminal.stdin_is_tty:
            self._session.send_input(END_OF_INPUT, time.time())
            self._log.debug("stdin ended: sent Ctrl-D")
        self._wakeup.set()

    # The window size is pushed on SIGWINCH, never polled.
    def _extra_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        loop.add_signal_handler(signal.SIGWINCH, self._send_size_on_resize)
        return [signal.SIGWINCH]

    def _send_size_on_resize(self) -> None:
        try:
            self._send_size(force=False)
        except ProtocolError as exc:
            self._log.debug("size not sent: %s", exc)
