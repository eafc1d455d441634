"""Opaque, tamper-evident NextToken values for list operations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..aws.errors import AwsError, _error

InvalidNextToken = _error("InvalidNextToken", 400)
T = TypeVar("T")


class Paginator:
    """Pages through a list sorted by a stable key. The token names the last key seen and
    is signed, so a client cannot forge one to skip checks."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()[:32]

    def token(self, operation: str, after: Any) -> str:
        payload = json.dumps({"op": operation, "after": after}).encode()
        body = base64.urlsafe_b64encode(payload).decode()
        return f"{body}.{self._sign(payload)}"

    def after(self, operation: str, token: str | None) -> Any:
        if token is None:
            return None
        body, _, signature = token.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body.encode())
            decoded = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise InvalidNextToken("The specified token isn't valid.") from None
        if (
            not hmac.compare_digest(self._sign(payload), signature)
            or decoded.get("op") != operation
        ):
            raise InvalidNextToken("The specified token isn't valid.")
        return decoded["after"]

    def page(
        self,
        operation: str,
        items: Sequence[T],
        key: Any,
        max_results: int,
        next_token: str | None,
    ) -> tuple[list[T], str | None]:
        """``items`` sorted by ``key(item)``; returns one page and the token for the next."""
        after = self.after(operation, next_token)
        start = 0
        if after is not None:
            start = next((i for i, item in enumerate(items) if key(item) > after), len(items))
        chunk = list(items[start : start + max_results])
        more = start + max_results < len(items)
        return chunk, (self.token(operation, key(chunk[-1])) if more and chunk else None)

    def respond(
        self,
        operation: str,
        items: Sequence[T],
        key: Any,
        max_results: int,
        next_token: str | None,
        field: str,
        render: Callable[[T], Any],
    ) -> dict[str, Any]:
        """A list operation's response: one page under ``field``, and NextToken if more."""
        page, token = self.page(operation, items, key, max_results, next_token)
        response: dict[str, Any] = {field: [render(item) for item in page]}
        if token:
            response["NextToken"] = token
        return response


__all__ = ["AwsError", "InvalidNextToken", "Paginator"]
