"""A side of a session whose WebSocket reached this node while the session's home is
another: its frames go to the home over a stream of the link between the two, and the
home's frames come back the same way. The token was checked here, before the stream opened.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSCloseCode, WSMsgType, web

from .links import StreamEnd


async def carry(ws: web.WebSocketResponse, end: StreamEnd) -> None:
    """Until either end goes: the side's WebSocket closing tells the home (the side left,
    it may come back); the home closing the stream (the session ended, a newer connection,
    the home node lost) closes the WebSocket with the home's code."""

    async def to_side() -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            async for frame in end.frames():
                await ws.send_bytes(frame)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close(code=end.close_code, message=end.close_message)

    back = asyncio.create_task(to_side())
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                await end.send_bytes(message.data)
            elif message.type == WSMsgType.ERROR:
                break
    except (ConnectionError, RuntimeError):
        pass  # the stream ended while a frame waited for credit
    finally:
        await end.close(code=int(WSCloseCode.OK), message=b"side left")
        if not ws.closed:
            await back  # the home's last frames and its close code reach the side
        else:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await back
