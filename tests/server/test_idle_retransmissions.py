"""The idle timeout counts new data, not retransmissions.

The official amazon-ssm-agent resends its oldest unacknowledged message until it is
acknowledged, and AWS's session-manager-plugin (1.2.677.0) does not acknowledge a message
it has already processed. So once an acknowledgement is lost (the node that carried it
was killed), the agent resends that one message, several times a second, for as long as
the session lasts; were those resends activity, the session would never idle out.
"""

import asyncio
import json
import time
import uuid

import aiohttp

from hatchway.agent.datachannel import open_data_channel
from hatchway.protocol import AgentMessage, MessageType, PayloadType, decode
from hatchway.server.limits import IDLE_MESSAGE
from tests.server.test_relay_frames import open_client, until_connected

IDLE_ONE_MINUTE = {
    "schemaVersion": "1.0",
    "description": "idle timeout of one minute",
    "sessionType": "Standard_Stream",
    "inputs": {"idleSessionTimeout": "1"},
}
# The official agent's resend interval is its retransmission timeout, 200 ms to 1 s.
RESEND_SECONDS = 0.1
# Far past the idle timeout (a document minute lasts a second here).
BOUND_SECONDS = 30.0


def output(sequence_number: int) -> bytes:
    return AgentMessage(
        message_type=MessageType.OUTPUT_STREAM_DATA,
        created_date=int(time.time() * 1000),
        sequence_number=sequence_number,
        payload=f"output {sequence_number}\r\n".encode(),
        payload_type=PayloadType.OUTPUT,
        message_id=uuid.uuid4(),
    ).encode()


def start_idle_session(server, ssm, node):
    server.set_config(preference_minute=1.0)
    ssm.create_document(
        Name="Idle-One", Content=json.dumps(IDLE_ONE_MINUTE), DocumentType="Session"
    )
    return ssm.start_session(Target=node.instance_id, DocumentName="Idle-One")


async def agent_sends(server, ssm, node, started, next_frame, seconds):
    """The agent sends ``next_frame(i)`` every RESEND_SECONDS, for ``seconds`` or until the
    client is told the session is over; what ended it (the channel_closed text), or None."""
    async with aiohttp.ClientSession() as http:
        agent = await open_data_channel(
            http, node.identity, started["SessionId"], int(time.time() * 1000)
        )
        client = await open_client(http, started)
        await until_connected(ssm, started["SessionId"])

        async def until_closed() -> str:
            while True:
                frame = await client.receive()
                if frame.type != aiohttp.WSMsgType.BINARY:
                    return f"the client's socket ended: {frame.type}"
                message = decode(frame.data)
                if message.message_type == MessageType.CHANNEL_CLOSED:
                    return str(json.loads(message.payload)["Output"])

        closed = asyncio.ensure_future(until_closed())
        try:
            deadline = time.monotonic() + seconds
            count = 0
            while not closed.done() and time.monotonic() < deadline:
                await agent.send_bytes(next_frame(count))
                count += 1
                await asyncio.sleep(RESEND_SECONDS)
            return closed.result() if closed.done() else None
        finally:
            closed.cancel()
            await client.close()
            await agent.close()


def test_an_agent_resending_one_message_does_not_keep_the_session_alive(server, ssm, node):
    started = start_idle_session(server, ssm, node)
    ended = node.loop.run(
        agent_sends(server, ssm, node, started, lambda count: output(7), BOUND_SECONDS),
        timeout=BOUND_SECONDS + 30,
    )
    assert ended == IDLE_MESSAGE
    (session,) = [
        s
        for s in ssm.describe_sessions(State="History")["Sessions"]
        if s["SessionId"] == started["SessionId"]
    ]
    assert session["Details"] == IDLE_MESSAGE


def test_new_output_keeps_the_session_alive(server, ssm, node):
    started = start_idle_session(server, ssm, node)
    # Three idle timeouts' worth of new output, one message each RESEND_SECONDS.
    ended = node.loop.run(agent_sends(server, ssm, node, started, output, 3.0), timeout=60)
    assert ended is None
    active = ssm.describe_sessions(State="Active")["Sessions"]
    assert started["SessionId"] in [s["SessionId"] for s in active]
