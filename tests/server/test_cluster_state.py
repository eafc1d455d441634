"""What the nodes of a cluster share through the database and prove on their links: a
link only for a node that holds the cluster key, routes that a stale node cannot
overwrite, and a dead node's routes cleared by the living."""

from __future__ import annotations

import json
from datetime import timedelta

import aiohttp
from aiohttp import WSMsgType
from sqlalchemy import update

from hatchway.protocol.peer import Handshake
from hatchway.server.cluster.links import PEER_PATH
from hatchway.server.cluster.registry import LAPSE_SECONDS, NodeRegistry, now_utc
from hatchway.server.mgs import ControlChannel, MessageGateway
from hatchway.server.storage.models import ClusterNode, ManagedInstance
from tests.helpers import ConnectedNode, LoopThread, running_server


async def dial(url: str, key: bytes) -> tuple[WSMsgType, int | None]:
    """Dial a node's peer endpoint with ``key``; how the node answered the hello."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url + PEER_PATH) as ws:
        handshake = Handshake(key, "intruder")
        challenge = json.loads((await ws.receive()).data)
        _, hello = handshake.hello(challenge, None)
        await ws.send_str(json.dumps(hello))
        answer = await ws.receive()
        return answer.type, ws.close_code


def test_a_peer_without_the_cluster_key_gets_no_link(tmp_path):
    with running_server(tmp_path / "server") as server:
        answer, code = server.loop_call(dial(server.url, b"\x01" * 32))
        assert answer in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        assert code == 1008
        # With the key (derived from the master key) the same hello is welcomed.
        key = server.app_state().keystore.cluster_key
        answer, _ = server.loop_call(dial(server.url, key))
        assert answer == WSMsgType.TEXT


def test_a_stale_channels_close_keeps_the_newer_route(tmp_path):
    loop = LoopThread()
    try:
        with running_server(tmp_path / "server", node_name="alpha") as alpha:
            node = ConnectedNode(alpha, loop)
            try:
                gateway = alpha.app_state().services.get(MessageGateway)
                channel = gateway.channels[node.instance_id]

                async def moved_then_released() -> tuple[str | None, int]:
                    db = alpha.app_state().db
                    # The agent reconnected to node beta meanwhile (a newer epoch)...
                    async with db() as session, session.begin():
                        await session.execute(
                            update(ManagedInstance)
                            .where(ManagedInstance.instance_id == node.instance_id)
                            .values(connected_to="beta", route_epoch=channel.epoch + 1)
                        )
                    # ...and alpha's old channel closes late.
                    await gateway._release_route(
                        ControlChannel(node.instance_id, channel.ws, channel.epoch)
                    )
                    async with db() as session:
                        row = await session.get(ManagedInstance, node.instance_id)
                        return row.connected_to, row.route_epoch

                assert alpha.loop_call(moved_then_released()) == ("beta", channel.epoch + 1)
            finally:
                node.close()
    finally:
        loop.stop()


def test_the_routes_of_a_node_whose_heartbeat_lapsed_are_cleared(tmp_path):
    loop = LoopThread()
    try:
        with running_server(tmp_path / "server", node_name="alpha") as alpha:
            node = ConnectedNode(alpha, loop)
            try:
                ssm = alpha.client()
                assert ssm.get_connection_status(Target=node.instance_id)["Status"] == "connected"

                async def held_by_a_dead_node() -> None:
                    db = alpha.app_state().db
                    lapsed = now_utc() - timedelta(seconds=LAPSE_SECONDS + 1)
                    async with db() as session, session.begin():
                        session.add(
                            ClusterNode(name="ghost", url="", started=lapsed, heartbeat=lapsed)
                        )
                        await session.execute(
                            update(ManagedInstance)
                            .where(ManagedInstance.instance_id == node.instance_id)
                            .values(connected_to="ghost")
                        )
                    # The sweep each living node runs at its heartbeats clears it.
                    await alpha.app_state().services.get(NodeRegistry).sweep()

                alpha.loop_call(held_by_a_dead_node())
                status = ssm.get_connection_status(Target=node.instance_id)["Status"]
                assert status == "notconnected"
            finally:
                node.close()
    finally:
        loop.stop()


def test_a_node_leaving_removes_itself_from_the_registry(tmp_path):
    home = tmp_path / "server"
    with running_server(home, node_name="alpha") as alpha:
        with running_server(home, node_name="beta"):
            registry = alpha.app_state().services.get(NodeRegistry)
            assert set(alpha.loop_call(registry.living())) == {"alpha", "beta"}
        assert set(alpha.loop_call(registry.living())) == {"alpha"}
        urls = alpha.loop_call(registry.living())
        assert urls["alpha"] == alpha.url
