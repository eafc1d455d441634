"""Authorization of one call against the caller's policies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ...aws.errors import AccessDeniedException
from ..storage.models import Policy
from .policy import Decision, Request, evaluate
from .principals import NODE_POLICY, Principal, PrincipalKind


async def policies_for(
    db_factory: async_sessionmaker[AsyncSession], principal: Principal
) -> list[dict[str, Any]]:
    if principal.kind is PrincipalKind.NODE:
        kind, name, builtin = "role", principal.role, [NODE_POLICY]
    else:
        kind, name, builtin = "user", principal.name, []
    async with db_factory() as db:
        rows = await db.scalars(
            select(Policy).where(Policy.principal_kind == kind, Policy.principal_name == name)
        )
        return builtin + [row.document for row in rows]


def condition_context(principal: Principal, extra: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {
        "aws:username": principal.name,
        "aws:PrincipalArn": principal.arn,
        "aws:PrincipalAccount": principal.account,
        "aws:userid": principal.access_key_id,
    }
    for key, value in principal.tags.items():
        context[f"aws:PrincipalTag/{key}"] = value
    context.update(extra)
    return context


async def authorize(
    db_factory: async_sessionmaker[AsyncSession],
    principal: Principal,
    action: str,
    resource: str,
    extra: dict[str, Any],
    *,
    owned: bool = False,
) -> None:
    """Deny unless a policy allows. ``owned``: the resource is the caller's own (their
    session), which needs no allow, only no explicit deny."""
    request = Request(action, resource, condition_context(principal, extra))
    decision = evaluate(await policies_for(db_factory, principal), request)
    if decision is Decision.IMPLICIT_DENY and owned:
        return
    if decision is not Decision.ALLOW:
        raise AccessDeniedException(
            f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource}"
            + (" with an explicit deny" if decision is Decision.DENY else "")
        )
