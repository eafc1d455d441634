"""The process side of a shell session on Linux (agent.md §4): start a shell or a command
under a pty or on pipes, feed it input, hand back its output, resize it and end it.

This module knows nothing about channels or frames. The session code above it moves the
bytes; here we only own the child process and its file descriptors. Everything runs on
the event loop: the pty master and the pipes are non-blocking and watched with
``add_reader``/``add_writer``, so a session costs no thread.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import pwd
import shlex
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("hatchway.agent.shell")

READ_CHUNK = 64 * 1024
# Output we hold for a slow reader before we stop reading, so the kernel buffer fills and
# the shell blocks instead of us growing without bound.
OUTPUT_LIMIT = 256 * 1024
# Input we hold for a slow shell before write() starts to wait (a pty takes ~4 KiB at a
# time, so a big paste mostly lives here).
INPUT_LIMIT = 1024 * 1024
# After the process exits we take what is left in the kernel buffer. A grandchild that
# still holds the pipe and keeps writing must not keep us in that loop forever.
FINAL_DRAIN_LIMIT = 4 * 1024 * 1024

DEFAULT_TERM = "xterm-256color"
FALLBACK_SHELL = "/bin/sh"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables we take from the agent's own environment. The reference agent passes all of
# it through, including its AWS credentials; a RunAs user must not inherit those.
INHERITED_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ")
# Python 3.11's termios lacks the constant; the value is the same on every Linux arch.
IUTF8 = getattr(termios, "IUTF8", 0o040000)
# Signals whose disposition a child inherits if the agent ignores them (nohup, some
# service managers). A shell started with SIGINT ignored could never be interrupted.
RESET_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)


class ShellError(Exception):
    """The session's process could not be started. The message is the agent's text, which
    the caller shows as ``Unable to start shell: <message>``, or ``command`` for command
    documents (agent.md §4.2, §6)."""


@dataclass(frozen=True)
class ShellSpec:
    """What to run and how. ``command=None`` is a Standard_Stream login shell; otherwise
    InteractiveCommands (``interactive=True``, the user's shell ``-c`` under a pty) or
    NonInteractiveCommands (``interactive=False``, split shell-style and run directly on
    pipes, as the agent does). ``pty=False`` runs the first two on pipes as well, for a
    client whose input is not a terminal (like ``ssh -T``): no prompts, no echo, and an
    end of input."""

    command: str | None = None
    interactive: bool = True
    separate_stderr: bool = False
    shell_profile: str = ""
    run_as: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cols: int = 80
    rows: int = 24
    cwd: str | None = None
    pty: bool = True

    @property
    def on_pty(self) -> bool:
        return self.interactive and self.pty

    def __post_init__(self) -> None:
        if self.separate_stderr and self.on_pty:
            raise ValueError("separate_stderr needs a session on pipes: a pty has one stream")


@dataclass(frozen=True)
class _Account:
    """The user a session runs as, from the password database."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str
    switch: bool  # drop privileges to this user in the child


class _OutputStream:
    """Reads one non-blocking fd into a bounded buffer. Owns the fd and closes it at EOF."""

    def __init__(self, fd: int, name: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = fd
        self._name = name
        self._buffer = bytearray()
        self._ready = asyncio.Event()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._on_readable)
        self._reading = True

    async def read(self) -> bytes:
        while not self._buffer and self._fd is not None:
            self._ready.clear()
            await self._ready.wait()
        chunk = bytes(self._buffer[:READ_CHUNK])
        del self._buffer[:READ_CHUNK]
        if not self._reading and self._fd is not None and len(self._buffer) < OUTPUT_LIMIT:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True
        return chunk

    def finish(self) -> None:
        """The process has exited: take what it left in the kernel buffer, then close.

        Without this a background job that still holds the pty or pipe would keep the
        session open after its shell is gone."""
        taken = 0
        while self._fd is not None and taken < FINAL_DRAIN_LIMIT:
            got = self._read_once()
            if got is None:
                break
            taken += got
        self._close()

    def _on_readable(self) -> None:
        self._read_once()
        if self._reading and self._fd is not None and len(self._buffer) >= OUTPUT_LIMIT:
            # Back-pressure: leave the data in the kernel until the reader catches up.
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _read_once(self) -> int | None:
        """Read once; the number of bytes taken, or None when nothing is there now."""
        if self._fd is None:
            return None
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return None
        except OSError as exc:
            # A pty master reads EIO once every slave fd is closed: that is Linux's EOF.
            if exc.errno != errno.EIO:
                log.warning("event=shell_read_failed stream=%s error=%r", self._name, exc)
            data = b""
        if not data:
            self._close()
            return None
        self._buffer += data
        self._ready.set()
        return len(data)

    def _close(self) -> None:
        if self._fd is None:
            return
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        os.close(self._fd)
        self._fd = None
        self._ready.set()


class _InputStream:
    """Writes to one non-blocking fd from a bounded buffer. Owns the fd.

    Once the other side is gone (EIO on a pty, EPIPE on a pipe) input is dropped quietly:
    the process has ended and wait() will say how."""

    def __init__(self, fd: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = fd
        self._buffer = bytearray()
        self._room = asyncio.Event()
        self._room.set()
        self._writing = False
        self._closing = False
        os.set_blocking(fd, False)

    async def write(self, data: bytes) -> None:
        if self._fd is None or self._closing or not data:
            return
        self._buffer += data
        if not self._writing:
            self._flush()
        self._update_room()
        while not self._room.is_set():
            await self._room.wait()

    def close_when_drained(self) -> None:
        self._closing = True
        if not self._buffer:
            self.close()

    def close(self) -> None:
        """Drop anything unsent and close the fd."""
        self._buffer.clear()
        if self._fd is not None:
            if self._writing:
                self._loop.remove_writer(self._fd)
                self._writing = False
            os.close(self._fd)
            self._fd = None
        self._room.set()

    def _flush(self) -> None:
        while self._buffer and self._fd is not None:
            try:
                written = os.write(self._fd, self._buffer[:READ_CHUNK])
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno not in (errno.EIO, errno.EPIPE):
                    log.warning("event=shell_write_failed error=%r", exc)
                self.close()
                return
            del self._buffer[:written]
        if self._fd is None:
            return
        if not self._buffer and self._closing:
            self.close()
        elif self._buffer and not self._writing:
            self._loop.add_writer(self._fd, self._on_writable)
            self._writing = True
        elif not self._buffer and self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _on_writable(self) -> None:
        self._flush()
        self._update_room()

    def _update_room(self) -> None:
        if self._fd is None or len(self._buffer) <= INPUT_LIMIT:
            self._room.set()
        else:
            self._room.clear()


class ShellProcess:
    """A running session process. Create it with ``await ShellProcess.start(spec)``."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        output: _OutputStream,
        errors: _OutputStream | None,
        stdin: _InputStream,
        pty: int | None,
    ) -> None:
        self._process = process
        self._output = output
        self._errors = errors
        self._stdin = stdin
        # A dup of the pty master kept only for resize, so resize never races the
        # reader's close; closed with the rest when the process ends.
        self._pty = pty
        self._reaper = asyncio.get_running_loop().create_task(self._reap())

    @classmethod
    async def start(cls, spec: ShellSpec) -> ShellProcess:
        account = _account(spec.run_as)
        argv, executable = _command_line(spec, account)
        env = _environment(spec, account)
        cwd = spec.cwd if spec.cwd is not None else _home_or_root(account.home)
        if spec.on_pty:
            shell = await cls._start_on_pty(spec, account, argv, executable, env, cwd)
        else:
            shell = await cls._start_on_pipes(spec, account, argv, executable, env, cwd)
        if spec.interactive and spec.command is None and spec.shell_profile:
            # Typed in ahead of any user input, as the agent does (§4.3).
            await shell.write(spec.shell_profile.encode() + b"\n")
        return shell

    @classmethod
    async def _start_on_pty(
        cls,
        spec: ShellSpec,
        account: _Account,
        argv: list[str],
        executable: str,
        env: dict[str, str],
        cwd: str,
    ) -> ShellProcess:
        master, slave = os.openpty()
        # Separate fds for reading, writing and resizing, each closed by its owner; the
        # terminal hangs up (SIGHUP for what is left on it) when the last one closes.
        writer, resizer = os.dup(master), os.dup(master)
        try:
            # Size and modes go on before the shell starts, so its first `stty size`
            # and its line editing already see them.
            _set_window_size(master, spec.cols, spec.rows)
            modes = termios.tcgetattr(slave)
            modes[0] |= IUTF8  # erase whole UTF-8 characters in canonical mode
            termios.tcsetattr(slave, termios.TCSANOW, modes)
            if account.switch:
                # As login and sshd do, so the user can reopen their own tty by name.
                os.fchown(slave, account.uid, -1)
            process = await _spawn(
                argv, executable, env, cwd, account, slave, slave, slave, _child_on_pty
            )
        except BaseException:
            for fd in (master, writer, resizer):
                os.close(fd)
            raise
        finally:
            # The child has its copy; ours would keep the pty from ever reaching EOF.
            os.close(slave)
        return cls(process, _OutputStream(master, "pty"), None, _InputStream(writer), resizer)

    @classmethod
    async def _start_on_pipes(
        cls,
        spec: ShellSpec,
        account: _Account,
        argv: list[str],
        executable: str,
        env: dict[str, str],
        cwd: str,
    ) -> ShellProcess:
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe() if spec.separate_stderr else (None, None)
        child_ends = [stdin_r, out_w] + ([err_w] if err_w is not None else [])
        parent_ends = [stdin_w, out_r] + ([err_r] if err_r is not None else [])
        try:
            process = await _spawn(
                argv,
                executable,
                env,
                cwd,
                account,
                stdin_r,
                out_w,
                err_w if err_w is not None else out_w,
                _child_on_pipes,
            )
        except BaseException:
            for fd in parent_ends:
                os.close(fd)
            raise
        finally:
            for fd in child_ends:
                os.close(fd)
        errors = _OutputStream(err_r, "stderr") if err_r is not None else None
        return cls(process, _OutputStream(out_r, "stdout"), errors, _InputStream(stdin_w), None)

    @property
    def pid(self) -> int:
        return self._process.pid

    async def read(self) -> bytes:
        """The next chunk of output (the pty, or stdout), at most 64 KiB; b"" at EOF."""
        return await self._output.read()

    async def read_stderr(self) -> bytes:
        """The next chunk of stderr; b"" at EOF, and at once unless ``separate_stderr``."""
        if self._errors is None:
            return b""
        return await self._errors.read()

    async def write(self, data: bytes) -> None:
        """Queue input. Returns at once unless more than INPUT_LIMIT bytes are waiting for
        the process to read them. Input after the process has gone is dropped."""
        await self._stdin.write(data)

    def resize(self, cols: int, rows: int) -> None:
        """Set the terminal size; the kernel sends SIGWINCH. Ignored without a pty."""
        if self._pty is not None:
            _set_window_size(self._pty, cols, rows)

    async def close_input(self) -> None:
        """End of input: stdin is closed once queued input is written. A pty has no end
        of input (its session ends when the shell exits), so there it does nothing."""
        if self._pty is None:
            self._stdin.close_when_drained()

    def send_signal(self, signum: int) -> None:
        """Signal the process group, e.g. SIGINT for a Ctrl-C that NonInteractiveCommands
        receives as input (agent.md §4.4). Does nothing once the process has exited."""
        if self._process.returncode is None:
            _signal_group(self.pid, signum)

    async def wait(self) -> int:
        """The exit status as a shell reports it: the code, or 128+N after signal N."""
        return await asyncio.shield(self._reaper)

    async def terminate(self, grace: float = 2.0) -> int:
        """End the session like a closed terminal: SIGHUP (and SIGCONT, so stopped jobs
        see it) to the process group, then SIGKILL if it is still there after ``grace``
        seconds. Returns the exit status."""
        if self._process.returncode is None:
            _signal_group(self.pid, signal.SIGHUP)
            _signal_group(self.pid, signal.SIGCONT)
            try:
                await asyncio.wait_for(asyncio.shield(self._reaper), grace)
            except TimeoutError:
                log.info("event=shell_kill pid=%d grace=%s", self.pid, grace)
                _signal_group(self.pid, signal.SIGKILL)
        return await self.wait()

    async def _reap(self) -> int:
        returncode = await self._process.wait()
        # Release everything as soon as the process is gone, whether or not the caller
        # reads the rest of the output: what is left is moved into our buffer first.
        self._stdin.close()
        self._output.finish()
        if self._errors is not None:
            self._errors.finish()
        if self._pty is not None:
            os.close(self._pty)
            self._pty = None
        return 128 - returncode if returncode < 0 else returncode


def _account(run_as: str | None) -> _Account:
    """Who the session runs as, with the agent's checks and messages (agent.md §4.2)."""
    if run_as is None:
        uid = os.geteuid()
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            # A container may run us under a uid with no passwd entry.
            return _Account(
                name=os.environ.get("USER", str(uid)),
                uid=uid,
                gid=os.getegid(),
                groups=(),
                home=os.environ.get("HOME", "/"),
                shell=FALLBACK_SHELL,
                switch=False,
            )
        return _from_entry(entry, switch=False)
    if not run_as:
        raise ShellError("please set the RunAs default user")
    if os.geteuid() != 0:
        raise ShellError("the agent must run as root to use RunAs")
    try:
        entry = pwd.getpwnam(run_as)
    except KeyError:
        raise ShellError(f"failed to start pty since RunAs user {run_as} does not exist") from None
    if entry.pw_uid <= 0 or entry.pw_gid <= 0:
        raise ShellError("invalid uid and gid")
    return _from_entry(entry, switch=True)


def _from_entry(entry: pwd.struct_passwd, *, switch: bool) -> _Account:
    shell = entry.pw_shell
    if not shell or not os.access(shell, os.X_OK):
        shell = FALLBACK_SHELL
    return _Account(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)),
        home=entry.pw_dir or "/",
        shell=shell,
        switch=switch,
    )


