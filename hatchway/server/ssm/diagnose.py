"""HatchwayDiagnoseInstance, a Hatchway extension for ``hatchway doctor``: what would stop
a session on a node, checked where it would happen. The server checks what it decides
(the RunAs name, the KMS key); the agent, asked over its control channel, checks what only
it can see (the RunAs user exists, KMS answers its Decrypt, where its logs are).

It needs what StartSession needs (ssm:StartSession on the node and the document), and
tells no more than a session attempt would.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from .. import documents as docs
from ..mgs import MessageGateway
from ..session_runtime import INVALID_RUN_AS, valid_run_as
from ..state import Call
from . import ssm
from .errors import TargetNotConnected
from .nodes import is_online
from .sessions import session_start_allowed


def _result(check_id: str, status: str, evidence: str, cause: str | None = None) -> dict[str, Any]:
    return {"id": check_id, "status": status, "cause": cause, "evidence": evidence}


@ssm.operation("HatchwayDiagnoseInstance")
async def diagnose_instance(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    from ..kms import (
        DisabledException,
        KMSInvalidStateException,
        NotFoundException,
        diagnostic_blob,
    )

    target, document, node, principal = await session_start_allowed(call, params)
    if not is_online(call, node):
        raise TargetNotConnected(f"{target} is not connected.")
    values = docs.resolve_parameters(document.parsed, {})
    preferences = docs.session_preferences(docs.substitute(document.parsed, values))

    results: list[dict[str, Any]] = []
    request: dict[str, Any] = {"RunAsUser": None, "Kms": None}
    if preferences.run_as_enabled:
        tagged = principal.tags.get("SSMSessionRunAs", "")
        name = tagged or preferences.run_as_default_user
        source = "your SSMSessionRunAs tag" if tagged else f"runAsDefaultUser of {document.name}"
        if valid_run_as(name):
            results.append(_result("runas.name", "pass", f"RunAs user {name!r} ({source})"))
            request["RunAsUser"] = name
        else:
            shown = repr(name) if name else "no name"
            results.append(
                _result(
                    "runas.name",
                    "fail",
                    f"{INVALID_RUN_AS}: {document.name} enables RunAs, and {source} gives {shown}",
                    "runas.invalid_username",
                )
            )
    if preferences.kms_key_id:
        given = preferences.kms_key_id
        context = {
            "aws:ssm:SessionId": f"{principal.name}-doctor{secrets.token_hex(4)}",
            "aws:ssm:TargetId": target,
        }
        try:
            arn, blob, refused = await diagnostic_blob(call, given, context)
        except NotFoundException as exc:
            results.append(_result("kms.key", "fail", exc.message, "kms.key_not_found"))
        except (DisabledException, KMSInvalidStateException) as exc:
            results.append(_result("kms.key", "fail", exc.message, "kms.key_disabled"))
        else:
            results.append(_result("kms.key", "pass", f"kmsKeyId {given} is {arn}, enabled"))
            if refused is not None:
                results.append(_result("kms.client", "fail", refused.message, "kms.access_denied"))
            else:
                results.append(_result("kms.client", "pass", f"you may GenerateDataKey with {arn}"))
            request["Kms"] = {
                "KeyId": arn,
                "CiphertextBlob": base64.b64encode(blob).decode(),
                "EncryptionContext": context,
            }
    gateway = call.state.services.get(MessageGateway)
    wait = call.state.config.agent_answer_seconds
    answer = await gateway.diagnose(target, request, wait)
    if answer is None:
        results.append(
            _result(
                "agent.answer",
                "warn",
                f"{target} did not answer within {wait:g} s (only "
                "Hatchway's agent answers diagnostics; the official agent does not)",
            )
        )
    else:
        results.extend(answer)
    return {"Results": results}
