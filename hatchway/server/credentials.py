"""Access keys: minting, sealing at rest, and the admin key of a new server."""

from __future__ import annotations

import os
import secrets
import string
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from .keystore import Keystore
from .storage.models import AccessKey

# AWS key ids are AKIA plus 16 characters of base32.
_KEY_ID_ALPHABET = string.ascii_uppercase + "234567"


def new_access_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)[:40]


async def create_access_key(
    db: AsyncSession, keystore: Keystore, kind: str, principal: str, now: datetime
) -> tuple[str, str]:
    """Store a new key for ``principal``; returns (id, secret). The secret is shown once."""
    key_id, secret = new_access_key_id(), new_secret_key()
    db.add(
        AccessKey(
            access_key_id=key_id,
            kind=kind,
            principal=principal,
            secret_sealed=keystore.seal(secret.encode(), key_id),
            status="Active",
            created=now,
        )
    )
    return key_id, secret


def write_credentials_file(path: Path, key_id: str, secret: str, profile: str = "default") -> None:
    """AWS shared-credentials format, readable by its owner only."""
    text = f"[{profile}]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