def _command_line(spec: ShellSpec, account: _Account) -> tuple[list[str], str]:
    """argv and the program to execute."""
    if spec.interactive and spec.command is None:
        # A leading "-" in argv[0] is how login(1) and sshd ask any shell to be a login
        # shell; it is interactive because its stdin is a terminal (on pipes, it reads
        # its commands from stdin without prompts, as under `ssh -T`).
        return ["-" + os.path.basename(account.shell)], account.shell
    session_type = "InteractiveCommands" if spec.interactive else "NonInteractiveCommands"
    if not spec.command or not spec.command.strip():
        raise ShellError(f"Commands cannot be empty for session type {session_type}")
    if spec.interactive:
        return [account.shell, "-c", spec.command], account.shell
    try:
        argv = shlex.split(spec.command)
    except ValueError as exc:
        raise ShellError(f"cannot parse the command line: {exc}") from None
    return argv, argv[0]


def _environment(spec: ShellSpec, account: _Account) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
    env.update({name: value for name, value in os.environ.items() if name.startswith("LC_")})
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    if spec.on_pty:
        env["TERM"] = DEFAULT_TERM
    env.update(HOME=account.home, USER=account.name, LOGNAME=account.name, SHELL=account.shell)
    env.update(spec.env)
    return env


def _home_or_root(home: str) -> str:
    # As sshd does: a user whose home is missing still gets a session, in /.
    return home if os.path.isdir(home) else "/"


