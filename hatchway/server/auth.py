"""SigV4 authentication of requests against the stored access keys."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from aiohttp import web

from ..aws import sigv4
from ..aws.errors import UNKNOWN_KEY_MESSAGE, UnrecognizedClientException
from .iam.principals import Principal, PrincipalKind
from .keystore import KeystoreError
from .state import ServerState
from .storage.models import AccessKey, ManagedInstance, User


def signed_request(request: web.Request, body: bytes) -> sigv4.Request:
    path, _, query = request.raw_path.partition("?")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
    return sigv4.Request(request.method, path, query, headers, body)


async def authenticate(
    state: ServerState,
    request: web.Request,
    body: bytes,
    service: str | Collection[str],
    now: datetime,
) -> Principal:
    """Who signed this request? Raises the AWS error a real endpoint would give."""
    signed = signed_request(request, body)
    auth = sigv4.parse(signed)
    async with state.db() as db:
        key = await db.get(AccessKey, auth.access_key_id)
        if key is None or key.status != "Active" or auth.security_token:
            # Hatchway issues no session tokens, so a request that carries one was signed
            # with credentials from somewhere else.
            raise UnrecognizedClientException(UNKNOWN_KEY_MESSAGE)
        try:
            secret = state.keystore.open(key.secret_sealed, key.access_key_id).decode()
        except KeystoreError:
            raise UnrecognizedClientException(UNKNOWN_KEY_MESSAGE) from None
        sigv4.verify(signed, auth, secret, now=now, region=state.region, service=service)
        if key.kind == PrincipalKind.NODE:
            node = await db.get(ManagedInstance, key.principal)
            if node is None or node.deregistered:
                raise UnrecognizedClientException(UNKNOWN_KEY_MESSAGE)
            return Principal(
                PrincipalKind.NODE,
                node.instance_id,
                state.account,
                key.access_key_id,
                role=node.iam_role,
                tags={k: str(v) for k, v in node.tags.items()},
            )
        user = await db.get(User, key.principal)
        tags = {k: str(v) for k, v in user.tags.items()} if user else {}
        return Principal(
            PrincipalKind.USER, key.principal, state.account, key.access_key_id, tags=tags
        )
