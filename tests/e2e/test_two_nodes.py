"""Two server nodes on one database, in this process: the agent holds its control channel
on one, the client starts and joins its session through the other, and the session's
frames cross the link between the two nodes."""

from __future__ import annotations

import json
import sys
import time

import pexpect
import pytest

from hatchway.server.cluster.links import PeerLinks
from hatchway.server.limits import IDLE_MESSAGE
from hatchway.server.relay import Relay
from hatchway.server.storage.models import Session
from tests.e2e.conftest import AgentRunner
from tests.e2e.ports import EchoServer, forwarding, hashed_echo_round_trip
from tests.e2e.shells import run_shell, shell_document
from tests.helpers import LoopThread, running_server, wait_until

# The session-manager-plugin drop-in, given StartSession's answer as the AWS CLI gives it.
PLUGIN = (
    "from hatchway.client.commands import session_manager_plugin; "
    "session_manager_plugin.main(prog_name='session-manager-plugin')"
)


@pytest.fixture
def two_nodes(tmp_path):
    """Nodes "alpha" and "beta" on one SQLite database and one master key; the agent is
    registered with alpha and holds its control channel there. A document's "minute" lasts
    one second on both."""
    loop = LoopThread()
    home = tmp_path / "server"
    try:
        with (
            running_server(home, node_name="alpha", preference_minute=1.0) as alpha,
            running_server(home, node_name="beta", preference_minute=1.0) as beta,
        ):
            agent = AgentRunner(alpha, tmp_path / "agent", loop)
            try:
                yield alpha, beta, agent
            finally:
                agent.stop()
    finally:
        loop.stop()


def relay_node(server, session_id: str) -> str | None:
    async def read() -> str | None:
        async with server.app_state().db() as db:
            row = await db.get(Session, session_id)
            return row.relay_node if row else None

    return server.loop_call(read())


def test_a_shell_started_and_joined_on_the_other_node(two_nodes):
    alpha, beta, agent = two_nodes
    # beta holds no control channel: the start waits on the session's row and alpha
    # delivers it; the client's frames then cross from beta to the session's home.
    assert agent.instance_id not in beta.app_state().services.get(Relay).pairings
    result = run_shell(beta.env(), agent.instance_id, None, "echo across-$((6*7))\nexit 3\n")
    assert "across-42" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 3
    # The agent's data channel reached alpha, the client's beta: a link carried one side.
    assert {"alpha", "beta"} & {
        *alpha.app_state().services.get(PeerLinks).links,
        *beta.app_state().services.get(PeerLinks).links,
    }
    history = beta.client().describe_sessions(State="History")["Sessions"]
    assert [s["Status"] for s in history] == ["Terminated"]
    assert relay_node(alpha, history[0]["SessionId"]) in ("alpha", "beta")


def test_a_port_forward_across_nodes_keeps_every_byte(two_nodes):
    """64 MiB each way, more than the links' windows and the relay's queues hold many
    times over: bounded buffers and credit, and still every byte in order."""
    alpha, beta, agent = two_nodes
    with (
        EchoServer() as echo,
        forwarding(
            beta.env(), agent.instance_id, f"portNumber={echo.port},localPortNumber=0"
        ) as tunnel,
    ):
        sent, received, count = hashed_echo_round_trip(tunnel.port, 64)
        assert relay_node(alpha, tunnel.session_id) in ("alpha", "beta")
        code = tunnel.stop()
    assert count == 64 << 20
    assert received == sent
    assert code == 0, tunnel.output


def test_the_idle_timeout_is_the_homes_to_judge(two_nodes):
    """Started on beta, paired on alpha (the agent's data channel reached it first): beta
    sees none of the session's frames, so its idle clock would run out while the user
    types. It leaves the session to alpha, which ends it once the typing stops."""
    alpha, beta, agent = two_nodes
    document = shell_document(beta, {"idleSessionTimeout": "4"})
    started = beta.client().start_session(Target=agent.instance_id, DocumentName=document)
    session_id = started["SessionId"]
    # The agent's data channel reaches alpha first: alpha is the session's home.
    alpha_relay = alpha.app_state().services.get(Relay)
    wait_until(lambda: session_id in alpha_relay.pairings, 60, "the agent on alpha")
    response = json.dumps({k: started[k] for k in ("SessionId", "TokenValue", "StreamUrl")})
    child = pexpect.spawn(
        sys.executable,
        ["-c", PLUGIN, response, beta.region, "StartSession"],
        env=beta.env(),
        encoding="utf-8",
        timeout=60,
    )
    try:
        child.expect(r"[#$] ")
        assert relay_node(alpha, session_id) == "alpha"
        typed_until = time.monotonic() + 10  # well past beta's 4 s without a frame
        tick = 0
        while time.monotonic() < typed_until:
            tick += 1
            child.sendline(f"echo tick-$(({tick}*3))")
            child.expect(f"tick-{tick * 3}")
        child.expect(pexpect.EOF)  # the typing stopped: alpha ends it
        (session,) = beta.client().describe_sessions(State="History")["Sessions"]
        assert session["Details"] == IDLE_MESSAGE
    finally:
        if child.isalive():
            child.terminate(force=True)
