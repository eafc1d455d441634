"""Single-use, short-lived channel tokens. Only a hash is stored, so the database never
holds a usable token; lookup by hash keeps the comparison free of timing leaks."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from .storage.models import SessionToken


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(
    db: AsyncSession, subject: str, role: str, now: datetime, lifetime: timedelta
) -> str:
    """A new token; the spent and expired ones go first, so the table holds only tokens
    that could still be redeemed."""
    await purge(db, now)
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
    """Forget tokens that can no longer be redeemed: used or expired. A forgotten token is
    refused as unknown, exactly as a used or expired one is."""
    await db.execute(
        delete(SessionToken).where(or_(SessionToken.used.is_(True), SessionToken.expires <= now))
    )
