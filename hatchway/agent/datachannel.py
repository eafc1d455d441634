"""The agent's data-channel WebSocket for one session (agent.md §1.9)."""

from __future__ import annotations

import json
import socket
import uuid

import aiohttp

from ..protocol import MAX_MESSAGE_BYTES, AgentMessage, Flags, MessageType, OpenDataChannel
from .api import connect_websocket, create_channel, websocket_url
from .identity import Identity
from .signing import signed_headers


def set_nodelay(ws: aiohttp.ClientWebSocketResponse) -> None:
    # Keystrokes are tiny; Nagle's algorithm would hold each one back.
    conn = ws._response.connection  # aiohttp offers no public handle to the socket
    transport = conn.transport if conn is not None else None
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def open_data_channel(
    http: aiohttp.ClientSession, identity: Identity, session_id: str, now_ms: int
) -> aiohttp.ClientWebSocketResponse:
    token = await create_channel(http, identity, "data", session_id)
    path = f"/v1/data-channel/{session_id}?role=publish_subscribe"
    http_url = identity.server_url.rstrip("/") + path
    headers = signed_headers(identity, "GET", http_url, "ssmmessages")
    ws = await connect_websocket(
        http,
        websocket_url(identity.server_url, path),
        headers,
        heartbeat=54.0,
        max_msg_size=MAX_MESSAGE_BYTES,
        compress=0,
    )
    set_nodelay(ws)
    opening = OpenDataChannel(
        token=token,
        request_id=str(uuid.uuid4()),
        client_id="",
        client_instance_id=identity.instance_id,
    )
    await ws.send_str(opening.to_json().decode())
    await ws.send_bytes(session_state_message("Connected", session_id, now_ms))
    return ws


def session_state_message(state: str, session_id: str, now_ms: int) -> bytes:
    payload = {"SchemaVersion": 1, "SessionState": state, "SessionId": session_id}
    return AgentMessage(
        message_type=MessageType.AGENT_SESSION_STATE,
        created_date=now_ms,
        flags=Flags.ACK,
        payload=json.dumps(payload).encode(),
    ).encode()
