"""What happens to a session beyond the API: telling the agent, and recording the end."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..aws.errors import ValidationException
from ..protocol import AgentMessage, ChannelClosed, Flags, MessageType
from ..protocol.payloads import ERROR_BANNER
from . import documents as docs
from .cluster.homes import home_of
from .iam.principals import Principal
from .limits import IDLE_MESSAGE, JOIN_MESSAGE
from .mgs import MessageGateway, interactive_shell_message, millis, now_utc
from .relay import Relay
from .session_records import finish_session
from .state import Call, ServerState
from .storage.models import Session, SessionToken

log = logging.getLogger("hatchway.server.sessions")


INVALID_RUN_AS = "Invalid RunAs username"
# A Linux user name as useradd accepts it: what RunAs can run a shell as.
RUN_AS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")


def valid_run_as(name: str) -> bool:
    return bool(RUN_AS_NAME.fullmatch(name))


class SessionRuntime:
    """A session's life beyond the API calls: starting it on the agent, watching its
    limits, ending it, and recording how it ended. One per server, found as
    ``state.services.get(SessionRuntime)``."""

    def __init__(
        self,
        state: ServerState,
        gateway: MessageGateway,
        relay: Relay,
        preferences: Callable[[Session], Awaitable[docs.SessionPreferences | None]],
    ) -> None:
        self.state = state
        self.preferences = preferences  # a session's, from its document (ssm/sessions.py)
        self.gateway = gateway
        self.relay = relay
        gateway.task_complete_handlers.append(self.on_task_complete)
        relay.on_expired.append(self.on_expired)
        relay.on_home.append(self.watch_at_home)

    async def start(
        self,
        call: Call,
        session_id: str,
        target: str,
        document_name: str,
        document: dict[str, Any],
        values: dict[str, Any],
        principal: Principal,
    ) -> bool:
        """Send the session to its agent, through the node that holds its control channel
        when that is another; false (and the session recorded as Failed) when no node
        holds it."""
        content = docs.substitute(document, values)
        preferences = docs.session_preferences(content)
        run_as = principal.tags.get("SSMSessionRunAs", "")
        if preferences.run_as_enabled and not valid_run_as(
            run_as or preferences.run_as_default_user
        ):
            # The service's own check (agent.md §4.2): the session is recorded as Failed.
            await finish_session(self.state.db, session_id, "Failed", call.now, INVALID_RUN_AS)
            raise ValidationException(INVALID_RUN_AS)
        message = interactive_shell_message(
            session_id, document_name, content, values, run_as, principal.arn, call.now
        )
        if self.gateway.is_connected(target):
            sent = await self.gateway.send(target, message)
        else:
            sent = await self.gateway.start_elsewhere(session_id, target, message)
        if not sent:
            await finish_session(
                self.state.db, session_id, "Failed", call.now, "target not connected"
            )
            return False
        self.relay.set_limits(
            session_id,
            preferences.idle_timeout_minutes,
            preferences.max_duration_minutes,
            join_deadline=(call.now + self.state.config.token_lifetime).timestamp(),
        )
        log.info(
            "session started",
            extra={"session_id": session_id, "target": target, "document": document_name},
        )
        return True

    async def terminate(self, session_id: str, reason: str) -> None:
        async with self.state.db() as db:
            row = await db.get(Session, session_id)
        if row is None:
            return
        closed = ChannelClosed(
            session_id=session_id,
            message_id=uuid.uuid4(),
            created_date=now_utc().isoformat(),
            destination_id=row.target,
            output=reason,
        )
        await self.gateway.send(
            row.target,
            AgentMessage(
                message_type=MessageType.CHANNEL_CLOSED,
                created_date=millis(now_utc()),
                flags=Flags.ACK,
                payload=closed.to_json(),
            ),
        )
        await self.relay.close_session(session_id, reason)
        log.info("session terminated", extra={"session_id": session_id, "target": row.target})

    def client_token_issued(self, session_id: str, expires: datetime) -> None:
        """ResumeSession gave the client a new token: it may join until that expires."""
        self.relay.limits.extend_join(session_id, expires.timestamp())

    async def client_joined(self, session_id: str) -> bool:
        """Whether a client opened the session's data channel, on any server."""
        async with self.state.db() as db:
            row = await db.get(Session, session_id)
        return row is not None and row.client_joined is not None

    async def rearm_limits(
        self, sessions: list[tuple[Session, docs.SessionPreferences | None]]
    ) -> None:
        """After a restart, watch the limits of the sessions still open (each with its
        document's preferences; None when they cannot be read, and then only the join
        deadline is watched). Whether the client has joined is on the session's row; until
        when it may, from its tokens (spent and expired ones are purged)."""
        for row, prefs in sessions:
            async with self.state.db() as db:
                tokens = list(
                    await db.scalars(
                        select(SessionToken).where(
                            SessionToken.subject == row.session_id, SessionToken.role == "client"
                        )
                    )
                )
            joined = row.status != "Connecting" or row.client_joined is not None
            deadline = max((token.expires for token in tokens), default=row.start_date)
            age = (now_utc() - row.start_date).total_seconds()
            self.relay.set_limits(
                row.session_id,
                prefs.idle_timeout_minutes if prefs else None,
                prefs.max_duration_minutes if prefs else None,
                age,
                join_deadline=deadline.timestamp(),
                joined=joined,
                last_activity=row.last_activity.timestamp() if row.last_activity else None,
            )

    async def watch_at_home(self, session_id: str) -> None:
        """This node pairs the session's ends now: it watches the idle timeout (it sees the
        frames; the node that started the session leaves it to this one) and the maximum
        duration, from what the session's row says."""
        earlier = self.relay.limits.get(session_id)
        if earlier is not None and earlier.idle is not None:
            return  # this node started it, and watches its idle time already
        async with self.state.db() as db:
            row = await db.get(Session, session_id)
        if row is None:
            return
        prefs = await self.preferences(row)
        if prefs is None or not (prefs.idle_timeout_minutes or prefs.max_duration_minutes):
            return
        self.relay.set_limits(
            session_id,
            prefs.idle_timeout_minutes,
            prefs.max_duration_minutes,
            (now_utc() - row.start_date).total_seconds(),
            join_deadline=earlier.join_deadline if earlier else None,
            joined=earlier.joined if earlier else True,
            last_activity=row.last_activity.timestamp() if row.last_activity else None,
        )

    async def on_expired(self, session_id: str, reason: str) -> None:
        """The idle timeout, the maximum duration or the join deadline ended the session.
        A client that never joined makes it a session that failed to start."""
        if reason == JOIN_MESSAGE and await self.client_joined(session_id):
            # It joined through another server sharing the database: not ours to end.
            self.relay.limits.joined(session_id)
            return
        if reason == IDLE_MESSAGE:
            home = await home_of(self.state.db, session_id)
            if home is not None and home.node != self.state.config.node_name:
                # Its frames pass through another node, which watches its idle time.
                self.relay.limits.stop_idle_watch(session_id)
                return
        failed = reason == JOIN_MESSAGE
        status = "Failed" if failed else "Terminated"
        if await finish_session(self.state.db, session_id, status, now_utc(), reason):
            log.info("session limit reached", extra={"session_id": session_id, "reason": reason})
            # A failure's text follows the error banner, as agents mark it for clients.
            await self.terminate(session_id, ERROR_BANNER + reason if failed else reason)

    async def on_task_complete(self, session_id: str, status: str, output: str) -> None:
        final = "Terminated" if status == "Success" else "Failed"
        if not await finish_session(self.state.db, session_id, final, now_utc(), output):
            # Already in history: ended from the API or a limit, or a result sent twice (the
            # official agent reports a failed session twice). The first one counted.
            log.debug("repeated session result", extra={"session_id": session_id})
            return
        await self.relay.close_session(session_id, output)
        log.info(
            "session complete",
            extra={"session_id": session_id, "status": status, "output": json.dumps(output)[:200]},
        )
