"""Data-channel tokens are single-use, short-lived and bound to one session: a replayed
token, an expired one, and one presented for another session are all refused."""

import asyncio
import json
import time
import uuid
from datetime import timedelta

import aiohttp

from hatchway.agent.datachannel import open_data_channel
from hatchway.protocol import AgentMessage, MessageType, decode
from tests.helpers import ConnectedNode

# Both outcomes are events: the frame reaches the agent side, or the relay closes the
# client's socket. This bound only ends a test that sees neither.
ANSWER_TIMEOUT = 30.0
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


def opening(token: str) -> str:
    return json.dumps(
        {
            "MessageSchemaVersion": "1.0",
            "RequestId": str(uuid.uuid4()),
            "TokenValue": token,
            "ClientId": str(uuid.uuid4()),
        }
    )


async def admitted(stream_url: str, token: str, node: ConnectedNode) -> bool:
    """Open the client side of a data channel with ``token``, the agent side as ``node``,
    and send a frame from the client. True when the relay passes the frame to the agent
    (it relays nothing before the token checks out); False when it closes the client's
    socket instead."""
    session_id = stream_url.split("/v1/data-channel/")[1].split("?")[0]
    probe = AgentMessage(
        message_type=MessageType.INPUT_STREAM_DATA,
        created_date=int(time.time() * 1000),
        payload=b"probe",
    )
    async with aiohttp.ClientSession() as http:
        agent = await open_data_channel(http, node.identity, session_id, probe.created_date)
        async with agent, http.ws_connect(stream_url) as client:
            await client.send_str(opening(token))
            await client.send_bytes(probe.encode())

            async def relayed() -> bool:
                async for frame in agent:
                    if frame.type is aiohttp.WSMsgType.BINARY:
                        if decode(frame.data).message_id == probe.message_id:
                            return True
                raise AssertionError("the relay closed the agent's side")

            async def refused() -> bool:
                while (await client.receive()).type not in CLOSED:
                    pass  # what the agent side sends the client
                return False

            tasks = [asyncio.ensure_future(relayed()), asyncio.ensure_future(refused())]
            done, pending = await asyncio.wait(
                tasks, timeout=ANSWER_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if not done:
                raise AssertionError(f"neither relayed nor refused in {ANSWER_TIMEOUT} s")
            return done.pop().result()


async def closed_by_relay(stream_url: str, token: str) -> bool:
    """Open only the client side with ``token``: True once the relay closes the socket (a
    session that has ended has no agent side to relay to)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(stream_url) as client:
        await client.send_str(opening(token))
        async with asyncio.timeout(ANSWER_TIMEOUT):
            while (await client.receive()).type not in CLOSED:
                pass
    return True


def test_a_token_opens_its_session_once(ssm, node):
    started = ssm.start_session(Target=node.instance_id)
    assert asyncio.run(admitted(started["StreamUrl"], started["TokenValue"], node))
    assert not asyncio.run(admitted(started["StreamUrl"], started["TokenValue"], node))  # replayed


def test_a_token_for_another_session_is_refused(ssm, node):
    first = ssm.start_session(Target=node.instance_id)
    second = ssm.start_session(Target=node.instance_id)
    assert not asyncio.run(admitted(second["StreamUrl"], first["TokenValue"], node))
    assert asyncio.run(admitted(second["StreamUrl"], second["TokenValue"], node))


def test_an_expired_token_is_refused(server, ssm, node):
    server.set_config(token_lifetime=timedelta(milliseconds=200))
    started = ssm.start_session(Target=node.instance_id)
    # Tokens from now on live long enough to be redeemed on a busy machine (the agent's too).
    server.set_config(token_lifetime=timedelta(minutes=5))
    # The client did not join before its token expired: the session ends, the expired
    # token is refused, and resuming the session gives no token.
    deadline = time.monotonic() + 30
    while not (history := ssm.describe_sessions(State="History")["Sessions"]):
        assert time.monotonic() < deadline, "the session did not end at its join deadline"
        time.sleep(0.05)
    assert [s["SessionId"] for s in history] == [started["SessionId"]]
    assert asyncio.run(closed_by_relay(started["StreamUrl"], started["TokenValue"]))
    assert ssm.resume_session(SessionId=started["SessionId"]).get("TokenValue") is None


def test_a_resumed_token_opens_the_session(ssm, node):
    started = ssm.start_session(Target=node.instance_id)
    resumed = ssm.resume_session(SessionId=started["SessionId"])
    assert asyncio.run(admitted(resumed["StreamUrl"], resumed["TokenValue"], node))


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
