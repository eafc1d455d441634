"""The agent's shell processes, with real ptys and real shells (agent.md §4)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from hatchway.agent import shell as shell_module
from hatchway.agent.shell import ShellError, ShellProcess, ShellSpec

TIMEOUT = 15.0
MY_HOME = pwd.getpwuid(os.geteuid()).pw_dir.encode()
# A foreground job that says it is ready only once ^C would kill it. With `echo; sleep` a
# ^C can land while the shell's forked child still has the shell's SIGINT handler, just
# before exec, and is lost: under load that happens.
SLEEPER = shlex.join(
    [
        sys.executable,
        "-c",
        "import os, signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "print('sleeper', os.getpid(), flush=True); time.sleep(300)",
    ]
)
SLEEPER_READY = rb"sleeper (\d+)\r?\n"
# Blocks SIGWINCH before it says it is watching, so a resize right after cannot be missed.
WINCH_WATCHER = shlex.join(
    [
        sys.executable,
        "-c",
        "import os, signal; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH}); "
        "print('watching', flush=True); signal.sigwait({signal.SIGWINCH}); "
        "print('resized', *os.get_terminal_size(0), flush=True)",
    ]
)

Spawn = Callable[[ShellSpec], Awaitable[ShellProcess]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start sessions that are always ended, even when a test fails half way."""
    started: list[ShellProcess] = []

    async def start(spec: ShellSpec) -> ShellProcess:
        process = await asyncio.wait_for(ShellProcess.start(spec), TIMEOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        await asyncio.wait_for(process.terminate(grace=0.5), TIMEOUT)


async def read_until(
    shell: ShellProcess, pattern: bytes, within: float = TIMEOUT
) -> re.Match[bytes]:
    """Read output until ``pattern`` (a regex) matches; fail with what was seen if not."""
    seen = bytearray()

    async def loop() -> re.Match[bytes]:
        while True:
            match = re.search(pattern, seen)
            if match:
                return match
            chunk = await shell.read()
            if not chunk:
                pytest.fail(f"EOF before {pattern!r}; output was {bytes(seen)!r}")
            seen.extend(chunk)

    try:
        return await asyncio.wait_for(loop(), within)
    except TimeoutError:
        pytest.fail(f"no {pattern!r} within {within}s; output was {bytes(seen)!r}")


async def read_to_eof(read: Callable[[], Awaitable[bytes]], within: float = TIMEOUT) -> bytes:
    seen = bytearray()

    async def loop() -> None:
        while chunk := await read():
            seen.extend(chunk)

    try:
        await asyncio.wait_for(loop(), within)
    except TimeoutError:
        pytest.fail(f"no EOF within {within}s; output was {bytes(seen)!r}")
    return bytes(seen)


def proc_entry_exists(pid: int) -> bool:
    """False once the process has been reaped (a zombie still has its /proc entry)."""
    return Path(f"/proc/{pid}").exists()


async def wait_gone(pid: int, within: float = TIMEOUT) -> None:
    """Wait for a process that is not our child to exit: its pidfd becomes readable."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await asyncio.wait_for(exited, within)
    except TimeoutError:
        pytest.fail(f"process {pid} still alive after {within}s")
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# Markers are computed by the shell, so the echo of the typed command never matches them.


async def test_login_shell_has_a_controlling_terminal_and_reports_exit(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec())
    await shell.write(b'echo "tty=$(tty) term=$TERM home=$HOME m$((40+2))"\n')
    match = await read_until(shell, rb"tty=(\S+) term=(\S+) home=(\S+) m42")
    assert match.group(1).startswith(b"/dev/pts/")
    assert match.group(2) == b"xterm-256color"
    assert match.group(3) == MY_HOME
    await shell.write(b"exit 3\n")
    output = await read_to_eof(shell.read)
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 3
    # Job control works only with a controlling terminal; bash says so when it has none.
    assert b"no job control" not in output


async def test_login_shell_is_a_login_shell_in_home(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec())
    await shell.write(b'echo "argv0=$0 pwd=$(pwd) m$((1+6))"\n')
    match = await read_until(shell, rb"argv0=(\S+) pwd=(\S+) m7")
    assert match.group(1).startswith(b"-")
    assert match.group(2) == MY_HOME


async def test_initial_size_applies_before_start_and_resize_changes_it(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec(cols=101, rows=31))
    await shell.write(b'echo "size=$(stty size) m$((2+2))"\n')
    match = await read_until(shell, rb"size=(\d+ \d+) m4")
    assert match.group(1) == b"31 101"

    # The foreground job sees SIGWINCH and the new size. (Not a bash trap: bash can
    # misparse a trap that fires while it runs PROMPT_COMMAND.)
    await shell.write(WINCH_WATCHER.encode() + b"\n")
    await read_until(shell, rb"watching\r?\n")
    shell.resize(132, 43)
    match = await read_until(shell, rb"resized (\d+) (\d+)")
    assert match.groups() == (b"132", b"43")
    await shell.write(b'echo "size=$(stty size) m$((2+3))"\n')
    match = await read_until(shell, rb"size=(\d+ \d+) m5")
    assert match.group(1) == b"43 132"


async def test_ctrl_c_interrupts_the_foreground_job_and_the_shell_lives_on(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec())
    await shell.write(SLEEPER.encode() + b"\n")
    await read_until(shell, SLEEPER_READY)
    await shell.write(b"\x03")
    await shell.write(b'echo "rc=$? m$((8+1))"\n')
    match = await read_until(shell, rb"rc=(\d+) m9")
    assert match.group(1) == b"130"  # 128 + SIGINT: the job died of ^C
    await shell.write(b"exit 0\n")
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 0


@pytest.fixture
def dash_login(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make our own login shell dash. Unlike bash, dash never opens its tty by name, which
    would make it the controlling terminal by accident; so it shows whether we set it."""
    if not os.access("/bin/dash", os.X_OK):
        pytest.skip("dash is not installed")
    entry = pwd.getpwuid(os.geteuid())
    fake = pwd.struct_passwd((*entry[:6], "/bin/dash"))
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: fake)  # the module shell.py uses


