"""The server nodes sharing this database: each one's name, the URL its peers reach it
on, and a heartbeat. A node whose heartbeat lapses is dead: the others clear its routes
(the agents it held control channels for) and take its sessions over.

Figures: a heartbeat every ``HEARTBEAT_SECONDS`` (3 s); a node is dead once its last one
is ``LAPSE_SECONDS`` (10 s) old; every node sweeps the dead nodes' routes at each of its
own heartbeats, so a dead node's routes are gone within 13 s (10 s plus one beat). A node
whose heartbeats failed (the database was away) sweeps nothing until it has beaten
steadily for 10 s again, and first puts back its own routes.
The nodes' clocks are compared, so they must agree (NTP) to well within the lapse.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..storage.models import ClusterNode, ManagedInstance
from ..supervise import Supervisor

log = logging.getLogger("hatchway.server.cluster")

HEARTBEAT_SECONDS = 3.0
LAPSE_SECONDS = 10.0


def now_utc() -> datetime:
    return datetime.now(UTC)


def alive(heartbeat: datetime, now: datetime, lapse: float = LAPSE_SECONDS) -> bool:
    return now - heartbeat < timedelta(seconds=lapse)


class NodeRegistry:
    """This node's row in ``cluster_nodes``, kept fresh; and what the rows say of others."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        name: str,
        url: str,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        lapse_seconds: float = LAPSE_SECONDS,
    ) -> None:
        self.db = db
        self.name = name
        self.url = url.rstrip("/")  # where the other nodes reach this one
        self.heartbeat_seconds = heartbeat_seconds
        self.lapse_seconds = lapse_seconds
        self.supervisor = Supervisor()
        # Run after each heartbeat (the relay checks that it still is its sessions' home).
        self.on_beat: list[Callable[[], Awaitable[None]]] = []
        # Run at the first heartbeat after a failed one (the database was away, and the
        # others may have cleared this node's routes meanwhile).
        self.on_rejoin: list[Callable[[], Awaitable[None]]] = []
        # Since when the heartbeats have worked without a break (None: the last failed).
        # Dead nodes are swept only after a lapse of steady beats: after an outage every
        # node looks dead until it has had a chance to beat again.
        self._steady_since: float | None = time.monotonic()

    async def start(self) -> None:
        await self._heartbeat()
        self.supervisor.start("cluster heartbeat", self._beat)

    async def stop(self) -> None:
        """Leave the cluster: the others stop counting on this node at once."""
        await self.supervisor.stop()
        async with self.db() as db, db.begin():
            await db.execute(delete(ClusterNode).where(ClusterNode.name == self.name))

    async def _beat(self) -> float:
        try:
            await self._heartbeat()
        except Exception:
            self._steady_since = None
            raise
        now = time.monotonic()
        if self._steady_since is None:
            self._steady_since = now
            for rejoin in list(self.on_rejoin):
                await rejoin()
        if now - self._steady_since >= self.lapse_seconds:
            await self.sweep()
        for beat in list(self.on_beat):
            await beat()
        return self.heartbeat_seconds

    async def _heartbeat(self) -> None:
        now = now_utc()
        async with self.db() as db, db.begin():
            found = await db.execute(
                update(ClusterNode)
                .where(ClusterNode.name == self.name)
                .values(heartbeat=now, url=self.url)
            )
            if found.rowcount == 0:  # a first start, or removed while the database was away
                db.add(ClusterNode(name=self.name, url=self.url, started=now, heartbeat=now))

    async def sweep(self) -> None:
        """Clear the routes of nodes that are dead (or never registered): nobody holds
        those control channels any more."""
        cutoff = now_utc() - timedelta(seconds=self.lapse_seconds)
        async with self.db() as db, db.begin():
            living = select(ClusterNode.name).where(ClusterNode.heartbeat > cutoff)
            cleared = await db.execute(
                update(ManagedInstance)
                .where(
                    ManagedInstance.connected_to.is_not(None),
                    ManagedInstance.connected_to.not_in(living),
                )
                .values(connected_to=None)
            )
        if cleared.rowcount:
            log.info("cleared the routes of dead nodes", extra={"routes": cleared.rowcount})

    async def url_of(self, name: str) -> str | None:
        """Where a living node is reached; None when it is dead or unknown."""
        async with self.db() as db:
            row = await db.get(ClusterNode, name)
        if row is None or not row.url or not alive(row.heartbeat, now_utc(), self.lapse_seconds):
            return None
        return row.url

    async def living(self) -> dict[str, str]:
        """Every living node and its URL, this one included."""
        cutoff = now_utc() - timedelta(seconds=self.lapse_seconds)
        async with self.db() as db:
            rows = await db.execute(
                select(ClusterNode.name, ClusterNode.url).where(ClusterNode.heartbeat > cutoff)
            )
            return {name: url for name, url in rows}
