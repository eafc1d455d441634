"""Data-channel tokens are single-use, short-lived and bound to one session: a replayed
token, an expired one, and one presented for another session are all refused."""

import asyncio
import json
import time
import uuid
from datetime import timedelta

import aiohttp


def opening(token: str) -> str:
    return json.dumps(
        {
            "MessageSchemaVersion": "1.0",
            "RequestId": str(uuid.uuid4()),
            "TokenValue": token,
            "ClientId": str(uuid.uuid4()),
        }
    )


async def admitted(stream_url: str, token: str) -> bool:
    """Open the client side of a data channel; True if the relay keeps it open."""
    async with aiohttp.ClientSession() as http, http.ws_connect(stream_url) as ws:
        await ws.send_str(opening(token))
        try:
            message = await ws.receive(timeout=1.0)
        except TimeoutError:
            return True  # nothing to say yet, and not closed: admitted
        return message.type not in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        )


def test_a_token_opens_its_session_once(ssm, node):
    started = ssm.start_session(Target=node.instance_id)
    assert asyncio.run(admitted(started["StreamUrl"], started["TokenValue"]))
    assert not asyncio.run(admitted(started["StreamUrl"], started["TokenValue"]))  # replayed


def test_a_token_for_another_session_is_refused(ssm, node):
    first = ssm.start_session(Target=node.instance_id)
    second = ssm.start_session(Target=node.instance_id)
    assert not asyncio.run(admitted(second["StreamUrl"], first["TokenValue"]))
    assert asyncio.run(admitted(second["StreamUrl"], second["TokenValue"]))


def test_an_expired_token_is_refused(server, ssm, node):
    server.set_config(token_lifetime=timedelta(milliseconds=200))
    started = ssm.start_session(Target=node.instance_id)
    time.sleep(0.5)
    assert not asyncio.run(admitted(started["StreamUrl"], started["TokenValue"]))
    # The client did not join before its token expired: the session ends, and resuming it
    # gives no token.
    for _ in range(400):
        history = ssm.describe_sessions(State="History")["Sessions"]
        if history:
            break
        time.sleep(0.05)
    assert [s["SessionId"] for s in history] == [started["SessionId"]]
    assert ssm.resume_session(SessionId=started["SessionId"]).get("TokenValue") is None


def test_a_resumed_token_opens_the_session(ssm, node):
    started = ssm.start_session(Target=node.instance_id)
    resumed = ssm.resume_session(SessionId=started["SessionId"])
    assert asyncio.run(admitted(resumed["StreamUrl"], resumed["TokenValue"]))
