"""Channel tokens on a real SQLite database, with time passed in: single-use, bound to
their session and role, and refused once expired."""

from datetime import UTC, datetime, timedelta

from hatchway.server import tokens
from hatchway.server.storage.db import database_url, make_engine, migrate, session_factory

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIFETIME = timedelta(minutes=2)


async def test_a_token_is_refused_once_expired_and_once_used(tmp_path):
    engine = make_engine(database_url(tmp_path, None))
    await migrate(engine)
    db = session_factory(engine)
    try:
        async with db() as s, s.begin():
            late = await tokens.issue(s, "sid-1", "client", T0, LIFETIME)
            fresh = await tokens.issue(s, "sid-1", "client", T0, LIFETIME)
        async with db() as s, s.begin():
            assert not await tokens.redeem(s, late, "sid-1", "client", T0 + LIFETIME)
            assert not await tokens.redeem(s, fresh, "sid-1", "agent", T0)  # another role
            assert not await tokens.redeem(s, fresh, "sid-2", "client", T0)  # another session
            assert await tokens.redeem(s, fresh, "sid-1", "client", T0 + LIFETIME / 2)
            assert not await tokens.redeem(s, fresh, "sid-1", "client", T0)  # used
    finally:
        await engine.dispose()
