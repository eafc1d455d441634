"""The server's master key, and sealing of secrets at rest under it.

The key lives in ``DIR/master.key`` (mode 0600), apart from the database, so a copy of
the database alone reveals no secret access key and no KMS key material.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE = "master.key"
_NONCE = 12


class KeystoreError(Exception):
    pass


class Keystore:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise KeystoreError("the master key must be 32 bytes")
        self._aead = AESGCM(key)
        # What the nodes of a cluster prove to each other on their links (cluster/links.py):
        # derived, so the master key itself never serves two purposes.
        self.cluster_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"hatchway cluster links v1"
        ).derive(key)

    @classmethod
    def load_or_create(cls, home: Path) -> Keystore:
        path = home / KEY_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
        key = path.read_bytes()
        if len(key) != 32:
            raise KeystoreError(f"{path} is damaged: it holds {len(key)} bytes, not 32")
        return cls(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt, binding the result to ``context`` (say, the access key id) so a sealed
        value cannot be moved to another row."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], context.encode())
        except (InvalidTag, ValueError):
            raise KeystoreError(f"sealed value for {context} does not open") from None
