"""SigV4 signing of the agent's own requests, with botocore's signer."""

from __future__ import annotations

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .identity import Identity


def signed_headers(
    identity: Identity,
    method: str,
    url: str,
    service: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    credentials = Credentials(identity.access_key_id, identity.secret_access_key)
    SigV4Auth(credentials, service, identity.region).add_auth(request)
    return dict(request.headers.items())
