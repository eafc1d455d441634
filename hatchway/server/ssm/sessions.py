"""Sessions over the API: StartSession, ResumeSession, TerminateSession, DescribeSessions."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from ...aws import arns
from ...aws.errors import AwsError
from .. import documents as docs
from .. import tokens
from .. import validation as v
from ..iam.principals import Principal
from ..session_records import ACTIVE, HISTORY, finish_session
from ..session_runtime import SessionRuntime
from ..state import Call, ServerState
from ..storage.models import ManagedInstance, Session
from . import ssm
from .document_ops import NAME_PATTERN, LoadedDocument, load_document
from .errors import DoesNotExistException, InvalidFilter, InvalidFilterKey, TargetNotConnected
from .nodes import is_online

MAX_SESSION_ID = 96

log = logging.getLogger("hatchway.server.sessions")


def new_session_id(principal_name: str) -> str:
    suffix = secrets.token_hex(9)[:17]
    return f"{principal_name[: MAX_SESSION_ID - len(suffix) - 1]}-{suffix}"


def data_channel_base(base_url: str) -> str:
    """Where StreamUrls point: the WebSocket form of the URL the caller reached us by (or
    of --public-url)."""
    if base_url.startswith("https"):
        return f"wss{base_url[len('https') :]}/v1/data-channel/"
    return f"ws{base_url[len('http') :]}/v1/data-channel/"


def stream_url(call: Call, session_id: str) -> str:
    return f"{data_channel_base(call.base_url)}{session_id}?role=publish_subscribe"


async def session_start_allowed(
    call: Call, params: dict[str, Any]
) -> tuple[str, LoadedDocument, ManagedInstance | None, Principal]:
    """What StartSession checks before it starts anything (and HatchwayDiagnoseInstance
    too): the target and document named in ``params``, ssm:StartSession on both (with the
    node's tags as ``ssm:resourceTag/*``). Returns the target, the document, the node (None
    if unknown) and the caller."""
    target = v.string(params, "Target", required=True, min_len=1, max_len=400) or ""
    document_name = (
        v.string(params, "DocumentName", pattern=NAME_PATTERN) or docs.DEFAULT_SESSION_DOCUMENT
    )
    async with call.state.db() as db:
        document = await load_document(db, document_name)
        node = await db.get(ManagedInstance, target)
    tags = node.tags if node is not None else {}
    principal = await call.authorize(
        "ssm:StartSession",
        call.instance_arn(target),
        {f"ssm:resourceTag/{k}": str(val) for k, val in tags.items()},
    )
    await call.authorize("ssm:StartSession", document.arn(call))
    return target, document, node, principal


@ssm.operation("StartSession")
async def start_session(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    reason = v.string(params, "Reason", min_len=1, max_len=256, pattern=r"^.{1,256}$")
    supplied = v.string_list_map(params, "Parameters")
    target, document, node, principal = await session_start_allowed(call, params)
    values = docs.resolve_parameters(document.parsed, supplied)
    if not is_online(call, node):
        raise TargetNotConnected(f"{target} is not connected.")
    preferences = docs.session_preferences(docs.substitute(document.parsed, values))
    session_id = new_session_id(principal.name)
    async with call.state.db() as db, db.begin():
        db.add(
            Session(
                session_id=session_id,
                target=target,
                document_name=document.name,
                owner=principal.arn,
                reason=reason,
                status="Connecting",
                start_date=call.now,
                last_activity=call.now,
                parameters={k: list(val) for k, val in supplied.items()},
                details="",
                max_session_duration=str(preferences.max_duration_minutes or ""),
            )
        )
        token = await tokens.issue(
            db, session_id, "client", call.now, call.state.config.token_lifetime
        )
    runtime = call.state.services.get(SessionRuntime)
    if not await runtime.start(
        call, session_id, target, document.name, document.parsed, values, principal
    ):
        raise TargetNotConnected(f"{target} is not connected.")
    return {"SessionId": session_id, "TokenValue": token, "StreamUrl": stream_url(call, session_id)}


async def _session_for(call: Call, session_id: str, action: str) -> Session:
    """The session, for its owner (unless a policy explicitly denies them) or for whoever
    a policy allows ``action`` on it."""
    async with call.state.db() as db:
        row = await db.get(Session, session_id)
    owner = row.owner if row is not None else None
    await call.authorize(action, arns.session(call.region, call.account, session_id), owner=owner)
    if row is None:
        raise DoesNotExistException(f"Session {session_id} does not exist.")
    return row


@ssm.operation("ResumeSession")
async def resume_session(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    session_id = v.string(params, "SessionId", required=True, min_len=1, max_len=96) or ""
    row = await _session_for(call, session_id, "ssm:ResumeSession")
    if row.status in HISTORY:
        # The reference plugin reads an empty token as "the session timed out".
        return {"SessionId": session_id}
    async with call.state.db() as db, db.begin():
        token = await tokens.issue(
            db, session_id, "client", call.now, call.state.config.token_lifetime
        )
    call.state.services.get(SessionRuntime).client_token_issued(
        session_id, call.now + call.state.config.token_lifetime
    )
    return {"SessionId": session_id, "TokenValue": token, "StreamUrl": stream_url(call, session_id)}


@ssm.operation("TerminateSession")
async def terminate_session(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    session_id = v.string(params, "SessionId", required=True, min_len=1, max_len=96) or ""
    await _session_for(call, session_id, "ssm:TerminateSession")
    if await finish_session(call.state.db, session_id, "Terminated", call.now):
        await call.state.services.get(SessionRuntime).terminate(session_id, "")
    return {"SessionId": session_id}


async def session_preferences(state: ServerState, row: Session) -> docs.SessionPreferences | None:
    """A session's preferences, from its document and parameters (None when the document
    cannot be read any more)."""
    async with state.db() as db:
        try:
            document = await load_document(db, row.document_name)
            values = docs.resolve_parameters(document.parsed, row.parameters)
            return docs.session_preferences(docs.substitute(document.parsed, values))
        except AwsError as exc:
            log.warning(
                "cannot read the preferences of an open session",
                extra={"session_id": row.session_id, "error": str(exc)},
            )
            return None


async def active_session_preferences(
    state: ServerState,
) -> list[tuple[Session, docs.SessionPreferences | None]]:
    """The sessions still open, each with its document's preferences (None when the
    document cannot be read any more): what a restarted server watches."""
    async with state.db() as db:
        rows = list(await db.scalars(select(Session).where(Session.status.in_(ACTIVE))))
    return [(row, await session_preferences(state, row)) for row in rows]


SESSION_FILTERS = ("InvokedAfter", "InvokedBefore", "Target", "Owner", "Status", "SessionId")


def _session_filter(key: str, value: str) -> Any:
    if key not in SESSION_FILTERS:
        raise InvalidFilterKey(f"The filter key {key} is not valid.")
    if key in ("InvokedAfter", "InvokedBefore"):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidFilter(f"{key} needs a timestamp such as 2024-08-29T00:00:00Z") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if key == "InvokedAfter":
            return lambda s: s.start_date >= moment
        return lambda s: s.start_date <= moment
    column = {
        "Target": "target",
        "Owner": "owner",
        "Status": "status",
        "SessionId": "session_id",
    }[key]
    return lambda s: getattr(s, column) == value


def _session_view(row: Session) -> dict[str, Any]:
    view: dict[str, Any] = {
        "SessionId": row.session_id,
        "Target": row.target,
        "Status": row.status,
        "StartDate": row.start_date,
        "DocumentName": row.document_name,
        "Owner": row.owner,
        "Details": row.details,
        "OutputUrl": {},
    }
    if row.end_date is not None:
        view["EndDate"] = row.end_date
    if row.reason:
        view["Reason"] = row.reason
    if row.max_session_duration:
        view["MaxSessionDuration"] = row.max_session_duration
    return view


@ssm.operation("DescribeSessions")
async def describe_sessions(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    state_name = v.string(params, "State", required=True, choices=["Active", "History"])
    max_results = v.integer(params, "MaxResults", minimum=1, maximum=200, default=20) or 20
    token = v.string(params, "NextToken")
    principal = await call.authorize("ssm:DescribeSessions", "*")
    checks = []
    for item in v.obj_list(params, "Filters", max_items=6):
        key = v.string(item, "key", required=True) or ""
        value = v.string(item, "value", required=True, min_len=1, max_len=400) or ""
        if key == "Owner" and value == "Self":
            value = principal.arn
        checks.append(_session_filter(key, value))
    statuses = ACTIVE if state_name == "Active" else HISTORY
    async with call.state.db() as db:
        rows = list(await db.scalars(select(Session).where(Session.status.in_(statuses))))
    rows = [r for r in rows if all(check(r) for check in checks)]
    # Newest first, as the console shows them; the session id breaks ties.
    rows.sort(key=lambda r: (-r.start_date.timestamp(), r.session_id))
    return call.state.paginator.respond(
        "DescribeSessions",
        rows,
        lambda r: [-r.start_date.timestamp(), r.session_id],
        max_results,
        token,
        "Sessions",
        _session_view,
    )
