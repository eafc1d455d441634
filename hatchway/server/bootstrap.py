"""First start in an empty home: the account id, the admin user and its credentials file."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .credentials import create_access_key, write_credentials_file
from .iam.principals import ADMIN_POLICY
from .keystore import Keystore
from .storage.models import Policy, Setting, User

log = logging.getLogger("hatchway.server")

ADMIN_USER = "admin"
CREDENTIALS_FILE = "credentials"


async def _setting(db: AsyncSession, key: str, make: str) -> str:
    row = await db.get(Setting, key)
    if row is None:
        row = Setting(key=key, value=make)
        db.add(row)
    return row.value


async def bootstrap(
    db_factory: async_sessionmaker[AsyncSession], keystore: Keystore, home: Path, now: datetime
) -> dict[str, str]:
    """Returns the server-wide settings, creating them on the first start."""
    async with db_factory() as db, db.begin():
        settings = {
            "account": await _setting(db, "account", f"{secrets.randbelow(10**12):012d}"),
            "pagination_secret": await _setting(db, "pagination_secret", secrets.token_hex(32)),
        }
        users = await db.scalar(select(func.count()).select_from(User))
        if not users:
            db.add(User(name=ADMIN_USER, created=now, tags={}))
            db.add(
                Policy(
                    principal_kind="user",
                    principal_name=ADMIN_USER,
                    policy_name="AdministratorAccess",
                    document=ADMIN_POLICY,
                )
            )
            key_id, secret = await create_access_key(db, keystore, "user", ADMIN_USER, now)
            path = home / CREDENTIALS_FILE
            write_credentials_file(path, key_id, secret)
            settings["created_credentials"] = str(path)
            log.info("created the admin access key %s; its secret is in %s", key_id, path)
    return settings
