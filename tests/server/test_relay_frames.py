"""What the relay sends each end of a data channel, checked with raw WebSockets: a client
is given only what clients understand, and an agent is left to hang up itself."""

import asyncio
import contextlib
import json
import time
import uuid

import aiohttp

from hatchway.agent.datachannel import open_data_channel
from hatchway.protocol import AgentMessage, MessageType, PayloadType, decode
from tests.helpers import wait_until


def now_ms() -> int:
    return int(time.time() * 1000)


def opening_for(started):
    opening = {
        "MessageSchemaVersion": "1.0",
        "RequestId": str(uuid.uuid4()),
        "TokenValue": started["TokenValue"],
        "ClientId": str(uuid.uuid4()),
    }
    return json.dumps(opening)


async def open_client(http, started):
    ws = await http.ws_connect(started["StreamUrl"])
    await ws.send_str(opening_for(started))
    return ws


async def types_until(ws, last: str) -> list[str]:
    """The types of the messages ``ws`` receives, up to and including one of type
    ``last``."""
    seen: list[str] = []
    while not seen or seen[-1] != last:
        frame = await ws.receive(timeout=30)
        assert frame.type == aiohttp.WSMsgType.BINARY, frame
        seen.append(decode(frame.data).message_type)
    return seen


def test_a_client_is_not_given_agent_session_state(ssm, node):
    started = ssm.start_session(Target=node.instance_id)

    async def scenario() -> list[str]:
        async with aiohttp.ClientSession() as http:
            # The agent opens first: its agent_session_state Connected waits for the client.
            agent = await open_data_channel(http, node.identity, started["SessionId"], now_ms())
            client = await open_client(http, started)
            output = AgentMessage(
                message_type=MessageType.OUTPUT_STREAM_DATA,
                created_date=now_ms(),
                payload=b"hello",
                payload_type=PayloadType.OUTPUT,
            )
            await agent.send_bytes(output.encode())
            seen = await types_until(client, MessageType.OUTPUT_STREAM_DATA)
            await client.close()
            await agent.close()
            await client.close()
            return seen

    assert asyncio.run(scenario()) == [MessageType.OUTPUT_STREAM_DATA]


async def open_agent_without_autoping(http, identity, session_id):
    """The agent's side as open_data_channel opens it, but pongs reach the test."""
    from hatchway.agent.api import connect_websocket, create_channel, websocket_url
    from hatchway.agent.signing import signed_headers
    from hatchway.protocol import OpenDataChannel

    token = await create_channel(http, identity, "data", session_id)
    path = f"/v1/data-channel/{session_id}?role=publish_subscribe"
    headers = signed_headers(identity, "GET", identity.server_url + path, "ssmmessages")
    ws = await connect_websocket(
        http, websocket_url(identity.server_url, path), headers, autoping=False
    )
    opening = OpenDataChannel(token=token, client_instance_id=identity.instance_id)
    await ws.send_str(opening.to_json().decode())
    return ws


