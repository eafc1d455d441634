"""IAM-style policy evaluation: deny unless a statement allows; an explicit deny wins.

Pure logic: statements in, a decision out. Conditions are evaluated against a context
of keys such as ``aws:username`` or ``ssm:resourceTag/<key>``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"  # an explicit deny
    IMPLICIT_DENY = "implicit deny"


class PolicyError(ValueError):
    """A policy document that does not follow the grammar."""


@lru_cache(maxsize=4096)
def _wildcard(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    return re.compile(_translate(pattern), 0 if case_sensitive else re.IGNORECASE)


def _translate(pattern: str) -> str:
    # IAM wildcards: * any run, ? one character; nothing else is special.
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "(?s:" + "".join(out) + r")\Z"


def matches(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    return _wildcard(pattern, case_sensitive).match(value) is not None


def _as_list(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise PolicyError(f"{what} must be a string or a list of strings")


@dataclass(frozen=True)
class Request:
    action: str  # "ssm:StartSession"
    resource: str  # an ARN
    context: Mapping[str, str | list[str]]


def _condition_values(context: Mapping[str, Any], key: str) -> list[str] | None:
    # Condition keys are case-insensitive; tag names after the slash keep their case.
    for name, value in context.items():
        if name.lower() == key.lower():
            return value if isinstance(value, list) else [value]
    return None


def _check_condition(
    operator: str, key: str, expected: list[str], context: Mapping[str, Any]
) -> bool:
    if_exists = operator.endswith("IfExists")
    op = operator.removesuffix("IfExists")
    actual = _condition_values(context, key)
    if actual is None:
        return if_exists
    if op == "StringEquals":
        return any(a == e for a in actual for e in expected)
    if op == "StringNotEquals":
        return all(a != e for a in actual for e in expected)
    if op == "StringEqualsIgnoreCase":
        return any(a.lower() == e.lower() for a in actual for e in expected)
    if op == "StringLike":
        return any(matches(e, a) for a in actual for e in expected)
    if op == "StringNotLike":
        return not any(matches(e, a) for a in actual for e in expected)
    if op == "Bool":
        return any(a.lower() == e.lower() for a in actual for e in expected)
    raise PolicyError(f"condition operator {operator} is not supported")


def _conditions_hold(block: Any, context: Mapping[str, Any]) -> bool:
    if block is None:
        return True
    if not isinstance(block, dict):
        raise PolicyError("Condition must be an object")
    for operator, pairs in block.items():
        if not isinstance(pairs, dict):
            raise PolicyError(f"Condition {operator} must map keys to values")
        for key, expected in pairs.items():
            values = [
                str(v).lower() if isinstance(v, bool) else v
                for v in (expected if isinstance(expected, list) else [expected])
            ]
            values = [
                filled
                for v in values
                if (filled := substitute(v, context) if isinstance(v, str) else v) is not None
            ]
            if not _check_condition(operator, key, _as_list(values, f"Condition {key}"), context):
                return False
    return True


_VARIABLE = re.compile(r"\$\{([^}]+)\}")
_LITERALS = {"*": "*", "?": "?", "$": "$"}  # ${*} and friends stand for the character
OPERATORS = frozenset(
    {
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "Bool",
    }
)


def substitute(pattern: str, context: Mapping[str, Any]) -> str | None:
    """Policy variables such as ``${aws:username}`` filled in from the request; None when
    one has no value, so the pattern can match nothing."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name in _LITERALS:
            return _LITERALS[name]
        found = _condition_values(context, name)
        if not found or len(found) != 1:
            missing = True
            return ""
        return str(found[0])

    result = _VARIABLE.sub(value, pattern)
    return None if missing else result


def _any_match(patterns: list[str], value: str, context: Mapping[str, Any]) -> bool:
    for pattern in patterns:
        filled = substitute(pattern, context)
        if filled is not None and matches(filled, value):
            return True
    return False


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "Action" in statement:
        if not any(
            matches(p, request.action, case_sensitive=False)
            for p in _as_list(statement["Action"], "Action")
        ):
            return False
    elif "NotAction" in statement:
        if any(
            matches(p, request.action, case_sensitive=False)
            for p in _as_list(statement["NotAction"], "NotAction")
        ):
            return False
    else:
        raise PolicyError("a statement needs Action or NotAction")
    context = request.context
    if "Resource" in statement:
        if not _any_match(_as_list(statement["Resource"], "Resource"), request.resource, context):
            return False
    elif "NotResource" in statement:
        resources = _as_list(statement["NotResource"], "NotResource")
        if _any_match(resources, request.resource, context):
            return False
    return _conditions_hold(statement.get("Condition"), request.context)


def statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    body = document.get("Statement")
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list) and all(isinstance(s, dict) for s in body):
        return body
    raise PolicyError("Statement must be an object or a list of objects")


def validate(document: Any) -> None:
    """Raise PolicyError if the document breaks the grammar."""
    if not isinstance(document, dict):
        raise PolicyError("a policy must be a JSON object")
    for statement in statements(document):
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError("Effect must be Allow or Deny")
        if ("Action" in statement) == ("NotAction" in statement):
            raise PolicyError("a statement needs exactly one of Action and NotAction")
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if key in statement:
                _as_list(statement[key], key)
        condition = statement.get("Condition")
        if condition is not None:
            if not isinstance(condition, dict):
                raise PolicyError("Condition must be an object")
            for operator in condition:
                if operator.removesuffix("IfExists") not in OPERATORS:
                    raise PolicyError(f"condition operator {operator} is not supported")
        _conditions_hold(condition, {})


def evaluate(documents: Iterable[Mapping[str, Any]], request: Request) -> Decision:
    allowed = False
    for document in documents:
        for statement in statements(document):
            if not _statement_applies(statement, request):
                continue
            if statement.get("Effect") == "Deny":
                return Decision.DENY
            if statement.get("Effect") == "Allow":
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY
