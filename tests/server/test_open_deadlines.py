"""Sockets an anonymous caller opens are not held for ever: a WebSocket that never sends
its opening frame is closed at the open deadline however often it pings, and so is a
console probe left open; an agent's control channel refuses a message of any size."""

import asyncio
import contextlib
import time

import aiohttp

from hatchway.agent.api import websocket_url
from hatchway.agent.signing import signed_headers
from hatchway.server.mgs import MessageGateway

OPEN_SECONDS = 1.0
# Only ends a test whose socket is never closed; the close is the event waited for.
CEILING = 30.0
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


async def closed_while_pinging(url: str, headers=None, first_text=None) -> bool:
    """Open ``url``, ping every 50 ms (each one used to restart the server's wait), and
    report whether the server closes the socket before CEILING."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers=headers, autoping=True) as ws,
    ):
        if first_text is not None:
            assert (await ws.receive_str(timeout=CEILING)) == first_text

        async def keep_pinging() -> None:
            while True:
                await ws.ping()
                await asyncio.sleep(0.05)

        pinger = asyncio.ensure_future(keep_pinging())
        try:
            async with asyncio.timeout(CEILING):
                while (await ws.receive()).type not in CLOSED:
                    pass
            return True
        except TimeoutError:
            return False
        finally:
            pinger.cancel()


def ws(server, path: str) -> str:
    return websocket_url(server.url, path)


def test_a_data_channel_that_never_opens_is_closed_despite_pings(server):
    server.set_config(channel_open_seconds=OPEN_SECONDS)
    url = ws(server, "/v1/data-channel/admin-0123456789abcdef0")
    assert asyncio.run(closed_while_pinging(url))


def test_a_control_channel_that_never_opens_is_closed_despite_pings(server, node):
    server.set_config(channel_open_seconds=OPEN_SECONDS)
    path = f"/v1/control-channel/{node.instance_id}"
    headers = signed_headers(node.identity, "GET", server.url + path, "ssmmessages")
    assert asyncio.run(closed_while_pinging(ws(server, path), headers=headers))


def test_a_console_probe_left_open_is_closed(server):
    server.set_config(channel_open_seconds=OPEN_SECONDS)
    url = ws(server, "/console/api/ws-probe?probe=held")
    assert asyncio.run(closed_while_pinging(url, first_text="ok"))


def test_the_agent_refuses_an_oversized_control_message(server, node):
    gateway = server.app_state().services.get(MessageGateway)
    channel = gateway.channels[node.instance_id]

    async def send_oversized() -> None:
        with contextlib.suppress(ConnectionError):  # the agent may hang up mid-message
            await channel.ws.send_bytes(b"\0" * (5 * 1024 * 1024))

    server.loop_call(send_oversized())
    # The agent closes the channel (message too big) and opens a new one.
    deadline = time.monotonic() + CEILING
    while gateway.channels.get(node.instance_id) in (None, channel):
        assert time.monotonic() < deadline, "the agent took a 5 MiB control message"
        time.sleep(0.02)
