"""The local end of a shell session: stdin, stdout, stderr and the terminal mode.

Choices, and why:
- Raw mode (tty.setraw) when stdin is a terminal. Every key, Ctrl-C (0x03), Ctrl-Z and
  Ctrl-\\ included, goes to the remote shell as input; the reference client's cbreak mode
  turns them into local signals instead (data-channel.md §5.1).
- The client's own lines (the start banner, CustomerMessage, the exit line) go to stdout
  when stdout is a terminal, as the reference client does, and to stderr otherwise, so
  piped output holds nothing but the remote output (amazon-ssm-agent #358). Errors and
  retry notices always go to stderr.
- Remote StdErr payloads (type 11) go to our stderr, not to stdout as in the reference.
- The window size is read from the first terminal among stdout, stdin and stderr, so
  ``hatchway start-session ... | tee log`` still reports the user's real window. With no
  terminal at all it is COLUMNS x LINES when set, else 80 x 24, the size programs already
  assume for a terminal they know nothing about (the reference's 300 x 100 makes programs
  lay output out for a screen nobody has).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
import tty
from collections.abc import Mapping
from typing import Any, BinaryIO, TextIO

DEFAULT_SIZE = (80, 24)


class OutputClosed(Exception):
    """Our stdout or stderr cannot be written any more (a closed pipe, a hung-up terminal)."""


class Terminal:
    """stdin, stdout and stderr of the client, and the mode of the terminal on stdin."""

    def __init__(
        self,
        stdin_fd: int = 0,
        stdout: BinaryIO | None = None,
        stderr: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._stdin_fd = stdin_fd
        self._stdout = stdout if stdout is not None else sys.stdout.buffer
        self._stderr = stderr if stderr is not None else sys.stderr
        self._environ = environ if environ is not None else os.environ
        self._saved_mode: list[Any] | None = None
        self._pollable = True

    # --- what kind of terminal ---------------------------------------------------------

    @property
    def stdin_is_tty(self) -> bool:
        return _isatty(self._stdin_fd)

    @property
    def stdout_is_tty(self) -> bool:
        return _stream_isatty(self._stdout)

    @property
    def raw(self) -> bool:
        return self._saved_mode is not None

    def size(self) -> tuple[int, int]:
        """(cols, rows) of the user's window; see the module notes for the fallback."""
        for fd in (_fileno(self._stdout), self._stdin_fd, _fileno(self._stderr)):
            if fd is None:
                continue
            try:
                cols, rows = os.get_terminal_size(fd)
            except (OSError, ValueError):
                continue
            if cols > 0 and rows > 0:
                return cols, rows
        return (
            _positive(self._environ.get("COLUMNS"), DEFAULT_SIZE[0]),
            _positive(self._environ.get("LINES"), DEFAULT_SIZE[1]),
        )

    # --- terminal mode -----------------------------------------------------------------

    def enter_raw(self) -> None:
        """Raw mode on a terminal stdin; nothing on a pipe. ``restore`` undoes it."""
        if self.raw or not self.stdin_is_tty:
            return
        self._saved_mode = termios.tcgetattr(self._stdin_fd)
        # TCSADRAIN, not setraw's default TCSAFLUSH: what was typed before the session
        # opened is kept and goes to the remote shell, as with ssh.
        tty.setraw(self._stdin_fd, termios.TCSADRAIN)

    def restore(self) -> None:
        if self._saved_mode is None:
            return
        saved, self._saved_mode = self._saved_mode, None
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(self._stdin_fd, termios.TCSADRAIN, saved)

    # --- input -------------------------------------------------------------------------

    async def read_input(self, size: int) -> bytes:
        """The next bytes of stdin, b"" at its end. Waits without a thread: stdin keeps its
        blocking mode, because O_NONBLOCK would leak to the shell sharing the terminal."""
        if self._pollable:
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[None] = loop.create_future()
            try:
                loop.add_reader(self._stdin_fd, _resolve, ready)
            except (OSError, ValueError):
                # Regular files and /dev/null cannot be polled, and never block either.
                self._pollable = False
            else:
                try:
                    await ready
                finally:
                    loop.remove_reader(self._stdin_fd)
        try:
            return os.read(self._stdin_fd, size)
        except OSError:
            return b""  # EIO after a hang-up, EBADF when stdin was closed: both are the end

    # --- output ------------------------------------------------------------------------

    def write_output(self, data: bytes) -> None:
        """Remote output, byte for byte. Raises OutputClosed when nobody can read it."""
        try:
            self._stdout.write(data)
            self._stdout.flush()
        except OSError as exc:
            raise OutputClosed(str(exc)) from exc

    def write_remote_stderr(self, data: bytes) -> None:
        try:
            self._stderr.flush()
            buffer = getattr(self._stderr, "buffer", None)
            if buffer is not None:
                buffer.write(data)
                buffer.flush()
            else:
                self._stderr.write(data.decode("utf-8", errors="replace"))
                self._stderr.flush()
        except OSError as exc:
            raise OutputClosed(str(exc)) from exc

    def status(self, text: str) -> None:
        """One of the client's own lines (banner, CustomerMessage, exit line)."""
        if self.stdout_is_tty:
            # Through the same buffer as remote output, so the two stay in order.
            self.write_output(self._for_terminal(text).encode("utf-8"))
        else:
            self.error(text)

    def error(self, text: str) -> None:
        """An error or notice: always stderr."""
        self._stderr.write(self._for_terminal(text))
        self._stderr.flush()

    @property
    def error_stream(self) -> RawAwareWriter:
        """A text stream to stderr that keeps lines straight in raw mode (for --debug logs)."""
        return RawAwareWriter(self)

    def _for_terminal(self, text: str) -> str:
        # Raw mode turns off the terminal's LF -> CR LF translation (OPOST).
        return text.replace("\n", "\r\n") if self.raw else text


class RawAwareWriter:
    def __init__(self, terminal: Terminal) -> None:
        self._terminal = terminal

    def write(self, text: str) -> int:
        self._terminal.error(text)
        return len(text)

    def flush(self) -> None:
        pass


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _fileno(stream: object) -> int | None:
    try:
        fileno = stream.fileno  # type: ignore[attr-defined]
        return int(fileno())
    except (AttributeError, OSError, ValueError):
        return None


def _stream_isatty(stream: object) -> bool:
    fd = _fileno(stream)
    return fd is not None and _isatty(fd)


def _positive(value: str | None, default: int) -> int:
    try:
        number = int(value or "")
    except ValueError:
        return default
    return number if number > 0 else default
