"""Single-use, short-lived channel tokens. Only a hash is stored, so the database never
holds a usable token; lookup by hash keeps the comparison free of timing leaks."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from .storage.models import SessionToken


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(
    db: AsyncSession, subject: str, role: str, now: datetime, lifetime: timedelta
) -> str:
    token = secrets.token_urlsafe(48)
    db.add(
        SessionToken(
            token_hash=_hash(token), subject=subject, role=role, expires=now + lifetime, used=False
        )
    )
    return token


async def redeem(db: AsyncSession, token: str, subject: str, role: str, now: datetime) -> bool:
    """True once for a valid token of ``subject``; false if unknown, used, expired or
    issued for something else."""
    result = await db.execute(
        update(SessionToken)
        .where(
            SessionToken.token_hash == _hash(token),
            SessionToken.subject == subject,
            SessionToken.role == role,
            SessionToken.used.is_(False),
            SessionToken.expires > now,
        )
        .values(used=True)
    )
    return result.rowcount == 1


async def purge(db: AsyncSession, now: datetime) -> None:
    await db.execute(delete(SessionToken).where(SessionToken.expires <= now))