@pytest.mark.usefixtures("dash_login")
async def test_the_pty_is_the_controlling_terminal_even_for_dash(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec())
    await shell.write(SLEEPER.encode() + b"\n")
    await read_until(shell, SLEEPER_READY)
    await shell.write(b"\x03")
    await shell.write(b'echo "rc=$? m$((8+2))"\n')
    match = await read_until(shell, rb"rc=(\d+) m10")
    assert match.group(1) == b"130"
    await shell.write(b"exit 0\n")
    output = await read_to_eof(shell.read)
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 0
    assert b"job control" not in output  # dash: "can't access tty; job control turned off"


@pytest.mark.usefixtures("dash_login")
async def test_ctrl_c_reaches_an_interactive_command(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec(command=SLEEPER))
    await read_until(shell, SLEEPER_READY)
    await shell.write(b"\x03")
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 130


async def test_big_paste_into_a_pty_arrives_intact(spawn: Spawn, tmp_path: Path) -> None:
    target = tmp_path / "pasted"
    # Lines stay well under the 4096-byte canonical line limit of a tty.
    payload = b"".join(b"%06d " % i + b"abcdefghij" * 9 + b"\n" for i in range(1100))
    assert len(payload) > 100_000
    shell = await spawn(ShellSpec(command=f"cat > {target}"))
    reader = asyncio.create_task(read_to_eof(shell.read))
    await asyncio.wait_for(shell.write(payload + b"\x04"), TIMEOUT)  # ^D: end of file for cat
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 0
    await reader
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(payload).hexdigest()


async def test_interactive_command_reports_its_exit_status(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec(command='echo "in-pty=$(tty)"; exit 5'))
    output = await read_to_eof(shell.read)
    assert re.search(rb"in-pty=/dev/pts/\d+", output)
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 5


async def test_killed_by_sigkill_reports_137(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec(command="sleep 300", interactive=False))
    os.kill(shell.pid, signal.SIGKILL)
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 137


async def test_shell_profile_runs_before_user_input(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec(shell_profile="export HWVAR=profile-ran"))
    await shell.write(b'echo "var=$HWVAR m$((6+6))"\n')
    match = await read_until(shell, rb"var=(\S*) m12")
    assert match.group(1) == b"profile-ran"


async def test_extra_environment_reaches_the_session(spawn: Spawn) -> None:
    spec = ShellSpec(command='echo "extra=$HW_EXTRA term=$TERM"', env={"HW_EXTRA": "x y"})
    shell = await spawn(spec)
    output = await read_to_eof(shell.read)
    assert b"extra=x y term=xterm-256color" in output


async def test_pipes_keep_stdout_and_stderr_apart(spawn: Spawn) -> None:
    spec = ShellSpec(
        command="sh -c 'echo to-out; echo to-err >&2; exit 3'",
        interactive=False,
        separate_stderr=True,
    )
    shell = await spawn(spec)
    out, err = await asyncio.gather(read_to_eof(shell.read), read_to_eof(shell.read_stderr))
    assert (out, err) == (b"to-out\n", b"to-err\n")
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 3


