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
    # ResumeSession gives a fresh one, which works.
    resumed = ssm.resume_session(SessionId=started["SessionId"])
    assert asyncio.run(admitted(resumed["StreamUrl"], resumed["TokenValue"]))


def test_spent_and_expired_tokens_are_purged_when_tokens_are_issued(server):
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from hatchway.server import tokens
    from hatchway.server.storage.models import SessionToken

    db = server.app_state().db
    then = datetime(2030, 1, 1, tzinfo=UTC)
    minute = timedelta(minutes=1)

    async def scenario():
        async with db() as session, session.begin():
            spent = await tokens.issue(session, "s-1", "client", then, minute)
            await tokens.issue(session, "s-2", "client", then, minute)  # will expire
            live = await tokens.issue(session, "s-3", "client", then, 5 * minute)
        async with db() as session, session.begin():
            assert await tokens.redeem(session, spent, "s-1", "client", then)
        async with db() as session, session.begin():
            await tokens.issue(session, "s-4", "client", then + 2 * minute, minute)
        async with db() as session:
            left = await session.scalars(select(SessionToken.subject))
            count = await session.scalar(select(func.count()).select_from(SessionToken))
            subjects = sorted(left)
        async with db() as session, session.begin():
            replayed = await tokens.redeem(session, spent, "s-1", "client", then)
            still = await tokens.redeem(session, live, "s-3", "client", then + 2 * minute)
        return subjects, count, replayed, still

    subjects, count, replayed, still = server.loop_call(scenario())
    assert subjects == ["s-3", "s-4"] and count == 2
    assert not replayed  # purged: refused as unknown, as a used token was
    assert still
