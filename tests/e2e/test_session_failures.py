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
        # Not communicate(): it would close stdin, and the client would end the session on
        # that EOF itself, racing the agent's answer.
        process.wait(timeout=90)
        stdout, stderr = process.stdout.read(), process.stderr.read()
    finally:
        process.stdin.close()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert f"Unable to connect to specified port: connection refused by localhost:{port}" in (
        stderr
    ), stderr
    assert ERROR_BANNER in stderr
    assert stdout == ""  # stdout is ssh's byte stream: nothing else may go there
    assert process.returncode == 255


def test_a_forwarding_session_the_agent_fails_exits_255_with_the_agents_reason(
    stack, client_env, monkeypatch
):
    """AWS-StartPortForwardingSession, as in the issue: the agent's port forwarding
    fails (here made to, in this process), and the client must not exit 0."""
    import socket

    from hatchway.agent.port import MuxForwarder
    from tests.e2e.ports import EchoServer, forwarding

    _, agent = stack

    async def broken_input(self, data):
        raise RuntimeError("the forwarder broke")

    monkeypatch.setattr(MuxForwarder, "on_input", broken_input)
    with (
        EchoServer() as echo,
        forwarding(
            client_env, agent.instance_id, f"portNumber={echo.port},localPortNumber=0"
        ) as tunnel,
    ):
        with socket.create_connection(("127.0.0.1", tunnel.port), timeout=30) as sock:
            sock.sendall(b"hello")
            code = tunnel.process.wait(timeout=90)
        tunnel.reader.join(10)
    reason = "Internal agent error in the data channel: RuntimeError('the forwarder broke')"
    assert ERROR_BANNER + reason in tunnel.output, tunnel.output
    assert code == 255
