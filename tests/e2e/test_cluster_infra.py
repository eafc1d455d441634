"""The cluster fixture itself (tests/cluster.py): three nodes on one PostgreSQL behind
HAProxy, all serving, one admin created once and written by every node, and an agent that
registers through the load balancer and is Online on every node."""

from __future__ import annotations

import json

from tests.cluster import BACKEND_HEADER, get
from tests.e2e.processes import node_status
from tests.helpers import wait_until

NAMES = {"node-1", "node-2", "node-3"}


def test_three_nodes_serve_behind_haproxy_with_one_admin_and_an_online_agent(cluster):
    assert {node.name for node in cluster.nodes} == NAMES
    assert cluster.balancer.states() == dict.fromkeys(NAMES, "UP")

    # Round-robin: /healthz through the balancer reaches every node, and every node puts
    # the balancer's URL (its --public-url) in StreamUrls, never its own.
    answered: set[str] = set()

    def every_node_answered() -> bool:
        status, headers, body = get(f"{cluster.lb_url}/healthz")
        assert status == 200, body
        answered.add(headers[BACKEND_HEADER])
        data_channel = json.loads(body)["dataChannelUrl"]
        assert data_channel.startswith(cluster.lb_url.replace("http", "ws", 1)), data_channel
        return answered == NAMES

    wait_until(every_node_answered, 60, "every node answering through HAProxy")

    # One admin: node-1 created it, the others found it and wrote the same credentials.
    files = {node.name: (node.home / "credentials").read_text() for node in cluster.nodes}
    assert len(set(files.values())) == 1, files
    for node in cluster.nodes:
        said = node.log.read_text()
        created = "Created the admin credentials in" in said
        assert created == (node.name == "node-1"), cluster.logs()
        server_log = (node.home / "logs" / "server.log").read_text()
        found = "found in the database" in server_log
        assert found == (node.name != "node-1"), server_log

    # An agent registered through the balancer is Online through it, and on each node.
    agent = cluster.agent()
    assert agent.identity.server_url == cluster.lb_url
    for node in cluster.nodes:
        assert node_status(node.server(), agent.instance_id) == ("Online", "connected")


def test_a_node_killed_and_started_again_leaves_and_rejoins_the_balancer(cluster):
    killed = cluster.node("node-2")
    killed.kill()
    assert not killed.running
    cluster.wait_backend("node-2", "DOWN")
    # Requests go on through the balancer, to the nodes that are up.
    for _ in range(6):
        status, headers, _body = get(f"{cluster.lb_url}/healthz")
        assert status == 200
        assert headers[BACKEND_HEADER] in {"node-1", "node-3"}
    killed.start()  # the same port, home and arguments
    cluster.wait_backend("node-2", "UP")
    assert "Created the admin credentials" not in killed.log.read_text()
    wait_until(
        lambda: get(f"{cluster.lb_url}/healthz")[1][BACKEND_HEADER] == "node-2",
        60,
        "node-2 answering through HAProxy again",
    )
