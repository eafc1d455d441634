"""A server that crashes and starts again tells the truth about its nodes at once."""

import signal
import time

import pytest

from tests.e2e.processes import AgentProcess, ServerProcess, node_status, wait_for_node

ONLINE = ("Online", "connected")
LOST = ("ConnectionLost", "notconnected")


@pytest.fixture
def crashable(tmp_path):
    server = ServerProcess(tmp_path / "server")
    agent = None
    try:
        running = server.start()
        agent = AgentProcess(running, tmp_path / "agent")
        yield server, running, agent
    finally:
        if agent is not None:
            agent.kill()
        server.stop()


def test_a_restarted_server_does_not_show_a_stopped_agent_online(crashable):
    server, running, agent = crashable
    agent.start()
    wait_for_node(running, agent.instance_id, ONLINE)
    agent.signal(signal.SIGSTOP)  # alive, but it cannot reconnect to the next server
    server.kill()
    running = server.start()
    # From the very first request: no control channel here, so not connected.
    assert node_status(running, agent.instance_id) == LOST
    with pytest.raises(running.client().exceptions.ClientError) as refused:
        running.client().start_session(Target=agent.instance_id)
    assert refused.value.response["Error"]["Code"] == "TargetNotConnected"
    agent.signal(signal.SIGCONT)
    wait_for_node(running, agent.instance_id, ONLINE)


def test_sessions_whose_agent_died_while_the_server_was_down_end_after_the_grace(tmp_path):
    server = ServerProcess(tmp_path / "server", "--agent-grace", "1")
    agent = None
    try:
        running = server.start()
        agent = AgentProcess(running, tmp_path / "agent")
        agent.start()
        wait_for_node(running, agent.instance_id, ONLINE)
        session_id = running.client().start_session(Target=agent.instance_id)["SessionId"]
        server.kill()
        agent.kill()
        running = server.start()
        reason = f"The agent on {agent.instance_id} went away and did not come back within 1 s."
        ended = wait_for_session_end(running, session_id)
        assert (ended["Status"], ended["Details"]) == ("Failed", reason)
    finally:
        if agent is not None:
            agent.kill()
        server.stop()


def wait_for_session_end(running, session_id):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for session in running.client().describe_sessions(State="History")["Sessions"]:
            if session["SessionId"] == session_id:
                return session
        time.sleep(0.05)
    raise AssertionError(f"{session_id} never ended")
