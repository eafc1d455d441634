"""A resend of a message its peer already acknowledged is answered by the relay.

The official amazon-ssm-agent sends a message before it records it as awaiting an
acknowledgement; on a fast path the acknowledgement can come back in between, find nothing
and be dropped. AWS's session-manager-plugin drops a resend of a message it has processed
without acknowledging it again, and the agent resends only its oldest unacknowledged
message: without an answer it resends that one until the session ends, and a later message
lost with a node never comes again (seen by hand: a port forward stalled for good after a
node's kill -9). The client here behaves as AWS's plugin does.
"""

import time
import uuid

import aiohttp

from hatchway.agent.datachannel import open_data_channel
from hatchway.protocol import (
    Acknowledge,
    AgentMessage,
    Flags,
    MessageType,
    PayloadType,
    decode,
)
from tests.server.test_relay_frames import opening_for, until_connected


def now_ms() -> int:
    return int(time.time() * 1000)


def output(sequence_number: int, message_id: uuid.UUID) -> bytes:
    return AgentMessage(
        message_type=MessageType.OUTPUT_STREAM_DATA,
        created_date=now_ms(),
        sequence_number=sequence_number,
        payload=f"output {sequence_number}".encode(),
        payload_type=PayloadType.OUTPUT,
        message_id=message_id,
    ).encode()


def acknowledgement(frame: bytes) -> bytes:
    message = decode(frame)
    ack = Acknowledge(message.message_type, message.message_id, message.sequence_number)
    return AgentMessage(
        message_type=MessageType.ACKNOWLEDGE,
        created_date=now_ms(),
        flags=Flags.ACK,
        payload=ack.to_json(),
    ).encode()


async def next_message(ws) -> AgentMessage:
    frame = await ws.receive(timeout=10)
    assert frame.type == aiohttp.WSMsgType.BINARY, frame
    return decode(frame.data)


async def next_acknowledged(ws) -> int:
    """The sequence number the next acknowledge message on ``ws`` acknowledges."""
    while (message := await next_message(ws)).message_type != MessageType.ACKNOWLEDGE:
        pass
    return Acknowledge.from_json(message.payload).sequence_number


def run(node, ssm, scenario, client_headers=None):
    started = ssm.start_session(Target=node.instance_id)

    async def connected():
        async with aiohttp.ClientSession() as http:
            agent = await open_data_channel(http, node.identity, started["SessionId"], now_ms())
            client = await http.ws_connect(started["StreamUrl"], headers=client_headers or {})
            await client.send_str(opening_for(started))
            await until_connected(ssm, started["SessionId"])
            try:
                return await scenario(agent, client)
            finally:
                await client.close()
                await agent.close()

    return node.loop.run(connected(), timeout=60)


def test_the_relay_acknowledges_again_what_the_client_acknowledged(ssm, node):
    async def scenario(agent, client):
        first = output(0, uuid.uuid4())
        await agent.send_bytes(first)
        got = await next_message(client)
        await client.send_bytes(acknowledgement(first))
        assert await next_acknowledged(agent) == 0
        # The agent dropped that acknowledgement and sends the message again: the client
        # is not asked (it would not answer), the relay answers.
        await agent.send_bytes(first)
        again = await next_acknowledged(agent)
        await agent.send_bytes(output(1, uuid.uuid4()))
        after = await next_message(client)
        return got.sequence_number, again, after.sequence_number

    assert run(node, ssm, scenario) == (0, 0, 1)


def test_a_resend_the_client_never_acknowledged_reaches_the_client(ssm, node):
    async def scenario(agent, client):
        first = output(0, uuid.uuid4())
        await agent.send_bytes(first)
        await next_message(client)
        await agent.send_bytes(first)  # no acknowledgement came: the client must see it
        return (await next_message(client)).sequence_number

    assert run(node, ssm, scenario) == 0


def test_a_resend_long_after_its_acknowledgement_is_answered(ssm, node):
    """The agent resends only its oldest unacknowledged message: one whose acknowledgement
    it dropped waits until every older one is acknowledged (after a node's death, hundreds
    of messages lost with it, one per resend interval)."""

    async def scenario(agent, client):
        first = output(0, uuid.uuid4())
        await agent.send_bytes(first)
        await next_message(client)
        await client.send_bytes(acknowledgement(first))
        assert await next_acknowledged(agent) == 0
        for number in range(1, 3000):
            frame = output(number, uuid.uuid4())
            await agent.send_bytes(frame)
            await next_message(client)
            await client.send_bytes(acknowledgement(frame))
            assert await next_acknowledged(agent) == number
        await agent.send_bytes(first)
        return await next_acknowledged(agent)

    assert run(node, ssm, scenario) == 0


def passed_over(features: dict[str, str]):
    """The client misses nothing but its acknowledgement of message 0 is lost (as with a
    killed node); the agent resends 0 and the client, as AWS's plugin does, drops it
    without a word, then takes and acknowledges message 2."""

    async def scenario(agent, client):
        first = output(0, uuid.uuid4())
        await agent.send_bytes(first)
        await next_message(client)  # its acknowledgement never arrives
        second = output(1, uuid.uuid4())
        await agent.send_bytes(second)
        await next_message(client)
        await client.send_bytes(acknowledgement(second))
        assert await next_acknowledged(agent) == 1
        await agent.send_bytes(first)
        assert (await next_message(client)).sequence_number == 0  # dropped: it has it
        third = output(2, uuid.uuid4())
        await agent.send_bytes(third)
        await next_message(client)
        await client.send_bytes(acknowledgement(third))
        if features:
            # Hatchway's client acknowledges a duplicate itself: show that the relay did
            # not, by acknowledging 0 only now.
            await client.send_bytes(acknowledgement(first))
        return [await next_acknowledged(agent), await next_acknowledged(agent)]

    return scenario


def test_a_resend_the_plugin_passes_over_is_acknowledged_for_it(ssm, node):
    assert run(node, ssm, passed_over({})) == [0, 2]


def test_a_resend_hatchways_client_passes_over_is_left_to_it(ssm, node):
    from hatchway.protocol import FEATURES_HEADER

    features = {FEATURES_HEADER: "agent_presence"}
    assert run(node, ssm, passed_over(features), features) == [2, 0]