async def test_pipes_merge_stderr_by_default(spawn: Spawn) -> None:
    spec = ShellSpec(command="sh -c 'echo one; echo two >&2; echo three'", interactive=False)
    shell = await spawn(spec)
    assert await read_to_eof(shell.read) == b"one\ntwo\nthree\n"
    assert await shell.read_stderr() == b""
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 0


async def test_non_interactive_command_has_no_terminal(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec(command="sh -c 'tty; echo term=$TERM'", interactive=False))
    assert await read_to_eof(shell.read) == b"not a tty\nterm=\n"
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 0


async def test_pipe_input_streams_through_and_close_input_ends_it(spawn: Spawn) -> None:
    payload = secrets.token_bytes(3 * 1024 * 1024)  # over the input bound: write() must wait
    shell = await spawn(ShellSpec(command="cat", interactive=False))
    reader = asyncio.create_task(read_to_eof(shell.read))
    await asyncio.wait_for(shell.write(payload), TIMEOUT)
    await shell.close_input()
    assert await reader == payload
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 0


async def test_write_waits_while_the_process_does_not_read(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec(command="sleep 300", interactive=False))
    writer = asyncio.create_task(shell.write(b"x" * (2 * shell_module.INPUT_LIMIT)))
    done, _ = await asyncio.wait({writer}, timeout=0.5)
    assert not done, "write() returned with far more than the bound still unsent"
    assert await asyncio.wait_for(shell.terminate(grace=2), TIMEOUT) == 129
    await asyncio.wait_for(writer, TIMEOUT)  # the process is gone: the input is dropped


async def test_write_after_exit_is_dropped_quietly(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec(command="exit 0"))
    await read_to_eof(shell.read)
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 0
    await asyncio.wait_for(shell.write(b"anyone there?\n"), TIMEOUT)
    shell.resize(10, 10)


async def test_send_signal_interrupts_a_non_interactive_command(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec(command="sleep 300", interactive=False))
    shell.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 130


async def test_terminate_hangs_up_the_whole_process_group(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec(command="sh -c 'sleep 300 & echo $!; wait'", interactive=False))
    match = await read_until(shell, rb"(\d+)\n")
    sleeper = int(match.group(1))
    try:
        assert await asyncio.wait_for(shell.terminate(grace=5), TIMEOUT) == 128 + signal.SIGHUP
        await wait_gone(sleeper)
    finally:
        kill_quietly(sleeper)


async def test_terminate_kills_what_ignores_the_hangup(spawn: Spawn) -> None:
    # The ignored SIGHUP is inherited by the background sleeper too.
    command = "sh -c 'trap \"\" HUP; sleep 300 & echo $!; wait'"
    shell = await spawn(ShellSpec(command=command, interactive=False))
    sleeper = int((await read_until(shell, rb"(\d+)\n")).group(1))
    try:
        assert await asyncio.wait_for(shell.terminate(grace=0.3), TIMEOUT) == 137
        await wait_gone(sleeper)
    finally:
        kill_quietly(sleeper)


async def test_terminate_interactive_shell_ends_its_foreground_job(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec())
    await shell.write(SLEEPER.encode() + b"\n")
    sleeper = int((await read_until(shell, SLEEPER_READY)).group(1))
    try:
        assert await asyncio.wait_for(shell.terminate(grace=5), TIMEOUT) == 128 + signal.SIGHUP
        await wait_gone(sleeper)
        await read_to_eof(shell.read)
    finally:
        kill_quietly(sleeper)


async def test_output_ends_when_the_shell_exits_despite_a_background_job(spawn: Spawn) -> None:
    shell = await spawn(ShellSpec())
    await shell.write(b'sleep 300 & echo "bg=$! m$((7+7))"\n')
    background = int((await read_until(shell, rb"bg=(\d+) m14")).group(1))
    try:
        await shell.write(b"exit\n")
        await read_to_eof(shell.read)  # the sleeper still holds the pty; EOF comes anyway
        assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 0
    finally:
        kill_quietly(background)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (ShellSpec(command="echo out"), b"out\r\n"),
        (ShellSpec(command="sh -c 'echo out; echo err >&2'", interactive=False), b"out\nerr\n"),
        (
            ShellSpec(
                command="sh -c 'echo out; echo err >&2'", interactive=False, separate_stderr=True
            ),
            b"out\n",
        ),
    ],
)
async def test_every_fd_is_closed_and_the_process_reaped(spec: ShellSpec, expected: bytes) -> None:
    before = open_fds()
    shell = await asyncio.wait_for(ShellProcess.start(spec), TIMEOUT)
    assert open_fds() != before
    # Nobody reads: the fds must still go when the process does.
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 0
    assert open_fds() == before
    assert not proc_entry_exists(shell.pid), "the child was not reaped"
    # What it wrote before it exited is still there to read.
    assert await read_to_eof(shell.read) == expected


