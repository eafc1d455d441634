"""The IAM administration API: users, access keys, inline policies, tags, console passwords.

It speaks IAM's own query protocol (form-encoded requests, XML responses; SigV4 service
``iam``), so ``aws iam ... --endpoint-url`` and boto3's iam client work against it as well
as ``hatchway iam``. Every call is authorized against the caller's policies like any other:
the admin user may do everything, other users what their policies grant.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import delete, func, select

from ...aws import arns
from ...aws.errors import AwsError, _error
from ...aws.query import InvalidAction, QueryRequest
from ..credentials import create_access_key
from ..state import Call
from ..storage.models import AccessKey, Policy, Role, User
from .policy import PolicyError, validate

NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"

NoSuchEntity = _error("NoSuchEntity", 404)
EntityAlreadyExists = _error("EntityAlreadyExists", 409)
LimitExceeded = _error("LimitExceeded", 409)
MalformedPolicyDocument = _error("MalformedPolicyDocument", 400)
ValidationError = _error("ValidationError", 400)
PasswordPolicyViolation = _error("PasswordPolicyViolation", 400)

MAX_KEYS_PER_USER = 2  # IAM's quota
MAX_TAGS = 50
MIN_PASSWORD = 8
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+=,.@_-")

Handler = Callable[[Call, QueryRequest], Awaitable[dict[str, Any]]]
ACTIONS: dict[str, Handler] = {}


def action(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ACTIONS[name] = fn
        return fn

    return register


async def dispatch(call: Call, request: QueryRequest) -> dict[str, Any]:
    handler = ACTIONS.get(request.action)
    if handler is None:
        raise InvalidAction(f"Could not find operation {request.action} for version 2010-05-08")
    return await handler(call, request)


# --- parameters -----------------------------------------------------------------------


def _name(request: QueryRequest, key: str, *, required: bool = True, max_len: int = 64) -> str:
    value = request.params.get(key, "")
    if not value:
        if required:
            raise ValidationError(
                f"1 validation error detected: Value null at '{key}' failed "
                "to satisfy constraint: Member must not be null"
            )
        return ""
    if len(value) > max_len or not set(value) <= NAME_CHARS:
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at '{key}' failed to satisfy "
            f"constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and "
            f"have length at most {max_len}"
        )
    return value


def _tags(request: QueryRequest) -> dict[str, str]:
    tags: dict[str, str] = {}
    for entry in request.members("Tags"):
        if not isinstance(entry, dict) or not entry.get("Key"):
            raise ValidationError("Each tag needs a Key")
        tags[entry["Key"]] = entry.get("Value", "")
    if len(tags) > MAX_TAGS:
        raise LimitExceeded(f"Cannot exceed quota for TagsPerUser: {MAX_TAGS}")
    return tags


def _policy_document(request: QueryRequest) -> dict[str, Any]:
    text = request.params.get("PolicyDocument", "")
    if not text:
        raise ValidationError("PolicyDocument is required")
    try:
        document = json.loads(text)
        validate(document)
    except (ValueError, PolicyError) as exc:
        raise MalformedPolicyDocument(f"The policy document is not valid: {exc}") from None
    return dict(document)


def _user_id(account: str, name: str) -> str:
    """A stable, AWS-shaped unique id (AIDA...) for a user name in this account."""
    digest = hashlib.sha256(f"{account}/{name}".encode()).digest()
    return "AIDA" + base64.b32encode(digest).decode()[:17]


def _user_view(call: Call, user: User) -> dict[str, Any]:
    view: dict[str, Any] = {
        "Path": "/",
        "UserName": user.name,
        "UserId": _user_id(call.account, user.name),
        "Arn": arns.user(call.account, user.name),
        "CreateDate": user.created,
    }
    if user.tags:
        view["Tags"] = [{"Key": key, "Value": value} for key, value in user.tags.items()]
    return view


async def _user(call: Call, db: Any, name: str) -> User:
    user = await db.get(User, name)
    if user is None:
        raise NoSuchEntity(f"The user with name {name} cannot be found.")
    return user


def hash_password(password: str) -> str:
    """scrypt with a random salt, in one self-describing string."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return "scrypt$16384$8$1$" + base64.b64encode(salt).decode() + "$" + digest.hex()


def check_password(password: str, stored: str | None) -> bool:
    """Constant-time comparison against a hash_password() string."""
    try:
        scheme, n, r, p, salt, expected = (stored or "").split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), expected)


# --- users ----------------------------------------------------------------------------


@action("CreateUser")
async def create_user(call: Call, request: QueryRequest) -> dict[str, Any]:
    name = _name(request, "UserName")
    tags = _tags(request)
    await call.authorize("iam:CreateUser", arns.user(call.account, name))
    async with call.state.db() as db, db.begin():
        if await db.get(User, name) is not None:
            raise EntityAlreadyExists(f"User with name {name} already exists.")
        user = User(name=name, created=call.now, tags=tags)
        db.add(user)
    return {"User": _user_view(call, user)}


@action("ListUsers")
async def list_users(call: Call, request: QueryRequest) -> dict[str, Any]:
    await call.authorize("iam:ListUsers", arns.user(call.account, "*"))
    try:
        max_items = int(request.params.get("MaxItems", "100"))
    except ValueError:
        raise ValidationError("MaxItems must be a number") from None
    if not 1 <= max_items <= 1000:
        raise ValidationError("MaxItems must be between 1 and 1000")
    async with call.state.db() as db:
        users = list(await db.scalars(select(User).order_by(User.name)))
    page, marker = call.state.paginator.page(
        "ListUsers", users, lambda u: u.name, max_items, request.params.get("Marker") or None
    )
    result: dict[str, Any] = {
        "Users": [_user_view(call, user) for user in page],
        "IsTruncated": marker is not None,
    }
    if marker is not None:
        result["Marker"] = marker
    return result


