"""Three nodes on one PostgreSQL behind HAProxy balancing round-robin (tests/cluster.py):
sessions started through the balancer reach the agent whichever nodes their calls and
sockets land on, and a node's death (kill -9) loses no session."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pexpect
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.e2e.ports import EchoServer, forwarding, hashed_echo_round_trip
from tests.e2e.shells import run_shell
from tests.helpers import wait_until

HATCHWAY = [sys.executable, "-m", "hatchway"]
PROMPT = r"[#$] "
OUTAGE_SECONDS = 10.0


def control_channel_node(cluster, instance_id: str) -> str:
    """The node that holds the agent's control channel, as the routes say."""
    rows = cluster.query(
        f"select connected_to from managed_instances where instance_id = '{instance_id}'"
    )
    return rows[0][0]


def run_pyssm(pyssm, server, target: str, command: str) -> subprocess.CompletedProcess[str]:
    where = ["--endpoint-url", server.url, "--region", server.region]
    return subprocess.run(
        [pyssm, "exec", "--target", target, "--command", command, *where, "--timeout", "120"],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_hundred_sessions_through_the_balancer_each_reach_the_agent(cluster, pyssm):
    """Round-robin sends each session's StartSession, its client's WebSocket and its
    agent's WebSocket to nodes that need not be the same, nor the one holding the agent's
    control channel. A third of them use pyssm-client, the rest Hatchway's client."""
    agent = cluster.agent()
    server = cluster.server()
    env = server.env()

    def one(number: int) -> tuple[int, subprocess.CompletedProcess[str]]:
        marker = f"session-{number:03d}-$((6*7))"
        if number % 3 == 0:
            return number, run_pyssm(pyssm, server, agent.instance_id, f"echo {marker}; exit 4")
        return number, run_shell(
            env, agent.instance_id, None, f"echo {marker}\nexit {number % 5}\n"
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(100)))
    for number, result in results:
        assert f"session-{number:03d}-42" in result.stdout, (number, result.stderr[-2000:])
        expected = 4 if number % 3 == 0 else number % 5
        assert result.returncode == expected, (number, result.stderr[-2000:])
    # The sessions were paired on more than one node: sides crossed between nodes.
    homes = cluster.query("select relay_node, count(*) from sessions group by relay_node")
    assert len({home for home, _ in homes}) >= 2, homes
    assert sum(int(count) for _, count in homes) == 100


@pytest.mark.parametrize("victim", ["control channel", "session home"])
def test_a_shell_outlives_the_kill_of_a_node(cluster, victim):
    """kill -9 of the node that holds the agent's control channel, or of the node that
    pairs the session: the agent and the client reconnect through the balancer, and the
    shell goes on with its history."""
    agent = cluster.agent()
    server = cluster.server()
    child = pexpect.spawn(
        HATCHWAY[0],
        [*HATCHWAY[1:], "start-session", "--target", agent.instance_id],
        env=server.env(),
        encoding="utf-8",
        timeout=90,
    )
    try:
        child.expect("Starting session with SessionId: ([^\\s]+)")
        session_id = child.match.group(1).rstrip(".")
        child.expect(PROMPT)
        child.sendline("export KEPT=before-the-kill; echo ready-$((40+2))")
        child.expect("ready-42")
        if victim == "control channel":
            name = control_channel_node(cluster, agent.instance_id)
        else:
            (row,) = cluster.query(
                f"select relay_node from sessions where session_id = '{session_id}'"
            )
            name = row[0]
        cluster.node(name).kill()
        child.sendline("echo $KEPT-$((3*3)); history | grep -c before-the-kill")
        child.expect("before-the-kill-9")
        child.sendline("exit 7")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 7, cluster.logs()
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_a_256_mib_port_forward_outlives_the_kill_of_the_agents_node(cluster):
    """kill -9 of the node holding the agent's control channel while 256 MiB cross each
    way: the reliable streams at the ends retransmit what the dead node held, and what
    comes back is what was sent, byte for byte."""
    agent = cluster.agent()
    server = cluster.server()
    outcome: dict[str, object] = {}
    with (
        EchoServer() as echo,
        forwarding(
            server.env(),
            agent.instance_id,
            f"portNumber={echo.port},localPortNumber=0",
            extra=("--debug",),  # what the client saw of the failover, if it fails
        ) as tunnel,
    ):
        flowing = threading.Event()

        def transfer() -> None:
            try:
                outcome["result"] = hashed_echo_round_trip(
                    tunnel.port, 256, progress=lambda count: count >= 16 << 20 and flowing.set()
                )
            except BaseException as exc:  # reported below, with the logs
                outcome["error"] = exc
                flowing.set()

        thread = threading.Thread(target=transfer)
        thread.start()
        assert flowing.wait(300), cluster.logs()
        victim = control_channel_node(cluster, agent.instance_id)
        homes = cluster.query("select session_id, relay_node from sessions")
        cluster.node(victim).kill()
        thread.join(600)
        assert not thread.is_alive()
        (cluster.folder / "tunnel.out").write_text(tunnel.output)
        assert "error" not in outcome, (victim, homes, outcome, tunnel.output, cluster.logs())
        sent, received, count = outcome["result"]  # type: ignore[misc]
        code = tunnel.stop()
    assert count == 256 << 20
    assert received == sent
    assert code == 0, tunnel.output


