"""A session's home on PostgreSQL, where two nodes admit its two sides at once: both must
agree on one home. (Reading the row and then writing it, two transactions under READ
COMMITTED each saw no home and each claimed it; a pyssm-client session was then closed
as "moved" by the node that lost.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text, update

from hatchway.server.cluster.homes import Home, settle, take_over
from hatchway.server.storage.db import database_url, make_engine, migrate, session_factory
from hatchway.server.storage.models import Session
from tests.postgres import running_postgres


@pytest.fixture(scope="module")
def database():
    with running_postgres() as url:
        yield url


async def with_a_session(url: str, session_id: str, body) -> None:
    engine = make_engine(database_url(None, url))  # type: ignore[arg-type]
    try:
        await migrate(engine)
        db = session_factory(engine)
        now = datetime.now(UTC)
        async with db() as session, session.begin():
            session.add(
                Session(
                    session_id=session_id,
                    target="mi-0123456789abcdef0",
                    document_name="SSM-SessionManagerRunShell",
                    owner="arn:aws:iam::1:user/u",
                    status="Connecting",
                    start_date=now,
                )
            )
        await body(db, session_id)
    finally:
        await engine.dispose()


def test_two_nodes_settling_at_once_agree_on_one_home(database):
    async def body(db, session_id: str) -> None:
        async with db() as first, first.begin():
            first_home = await settle(first, session_id, "node-a")  # holds the row's lock
            second = asyncio.create_task(settle_alone(db, session_id, "node-b"))
            await blocked_on_a_lock(db)  # node-b has read what it reads, and waits
            assert not second.done()
        assert first_home == Home("node-a", 1)
        assert await second == Home("node-a", 1)

    async def settle_alone(db, session_id: str, me: str) -> Home:
        async with db() as session, session.begin():
            return await settle(session, session_id, me)

    asyncio.run(with_a_session(database, "settled", body))


async def blocked_on_a_lock(db, seconds: float = 60.0) -> None:
    """Until another transaction waits for a row lock (PostgreSQL's own view of it)."""
    async with asyncio.timeout(seconds), db() as watcher:
        while True:
            waiting = await watcher.scalar(
                text("select count(*) from pg_stat_activity where wait_event_type = 'Lock'")
            )
            if waiting:
                return
            await watcher.rollback()  # a fresh snapshot for the next look
            await asyncio.sleep(0.01)


def test_only_one_node_takes_over_a_dead_home(database):
    async def body(db, session_id: str) -> None:
        async with db() as session, session.begin():
            await session.execute(
                update(Session)
                .where(Session.session_id == session_id)
                .values(relay_node="dead-node", relay_epoch=4)
            )
        lost = Home("dead-node", 4)
        results = await asyncio.gather(
            take_over(db, session_id, lost, "node-a"), take_over(db, session_id, lost, "node-b")
        )
        assert sorted(results) == [False, True]
        async with db() as session:
            row = await session.get(Session, session_id)
            assert row.relay_epoch == 5
            assert row.relay_node == ("node-a" if results[0] else "node-b")

    asyncio.run(with_a_session(database, "taken-over", body))
