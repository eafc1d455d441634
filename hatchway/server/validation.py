"""Request validation with the messages AWS services give.

AWS reports constraint failures as ``1 validation error detected: Value 'x' at 'target'
failed to satisfy constraint: Member must have length less than or equal to 400``;
the field path uses the member name with a lower-case first letter.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from ..aws.errors import ValidationException

_MISSING = object()


def _path(name: str) -> str:
    return name[:1].lower() + name[1:]


def _fail(name: str, value: object, constraint: str) -> ValidationException:
    shown = "null" if value is None else value
    return ValidationException(
        f"1 validation error detected: Value '{shown}' at '{_path(name)}' failed to satisfy "
        f"constraint: {constraint}"
    )


def string(
    params: dict[str, Any],
    name: str,
    *,
    required: bool = False,
    min_len: int = 0,
    max_len: int | None = None,
    pattern: str | None = None,
    choices: Collection[str] | None = None,
    default: str | None = None,
) -> str | None:
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise _fail(name, None, "Member must not be null")
        return default
    if not isinstance(value, str):
        raise ValidationException(f"Value at '{_path(name)}' must be a string")
    check_string(name, value, min_len=min_len, max_len=max_len, pattern=pattern, choices=choices)
    return value


def check_string(
    name: str,
    value: str,
    *,
    min_len: int = 0,
    max_len: int | None = None,
    pattern: str | None = None,
    choices: Collection[str] | None = None,
) -> None:
    if len(value) < min_len:
        raise _fail(name, value, f"Member must have length greater than or equal to {min_len}")
    if max_len is not None and len(value) > max_len:
        raise _fail(name, value, f"Member must have length less than or equal to {max_len}")
    if pattern is not None and not re.fullmatch(pattern, value, re.DOTALL):
        raise _fail(name, value, f"Member must satisfy regular expression pattern: {pattern}")
    if choices is not None and value not in choices:
        raise _fail(name, value, f"Member must satisfy enum value set: [{', '.join(choices)}]")


def integer(
    params: dict[str, Any],
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationException(f"Value at '{_path(name)}' must be an integer")
    if minimum is not None and value < minimum:
        raise _fail(name, value, f"Member must have value greater than or equal to {minimum}")
    if maximum is not None and value > maximum:
        raise _fail(name, value, f"Member must have value less than or equal to {maximum}")
    return value


# What a datetime can hold: 0001-01-01 to 9999-12-31, as epoch seconds.
_EARLIEST = datetime.min.replace(tzinfo=UTC).timestamp()
_LATEST = datetime.max.replace(tzinfo=UTC).timestamp()


def timestamp(params: dict[str, Any], name: str) -> datetime | None:
    """Timestamps arrive as epoch seconds (JSON numbers) in JSON 1.1."""
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValidationException(f"Value at '{_path(name)}' must be a timestamp")
    if not _EARLIEST <= value < _LATEST:
        raise _fail(name, value, "Member must be a timestamp between the years 1 and 9999")
    return datetime.fromtimestamp(value, UTC)


def boolean(params: dict[str, Any], name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationException(f"Value at '{_path(name)}' must be a boolean")
    return value


def obj_list(
    params: dict[str, Any], name: str, *, max_items: int | None = None
) -> list[dict[str, Any]]:
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValidationException(f"Value at '{_path(name)}' must be a list of objects")
    if max_items is not None and len(value) > max_items:
        raise _fail(name, value, f"Member must have length less than or equal to {max_items}")
    return value


def string_list(
    params: dict[str, Any], name: str, *, min_items: int = 0, max_items: int | None = None
) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationException(f"Value at '{_path(name)}' must be a list of strings")
    if len(value) < min_items:
        raise _fail(name, value, f"Member must have length greater than or equal to {min_items}")
    if max_items is not None and len(value) > max_items:
        raise _fail(name, value, f"Member must have length less than or equal to {max_items}")
    return value


def string_list_map(params: dict[str, Any], name: str) -> dict[str, list[str]]:
    """A ``map<string, list<string>>``, as StartSession's Parameters."""
    value = params.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationException(f"Value at '{_path(name)}' must be a map")
    for key, items in value.items():
        check_string(f"{name}.key", key, min_len=1, max_len=255)
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise ValidationException(f"Value at '{_path(name)}.{key}' must be a list of strings")
        for item in items:
            check_string(f"{name}.{key}.member", item, min_len=1, max_len=65535)
    return value