async def until_connected(ssm, session_id):
    """Until the relay has admitted both sides (the session shows Connected)."""
    for _ in range(1500):
        sessions = await asyncio.to_thread(ssm.describe_sessions, State="Active")
        if any(
            s["SessionId"] == session_id and s["Status"] == "Connected"
            for s in sessions["Sessions"]
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{session_id} never showed Connected")


def test_a_terminated_session_leaves_the_agent_to_close_its_data_channel(ssm, node):
    """The official agent reconnects a data channel that the service closes (any close
    code) and stops quietly only when it closed the channel itself: after channel_closed,
    the relay waits for the agent to hang up."""
    started = ssm.start_session(Target=node.instance_id)
    session_id = started["SessionId"]

    async def scenario() -> tuple[str, aiohttp.WSMsgType, int | None]:
        async with aiohttp.ClientSession() as http:
            agent = await open_agent_without_autoping(http, node.identity, session_id)
            client = await open_client(http, started)
            await until_connected(ssm, session_id)
            await asyncio.to_thread(ssm.terminate_session, SessionId=session_id)
            frame = await agent.receive(timeout=30)
            assert frame.type == aiohttp.WSMsgType.BINARY, frame
            closed = decode(frame.data).message_type
            # Still open: a ping sent now is answered, with no close frame before the pong.
            with contextlib.suppress(ConnectionResetError):  # when the relay hung up
                await agent.ping(b"still there?")
            answer = await agent.receive(timeout=30)
            await agent.close()
            await client.close()
            return closed, answer.type, agent.close_code

    closed, answer, close_code = asyncio.run(scenario())
    assert closed == MessageType.CHANNEL_CLOSED
    assert answer == aiohttp.WSMsgType.PONG
    assert close_code == aiohttp.WSCloseCode.OK  # the agent's close, answered


def test_an_agent_that_does_not_hang_up_is_closed_after_a_while(server, ssm, node):
    server.set_config(agent_hangup_seconds=0.2)
    started = ssm.start_session(Target=node.instance_id)
    session_id = started["SessionId"]

    async def scenario() -> list[aiohttp.WSMsgType]:
        async with aiohttp.ClientSession() as http:
            agent = await open_agent_without_autoping(http, node.identity, session_id)
            client = await open_client(http, started)
            await until_connected(ssm, session_id)
            await asyncio.to_thread(ssm.terminate_session, SessionId=session_id)
            seen = [(await agent.receive(timeout=30)).type]
            while seen[-1] == aiohttp.WSMsgType.BINARY:
                seen.append((await agent.receive(timeout=30)).type)
            await agent.close()
            await client.close()
            return seen

    assert asyncio.run(scenario()) == [aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.CLOSE]


def test_only_a_client_that_asked_is_told_its_agent_went_away(ssm, node):
    from hatchway.protocol import FEATURES_HEADER, AgentPresence, Presence

    told = ssm.start_session(Target=node.instance_id)
    plain = ssm.start_session(Target=node.instance_id)

    async def scenario() -> tuple[AgentPresence, str]:
        async with aiohttp.ClientSession() as http:
            agents = [
                await open_data_channel(http, node.identity, s["SessionId"], now_ms())
                for s in (told, plain)
            ]
            asking = await http.ws_connect(
                told["StreamUrl"], headers={FEATURES_HEADER: "agent_presence"}
            )
            await asking.send_str(opening_for(told))
            other = await open_client(http, plain)
            for started in (told, plain):
                await until_connected(ssm, started["SessionId"])
            await node.channel._ws.close()  # as when the agent dies
            notice = await asking.receive(timeout=30)
            presence = AgentPresence.from_json(decode(notice.data).payload)
            output = AgentMessage(
                message_type=MessageType.OUTPUT_STREAM_DATA,
                created_date=now_ms(),
                payload=b"hello",
                payload_type=PayloadType.OUTPUT,
            )
            await agents[1].send_bytes(output.encode())
            first = decode((await other.receive(timeout=30)).data).message_type
            for ws in (asking, other, *agents):
                await ws.close()
            return presence, first

    presence, first = node.loop.run(scenario())
    assert (presence.state, presence.target) == (Presence.AWAY, node.instance_id)
    assert presence.grace_seconds == 90.0
    assert first == MessageType.OUTPUT_STREAM_DATA


def test_a_client_that_joins_while_the_agent_is_away_is_told_too(ssm, node):
    from hatchway.protocol import FEATURES_HEADER, AgentPresence, Presence

    started = ssm.start_session(Target=node.instance_id)
    node.close()  # the agent goes, and does not come back
    wait_until(
        lambda: ssm.get_connection_status(Target=node.instance_id)["Status"] == "notconnected",
        what="the node to show notconnected",
    )

    async def scenario() -> AgentPresence:
        async with aiohttp.ClientSession() as http:
            client = await http.ws_connect(
                started["StreamUrl"], headers={FEATURES_HEADER: "agent_presence"}
            )
            await client.send_str(opening_for(started))
            notice = await client.receive(timeout=30)
            await client.close()
            return AgentPresence.from_json(decode(notice.data).payload)

    presence = asyncio.run(scenario())
    assert (presence.state, presence.target) == (Presence.AWAY, node.instance_id)
    assert 0 < presence.grace_seconds <= 90


def test_a_client_that_comes_back_makes_the_agent_resend(ssm, node):
    """Frames the agent sent while its client was away may be lost (past the relay's
    queue, in a node that died): when the client rejoins, the agent is sent
    start_publication, on which a Hatchway end resends everything unacknowledged at once
    (data-channel.md §3.7). The first join is no rejoin, and sends nothing."""
    started = ssm.start_session(Target=node.instance_id)

    async def scenario() -> list[str]:
        async with aiohttp.ClientSession() as http:
            agent = await open_data_channel(http, node.identity, started["SessionId"], now_ms())
            client = await open_client(http, started)
            await client.close()
            resumed = ssm.resume_session(SessionId=started["SessionId"])
            again = await open_client(http, resumed)
            marker = AgentMessage(
                message_type=MessageType.INPUT_STREAM_DATA,
                created_date=now_ms(),
                payload=b"after the rejoin",
                payload_type=PayloadType.OUTPUT,
            )
            await again.send_bytes(marker.encode())
            seen = await types_until(agent, MessageType.INPUT_STREAM_DATA)
            await again.close()
            await agent.close()
            return seen

    seen = asyncio.run(scenario())
    assert seen.count(MessageType.START_PUBLICATION) == 1, seen
