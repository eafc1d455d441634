"""Sessions the agent cannot carry on: the client is told why, and says so."""

import subprocess

from hatchway.agent.session import SessionWorker
from hatchway.protocol.payloads import ERROR_BANNER
from tests.e2e.ports import free_port, start_session_command
from tests.e2e.shells import run_shell


def test_a_session_task_that_fails_ends_the_session_and_the_client_prints_why(
    stack, client_env, monkeypatch
):
    """The agent runs in this process: make the pump of the shell's output fail. The
    session must end at once with the reason, not hang with a live shell."""
    _, agent = stack

    async def broken_pump(self):
        raise RuntimeError("the output pump broke")

    monkeypatch.setattr(SessionWorker, "pump_process", broken_pump)
    result = run_shell(client_env, agent.instance_id, None, "sleep 600\n")
    reason = "Internal agent error in the shell's output: RuntimeError('the output pump broke')"
    assert ERROR_BANNER + reason in result.stdout + result.stderr, result
    assert result.returncode == 255


def test_a_port_session_the_agent_fails_exits_255_with_the_agents_reason(stack, client_env):
    """AWS-StartSSHSession to a port where nothing listens: the agent cannot connect and
    fails the session. stdin stays open, so only the agent's answer can end the client."""
    _, agent = stack
    port = free_port()
    process = subprocess.Popen(
        start_session_command(agent.instance_id, f"portNumber={port}", "AWS-StartSSHSession"),
        env=client_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert f"Unable to connect to specified port: connection refused by localhost:{port}" in (
        stderr
    ), stderr
    assert ERROR_BANNER in stderr
    assert stdout == ""  # stdout is ssh's byte stream: nothing else may go there
    assert process.returncode == 255
