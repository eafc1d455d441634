"""Sessions whose agent went away: tell their clients, wait a grace period, end them.

The decisions are in agent_grace.py; this is the part that reads the clock and the
database, and sends. It watches the control channels (MessageGateway.watchers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime

from sqlalchemy import select

from ..protocol import AgentPresence, Presence
from ..protocol.payloads import ERROR_BANNER
from .agent_grace import (
    AgentGrace,
    gone_reason,
    restarted_reason,
    sessions_it_lost,
    unattended,
)
from .mgs import now_utc
from .relay import Relay
from .session_records import ACTIVE, finish_session
from .state import ServerState
from .storage.models import ManagedInstance, Session
from .supervise import Supervisor

log = logging.getLogger("hatchway.server.presence")


class AgentPresenceWatch:
    def __init__(self, state: ServerState, relay: Relay) -> None:
        self.state = state
        self.relay = relay
        self.grace = AgentGrace()
        self._changed = asyncio.Event()
        self.supervisor = Supervisor()
        relay.away_notice = self.away_notice

    async def start(self) -> None:
        """After a start, the sessions left open whose node no server holds a control
        channel for wait for their agent as if it had just gone away: an agent that died
        while the server was down is noticed too."""
        seconds = self.state.config.agent_grace_seconds
        for instance_id in unattended(await self._nodes_with_sessions()):
            self.grace.away(instance_id, time.monotonic(), seconds)
        self.supervisor.start("agent grace periods", self._end_the_overdue)

    async def close(self) -> None:
        await self.supervisor.stop()

    # --- what the gateway tells us ------------------------------------------------------

    async def channel_closed(self, instance_id: str) -> None:
        seconds = self.state.config.agent_grace_seconds
        self.grace.away(instance_id, time.monotonic(), seconds)
        self._changed.set()
        await self.relay.tell_clients(
            instance_id, AgentPresence(Presence.AWAY, instance_id, seconds)
        )

    async def channel_opened(self, instance_id: str) -> None:
        if self.grace.forget(instance_id):
            self._changed.set()
            log.info("agent back", extra={"target": instance_id})
            await self.relay.tell_clients(instance_id, AgentPresence(Presence.BACK, instance_id))

    async def live_sessions(
        self, instance_id: str, session_ids: list[str], opened: datetime
    ) -> None:
        active = await self._active_sessions(instance_id)
        for session_id in sessions_it_lost(active, session_ids, opened):
            await self._end(session_id, restarted_reason(instance_id))

    def away_notice(self, instance_id: str) -> AgentPresence | None:
        """For a client that joins while its agent is away: how long is left."""
        left = self.grace.remaining(instance_id, time.monotonic())
        return None if left is None else AgentPresence(Presence.AWAY, instance_id, round(left))

    # --- the grace period -------------------------------------------------------------

    async def _end_the_overdue(self) -> None:
        """One turn of the watch (supervised: a database hiccup is logged and retried, and
        the deadlines wait for the next turn): wait for the next deadline or a change, then
        end the sessions of the agents whose grace ran out."""
        deadline = self.grace.next_deadline()
        self._changed.clear()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        for instance_id, seconds in self.grace.expired(time.monotonic()):
            if instance_id not in unattended(await self._nodes_with_sessions()):
                # Back on another server node, or no session left to end.
                self.grace.forget(instance_id)
                continue
            for session_id in await self._active_sessions(instance_id):
                await self._end(session_id, gone_reason(instance_id, seconds))
            self.grace.forget(instance_id)

    async def _nodes_with_sessions(self) -> dict[str, str | None]:
        """The nodes with open sessions, and the server node holding each one's control
        channel (None when none does)."""
        async with self.state.db() as db:
            rows = await db.execute(
                select(ManagedInstance.instance_id, ManagedInstance.connected_to)
                .join(Session, Session.target == ManagedInstance.instance_id)
                .where(Session.status.in_(ACTIVE))
                .distinct()
            )
            return {instance_id: connected_to for instance_id, connected_to in rows}

    async def _active_sessions(self, instance_id: str) -> dict[str, datetime]:
        async with self.state.db() as db:
            rows = await db.execute(
                select(Session.session_id, Session.start_date).where(
                    Session.target == instance_id, Session.status.in_(ACTIVE)
                )
            )
            return {session_id: started for session_id, started in rows}

    async def _end(self, session_id: str, reason: str) -> None:
        if await finish_session(self.state.db, session_id, "Failed", now_utc(), reason):
            log.info(
                "session ended: agent gone", extra={"session_id": session_id, "reason": reason}
            )
            # Failed as the agent marks a failure, so that clients tell it from a clean end.
            await self.relay.close_session(session_id, ERROR_BANNER + reason)
