"""What happens to a session beyond the API: telling the agent, and recording the end."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from sqlalchemy import select

from ..aws.errors import AwsError, ValidationException
from ..protocol import AgentMessage, ChannelClosed, Flags, MessageType
from . import documents as docs
from .iam.principals import Principal
from .mgs import MessageGateway, interactive_shell_message, millis, now_utc
from .relay import Relay
from .ssm.document_ops import LoadedDocument, load_document
from .ssm.errors import TargetNotConnected
from .ssm.sessions import ACTIVE, finish_session
from .state import Call, ServerState
from .storage.models import Session

log = logging.getLogger("hatchway.server.sessions")


INVALID_RUN_AS = "Invalid RunAs username"
# A Linux user name as useradd accepts it: what RunAs can run a shell as.
RUN_AS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")


def valid_run_as(name: str) -> bool:
    return bool(RUN_AS_NAME.fullmatch(name))


class SessionRuntime:
    def __init__(self, state: ServerState, gateway: MessageGateway, relay: Relay) -> None:
        self.state = state
        self.gateway = gateway
        self.relay = relay
        gateway.task_complete_handlers.append(self.on_task_complete)
        relay.on_expired.append(self.on_expired)

    async def start(
        self,
        call: Call,
        session_id: str,
        target: str,
        document: LoadedDocument,
        values: dict[str, Any],
        principal: Principal,
    ) -> None:
        content = docs.substitute(document.parsed, values)
        preferences = docs.session_preferences(content)
        run_as = principal.tags.get("SSMSessionRunAs", "")
        if preferences.run_as_enabled and not valid_run_as(
            run_as or preferences.run_as_default_user
        ):
            # The service's own check (agent.md §4.2): the session is recorded as Failed.
            await finish_session(self.state, session_id, "Failed", call.now, INVALID_RUN_AS)
            raise ValidationException(INVALID_RUN_AS)
        message = interactive_shell_message(
            session_id, document.name, content, values, run_as, principal.arn, call.now
        )
        if not await self.gateway.send(target, message):
            await finish_session(self.state, session_id, "Failed", call.now, "target not connected")
            raise TargetNotConnected(f"{target} is not connected.")
        self.relay.set_limits(
            session_id, preferences.idle_timeout_minutes, preferences.max_duration_minutes
        )
        log.info(
            "session started",
            extra={"session_id": session_id, "target": target, "document": document.name},
        )

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

    async def rearm_limits(self) -> None:
        """After a restart, watch the idle and duration limits of the sessions still open."""
        async with self.state.db() as db:
            rows = list(await db.scalars(select(Session).where(Session.status.in_(ACTIVE))))
            for row in rows:
                try:
                    document = await load_document(db, row.document_name)
                    values = docs.resolve_parameters(document.parsed, row.parameters)
                    prefs = docs.session_preferences(docs.substitute(document.parsed, values))
                except AwsError as exc:
                    log.warning(
                        "cannot re-arm limits",
                        extra={"session_id": row.session_id, "error": str(exc)},
                    )
                    continue
                age = (now_utc() - row.start_date).total_seconds()
                self.relay.set_limits(
                    row.session_id, prefs.idle_timeout_minutes, prefs.max_duration_minutes, age
                )

    async def on_expired(self, session_id: str, reason: str) -> None:
        """The idle timeout or the maximum duration ended the session."""
        if await finish_session(self.state, session_id, "Terminated", now_utc(), reason):
            await self.terminate(session_id, reason)

    async def on_task_complete(self, session_id: str, status: str, output: str) -> None:
        final = "Terminated" if status == "Success" else "Failed"
        if not await finish_session(self.state, session_id, final, now_utc(), output):
            # Already in history: ended from the API or a limit, or a result sent twice (the
            # official agent reports a failed session twice). The first one counted.
            log.debug("repeated session result", extra={"session_id": session_id})
            return
        await self.relay.close_session(session_id, output)
        log.info(
            "session complete",
            extra={"session_id": session_id, "status": status, "output": json.dumps(output)[:200]},
        )
