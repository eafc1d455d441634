"""Helpers the SSM operations share: tags and id formats."""

from __future__ import annotations

import re
import secrets
from typing import Any

from ...aws.errors import ValidationException
from .. import validation as v
from .errors import TooManyTagsError

INSTANCE_ID = re.compile(r"^mi-[0-9a-f]{17}$")
MAX_TAGS = 50


def new_instance_id() -> str:
    return "mi-" + secrets.token_hex(9)[:17]


def parse_tags(params: dict[str, Any], name: str = "Tags") -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in v.obj_list(params, name, max_items=1000):
        key = v.string(item, "Key", required=True, min_len=1, max_len=128)
        value = v.string(item, "Value", required=True, min_len=0, max_len=256)
        assert key is not None and value is not None
        if key.lower().startswith("aws:"):
            raise ValidationException("Tag keys may not begin with the reserved prefix aws:")
        tags[key] = value
    return tags


def merge_tags(current: dict[str, Any], new: dict[str, str]) -> dict[str, Any]:
    merged = {**current, **new}
    if len(merged) > MAX_TAGS:
        raise TooManyTagsError(f"A resource may have at most {MAX_TAGS} tags")
    return merged


def tag_list(tags: dict[str, Any]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(val)} for k, val in sorted(tags.items())]
