"""The node's identity: its managed-node id and credential, kept in the agent home (0600)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..private import private_dir

IDENTITY_FILE = "identity.json"
CREDENTIALS_FILE = "credentials"


class IdentityError(Exception):
    pass


@dataclass(frozen=True)
class Identity:
    instance_id: str
    server_url: str
    region: str
    access_key_id: str
    secret_access_key: str

    def save(self, home: Path) -> Path:
        private_dir(home)
        path = home / IDENTITY_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2)
        os.replace(tmp, path)
        self.write_credentials_file(home / CREDENTIALS_FILE)
        return path

    def write_credentials_file(self, path: Path) -> None:
        """The node's key in AWS shared-credentials format, for the official agent's
        CustomIdentity (its DEFAULT provider reads AWS_SHARED_CREDENTIALS_FILE)."""
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                f"[default]\naws_access_key_id = {self.access_key_id}\n"
                f"aws_secret_access_key = {self.secret_access_key}\n"
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, home: Path) -> Identity:
        path = home / IDENTITY_FILE
        try:
            data = json.loads(path.read_text())
            return cls(**{k: str(data[k]) for k in cls.__dataclass_fields__})
        except FileNotFoundError:
            raise IdentityError(
                f"{path} does not exist: register first with 'hatchway agent register'"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise IdentityError(f"{path} is damaged ({exc}); register again") from None
