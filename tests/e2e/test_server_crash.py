"""A server that crashes and starts again tells the truth about its nodes at once."""

import signal

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
