"""What the relay sends each end of a data channel, checked with raw WebSockets: a client
is given only what clients understand, and an agent is left to hang up itself."""

import asyncio
import json
import time
import uuid

import aiohttp

from hatchway.agent.datachannel import open_data_channel
from hatchway.protocol import AgentMessage, MessageType, PayloadType, decode


def now_ms() -> int:
    return int(time.time() * 1000)


async def open_client(http, started):
    ws = await http.ws_connect(started["StreamUrl"])
    opening = {
        "MessageSchemaVersion": "1.0",
        "RequestId": str(uuid.uuid4()),
        "TokenValue": started["TokenValue"],
        "ClientId": str(uuid.uuid4()),
    }
    await ws.send_str(json.dumps(opening))
    return ws


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
            seen = []
            while not seen or seen[-1] != MessageType.OUTPUT_STREAM_DATA:
                frame = await client.receive(timeout=30)
                assert frame.type == aiohttp.WSMsgType.BINARY, frame
                seen.append(decode(frame.data).message_type)
            await client.close()
            await agent.close()
            return seen

    assert asyncio.run(scenario()) == [MessageType.OUTPUT_STREAM_DATA]
