"""``hatchway agent register``: trade an activation for a managed-node identity."""

from __future__ import annotations

import hashlib
import platform
import socket

from .api import call_json, http_session
from .identity import Identity


def fingerprint() -> str:
    """A stable fingerprint of this machine, reported as the official agent does."""
    seed = f"{socket.getfqdn()}|{platform.machine()}|{_machine_id()}"
    return hashlib.sha256(seed.encode()).hexdigest()


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            continue
    return ""


async def register(
    server_url: str,
    activation_id: str,
    activation_code: str,
    region: str,
    ca_bundle: str | None = None,
) -> Identity:
    async with http_session(ca_bundle) as http:
        result = await call_json(
            http,
            server_url,
            "RegisterManagedInstance",
            {
                "ActivationId": activation_id,
                "ActivationCode": activation_code,
                "PublicKey": "",
                "PublicKeyType": "Rsa",
                "Fingerprint": fingerprint(),
            },
        )
    return Identity(
        instance_id=result["InstanceId"],
        server_url=server_url,
        region=str(result.get("Region") or region),  # the server says which region it signs for
        access_key_id=result["AccessKeyId"],
        secret_access_key=result["SecretAccessKey"],
    )
