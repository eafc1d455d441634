"""``--debug`` for botocore clients: each step in plain words, with secrets masked.

botocore's own debug log prints the request headers (session tokens among them) and every
response body whole (secret keys, session tokens, data keys). This takes only what helps
someone find a failure, masks what is secret, and writes it to a logger of ours:

- which credentials were used (their source, the key id shortened),
- the canonical request and the string to sign (from botocore's signer, whose
  ``botocore.auth`` logger says them; its Signature line is left out),
- each request sent, its HTTP status, request id and response body.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

# Fields whose values are secret wherever they appear (JSON or XML bodies).
SECRET_FIELDS = (
    "SecretAccessKey",
    "SessionToken",
    "TokenValue",
    "Plaintext",
    "Password",
    "ActivationCode",
    "aws_secret_access_key",
)
_NAMES = "|".join(SECRET_FIELDS)
_JSON_SECRET = re.compile(r'("(?:' + _NAMES + r')"\s*:\s*")([^"]*)(")')
_XML_SECRET = re.compile(r"(<(" + _NAMES + r")>)([^<]*)(</\2>)")
_TOKEN_HEADER = re.compile(r"^(x-amz-security-token:)(.*)$", re.MULTILINE | re.IGNORECASE)
MAX_BODY = 4000


def hidden(secret: str) -> str:
    return f"<{len(secret)} characters, hidden>"


def mask_key_id(key_id: str | None) -> str:
    """An access key id shortened: not a secret, but showing it whole helps nobody."""
    if not key_id:
        return "none"
    return f"{key_id[:4]}...{key_id[-4:]}" if len(key_id) > 8 else "****"


def mask_secrets(text: str) -> str:
    text = _JSON_SECRET.sub(lambda m: m.group(1) + hidden(m.group(2)) + m.group(3), text)
    text = _XML_SECRET.sub(lambda m: m.group(1) + hidden(m.group(3)) + m.group(4), text)
    return _TOKEN_HEADER.sub(lambda m: m.group(1) + hidden(m.group(2)), text)


class _SignerSteps(logging.Handler):
    """Forwards the canonical request and string to sign from ``botocore.auth``."""

    def __init__(self, log: logging.Logger) -> None:
        super().__init__(logging.DEBUG)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            return
        for prefix, words in (
            ("CanonicalRequest:", "SigV4 canonical request"),
            ("StringToSign:", "SigV4 string to sign"),
        ):
            if text.startswith(prefix):
                body = mask_secrets(text[len(prefix) :].strip("\n"))
                self.log.debug("%s:\n%s", words, body)


def explain_signing(log: logging.Logger) -> None:
    """Show botocore's signing steps on ``log`` (once per process)."""
    signer = logging.getLogger("botocore.auth")
    if not any(isinstance(handler, _SignerSteps) for handler in signer.handlers):
        signer.addHandler(_SignerSteps(log))
    signer.setLevel(logging.DEBUG)
    # Only our handler sees them: botocore's record of the Signature goes nowhere.
    signer.propagate = False


# botocore's names for where credentials came from, in words.
_SOURCES = {
    "env": "the environment (AWS_ACCESS_KEY_ID)",
    "explicit": "explicit parameters",
    "config-file": "the config file ({config})",
    "assume-role": "an assumed role (profile {profile})",
    "assume-role-with-web-identity": "a web identity token",
    "sso": "AWS IAM Identity Center (SSO)",
    "custom-process": "a credential_process command",
    "container-role": "the container credentials endpoint",
    "iam-role": "the instance metadata service (an instance role)",
}


def credential_source(method: str, environ: Mapping[str, str], profile: str | None) -> str:
    """Where botocore's chain found the credentials (its ``method``), in words."""
    profile = profile or environ.get("AWS_PROFILE") or "default"
    if method == "shared-credentials-file":
        path = environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
        return f"the shared credentials file {path} (profile {profile})"
    config = environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    return _SOURCES.get(method, method).format(config=config, profile=profile)


def explain_credentials(credentials: Any, log: logging.Logger, profile: str | None = None) -> None:
    if credentials is None:
        log.debug("credentials: none found in the chain")
        return
    token = ", with a session token" if getattr(credentials, "token", None) else ""
    method = str(getattr(credentials, "method", "unknown"))
    log.debug(
        "credentials: from %s, access key id %s%s",
        credential_source(method, os.environ, profile),
        mask_key_id(getattr(credentials, "access_key", None)),
        token,
    )


def explain_client(client: Any, log: logging.Logger) -> None:
    """Log each call ``client`` makes: where it goes, the signing, the answer."""
    explain_signing(log)
    events = client.meta.events

    def before_send(request: Any, **_: Any) -> None:
        log.debug("HTTP: %s %s", request.method, request.url)

    def after_call(http_response: Any, model: Any, **_: Any) -> None:
        headers = getattr(http_response, "headers", {}) or {}
        request_id = headers.get("x-amzn-RequestId") or headers.get("x-amz-request-id") or ""
        body = http_response.content or b""
        text = mask_secrets(body[:MAX_BODY].decode("utf-8", "replace"))
        more = f" ({len(body)} bytes; the first {MAX_BODY} shown)" if len(body) > MAX_BODY else ""
        log.debug(
            "%s: HTTP %s%s, body%s:\n%s",
            model.name,
            http_response.status_code,
            f", request id {request_id}" if request_id else "",
            more,
            text or "(empty)",
        )

    def after_call_error(exception: Any, model: Any = None, **_: Any) -> None:
        name = getattr(model, "name", "the call")
        log.debug("%s: no answer: %s", name, exception)

    events.register("before-send.*.*", before_send)
    events.register("after-call.*.*", after_call)
    events.register("after-call-error.*.*", after_call_error)


def debug_logger(name: str, stream: Any) -> logging.Logger:
    """A logger that writes each step to ``stream`` with a timestamp, on its own."""
    log = logging.getLogger(name)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d debug: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return log