async def test_missing_command_is_a_shell_error() -> None:
    spec = ShellSpec(command="hatchway-no-such-command --flag", interactive=False)
    with pytest.raises(ShellError, match="hatchway-no-such-command: command not found"):
        await asyncio.wait_for(ShellProcess.start(spec), TIMEOUT)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ShellSpec(command=""), "Commands cannot be empty for session type InteractiveCommands"),
        (
            ShellSpec(command="  ", interactive=False),
            "Commands cannot be empty for session type NonInteractiveCommands",
        ),
        (
            ShellSpec(interactive=False),
            "Commands cannot be empty for session type NonInteractiveCommands",
        ),
        (ShellSpec(command="echo 'unclosed", interactive=False), "cannot parse the command"),
    ],
)
async def test_bad_commands_are_shell_errors(spec: ShellSpec, message: str) -> None:
    with pytest.raises(ShellError, match=message):
        await asyncio.wait_for(ShellProcess.start(spec), TIMEOUT)


async def test_missing_working_directory_is_a_shell_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    before = open_fds()
    with pytest.raises(ShellError, match=f"cannot use working directory {missing}"):
        await asyncio.wait_for(ShellProcess.start(ShellSpec(cwd=str(missing))), TIMEOUT)
    assert open_fds() == before


def test_separate_stderr_needs_pipes() -> None:
    with pytest.raises(ValueError, match="separate_stderr"):
        ShellSpec(separate_stderr=True)


async def test_run_as_a_missing_user_names_the_user() -> None:
    spec = ShellSpec(run_as="hatchway-nobody-here")
    with pytest.raises(
        ShellError, match="failed to start pty since RunAs user hatchway-nobody-here does not exist"
    ):
        await asyncio.wait_for(ShellProcess.start(spec), TIMEOUT)


@pytest.mark.parametrize(
    ("run_as", "message"), [("root", "invalid uid and gid"), ("", "please set the RunAs")]
)
async def test_run_as_refusals_match_the_agent(run_as: str, message: str) -> None:
    with pytest.raises(ShellError, match=message):
        await asyncio.wait_for(ShellProcess.start(ShellSpec(run_as=run_as)), TIMEOUT)


async def test_run_as_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ShellError, match="the agent must run as root to use RunAs"):
        await asyncio.wait_for(ShellProcess.start(ShellSpec(run_as="daemon")), TIMEOUT)


@pytest.fixture
def local_user() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("RunAs needs root")
    useradd, userdel = shutil.which("useradd"), shutil.which("userdel")
    if useradd is None or userdel is None:
        pytest.skip("useradd is not installed")
    name = "hwt" + secrets.token_hex(4)
    subprocess.run([useradd, "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
    yield name
    subprocess.run([userdel, "-r", name], check=False, capture_output=True)


async def test_run_as_drops_to_the_user_in_a_pty(spawn: Spawn, local_user: str) -> None:
    shell = await spawn(ShellSpec(run_as=local_user))
    await shell.write(
        b'echo "who=$(id -un) home=$HOME pwd=$(pwd) user=$USER shell=$SHELL'
        b' owner=$(stat -c %U $(tty)) m$((9+9))"\n'
    )
    match = await read_until(
        shell, rb"who=(\S+) home=(\S+) pwd=(\S+) user=(\S+) shell=(\S+) owner=(\S+) m18"
    )
    home = f"/home/{local_user}".encode()
    name = local_user.encode()
    assert match.groups() == (name, home, home, name, b"/bin/sh", name)
    await shell.write(b"exit 4\n")
    assert await asyncio.wait_for(shell.wait(), TIMEOUT) == 4


async def test_run_as_drops_to_the_user_on_pipes(spawn: Spawn, local_user: str) -> None:
    spec = ShellSpec(command="id", interactive=False, run_as=local_user)
    shell = await spawn(spec)
    output = await read_to_eof(shell.read)
    # Only the user's own groups: none of root's may leak through.
    assert re.fullmatch(
        rb"uid=(\d+)\(%s\) gid=(\d+)\(%s\) groups=\2\(%s\)\n" % ((local_user.encode(),) * 3),
        output,
    ), output
