"""The server's master key, and sealing of secrets at rest under it.

The key lives in ``DIR/master.key`` (mode 0600), or in the file ``--master-key`` names,
apart from the database, so a copy of the database alone reveals no secret access key and
no KMS key material. Every node of a cluster reads the same key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..private import private_files

KEY_FILE = "master.key"
KEY_BYTES = 32
_NONCE = 12


class KeystoreError(Exception):
    pass


class Keystore:
    def __init__(self, key: bytes, path: Path | None = None) -> None:
        if len(key) != KEY_BYTES:
            raise KeystoreError(f"the master key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        # What the nodes of a cluster prove to each other on their links (cluster/links.py):
        # derived, so the master key itself never serves two purposes.
        self.cluster_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"hatchway cluster links v1"
        ).derive(key)
        # The file the key came from, for messages that must tell the operator which key.
        self.path = path

    @classmethod
    def load_or_create(cls, home: Path, key_file: Path | None = None) -> Keystore:
        """The key named by ``--master-key`` (``key_file``), which must exist: a cluster's
        nodes share one key, and a new one made where the operator did not expect would
        seal secrets no other node can open. Without it, ``DIR/master.key``, made on the
        first start."""
        if key_file is not None:
            return cls._load(key_file)
        path = home / KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            private_files(path)  # in the home, whose files are all its owner's only
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(KEY_BYTES))
        return cls._load(path)

    @classmethod
    def _load(cls, path: Path) -> Keystore:
        try:
            mode = path.stat().st_mode
            key = path.read_bytes()
        except FileNotFoundError:
            raise KeystoreError(
                f"the master key {path} does not exist: copy there the key the other nodes "
                f"use, or make one for a new database: (umask 077; head -c 32 /dev/urandom "
                f"> {path})"
            ) from None
        except OSError as exc:
            raise KeystoreError(f"cannot read the master key {path}: {exc.strerror}") from None
        if mode & 0o007:
            # Outside the home nothing closes it for us; a key others can read is no secret.
            raise KeystoreError(
                f"the master key {path} is open to other users (mode "
                f"{stat.S_IMODE(mode):04o}): chmod o-rwx {path}"
            )
        if len(key) != KEY_BYTES:
            raise KeystoreError(
                f"the master key {path} is damaged: it holds {len(key)} bytes, not {KEY_BYTES}"
            )
        return cls(key, path)

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
