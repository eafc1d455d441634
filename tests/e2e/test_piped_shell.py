"""A shell fed from a pipe: Hatchway's client declines a pty through the agent's
optional PseudoTerminal action, like `ssh -T`, and clients or agents that do not know
the action keep today's pty."""

import subprocess

from hatchway.protocol import agent_session
from tests.e2e.shells import HATCHWAY


def piped(env, target, commands):
    return subprocess.run(
        [*HATCHWAY, "start-session", "--target", target],
        input=commands,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_piped_shell_prints_exactly_its_output_and_exits_with_its_status(stack, client_env):
    _, agent = stack
    result = piped(client_env, agent.instance_id, "echo hi\nexit 4\n")
    assert result.stdout == "hi\n", result
    assert result.returncode == 4, result


def test_a_piped_shell_has_no_terminal_and_keeps_stderr_apart(stack, client_env):
    _, agent = stack
    result = piped(
        client_env,
        agent.instance_id,
        "tty; echo to-stderr >&2; cat; echo after-eof\n",
    )
    # `cat` reads what is left of stdin, then its end: the shell goes on after it.
    assert result.stdout == "not a tty\nafter-eof\n", result
    assert "to-stderr" in result.stderr
    assert result.returncode == 0, result


def test_an_agent_without_the_action_still_gives_a_piped_client_its_pty(
    stack, client_env, monkeypatch
):
    """The agent runs in this process: make it offer no PseudoTerminal, as an agent from
    before the action (or the official one) does."""
    _, agent = stack
    monkeypatch.setattr(agent_session, "PTY_SESSION_TYPES", ())
    result = piped(client_env, agent.instance_id, "tty\necho hi-$((40+2))\nexit 4\n")
    assert "/dev/pts/" in result.stdout, result
    assert "hi-42" in result.stdout
    assert result.returncode == 4, result


def test_pyssm_client_which_does_not_know_the_action_still_gets_a_pty(stack, client_env, pyssm):
    server, agent = stack
    result = subprocess.run(
        [
            pyssm,
            "exec",
            "--target",
            agent.instance_id,
            "--command",
            "tty; exit 3",
            "--endpoint-url",
            server.url,
            "--region",
            server.region,
            "--timeout",
            "60",
        ],
        stdin=subprocess.DEVNULL,
        env=client_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "/dev/pts/" in result.stdout, result
    assert result.returncode == 3
