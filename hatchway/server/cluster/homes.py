"""Which node pairs a session's two ends: its *home*, kept on the session's row with an
epoch. The first side to arrive makes its node the home; a side that reaches another node
is carried there; a node takes a session over only from a home it cannot reach, and only
at the epoch it read, so two nodes that both find the home dead cannot both win."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..pairing import JOINABLE
from ..storage.models import Session


@dataclass(frozen=True)
class Home:
    node: str
    epoch: int


async def settle(db: AsyncSession, session_id: str, me: str) -> Home:
    """Inside the transaction that admits a side: the session's home, made this node when
    it has none yet. One conditional UPDATE, so that of two sides admitted at once on two
    nodes, one claims it and the other finds it claimed: PostgreSQL re-checks the
    condition once the first transaction commits (reading then writing would let both
    claim it under READ COMMITTED)."""
    await db.execute(
        update(Session)
        .where(Session.session_id == session_id, Session.relay_node.is_(None))
        .values(relay_node=me, relay_epoch=Session.relay_epoch + 1)
    )
    found = (
        await db.execute(
            select(Session.relay_node, Session.relay_epoch).where(Session.session_id == session_id)
        )
    ).one()
    return Home(found.relay_node, found.relay_epoch)


async def take_over(
    db_factory: async_sessionmaker[AsyncSession], session_id: str, lost: Home, me: str
) -> bool:
    """Become the home of a session whose home ``lost`` cannot be reached; false when
    another node moved it first (read it again)."""
    async with db_factory() as db, db.begin():
        moved = await db.execute(
            update(Session)
            .where(
                Session.session_id == session_id,
                Session.relay_node == lost.node,
                Session.relay_epoch == lost.epoch,
                Session.status.in_(JOINABLE),
            )
            .values(relay_node=me, relay_epoch=lost.epoch + 1)
        )
    return bool(moved.rowcount)


async def home_of(db_factory: async_sessionmaker[AsyncSession], session_id: str) -> Home | None:
    async with db_factory() as db:
        row = await db.get(Session, session_id)
    if row is None or row.relay_node is None:
        return None
    return Home(row.relay_node, row.relay_epoch)
