"""AWS JSON 1.1: ``POST /`` with ``X-Amz-Target: <Prefix>.<Operation>`` and a JSON body.

Operations are plain async functions registered by name on a ``Service``; adding one
touches one place. ``Service.call`` parses the body, finds the operation and returns
the JSON response, raising AwsError for anything the caller got wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from .errors import SerializationException, UnknownOperationException

CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_BODY_BYTES = 1024 * 1024

Ctx = TypeVar("Ctx")
Params = dict[str, Any]
Operation = Callable[[Ctx, Params], Awaitable[dict[str, Any]]]


@dataclass
class Service(Generic[Ctx]):
    """One AWS service on the shared endpoint, picked by its X-Amz-Target prefix."""

    target_prefix: str  # e.g. "AmazonSSM"
    signing_name: str  # the SigV4 service name, e.g. "ssm"
    operations: dict[str, Operation[Ctx]] = field(default_factory=dict)
    anonymous: set[str] = field(default_factory=set)  # operations that need no signature

    def operation(
        self, name: str, *, anonymous: bool = False
    ) -> Callable[[Operation[Ctx]], Operation[Ctx]]:
        def register(fn: Operation[Ctx]) -> Operation[Ctx]:
            self.operations[name] = fn
            if anonymous:
                self.anonymous.add(name)
            return fn

        return register

    def lookup(self, operation: str) -> Operation[Ctx]:
        fn = self.operations.get(operation)
        if fn is None:
            raise UnknownOperationException(f"Unknown operation {self.target_prefix}.{operation}")
        return fn


def split_target(target: str | None) -> tuple[str, str]:
    """``AmazonSSM.StartSession`` -> (``AmazonSSM``, ``StartSession``)."""
    if not target or "." not in target:
        raise UnknownOperationException(
            "The X-Amz-Target header is missing or is not of the form <Service>.<Operation>"
            if not target
            else f"Unknown operation {target}"
        )
    prefix, _, operation = target.rpartition(".")
    return prefix, operation


# AWS's widest integer is a signed 64-bit long; anything wider cannot be a valid value, and
# a number of thousands of digits would cost seconds to convert (Python refuses past 4,300).
MAX_INTEGER = 2**63 - 1
_MAX_INTEGER_DIGITS = len(str(MAX_INTEGER))


def parse_body(body: bytes) -> Params:
    """The request's JSON object. Everything the operations may then rely on is checked
    here, once: strings are valid Unicode (no lone surrogates such as ``"\\ud800"``, which
    no database or encoder accepts), integers fit in 64 bits, and numbers are finite."""
    if not body.strip():
        return {}
    try:
        params = json.loads(
            body,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_refuse_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SerializationException(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise SerializationException("The request body must be a JSON object")
    _check_strings(params)
    return params


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INTEGER_DIGITS or abs(value := int(text)) > MAX_INTEGER:
        raise SerializationException(
            f"The request body has an integer out of range: {_shorten(text)}"
        )
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SerializationException(
            f"The request body has a number out of range: {_shorten(text)}"
        )
    return value


def _refuse_constant(text: str) -> float:
    raise SerializationException(f"The request body is not valid JSON: {text} is not a number")


def _check_strings(params: Params) -> None:
    """Every string and key encodes as UTF-8. Iterative: the parser already bounds depth,
    and a recursive walk would hit the recursion limit first."""
    pending: list[object] = [params]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise SerializationException(
                    "The request body has a string that is not valid Unicode "
                    "(a lone surrogate such as \\ud800)"
                ) from None


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def dump(response: dict[str, Any]) -> bytes:
    return json.dumps(response, separators=(",", ":"), default=_json_default).encode()


def _json_default(value: object) -> object:

    if isinstance(value, datetime):
        # JSON 1.1 timestamps are epoch seconds; botocore turns them into datetimes.
        return value.timestamp()
    raise TypeError(f"cannot serialize {type(value).__name__}")
