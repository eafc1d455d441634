"""Two servers on one database: a client that joins through the other server has joined,
and the server that started the session does not end it at the join deadline, even after
the spent token was purged."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp

from hatchway.agent.api import create_channel
from hatchway.protocol import OpenDataChannel
from hatchway.server.relay import Relay
from tests.helpers import ConnectedNode, LoopThread, running_server, wait_until


def test_a_client_that_joined_elsewhere_is_not_ended(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hatchway.server")
    loop = LoopThread()
    home = tmp_path / "server"
    try:
        with (
            running_server(home, node_name="first", token_lifetime=timedelta(seconds=5)) as first,
            running_server(home, node_name="second") as second,
        ):
            node = ConnectedNode(first, loop)
            try:
                started = first.client().start_session(Target=node.instance_id)
                session_id = started["SessionId"]
                stream_url = started["StreamUrl"].replace(
                    first.url.removeprefix("http://"), second.url.removeprefix("http://")
                )
                relay = first.app_state().services.get(Relay)
                joined = asyncio.Event()

                async def join_elsewhere():
                    async with (
                        aiohttp.ClientSession() as http,
                        http.ws_connect(stream_url) as ws,
                    ):
                        opening = OpenDataChannel(token=started["TokenValue"])
                        await ws.send_str(opening.to_json().decode())
                        await joined.wait()  # stay connected while the first server looks

                client = loop.submit(join_elsewhere())
                ssm = first.client()
                # The second server admitted the client; then any new token (here the
                # node's control-channel token) purges the spent one.
                elsewhere = second.app_state().services.get(Relay)
                wait_until(lambda: session_id in elsewhere.pairings, what="the join")

                async def issue_a_token():
                    async with aiohttp.ClientSession() as http:
                        await create_channel(http, node.identity, "control", node.instance_id)

                loop.run(issue_a_token())
                # Until the first server has met the deadline and found the join (or ended it).
                wait_until(
                    lambda: (watch := relay.limits.get(session_id)) is None or watch.joined,
                    what="the first server's join deadline",
                )
                loop.loop.call_soon_threadsafe(joined.set)
                client.result(30)
                active = ssm.describe_sessions(State="Active")["Sessions"]
                assert [s["SessionId"] for s in active] == [session_id]
                # Nor does its log say that a limit ended it.
                limits = [
                    record.getMessage()
                    for record in caplog.records
                    if getattr(record, "session_id", None) == session_id
                    and "limit" in record.getMessage()
                ]
                assert limits == []
            finally:
                node.close()
    finally:
        loop.stop()
