"""The agent's side of ``hatchway doctor``: asked over the control channel
(``hatchway_diagnose``), it checks what only the node can see and answers with results in
doctor's shape (id, status, cause, evidence): the RunAs user exists, KMS answers its
Decrypt of a probe data key, and where its logs are."""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import pwd
from pathlib import Path
from typing import Any

import aiohttp

from .api import ServiceError, kms_decrypt
from .identity import Identity

KMS_TIMEOUT = 5.0
_KMS_CAUSES = {
    "AccessDeniedException": "kms.access_denied",
    "NotFoundException": "kms.key_not_found",
    "DisabledException": "kms.key_disabled",
    "KMSInvalidStateException": "kms.key_disabled",
}


def _result(check_id: str, status: str, evidence: str, cause: str | None = None) -> dict[str, Any]:
    return {"id": check_id, "status": status, "cause": cause, "evidence": evidence}


def check_logs(home: Path) -> dict[str, Any]:
    folder = home / "logs"
    log_file, errors = folder / "agent.log", folder / "errors.log"
    if log_file.exists():
        return _result(
            "agent.logs", "pass", f"the agent logs to {log_file} (errors also to {errors})"
        )
    return _result(
        "agent.logs",
        "warn",
        f"no {log_file} yet: `hatchway agent run --home {home}` writes it (an agent run "
        "any other way logs only to its stderr)",
    )


def check_run_as(name: str) -> dict[str, Any]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return _result(
            "agent.runas",
            "fail",
            f"Unable to start command: failed to start pty since RunAs user {name} does not exist",
            "runas.user_missing",
        )
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        return _result(
            "agent.runas",
            "warn",
            f"{name} exists (uid {entry.pw_uid}), but the agent runs as uid {os.geteuid()}, "
            "not root, so sessions run as the agent's own user",
        )
    return _result("agent.runas", "pass", f"{name} exists (uid {entry.pw_uid}, {entry.pw_shell})")


async def check_kms(
    http: aiohttp.ClientSession, kms_url: str, identity: Identity, probe: dict[str, Any]
) -> dict[str, Any]:
    try:
        blob = base64.b64decode(str(probe["CiphertextBlob"]), validate=True)
        key_id = str(probe["KeyId"])
        context = {str(k): str(v) for k, v in dict(probe["EncryptionContext"]).items()}
    except (KeyError, TypeError, ValueError, binascii.Error):
        return _result("agent.kms", "warn", "the server's KMS probe was malformed")
    try:
        async with asyncio.timeout(KMS_TIMEOUT):
            await kms_decrypt(http, kms_url, identity, blob, key_id, context)
    except ServiceError as exc:
        cause = _KMS_CAUSES.get(exc.code or "")
        words = f"{exc.code}: {exc.message}" if exc.code else exc.message
        return _result(
            "agent.kms", "fail", f"KMS Decrypt at {kms_url}: {words}", cause or "kms.unreachable"
        )
    except TimeoutError:
        return _result(
            "agent.kms",
            "fail",
            f"KMS at {kms_url} did not answer within {KMS_TIMEOUT:.0f} s",
            "kms.unreachable",
        )
    except (aiohttp.ClientError, OSError) as exc:
        return _result(
            "agent.kms", "fail", f"KMS at {kms_url} is unreachable ({exc})", "kms.unreachable"
        )
    return _result("agent.kms", "pass", f"KMS Decrypt at {kms_url} with {key_id} works")


async def diagnose(
    request: dict[str, Any],
    *,
    home: Path,
    identity: Identity,
    http: aiohttp.ClientSession,
    kms_url: str,
) -> list[dict[str, Any]]:
    results = []
    run_as = request.get("RunAsUser")
    if isinstance(run_as, str) and run_as:
        results.append(check_run_as(run_as))
    probe = request.get("Kms")
    if isinstance(probe, dict):
        results.append(await check_kms(http, kms_url, identity, probe))
    results.append(check_logs(home))
    return results
