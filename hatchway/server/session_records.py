"""A session's record: which statuses are live and which are history, and the one move
from the first to the second."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .storage.models import Session

ACTIVE = ("Connecting", "Connected", "Disconnected", "Terminating")
HISTORY = ("Terminated", "Failed")


async def finish_session(
    db_factory: async_sessionmaker[AsyncSession],
    session_id: str,
    status: str,
    now: datetime,
    details: str = "",
) -> bool:
    """Move a session into history; false if it already was (the first end stands)."""
    async with db_factory() as db, db.begin():
        row = await db.get(Session, session_id)
        if row is None or row.status in HISTORY:
            return False
        row.status = status
        row.end_date = now
        if details:
            row.details = details[:1024]
    return True
