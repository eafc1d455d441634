"""Hatchway's built-in KMS: symmetric keys, data keys, and encryption bound to a context.

AWS JSON 1.1 with ``X-Amz-Target: TrentService.*`` and SigV4 service ``kms`` on the same
endpoint as SSM, so boto3's kms client works against it. Session Manager needs it for
encrypted sessions: the client asks GenerateDataKey for 64 bytes bound to the session id
and target, the agent asks Decrypt for them back.

Each key is 256 random bits sealed under the server's master key. A ciphertext blob is
``HWK1`` + the key's 16-byte id + a 12-byte nonce + AES-256-GCM, whose associated data is
the encryption context in canonical JSON: a blob opens only with the same context.

Key policies: a key made without one gets AWS's default policy, which lets the account's
IAM policies decide. A custom policy that leaves out the account root allows only the
principals it names. An explicit deny in either wins.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from ..aws import arns
from ..aws.errors import AccessDeniedException, AwsError, ValidationException, _error
from ..aws.json11 import Service
from . import validation as v
from .iam.authorize import condition_context, policies_for
from .iam.policy import Decision, PolicyError, Request, evaluate, matches, validate
from .state import Call
from .storage.models import KmsAlias, KmsKey

kms: Service[Call] = Service("TrentService", "kms")

NotFoundException = _error("NotFoundException", 400)
DisabledException = _error("DisabledException", 400)
InvalidCiphertextException = _error("InvalidCiphertextException", 400)
IncorrectKeyException = _error("IncorrectKeyException", 400)
KMSInvalidStateException = _error("KMSInvalidStateException", 400)
AlreadyExistsException = _error("AlreadyExistsException", 400)
MalformedPolicyDocumentException = _error("MalformedPolicyDocumentException", 400)

BLOB_MAGIC = b"HWK1"
NONCE_BYTES = 12
MAX_PLAINTEXT = 4096
ALGORITHM = "SYMMETRIC_DEFAULT"


def default_policy(account: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }


# --- keys and where to find them ------------------------------------------------------


def _arn(call: Call, key_id: str) -> str:
    return arns.kms_key(call.region, call.account, key_id)


async def _resolve(call: Call, given: str) -> KmsKey:
    """A key by id, key ARN, alias name or alias ARN; NotFoundException otherwise."""
    key_id = given
    alias = None
    if given.startswith("alias/"):
        alias = given
    elif given.startswith("arn:aws:kms:"):
        resource = given.split(":", 5)[-1]
        if resource.startswith("alias/"):
            alias = resource
        elif resource.startswith("key/"):
            key_id = resource[len("key/") :]
    async with call.state.db() as db:
        if alias is not None:
            row = await db.get(KmsAlias, alias)
            key_id = row.key_id if row is not None else ""
        key = await db.get(KmsKey, key_id) if key_id else None
    if key is None:
        raise NotFoundException(f"Invalid keyId {given}")
    return key


def _principal_matches(principal: Any, caller_arn: str, account: str) -> str | None:
    """ "caller" if the statement names the caller, "root" if it names the account (which
    hands the decision to IAM), None if neither."""
    values: list[str] = []
    if principal == "*":
        values = ["*"]
    elif isinstance(principal, Mapping):
        aws = principal.get("AWS", [])
        values = [aws] if isinstance(aws, str) else [str(a) for a in aws]
    for value in values:
        if value in (f"arn:aws:iam::{account}:root", account):
            return "root"
        if value == "*" or matches(value, caller_arn):
            return "caller"
    return None


def _key_policy(key: KmsKey, call: Call, action: str) -> tuple[bool, bool, bool]:
    """(explicitly denied, delegated to IAM, allowed directly) under the key policy."""
    principal = call.require_principal()
    denied = delegated = allowed = False
    statements = key.policy.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    context = condition_context(principal, {})
    for statement in statements:
        who = _principal_matches(statement.get("Principal"), principal.arn, call.account)
        if who is None:
            continue
        rest = {k: v for k, v in statement.items() if k not in ("Principal", "Sid")}
        request = Request(action, _arn(call, key.key_id), context)
        if evaluate([{"Statement": [rest]}], request) is Decision.IMPLICIT_DENY:
            continue
        if statement.get("Effect") == "Deny":
            denied = True
        elif who == "root":
            delegated = True
        else:
            allowed = True
    return denied, delegated, allowed


async def _authorize(call: Call, key: KmsKey, action: str) -> None:
    principal = call.require_principal()
    resource = _arn(call, key.key_id)
    denied, delegated, allowed = _key_policy(key, call, action)
    iam = evaluate(
        await policies_for(call.state.db, principal),
        Request(action, resource, condition_context(principal, {})),
    )
    refused = (
        f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource}"
    )
    if denied or iam is Decision.DENY:
        raise AccessDeniedException(refused + " with an explicit deny")
    if allowed or (delegated and iam is Decision.ALLOW):
        return
    if not delegated:
        raise AccessDeniedException(
            refused + f" because no resource-based policy allows the {action} action"
        )
    raise AccessDeniedException(refused)


def _usable(call: Call, key: KmsKey) -> None:
    if key.state == "Disabled":
        raise DisabledException(f"{_arn(call, key.key_id)} is disabled.")
    if key.state == "PendingDeletion":
        raise KMSInvalidStateException(f"{_arn(call, key.key_id)} is pending deletion.")


def _metadata(call: Call, key: KmsKey) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "AWSAccountId": call.account,
        "KeyId": key.key_id,
        "Arn": _arn(call, key.key_id),
        "CreationDate": key.created.timestamp(),
        "Enabled": key.state == "Enabled",
        "Description": key.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": key.state,
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": ALGORITHM,
        "KeySpec": ALGORITHM,
        "EncryptionAlgorithms": [ALGORITHM],
        "MultiRegion": False,
    }
    if key.deletion_date is not None:
        meta["DeletionDate"] = key.deletion_date.timestamp()
    return meta


# --- blobs ------------------------------------------------------------------------------


def _context(params: dict[str, Any]) -> bytes:
    context = params.get("EncryptionContext") or {}
    if not isinstance(context, dict) or not all(
        isinstance(k, str) and isinstance(val, str) for k, val in context.items()
    ):
        raise ValidationException("EncryptionContext must map strings to strings")
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


def _blob(params: dict[str, Any], name: str) -> bytes:
    text = params.get(name)
    if not isinstance(text, str) or not text:
        raise ValidationException(f"{name} is required")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationException(f"{name} is not valid base64") from None


def _material(call: Call, key: KmsKey) -> bytes:
    return call.state.keystore.open(key.material_sealed, f"kms-key:{key.key_id}")


def _seal(call: Call, key: KmsKey, plaintext: bytes, context: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_material(call, key)).encrypt(nonce, plaintext, context)
    return BLOB_MAGIC + uuid.UUID(key.key_id).bytes + nonce + sealed


async def _encrypt_response(
    call: Call, key: KmsKey, plaintext: bytes, params: dict[str, Any]
) -> dict[str, Any]:
    blob = _seal(call, key, plaintext, _context(params))
    return {
        "CiphertextBlob": base64.b64encode(blob).decode(),
        "KeyId": _arn(call, key.key_id),
        "EncryptionAlgorithm": ALGORITHM,
    }


# --- operations -------------------------------------------------------------------------


@kms.operation("CreateKey")
async def create_key(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    await call.authorize("kms:CreateKey", "*")
    description = v.string(params, "Description", max_len=8192) or ""
    policy_text = v.string(params, "Policy", max_len=32768)
    policy = default_policy(call.account)
    if policy_text:
        try:
            policy = json.loads(policy_text)
            validate(policy)
        except (ValueError, PolicyError) as exc:
            raise MalformedPolicyDocumentException(f"The key policy is not valid: {exc}") from None
    key_id = str(uuid.uuid4())
    material = os.urandom(32)
    key = KmsKey(
        key_id=key_id,
        description=description,
        state="Enabled",
        created=call.now,
        policy=policy,
        material_sealed=call.state.keystore.seal(material, f"kms-key:{key_id}"),
    )
    async with call.state.db() as db, db.begin():
        db.add(key)
    return {"KeyMetadata": _metadata(call, key)}


@kms.operation("DescribeKey")
async def describe_key(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    key = await _resolve(call, v.string(params, "KeyId", required=True, min_len=1) or "")
    await _authorize(call, key, "kms:DescribeKey")
    return {"KeyMetadata": _metadata(call, key)}


@kms.operation("ListKeys")
async def list_keys(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    await call.authorize("kms:ListKeys", "*")
    limit = v.integer(params, "Limit", minimum=1, maximum=1000) or 100
    async with call.state.db() as db:
        keys = list(await db.scalars(select(KmsKey).order_by(KmsKey.key_id)))
    page, marker = call.state.paginator.page(
        "ListKeys", keys, lambda k: k.key_id, limit, v.string(params, "Marker")
    )
    result: dict[str, Any] = {
        "Keys": [{"KeyId": k.key_id, "KeyArn": _arn(call, k.key_id)} for k in page],
        "Truncated": marker is not None,
    }
    if marker is not None:
        result["NextMarker"] = marker
    return result


@kms.operation("CreateAlias")
async def create_alias(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = v.string(params, "AliasName", required=True, min_len=7, max_len=256) or ""
    if not name.startswith("alias/") or name.startswith("alias/aws/"):
        raise ValidationException(f'Alias must start with the prefix "alias/": {name}')
    key = await _resolve(call, v.string(params, "TargetKeyId", required=True, min_len=1) or "")
    await _authorize(call, key, "kms:CreateAlias")
    async with call.state.db() as db, db.begin():
        if await db.get(KmsAlias, name) is not None:
            raise AlreadyExistsException(
                f"An alias with the name {arns.kms_alias(call.region, call.account, name)} "
                "already exists"
            )
        db.add(KmsAlias(name=name, key_id=key.key_id, created=call.now))
    return {}


@kms.operation("ListAliases")
async def list_aliases(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    await call.authorize("kms:ListAliases", "*")
    limit = v.integer(params, "Limit", minimum=1, maximum=100) or 50
    async with call.state.db() as db:
        aliases = list(await db.scalars(select(KmsAlias).order_by(KmsAlias.name)))
    wanted = v.string(params, "KeyId")
    if wanted:
        key = await _resolve(call, wanted)
        aliases = [a for a in aliases if a.key_id == key.key_id]
    page, marker = call.state.paginator.page(
        "ListAliases", aliases, lambda a: a.name, limit, v.string(params, "Marker")
    )
    result: dict[str, Any] = {
        "Aliases": [
            {
                "AliasName": a.name,
                "AliasArn": arns.kms_alias(call.region, call.account, a.name),
                "TargetKeyId": a.key_id,
                "CreationDate": a.created.timestamp(),
            }
            for a in page
        ],
        "Truncated": marker is not None,
    }
    if marker is not None:
        result["NextMarker"] = marker
    return result


async def _set_state(call: Call, params: dict[str, Any], action: str, state: str) -> None:
    key = await _resolve(call, v.string(params, "KeyId", required=True, min_len=1) or "")
    await _authorize(call, key, action)
    if key.state == "PendingDeletion":
        raise KMSInvalidStateException(f"{_arn(call, key.key_id)} is pending deletion.")
    async with call.state.db() as db, db.begin():
        row = await db.get(KmsKey, key.key_id)
        assert row is not None
        row.state = state


@kms.operation("EnableKey")
async def enable_key(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    await _set_state(call, params, "kms:EnableKey", "Enabled")
    return {}


@kms.operation("DisableKey")
async def disable_key(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    await _set_state(call, params, "kms:DisableKey", "Disabled")
    return {}


@kms.operation("ScheduleKeyDeletion")
async def schedule_key_deletion(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    key = await _resolve(call, v.string(params, "KeyId", required=True, min_len=1) or "")
    await _authorize(call, key, "kms:ScheduleKeyDeletion")
    days = v.integer(params, "PendingWindowInDays", minimum=7, maximum=30) or 30
    when = call.now + timedelta(days=days)
    async with call.state.db() as db, db.begin():
        row = await db.get(KmsKey, key.key_id)
        assert row is not None
        row.state, row.deletion_date = "PendingDeletion", when
    return {
        "KeyId": _arn(call, key.key_id),
        "DeletionDate": when.timestamp(),
        "KeyState": "PendingDeletion",
        "PendingWindowInDays": days,
    }


@kms.operation("Encrypt")
async def encrypt(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    key = await _resolve(call, v.string(params, "KeyId", required=True, min_len=1) or "")
    await _authorize(call, key, "kms:Encrypt")
    _usable(call, key)
    plaintext = _blob(params, "Plaintext")
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValidationException(f"Plaintext is longer than {MAX_PLAINTEXT} bytes")
    return await _encrypt_response(call, key, plaintext, params)


@kms.operation("GenerateDataKey")
async def generate_data_key(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    key = await _resolve(call, v.string(params, "KeyId", required=True, min_len=1) or "")
    await _authorize(call, key, "kms:GenerateDataKey")
    _usable(call, key)
    size = v.integer(params, "NumberOfBytes", minimum=1, maximum=1024)
    spec = v.string(params, "KeySpec", choices=("AES_256", "AES_128"))
    if (size is None) == (spec is None):
        raise ValidationException("Specify exactly one of NumberOfBytes and KeySpec")
    plaintext = os.urandom(size if size is not None else (32 if spec == "AES_256" else 16))
    response = await _encrypt_response(call, key, plaintext, params)
    response["Plaintext"] = base64.b64encode(plaintext).decode()
    return response


@kms.operation("Decrypt")
async def decrypt(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    blob = _blob(params, "CiphertextBlob")
    header = len(BLOB_MAGIC) + 16 + NONCE_BYTES
    if len(blob) < header + 16 or not blob.startswith(BLOB_MAGIC):
        raise InvalidCiphertextException("The ciphertext is not a Hatchway KMS ciphertext")
    key_id = str(uuid.UUID(bytes=blob[len(BLOB_MAGIC) : len(BLOB_MAGIC) + 16]))
    key = await _resolve(call, key_id)
    wanted = v.string(params, "KeyId")
    if wanted and (await _resolve(call, wanted)).key_id != key.key_id:
        raise IncorrectKeyException(
            "The key ID in the request does not identify a CMK that can perform this operation."
        )
    await _authorize(call, key, "kms:Decrypt")
    _usable(call, key)
    nonce = blob[len(BLOB_MAGIC) + 16 : header]
    try:
        plaintext = AESGCM(_material(call, key)).decrypt(nonce, blob[header:], _context(params))
    except InvalidTag:
        raise InvalidCiphertextException(
            "The ciphertext or its encryption context does not match"
        ) from None
    return {
        "KeyId": _arn(call, key.key_id),
        "Plaintext": base64.b64encode(plaintext).decode(),
        "EncryptionAlgorithm": ALGORITHM,
    }


# --- for doctor -------------------------------------------------------------------------


async def diagnostic_blob(
    call: Call, given: str, context: Mapping[str, str]
) -> tuple[str, bytes, AwsError | None]:
    """What a client's GenerateDataKey would give for a session: the key's ARN and a blob
    of 64 random bytes under it, bound to ``context``, for the agent to Decrypt as in a
    session. Raises what GenerateDataKey would for a missing or disabled key; whether the
    caller may GenerateDataKey comes back as the error it would get (or None), since the
    agent's side is worth checking either way."""
    key = await _resolve(call, given)
    _usable(call, key)
    refused: AwsError | None = None
    try:
        await _authorize(call, key, "kms:GenerateDataKey")
    except AccessDeniedException as exc:
        refused = exc
    bound = _context({"EncryptionContext": dict(context)})
    return _arn(call, key.key_id), _seal(call, key, os.urandom(64), bound), refused
