"""The database engine, migrations on start-up, and the session factory."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = "hatchway.server:migrations"
# The PostgreSQL advisory lock that serializes migrations ("hatc" in ASCII).
MIGRATION_LOCK = 0x68617463
# How long a connection waits for another's transaction before SQLite gives up.
SQLITE_BUSY_MS = 30_000


def database_url(home: Path, url: str | None) -> str:
    """``--database`` as given (plain postgres URLs go to asyncpg), else SQLite in home."""
    if not url:
        return f"sqlite+aiosqlite:///{home / 'hatchway.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # We say when transactions begin (below), not the driver.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            # WAL lets readers run beside the writer; foreign keys are off by default.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            # A deferred transaction that reads and then writes cannot take the write lock
            # once another connection has committed since its read: SQLite then fails at
            # once with "database is locked", whatever the busy timeout. Taking the lock at
            # BEGIN makes each transaction wait its turn instead (many sessions starting
            # together do exactly this).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest version, keeping the data."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Nodes of a cluster that start together migrate one at a time: the lock is held
            # to the end of this transaction, and as PostgreSQL's DDL is transactional, the
            # next node finds the schema at its head. (SQLite's BEGIN IMMEDIATE does this.)
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(_upgrade)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