@action("TagUser")
async def tag_user(call: Call, request: QueryRequest) -> dict[str, Any]:
    name = _name(request, "UserName")
    tags = _tags(request)
    if not tags:
        raise ValidationError("Tags must name at least one tag")
    await call.authorize("iam:TagUser", arns.user(call.account, name))
    async with call.state.db() as db, db.begin():
        user = await _user(call, db, name)
        merged = {**user.tags, **tags}
        if len(merged) > MAX_TAGS:
            raise LimitExceeded(f"Cannot exceed quota for TagsPerUser: {MAX_TAGS}")
        user.tags = merged
    return {}


# --- access keys ----------------------------------------------------------------------


def _caller_or(call: Call, request: QueryRequest) -> str:
    """UserName, or the calling user's own name as IAM does when it is left out."""
    return _name(request, "UserName", required=False) or call.require_principal().name


@action("CreateAccessKey")
async def create_key(call: Call, request: QueryRequest) -> dict[str, Any]:
    name = _caller_or(call, request)
    await call.authorize("iam:CreateAccessKey", arns.user(call.account, name))
    async with call.state.db() as db, db.begin():
        await _user(call, db, name)
        count = await db.scalar(
            select(func.count()).where(AccessKey.kind == "user", AccessKey.principal == name)
        )
        if (count or 0) >= MAX_KEYS_PER_USER:
            raise LimitExceeded(f"Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}")
        key_id, secret = await create_access_key(db, call.state.keystore, "user", name, call.now)
    return {
        "AccessKey": {
            "UserName": name,
            "AccessKeyId": key_id,
            "Status": "Active",
            "SecretAccessKey": secret,
            "CreateDate": call.now,
        }
    }


@action("DeleteAccessKey")
async def delete_key(call: Call, request: QueryRequest) -> dict[str, Any]:
    name = _caller_or(call, request)
    key_id = _name(request, "AccessKeyId", max_len=128)
    await call.authorize("iam:DeleteAccessKey", arns.user(call.account, name))
    async with call.state.db() as db, db.begin():
        result = await db.execute(
            delete(AccessKey).where(
                AccessKey.access_key_id == key_id,
                AccessKey.kind == "user",
                AccessKey.principal == name,
            )
        )
        if result.rowcount != 1:
            raise NoSuchEntity(f"The Access Key with id {key_id} cannot be found.")
    return {}


# --- inline policies ------------------------------------------------------------------


async def _put_policy(call: Call, kind: str, name: str, request: QueryRequest) -> None:
    policy_name = _name(request, "PolicyName", max_len=128)
    document = _policy_document(request)
    async with call.state.db() as db, db.begin():
        if kind == "user":
            await _user(call, db, name)
        elif await db.get(Role, name) is None:
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
        existing = await db.get(Policy, (kind, name, policy_name))
        if existing is None:
            db.add(
                Policy(
                    principal_kind=kind,
                    principal_name=name,
                    policy_name=policy_name,
                    document=document,
                )
            )
        else:
            existing.document = document


@action("PutUserPolicy")
async def put_user_policy(call: Call, request: QueryRequest) -> dict[str, Any]:
    name = _name(request, "UserName")
    await call.authorize("iam:PutUserPolicy", arns.user(call.account, name))
    await _put_policy(call, "user", name, request)
    return {}


@action("PutRolePolicy")
async def put_role_policy(call: Call, request: QueryRequest) -> dict[str, Any]:
    name = _name(request, "RoleName")
    await call.authorize("iam:PutRolePolicy", arns.role(call.account, name))
    await _put_policy(call, "role", name, request)
    return {}


# --- console passwords (IAM's login profiles) -----------------------------------------


async def _set_password(call: Call, request: QueryRequest, *, create: bool) -> User:
    name = _name(request, "UserName")
    password = request.params.get("Password", "")
    if len(password) < MIN_PASSWORD:
        raise PasswordPolicyViolation(f"Password should have a minimum length of {MIN_PASSWORD}")
    operation = "CreateLoginProfile" if create else "UpdateLoginProfile"
    await call.authorize(f"iam:{operation}", arns.user(call.account, name))
    # scrypt takes tens of milliseconds: on a worker thread, not the loop that carries sessions.
    hashed = await asyncio.to_thread(hash_password, password)
    async with call.state.db() as db, db.begin():
        user = await _user(call, db, name)
        if create and user.console_password:
            raise EntityAlreadyExists(f"Login Profile for user {name} already exists.")
        if not create and not user.console_password:
            raise NoSuchEntity(f"Login Profile for User {name} cannot be found.")
        user.console_password = hashed
    return user


@action("CreateLoginProfile")
async def create_login_profile(call: Call, request: QueryRequest) -> dict[str, Any]:
    user = await _set_password(call, request, create=True)
    return {
        "LoginProfile": {
            "UserName": user.name,
            "CreateDate": call.now,
            "PasswordResetRequired": False,
        }
    }


@action("UpdateLoginProfile")
async def update_login_profile(call: Call, request: QueryRequest) -> dict[str, Any]:
    await _set_password(call, request, create=False)
    return {}


def query_error_code(error: AwsError) -> AwsError:
    """IAM names a refusal AccessDenied, where the JSON services say AccessDeniedException."""
    if error.code == "AccessDeniedException":
        return _error("AccessDenied", 403)(error.message)
    return error
