"""The agent's calls to the control plane: registration, health, and channel creation."""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import uuid
from typing import Any

import aiohttp
from yarl import URL

from ..aws.proxy import proxy_for
from .identity import Identity
from .signing import signed_headers

JSON_11 = "application/x-amz-json-1.1"


class ServiceError(Exception):
    """The server answered with an AWS error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.status, self.code, self.message = status, code, message


def client_ssl(ca_bundle: str | None) -> ssl.SSLContext:
    bundle = ca_bundle or os.environ.get("AWS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    context = ssl.create_default_context(cafile=bundle) if bundle else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def http_session(ca_bundle: str | None = None) -> aiohttp.ClientSession:
    """The agent's HTTP client: the CA bundle for TLS, proxies from the environment."""
    # limit=0: every session holds a WebSocket, and the default pool stops at 100.
    connector = aiohttp.TCPConnector(ssl=client_ssl(ca_bundle), limit=0)
    # trust_env: HTTPS_PROXY, HTTP_PROXY and NO_PROXY apply to HTTP calls, as for the
    # official agent; connect_websocket applies them to WebSockets.
    return aiohttp.ClientSession(connector=connector, trust_env=True)


async def _error_from(response: aiohttp.ClientResponse) -> ServiceError:
    text = await response.text()
    code, message = "", text.strip()[:500]
    try:
        body = json.loads(text)
        code = str(body.get("__type", "")).rpartition("#")[2]
        message = str(body.get("message") or body.get("Message") or message)
    except ValueError:
        match = re.search(r"<(\w+)><Message>(.*?)</Message>", text)
        if match:
            code, message = match.group(1), match.group(2)
    return ServiceError(response.status, code, message)


async def call_json(
    http: aiohttp.ClientSession,
    server_url: str,
    operation: str,
    params: dict[str, Any],
    identity: Identity | None = None,
    *,
    target_prefix: str = "AmazonSSM",
    signing_name: str = "ssm",
) -> dict[str, Any]:
    """One AWS JSON 1.1 call (AmazonSSM unless told otherwise); unsigned when there is no
    identity yet (registration)."""
    url = server_url.rstrip("/") + "/"
    body = json.dumps(params).encode()
    headers = {"Content-Type": JSON_11, "X-Amz-Target": f"{target_prefix}.{operation}"}
    if identity is not None:
        headers = signed_headers(identity, "POST", url, signing_name, body, headers)
    async with http.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            raise await _error_from(response)
        result: dict[str, Any] = await response.json(content_type=None)
        return result


async def kms_decrypt(
    http: aiohttp.ClientSession,
    kms_url: str,
    identity: Identity,
    ciphertext: bytes,
    key_id: str,
    context: dict[str, str],
) -> bytes:
    """KMS Decrypt of a session's data key, as the node (agent.md §1.12)."""
    params = {
        "CiphertextBlob": base64.b64encode(ciphertext).decode(),
        "KeyId": key_id,
        "EncryptionContext": context,
    }
    result = await call_json(
        http,
        kms_url,
        "Decrypt",
        params,
        identity,
        target_prefix="TrentService",
        signing_name="kms",
    )
    try:
        return base64.b64decode(result["Plaintext"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise ServiceError(200, "", "the KMS Decrypt answer holds no Plaintext") from None


async def create_channel(
    http: aiohttp.ClientSession, identity: Identity, kind: str, channel_id: str
) -> str:
    """POST /v1/<kind>-channel/<id>: 201 with an XML body holding the channel token."""
    url = f"{identity.server_url.rstrip('/')}/v1/{kind}-channel/{channel_id}"
    body = json.dumps({"MessageSchemaVersion": "1.0", "RequestId": str(uuid.uuid4())}).encode()
    headers = signed_headers(
        identity, "POST", url, "ssmmessages", body, {"Content-Type": "application/json"}
    )
    async with http.post(url, data=body, headers=headers) as response:
        if response.status != 201:
            raise await _error_from(response)
        match = re.search(r"<TokenValue>(.*?)</TokenValue>", await response.text(), re.DOTALL)
        if match is None:
            raise ServiceError(response.status, "", "the channel response holds no TokenValue")
        return match.group(1)


async def connect_websocket(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], **options: Any
) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket through HTTPS_PROXY/NO_PROXY as the agent's HTTP calls go."""
    proxy, proxy_headers = proxy_for(URL(url))
    return await http.ws_connect(
        url, headers=headers, proxy=proxy, proxy_headers=proxy_headers or None, **options
    )


def websocket_url(server_url: str, path: str) -> str:
    base = server_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + path
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + path
    return base + path
