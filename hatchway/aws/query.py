"""The AWS query protocol, as IAM speaks it: form-encoded requests, XML responses.

A request is ``POST /`` with ``Content-Type: application/x-www-form-urlencoded`` and a body
such as ``Action=TagUser&Version=2010-05-08&UserName=u&Tags.member.1.Key=team``. Lists are
``Name.member.N`` and structures inside them ``Name.member.N.Field``. A response is
``<ActionResponse><ActionResult>...</ActionResult><ResponseMetadata>``; an error is an
``<ErrorResponse>`` with the code, which botocore turns into ``ClientError`` as for AWS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from .errors import AwsError, _error

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
XML_CONTENT_TYPE = "text/xml"

# Query-protocol services answer a malformed request with these codes.
MissingAction = _error("MissingAction", 400)
InvalidAction = _error("InvalidAction", 400)
MalformedQueryString = _error("MalformedQueryString", 400)

_MEMBER = re.compile(
    r"^(?P<name>[A-Za-z0-9]+)\.member\.(?P<index>[1-9][0-9]{0,3})(?:\.(?P<field>.+))?$"
)
MAX_MEMBERS = 1000


class QueryRequest:
    """One parsed request: its Action, Version and parameters."""

    def __init__(self, body: bytes) -> None:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise MalformedQueryString("The request body is not UTF-8") from None
        self.params: dict[str, str] = {}
        for key, value in pairs:
            if key in self.params:
                raise MalformedQueryString(f"The parameter {key} appears twice")
            self.params[key] = value
        action = self.params.pop("Action", "")
        if not action:
            raise MissingAction("Missing Action")
        self.action = action
        self.version = self.params.pop("Version", "")

    def members(self, name: str) -> list[Any]:
        """``Name.member.N`` (or ``Name.member.N.Field``) as a list in index order: plain
        values, or dicts of fields."""
        found: dict[int, Any] = {}
        for key, value in self.params.items():
            match = _MEMBER.match(key)
            if match is None or match["name"] != name:
                continue
            index = int(match["index"])
            if index > MAX_MEMBERS:
                raise MalformedQueryString(f"{key}: more than {MAX_MEMBERS} members")
            if match["field"] is None:
                found[index] = value
            else:
                entry = found.setdefault(index, {})
                if not isinstance(entry, dict):
                    raise MalformedQueryString(f"{key} mixes a value and fields")
                entry[match["field"]] = value
        return [found[index] for index in sorted(found)]


def _element(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        text = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    elif isinstance(value, Mapping):
        text = "".join(_element(key, item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        text = "".join(_element("member", item) for item in value)
    else:
        text = escape(str(value))
    return f"<{name}>{text}</{name}>"


def response(action: str, result: Mapping[str, Any], request_id: str, namespace: str) -> bytes:
    body = "".join(_element(key, value) for key, value in result.items())
    return (
        f'<{action}Response xmlns="{namespace}">'
        f"<{action}Result>{body}</{action}Result>"
        f"<ResponseMetadata><RequestId>{escape(request_id)}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    ).encode()


def error_response(error: AwsError, request_id: str, namespace: str) -> bytes:
    kind = "Receiver" if error.status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
        f"</Error><RequestId>{escape(request_id)}</RequestId></ErrorResponse>"
    ).encode()