async def _spawn(
    argv: list[str],
    executable: str,
    env: dict[str, str],
    cwd: str,
    account: _Account,
    stdin: int,
    stdout: int,
    stderr: int,
    child_setup: Callable[[], None],
) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            argv[0],
            *argv[1:],
            executable=executable,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            # Its own session: a pty can become its controlling terminal, and
            # terminate() can reach every process by the group id, which is its pid.
            start_new_session=True,
            preexec_fn=child_setup,
            # subprocess does setgroups, setgid and setuid in that order in the child;
            # passing the user's groups is what initgroups(3) would do.
            user=account.uid if account.switch else None,
            group=account.gid if account.switch else None,
            extra_groups=list(account.groups) if account.switch else None,
        )
    except OSError as exc:
        if exc.filename == cwd:
            raise ShellError(f"cannot use working directory {cwd}: {exc.strerror}") from exc
        if isinstance(exc, FileNotFoundError):
            raise ShellError(f"{argv[0]}: command not found") from exc
        raise ShellError(f"cannot start {argv[0]}: {exc.strerror}") from exc
    except subprocess.SubprocessError as exc:
        # The preexec hook failed in the child, e.g. the terminal could not be taken.
        raise ShellError(f"cannot start {argv[0]}: {exc}") from exc


def _child_on_pty() -> None:
    """In the child, between fork and exec: take the pty on stdin as the controlling
    terminal. It is what gives the shell job control and turns ^C into SIGINT for the
    foreground job. subprocess has no option for it, hence the preexec hook, kept to a
    few system calls."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    _child_on_pipes()


def _child_on_pipes() -> None:
    for signum in RESET_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def _set_window_size(fd: int, cols: int, rows: int) -> None:
    # The size comes from the client; clamp it to what struct winsize can hold.
    cols, rows = (max(0, min(value, 0xFFFF)) for value in (cols, rows))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # already gone: nothing left to signal
