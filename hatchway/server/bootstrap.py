"""Start-up against the database: the account id, the admin user and its credentials file
on the first start, and the checks a later start (or a later node) makes.

A cluster's nodes share the database and the master key. The first node creates the admin
and its access key; a later node finds them, creates none, and writes the admin's key to
its own ``DIR/credentials`` for its operator when that file is missing. A node whose
master key is not the one the database's secrets were sealed with stops at start."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .credentials import create_access_key, write_credentials_file
from .iam.principals import ADMIN_POLICY
from .keystore import Keystore, KeystoreError
from .storage.models import AccessKey, Policy, Setting, User

log = logging.getLogger("hatchway.server")

ADMIN_USER = "admin"
CREDENTIALS_FILE = "credentials"
# A setting sealed under the master key on the first start: a node started with another
# key fails at once, rather than at the first request whose secret does not open.
KEY_CHECK = "master_key_check"
_KEY_CHECK_TEXT = b"sealed under this database's master key"
# Nodes started together on an empty database race to create the settings and the admin:
# the losers' transactions fail on the unique keys, and their next pass finds the rows.
_ATTEMPTS = 3


class WrongMasterKey(KeystoreError):
    def __init__(self, keystore: Keystore) -> None:
        key = keystore.path or "in use"
        super().__init__(
            f"the master key {key} does not open this database's secrets: every node needs "
            "the same key"
        )


@dataclass
class _Credentials:
    key_id: str
    secret: str
    created: bool  # by this start, or read back from the database


async def bootstrap(
    db_factory: async_sessionmaker[AsyncSession], keystore: Keystore, home: Path, now: datetime
) -> dict[str, str]:
    """Returns the server-wide settings, creating them on the first start."""
    for attempt in range(_ATTEMPTS):
        try:
            settings, credentials = await _bootstrap_once(db_factory, keystore, home, now)
            break
        except IntegrityError:
            if attempt == _ATTEMPTS - 1:
                raise
            log.info("another node created this database's settings at the same time")
    # Written once the transaction has committed: never a key the database does not hold.
    if credentials is not None:
        path = home / CREDENTIALS_FILE
        write_credentials_file(path, credentials.key_id, credentials.secret)
        if credentials.created:
            settings["created_credentials"] = str(path)
            log.info(
                "created the admin access key %s; its secret is in %s", credentials.key_id, path
            )
        else:
            log.info(
                "wrote the admin access key %s, found in the database, to %s",
                credentials.key_id,
                path,
            )
    return settings


async def _bootstrap_once(
    db_factory: async_sessionmaker[AsyncSession], keystore: Keystore, home: Path, now: datetime
) -> tuple[dict[str, str], _Credentials | None]:
    async with db_factory() as db, db.begin():
        await _check_master_key(db, keystore)
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
            return settings, _Credentials(key_id, secret, created=True)
        if (home / CREDENTIALS_FILE).exists():
            return settings, None
        return settings, await _admin_credentials(db, keystore)


async def _setting(db: AsyncSession, key: str, make: str) -> str:
    row = await db.get(Setting, key)
    if row is None:
        row = Setting(key=key, value=make)
        db.add(row)
    return row.value


async def _check_master_key(db: AsyncSession, keystore: Keystore) -> None:
    check = await db.get(Setting, KEY_CHECK)
    if check is not None:
        _must_open(keystore, bytes.fromhex(check.value), KEY_CHECK)
        return
    # The first start, or a database from before the check: any sealed secret tells.
    sealed = await db.scalar(select(AccessKey).order_by(AccessKey.created).limit(1))
    if sealed is not None:
        _must_open(keystore, sealed.secret_sealed, sealed.access_key_id)
    db.add(Setting(key=KEY_CHECK, value=keystore.seal(_KEY_CHECK_TEXT, KEY_CHECK).hex()))


def _must_open(keystore: Keystore, sealed: bytes, context: str) -> bytes:
    try:
        return keystore.open(sealed, context)
    except KeystoreError:
        raise WrongMasterKey(keystore) from None


async def _admin_credentials(db: AsyncSession, keystore: Keystore) -> _Credentials | None:
    """The admin's newest active access key, for a node that did not create it."""
    row = await db.scalar(
        select(AccessKey)
        .where(
            AccessKey.kind == "user",
            AccessKey.principal == ADMIN_USER,
            AccessKey.status == "Active",
        )
        .order_by(AccessKey.created.desc(), AccessKey.access_key_id)
        .limit(1)
    )
    if row is None:
        log.warning("the admin user has no active access key: no %s written", CREDENTIALS_FILE)
        return None
    secret = _must_open(keystore, row.secret_sealed, row.access_key_id).decode()
    return _Credentials(row.access_key_id, secret, created=False)
