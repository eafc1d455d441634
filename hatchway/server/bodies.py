"""Reading a request's body: whole, bounded in size and in time."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..aws.errors import RequestEntityTooLarge, RequestTimeout

# What an agent's CreateControlChannel / CreateDataChannel call may carry: a small JSON.
CHANNEL_REQUEST_BYTES = 64 * 1024


async def read_body(request: web.Request, limit: int, within: float | None = None) -> bytes:
    """The whole body, however it arrives (in pieces, chunked), or 413 once it passes ``limit``,
    or 408 if it has not all arrived ``within`` seconds.

    ``content.read(n)`` answers with what is buffered so far, not with ``n`` bytes, so one
    read of a body still on its way would verify a signature over half of it. The deadline
    keeps a client that sends headers and then dribbles its body from holding a handler."""
    too_large = RequestEntityTooLarge(f"The request body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            while chunk := await request.content.read(limit + 1 - size):
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"The request body did not arrive within {within:g} seconds") from None
    return b"".join(chunks)
