"""AWS JSON 1.1: ``POST /`` with ``X-Amz-Target: <Prefix>.<Operation>`` and a JSON body.

Operations are plain async functions registered by name on a ``Service``; adding one
touches one place. ``Service.call`` parses the body, finds the operation and returns
the JSON response, raising AwsError for anything the caller got wrong.
"""

from __future__ import annotations

import json
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


def parse_body(body: bytes) -> Params:
    if not body.strip():
        return {}
    try:
        params = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SerializationException(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise SerializationException("The request body must be a JSON object")
    return params


def dump(response: dict[str, Any]) -> bytes:
    return json.dumps(response, separators=(",", ":"), default=_json_default).encode()


def _json_default(value: object) -> object:

    if isinstance(value, datetime):
        # JSON 1.1 timestamps are epoch seconds; botocore turns them into datetimes.
        return value.timestamp()
    raise TypeError(f"cannot serialize {type(value).__name__}")