def test_session_ids_name_the_balancer(cluster):
    """StreamUrl is the balancer's URL whichever node answered StartSession."""
    agent = cluster.agent()
    ssm = cluster.server().client()
    for _ in range(3):
        started = ssm.start_session(Target=agent.instance_id)
        ws_base = cluster.lb_url.replace("http", "ws", 1)
        assert started["StreamUrl"].startswith(ws_base + "/v1/data-channel/"), started
        assert re.fullmatch(r"[\w.-]+", started["SessionId"])
        ssm.terminate_session(SessionId=started["SessionId"])
    wait_until(
        lambda: not ssm.describe_sessions(State="Active")["Sessions"], 60, "the sessions' end"
    )


def open_shell(server, target: str, number: int) -> pexpect.spawn:
    child = pexpect.spawn(
        HATCHWAY[0],
        [*HATCHWAY[1:], "start-session", "--target", target],
        env=server.env(),
        encoding="utf-8",
        timeout=120,
    )
    child.expect(r"Starting session with SessionId: (\S+?)\.?\s")
    child.session_id = child.match.group(1)  # for the tests that end it by its id
    child.expect(PROMPT)
    child.sendline(f"export NUMBER={number}; echo ready-$((NUMBER*2))-x")
    child.expect(f"ready-{number * 2}-x")
    return child


def still_answers(child: pexpect.spawn, number: int, marker: str) -> None:
    """The session answers, and it is the same shell: it still knows its number."""
    child.sendline(f"echo {marker}-$((NUMBER+1000))")
    child.expect(f"{marker}-{number + 1000}")


def test_a_rolling_restart_of_every_node_fails_no_session(cluster):
    """SIGTERM drains a node (its WebSockets close with 1001, going away, and both ends
    reconnect through the balancer at once); each node in turn comes back before the next
    goes. Twenty shells live through it all."""
    agent = cluster.agent()
    server = cluster.server()
    children = [open_shell(server, agent.instance_id, number) for number in range(20)]
    try:
        for node in cluster.nodes:
            node.stop()
            node.start()
            cluster.wait_backend(node.name, "UP")
            for number, child in enumerate(children):
                still_answers(child, number, f"after-{node.name}")
        for number, child in enumerate(children):
            child.sendline(f"exit {number % 4}")
            child.expect(pexpect.EOF)
            child.close()
            assert child.exitstatus == number % 4, (number, cluster.logs())
    finally:
        for child in children:
            if child.isalive():
                child.terminate(force=True)


def test_sessions_flow_while_the_database_is_down(cluster):
    """PostgreSQL stopped for 10 s: an established session keeps flowing, a new start
    gets a retryable ServiceUnavailable, and once the database is back everything works
    again without a restart."""
    agent = cluster.agent()
    server = cluster.server()
    ssm = server.client()
    child = open_shell(server, agent.instance_id, 7)
    try:
        cluster.database.stop()
        stopped = time.monotonic()
        rounds = 0
        while time.monotonic() - stopped < OUTAGE_SECONDS:  # bounded by the outage
            rounds += 1
            still_answers(child, 7, f"outage-{rounds}")
        with pytest.raises(ClientError) as refused:
            ssm.start_session(Target=agent.instance_id)
        assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        cluster.database.start()

        def a_new_session_works() -> bool:
            result = run_shell(server.env(), agent.instance_id, None, "echo back-$((2+3))\nexit\n")
            return "back-5" in result.stdout

        wait_until(a_new_session_works, 120, "a new session after the outage")
        still_answers(child, 7, "after-outage")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)


def diagnose(server, target: str) -> dict:
    """HatchwayDiagnoseInstance (doctor's agent checks), signed as the admin."""
    body = json.dumps({"Target": target}).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonSSM.HatchwayDiagnoseInstance",
    }
    request = AWSRequest("POST", server.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(*server.admin_keys()), "ssm", server.region).add_auth(request)
    answer = requests.post(server.url + "/", data=body, headers=dict(request.headers), timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_every_node_answers_for_the_agent_and_ends_its_sessions(cluster):
    """Whichever node a call reaches: GetConnectionStatus and DescribeInstanceInformation
    say the same, doctor's agent checks reach the agent through the node holding its
    control channel, and TerminateSession ends a shell paired on any node."""
    agent = cluster.agent()
    for node in cluster.nodes:
        direct = node.server()
        ssm = direct.client()
        assert ssm.get_connection_status(Target=agent.instance_id)["Status"] == "connected"
        (info,) = ssm.describe_instance_information()["InstanceInformationList"]
        assert info["PingStatus"] == "Online"
        checks = {result["id"] for result in diagnose(direct, agent.instance_id)["Results"]}
        assert "agent.answer" not in checks, (node.name, checks)  # the agent answered
    server = cluster.server()
    child = open_shell(server, agent.instance_id, 5)
    try:
        session_id = child.session_id
        for node in cluster.nodes:  # through a node that is neither end's, at least once
            node.server().client().terminate_session(SessionId=session_id)
        child.expect(pexpect.EOF)
        child.close()
        history = server.client().describe_sessions(State="History")["Sessions"]
        assert [s["SessionId"] for s in history] == [session_id]
    finally:
        if child.isalive():
            child.terminate(force=True)
