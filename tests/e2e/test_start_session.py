"""`hatchway start-session` and `aws ssm start-session` against a real server and agent."""

import subprocess
import sys
import time
from pathlib import Path

import pexpect

HATCHWAY = [sys.executable, "-m", "hatchway"]
AWS = str(Path(sys.executable).parent / "aws")
PROMPT = r"[#$] "


def test_piped_commands_print_output_and_exit_with_the_remote_status(stack, client_env):
    server, agent = stack
    result = subprocess.run(
        [*HATCHWAY, "start-session", "--target", agent.instance_id],
        input="echo hi-$((40+2))\nexit 4\n",
        env=client_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "hi-42" in result.stdout, result.stderr
    assert result.returncode == 4, result.stderr
    assert "Starting session with SessionId" in result.stderr  # piped stdout stays clean
    history = server.client().describe_sessions(State="History")["Sessions"]
    assert [s["Status"] for s in history] == ["Terminated"]


def test_non_interactive_command_document(stack, client_env):
    _, agent = stack
    result = subprocess.run(
        [
            *HATCHWAY,
            "start-session",
            "--target",
            agent.instance_id,
            "--document-name",
            "AWS-StartNonInteractiveCommand",
            "--parameters",
            "command=sh -c 'echo out; echo err >&2; exit 7'",
        ],
        stdin=subprocess.DEVNULL,
        env=client_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "out" in result.stdout and "err" in result.stdout + result.stderr
    assert result.returncode == 7, result.stderr


def spawn(argv, env, **kwargs):
    child = pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8", timeout=30, **kwargs)
    child.setwinsize(24, 80)
    return child


def wait_for_size(child, rows, cols, timeout=30.0):
    """Ask the remote shell for its size until it is rows x cols: a resize travels from
    the client to the agent's pty on its own, so one ``stty size`` may run before it."""
    deadline = time.monotonic() + timeout
    while True:
        child.sendline("stty size")
        child.expect(r"(\d+) (\d+)\r\n")
        size = (int(child.match.group(1)), int(child.match.group(2)))
        if size == (rows, cols):
            return
        assert time.monotonic() < deadline, f"stty size still says {size}, not {(rows, cols)}"


def test_interactive_shell_with_resize_ctrl_c_and_exit_code(stack, client_env):
    _, agent = stack
    child = spawn([*HATCHWAY, "start-session", "--target", agent.instance_id], client_env)
    try:
        child.expect("Starting session with SessionId")
        child.expect(PROMPT)  # a login shell may drop what is typed before its first prompt
        wait_for_size(child, 24, 80)
        child.setwinsize(40, 132)  # SIGWINCH to the client
        wait_for_size(child, 40, 132)
        # The foreground job itself says when it runs (then execs the sleep), so the Ctrl-C
        # reaches it: a marker from the shell's own echo came before the sleep was forked,
        # and a Ctrl-C in that gap let the list go on.
        child.sendline("sh -c 'echo sleep-$((2+1)); exec sleep 30'; echo not-$((0))interrupted")
        child.expect("sleep-3\r\n")
        child.sendcontrol("c")  # reaches the remote foreground job; the session lives on
        child.sendline("echo still-$((1+1))")
        # Uninterrupted, the sleep would have printed its line first.
        child.expect("still-2", timeout=60)
        assert "not-0interrupted" not in child.before
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 5


def test_aws_cli_with_the_plugin_drop_in(stack, plugin_env):
    _, agent = stack
    env = plugin_env
    child = spawn([AWS, "ssm", "start-session", "--target", agent.instance_id], env)
    try:
        child.expect("Starting session with SessionId")
        child.expect(PROMPT)
        child.sendline("echo via-$((2*21))-cli")
        child.expect("via-42-cli")
        child.sendline("exit")
        child.expect("Exiting session with sessionId")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
