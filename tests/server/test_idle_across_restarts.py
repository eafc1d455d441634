"""A restart keeps each session's last activity: the idle timeout counts from when
something last passed through the session, not from when the server came back."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aiohttp

from hatchway.protocol import OpenDataChannel
from hatchway.server.limits import IDLE_MESSAGE
from hatchway.server.relay import Relay
from hatchway.server.storage.models import Session
from tests.helpers import ConnectedNode, LoopThread, running_server, wait_until

DOCUMENT = {
    "schemaVersion": "1.0",
    "description": "idle timeout of three minutes",
    "sessionType": "Standard_Stream",
    "inputs": {"idleSessionTimeout": "3"},
}


def saved_activity(server, session_id):
    async def read():
        async with server.app_state().db() as db:
            row = await db.get(Session, session_id)
            return row.last_activity, row.start_date

    return server.loop_call(read())


def test_a_restart_keeps_the_idle_clock(tmp_path):
    loop = LoopThread()
    home = tmp_path / "server"
    try:
        # Minutes of a document last a minute here: nothing idles out before the restart.
        with running_server(home, activity_save_seconds=0.05) as server:
            node = ConnectedNode(server, loop)
            ssm = server.client()
            ssm.create_document(
                Name="Idle-Three", Content=json.dumps(DOCUMENT), DocumentType="Session"
            )
            started = ssm.start_session(Target=node.instance_id, DocumentName="Idle-Three")
            session_id = started["SessionId"]

            # The client joins and something passes; the relay saves when, at its low rate.
            async def join_and_send():
                async with (
                    aiohttp.ClientSession() as http,
                    http.ws_connect(started["StreamUrl"]) as ws,
                ):
                    await ws.send_str(
                        OpenDataChannel(token=started["TokenValue"]).to_json().decode()
                    )
                    await ws.send_bytes(b"keystrokes")
                    # Until the relay has seen it (the socket stays open meanwhile).
                    relay = server.app_state().services.get(Relay)
                    for _ in range(3000):
                        watch = relay.limits.get(session_id)
                        if watch is not None and watch.last_activity > watch.started:
                            return watch.last_activity
                        await asyncio.sleep(0.01)
                    raise AssertionError("the relay saw no activity")

            moment = datetime.fromtimestamp(loop.run(join_and_send()), UTC)
            wait_until(lambda: saved_activity(server, session_id)[0] == moment)
            last, start = saved_activity(server, session_id)
            assert start < last
            node.close()
        # The same home: the idle clock counts from the saved activity, not from now.
        with running_server(home) as again:
            watch = again.app_state().services.get(Relay).limits.get(session_id)
            assert watch is not None and watch.idle == 180.0
            assert watch.last_activity == last.timestamp()
            assert watch.reason(last.timestamp() + 179.9) is None
            assert watch.reason(last.timestamp() + 180.0) == IDLE_MESSAGE
        # And once a document minute lasts a second, it fires: three seconds after the
        # activity have long passed.
        with running_server(home, preference_minute=1.0) as third:

            def ended():
                history = third.client().describe_sessions(State="History")["Sessions"]
                return [s for s in history if s["SessionId"] == session_id]

            (session,) = wait_until(ended)
            assert session["Status"] == "Terminated"
            assert session["Details"] == IDLE_MESSAGE
    finally:
        loop.stop()
