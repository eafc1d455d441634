"""Session documents: the standard AWS ones, validation, parameters and substitution.

Pure logic with no I/O, database or asyncio. The server calls it to check documents on
CreateDocument and UpdateDocument, and to turn StartSession's parameters into the typed
values and the substituted document that reach the agent in ``interactive_shell``
(agent spec §1.8 and §3).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hatchway.aws.errors import (
    AwsError,
    InvalidDocumentContent,
    InvalidDocumentSchemaVersion,
    InvalidParameters,
    MaxDocumentSizeExceeded,
    ValidationException,
)

Document = dict[str, Any]

DEFAULT_SESSION_DOCUMENT = "SSM-SessionManagerRunShell"
SCHEMA_VERSION = "1.0"
SESSION_TYPES = ("Standard_Stream", "InteractiveCommands", "NonInteractiveCommands", "Port")
PARAMETER_TYPES = ("String", "StringList", "Integer", "Boolean", "StringMap", "MapList")
MAX_DOCUMENT_BYTES = 64 * 1024
# Real session documents nest three or four levels. A low bound keeps every later walk
# (substitution, deep copies, JSON encoding) far from Python's recursion limit.
MAX_NESTING = 32
DEFAULT_IDLE_TIMEOUT_MINUTES = 20
IDLE_TIMEOUT_RANGE = (1, 60)
MAX_DURATION_RANGE = (1, 1440)
COMMAND_OS_KEYS = ("linux", "windows", "macos")

_TOP_LEVEL_KEYS = frozenset(
    {"schemaVersion", "description", "sessionType", "inputs", "parameters", "properties"}
)
_PARAMETER_KEYS = frozenset(
    {
        "type",
        "description",
        "default",
        "allowedPattern",
        "allowedValues",
        "minChars",
        "maxChars",
        "minItems",
        "maxItems",
        "displayType",
    }
)
_INPUT_STRINGS = (
    "s3BucketName",
    "s3KeyPrefix",
    "cloudWatchLogGroupName",
    "kmsKeyId",
    "runAsDefaultUser",
)
_INPUT_FLAGS = (
    "s3EncryptionEnabled",
    "cloudWatchEncryptionEnabled",
    "cloudWatchStreamingEnabled",
    "runAsEnabled",
)
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# The agent accepts both {{ name }} and {{name}}; \s* covers both and stray extra spaces.
# Names never contain ':', so {{ssm:...}} and {{ssm-secure:...}} references never match.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
# Any whole-string reference, including {{ssm:...}}, whose type is only known after it
# has been resolved; typed fields accept it at CreateDocument time.
_ANY_REFERENCE = re.compile(r"\{\{\s*[^{}\s]+\s*\}\}")
_SEPARATOR_PREFIX = re.compile(r"[0-9A-Za-z\r\n_:-]{0,30}")
_MINUTES = re.compile(r"[0-9]{1,4}")
_INTEGER = re.compile(r"-?[0-9]{1,18}")

# ---------------------------------------------------------------------------
# The standard AWS-owned session documents (agent spec §3.3)
# ---------------------------------------------------------------------------

# 0-65535 for the client's listening port (0 lets the client choose), 1-65535 for a
# destination port on the node.
PORT_OR_ZERO_PATTERN = (
    "^([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
)
PORT_PATTERN = (
    "^([1-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
)
# Host names, IPv4 and IPv6 addresses (with an optional %zone). Spaces and shell or
# template characters are refused so that a value cannot smuggle in anything else.
HOST_PATTERN = "^[A-Za-z0-9._:%-]{1,253}$"


def _string_parameter(
    description: str, default: str | None = None, pattern: str | None = None
) -> dict[str, Any]:
    parameter: dict[str, Any] = {"type": "String", "description": description}
    if default is not None:
        parameter["default"] = default
    if pattern is not None:
        parameter["allowedPattern"] = pattern
    return parameter


def _destination_port(default: str) -> dict[str, Any]:
    return _string_parameter(
        "Port on the destination to connect to (1-65535).", default, PORT_PATTERN
    )


def _local_port() -> dict[str, Any]:
    return _string_parameter(
        "Port the client listens on; 0 lets the client pick a free one.",
        "0",
        PORT_OR_ZERO_PATTERN,
    )


def _command_document(session_type: str, description: str) -> Document:
    per_os = {"commands": "{{command}}", "runAsElevated": False}
    return {
        "schemaVersion": SCHEMA_VERSION,
        "description": description,
        "sessionType": session_type,
        "parameters": {
            "command": {"type": "String", "description": "The command to run on the node."}
        },
        "properties": {os_key: dict(per_os) for os_key in COMMAND_OS_KEYS},
    }


STANDARD_DOCUMENTS: dict[str, Document] = {
    "SSM-SessionManagerRunShell": {
        "schemaVersion": SCHEMA_VERSION,
        "description": (
            "Preferences for interactive shell sessions: logging, encryption, Run As, "
            "timeouts and shell profile."
        ),
        "sessionType": "Standard_Stream",
        "inputs": {
            "s3BucketName": "",
            "s3KeyPrefix": "",
            "s3EncryptionEnabled": True,
            "cloudWatchLogGroupName": "",
            "cloudWatchEncryptionEnabled": True,
            "cloudWatchStreamingEnabled": False,
            "kmsKeyId": "",
            "runAsEnabled": False,
            "runAsDefaultUser": "",
            "idleSessionTimeout": "20",
            "maxSessionDuration": "",
            "shellProfile": {"linux": "", "windows": ""},
        },
    },
    "AWS-StartPortForwardingSession": {
        "schemaVersion": SCHEMA_VERSION,
        "description": "Forward a port on the client to a port on the managed node.",
        "sessionType": "Port",
        "parameters": {"portNumber": _destination_port("80"), "localPortNumber": _local_port()},
        "properties": {
            "portNumber": "{{ portNumber }}",
            "type": "LocalPortForwarding",
            "localPortNumber": "{{ localPortNumber }}",
        },
    },
    "AWS-StartPortForwardingSessionToRemoteHost": {
        "schemaVersion": SCHEMA_VERSION,
        "description": ("Forward a port on the client to a host that the managed node can reach."),
        "sessionType": "Port",
        "parameters": {
            "host": _string_parameter(
                "Host name or IP address of the destination, as the node resolves it.",
                pattern=HOST_PATTERN,
            ),
            "portNumber": _destination_port("80"),
            "localPortNumber": _local_port(),
        },
        "properties": {
            "host": "{{ host }}",
            "portNumber": "{{ portNumber }}",
            "type": "LocalPortForwarding",
            "localPortNumber": "{{ localPortNumber }}",
        },
    },
    "AWS-StartSSHSession": {
        "schemaVersion": SCHEMA_VERSION,
        "description": "Carry an SSH connection to the managed node over the session.",
        "sessionType": "Port",
        "parameters": {"portNumber": _destination_port("22")},
        # No "type": the agent then uses its single-connection forwarder, where the
        # server closing the connection ends the session (agent spec §5).
        "properties": {"portNumber": "{{ portNumber }}"},
    },
    "AWS-StartInteractiveCommand": _command_document(
        "InteractiveCommands", "Run one command on the managed node in an interactive terminal."
    ),
    "AWS-StartNonInteractiveCommand": _command_document(
        "NonInteractiveCommands", "Run one command on the managed node without a terminal."
    ),
}

# ---------------------------------------------------------------------------
# Small helpers shared by validation and resolution
# ---------------------------------------------------------------------------


def _show(value: object, limit: int = 80) -> str:
    """Quote a value for an error message, cut short so a huge value stays readable."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _content_error(field: str, problem: str) -> AwsError:
    return InvalidDocumentContent(f"{field} {problem}")


def _is_reference(value: object) -> bool:
    return isinstance(value, str) and _ANY_REFERENCE.fullmatch(value) is not None


def _parse_flag(value: object, field: str) -> bool:
    """A bool, or the strings "true"/"false" that documents written by hand often hold."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _content_error(field, f'must be true, false, "true" or "false"; got {_show(value)}')


def _parse_minutes(value: object, field: str, bounds: tuple[int, int]) -> int | None:
    """A number of minutes given as a string; empty means "not set"."""
    low, high = bounds
    if value == "" or value is None:
        return None
    # Integers arrive here only after an Integer parameter has been substituted in.
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(text, str) and _MINUTES.fullmatch(text) and low <= int(text) <= high:
        return int(text)
    raise _content_error(
        field, f"must be a number of minutes from {low} to {high}; got {_show(value)}"
    )


# ---------------------------------------------------------------------------
# Loading content
# ---------------------------------------------------------------------------


def _check_size(content: str) -> None:
    # surrogatepass: a lone surrogate must not turn a size check into a crash.
    size = len(content.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise MaxDocumentSizeExceeded(
            f"Content is {size} bytes; documents are limited to {MAX_DOCUMENT_BYTES} bytes."
        )


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def _load_json(content: str) -> object:
    try:
        return json.loads(content, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        message = f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise _content_error("Content", message) from None
    except (ValueError, RecursionError) as exc:
        raise _content_error("Content", f"is not valid JSON: {exc}") from None


def _load_yaml(content: str) -> object:
    # PyYAML is not a dependency of Hatchway; YAML works only where it happens to be present.
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        raise InvalidDocumentContent(
            "YAML documents are not supported by this server; use JSON"
        ) from None
    # ValueError and OverflowError come from PyYAML's constructors (an impossible date such
    # as 2001-13-45, or a huge integer), not from its parser.
    failures = (yaml.YAMLError, ValueError, OverflowError, RecursionError)
    try:
        # Aliases let a few bytes expand into a huge or cyclic tree, so they are refused
        # before anything is built.
        for event in yaml.parse(content, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise _content_error("Content", "uses YAML aliases, which are not supported")
        return yaml.safe_load(content)
    except failures as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _content_error("Content", f"is not valid YAML: {first_line}") from None


def _load(content: str, document_format: str) -> object:
    if document_format == "JSON":
        return _load_json(content)
    if document_format == "YAML":
        return _load_yaml(content)
    if document_format == "TEXT":
        raise _content_error("DocumentFormat", "TEXT cannot hold a Session document; use JSON")
    raise ValidationException(
        f"DocumentFormat must be one of JSON, YAML or TEXT; got {_show(document_format)}"
    )


def _check_json_tree(root: object) -> None:
    """Refuse deep nesting and anything JSON cannot carry (YAML dates, bytes, NaN...)."""
    stack: list[tuple[object, int]] = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _content_error("Content", f"nests deeper than {MAX_NESTING} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _content_error("Content", f"has a key that is not a string: {key!r}")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise _content_error("Content", f"holds {value}, which JSON cannot express")
        elif value is not None and not isinstance(value, str | int | float | bool):
            kind = type(value).__name__
            raise _content_error("Content", f"holds a {kind} value, which JSON cannot express")


# ---------------------------------------------------------------------------
# Validating a document (agent spec §3.1)
# ---------------------------------------------------------------------------


def _check_top_level(raw: object) -> Document:
    if not isinstance(raw, dict):
        raise _content_error("Content", "must be a JSON object")
    version = raw.get("schemaVersion")
    if version != SCHEMA_VERSION:
        # The agent drops documents of any other version without a reply (§1.8), so it is
        # refused here where the user can still see why.
        raise InvalidDocumentSchemaVersion(
            f'schemaVersion must be "{SCHEMA_VERSION}" for Session documents; got {_show(version)}'
        )
    unknown = sorted(set(raw) - _TOP_LEVEL_KEYS)
    if unknown:
        raise _content_error(unknown[0], "is not a Session document field")
    if not isinstance(raw.get("description", ""), str):
        raise _content_error("description", "must be a string")
    return raw


def _check_session_type(value: object) -> str:
    if isinstance(value, str) and value in SESSION_TYPES:
        return value
    raise _content_error(
        "sessionType", f"must be one of {', '.join(SESSION_TYPES)}; got {_show(value)}"
    )


def _check_object(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _content_error(field, f"must be an object; got {_show(value)}")
    return value


def _check_string(section: Mapping[str, Any], key: str, field: str) -> None:
    if key in section and not isinstance(section[key], str):
        raise _content_error(field, f"must be a string; got {_show(section[key])}")


def _check_inputs(inputs: dict[str, Any]) -> None:
    # Unknown keys are let through: the agent ignores them, and AWS adds new preferences.
    for key in _INPUT_STRINGS:
        _check_string(inputs, key, f"inputs.{key}")
    for key in _INPUT_FLAGS:
        if key in inputs and not _is_reference(inputs[key]):
            _parse_flag(inputs[key], f"inputs.{key}")
    for key, bounds in (
        ("idleSessionTimeout", IDLE_TIMEOUT_RANGE),
        ("maxSessionDuration", MAX_DURATION_RANGE),
    ):
        _check_string(inputs, key, f"inputs.{key}")
        if not _is_reference(inputs.get(key)):
            _parse_minutes(inputs.get(key), f"inputs.{key}", bounds)
    if "shellProfile" in inputs:
        profile = _check_object(inputs["shellProfile"], "inputs.shellProfile")
        for os_key in profile:
            _check_string(profile, os_key, f"inputs.shellProfile.{os_key}")


def _default_matches(parameter_type: str, default: object) -> bool:
    if parameter_type == "String":
        return isinstance(default, str)
    if parameter_type == "StringList":
        return isinstance(default, list) and all(isinstance(item, str) for item in default)
    if parameter_type == "Integer":
        return isinstance(default, int) and not isinstance(default, bool)
    if parameter_type == "Boolean":
        return isinstance(default, bool)
    if parameter_type == "StringMap":
        return isinstance(default, dict)
    return isinstance(default, list) and all(isinstance(item, dict) for item in default)


def _check_pattern(pattern: object, field: str) -> None:
    if not isinstance(pattern, str):
        raise _content_error(field, f"must be a string; got {_show(pattern)}")
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise _content_error(field, f"is not a valid regular expression: {exc}") from None


def _check_limits(definition: dict[str, Any], field: str) -> None:
    for key in ("minChars", "maxChars", "minItems", "maxItems"):
        value = definition.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _content_error(
                f"{field}.{key}", f"must be a whole number >= 0; got {_show(value)}"
            )
    for low, high in (("minChars", "maxChars"), ("minItems", "maxItems")):
        if low in definition and high in definition and definition[low] > definition[high]:
            raise _content_error(f"{field}.{low}", f"is greater than {high}")


def _check_parameter(name: str, definition: object) -> None:
    field = f"parameters.{name}"
    if not _PARAMETER_NAME.fullmatch(name):
        raise _content_error(field, "has a name that is not 1-128 of A-Z a-z 0-9 _ . -")
    definition = _check_object(definition, field)
    unknown = sorted(set(definition) - _PARAMETER_KEYS)
    if unknown:
        raise _content_error(f"{field}.{unknown[0]}", "is not a parameter attribute")
    parameter_type = definition.get("type")
    if not (isinstance(parameter_type, str) and parameter_type in PARAMETER_TYPES):
        allowed = ", ".join(PARAMETER_TYPES)
        raise _content_error(
            f"{field}.type", f"must be one of {allowed}; got {_show(parameter_type)}"
        )
    _check_string(definition, "description", f"{field}.description")
    _check_string(definition, "displayType", f"{field}.displayType")
    if "default" in definition and not _default_matches(parameter_type, definition["default"]):
        raise _content_error(f"{field}.default", f"does not fit type {parameter_type}")
    if "allowedPattern" in definition:
        _check_pattern(definition["allowedPattern"], f"{field}.allowedPattern")
    allowed_values = definition.get("allowedValues", [])
    if not (isinstance(allowed_values, list) and all(isinstance(v, str) for v in allowed_values)):
        raise _content_error(f"{field}.allowedValues", "must be a list of strings")
    _check_limits(definition, field)


def _check_parameters(parameters: dict[str, Any]) -> None:
    for name, definition in parameters.items():
        _check_parameter(name, definition)


def _unmarshal_hint(value: object) -> str:
    """How Go's encoding/json names a value it cannot put into a string field."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "array" if isinstance(value, list) else "object"


def _check_commands(session_type: str, os_key: str, section: dict[str, Any]) -> None:
    field = f"properties.{os_key}.commands"
    if "commands" not in section:
        raise _content_error(field, "is required")
    commands = section["commands"]
    if isinstance(commands, str):
        return
    # Name the error the agent would report, so nobody has to find it in the agent's log.
    go_error = (
        f"json: cannot unmarshal {_unmarshal_hint(commands)} into Go struct field "
        f"ShellConfig.{os_key}.commands of type string"
    )
    if session_type == "InteractiveCommands":
        agent_text = f"Invalid format in session properties map[...]; error {go_error}"
    else:
        agent_text = f"Fail to remarshal shell properties: {go_error}"
    raise _content_error(field, f'must be a string; the agent would fail with "{agent_text}"')


def _check_command_section(session_type: str, os_key: str, value: object) -> None:
    section = _check_object(value, f"properties.{os_key}")
    _check_commands(session_type, os_key, section)
    for key in ("runAsElevated", "separateOutputStream"):
        if key in section and not _is_reference(section[key]):
            _parse_flag(section[key], f"properties.{os_key}.{key}")
    for key in ("stdOutSeparatorPrefix", "stdErrSeparatorPrefix"):
        prefix = section.get(key, "")
        if not (isinstance(prefix, str) and _SEPARATOR_PREFIX.fullmatch(prefix)):
            raise _content_error(
                f"properties.{os_key}.{key}",
                f"must be at most 30 of 0-9 A-Z a-z _ : - and line breaks; got {_show(prefix)}",
            )


def _check_command_properties(session_type: str, properties: dict[str, Any]) -> None:
    sections = [os_key for os_key in COMMAND_OS_KEYS if os_key in properties]
    if not sections:
        raise _content_error("properties", "must configure commands for linux, windows or macos")
    for os_key in sections:
        _check_command_section(session_type, os_key, properties[os_key])


def _check_port_properties(properties: dict[str, Any]) -> None:
    if "portNumber" not in properties:
        raise _content_error("properties.portNumber", "is required for Port sessions")
    port = properties["portNumber"]
    if not isinstance(port, str):
        go_error = (
            f"json: cannot unmarshal {_unmarshal_hint(port)} into Go struct field "
            "PortParameters.portNumber of type string"
        )
        raise _content_error(
            "properties.portNumber",
            f'must be a string; the agent would fail with "Unable to remarshal session '
            f'properties. {go_error}"',
        )
    for key in ("host", "localPortNumber"):
        _check_string(properties, key, f"properties.{key}")
    forwarding = properties.get("type", "LocalPortForwarding")
    if forwarding != "LocalPortForwarding" and not _is_reference(forwarding):
        raise _content_error(
            "properties.type", f'must be "LocalPortForwarding" or absent; got {_show(forwarding)}'
        )


def _check_properties(session_type: str, properties: dict[str, Any]) -> None:
    # Standard_Stream ignores properties altogether (agent spec §3.1).
    if session_type in ("InteractiveCommands", "NonInteractiveCommands"):
        _check_command_properties(session_type, properties)
    elif session_type == "Port":
        _check_port_properties(properties)


def parse_session_document(content: str, document_format: str = "JSON") -> Document:
    """Parse and check a Session document given to CreateDocument or UpdateDocument.

    Returns the document as a JSON object. Raises MaxDocumentSizeExceeded,
    InvalidDocumentSchemaVersion, InvalidDocumentContent (naming the field at fault) or
    ValidationException for a DocumentFormat outside JSON, YAML and TEXT.
    """
    if not isinstance(content, str):
        raise _content_error("Content", "must be a string")
    _check_size(content)
    raw = _load(content, document_format)
    _check_json_tree(raw)
    document = _check_top_level(raw)
    session_type = _check_session_type(document.get("sessionType"))
    _check_inputs(_check_object(document.get("inputs", {}), "inputs"))
    _check_parameters(_check_object(document.get("parameters", {}), "parameters"))
    _check_properties(session_type, _check_object(document.get("properties", {}), "properties"))
    return document


# ---------------------------------------------------------------------------
# StartSession parameters (agent spec §1.8): map[string][]string to typed values
# ---------------------------------------------------------------------------


def _parameter_error(name: str, problem: str) -> AwsError:
    return InvalidParameters(f'Parameter "{name}" {problem}')


def _single(name: str, values: list[str]) -> str:
    if len(values) != 1:
        raise _parameter_error(name, f"takes exactly one value; got {len(values)}")
    return values[0]


def _to_integer(name: str, values: list[str]) -> int:
    value = _single(name, values)
    if not _INTEGER.fullmatch(value):
        raise _parameter_error(name, f"{_show(value)} is not an integer")
    return int(value)


def _to_boolean(name: str, values: list[str]) -> bool:
    value = _single(name, values)
    if value.lower() not in ("true", "false"):
        raise _parameter_error(name, f'{_show(value)} is not "true" or "false"')
    return value.lower() == "true"


def _to_map(name: str, value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise _parameter_error(name, f"{_show(value)} is not a JSON object")
    return parsed


_CONVERTERS: dict[str, Callable[[str, list[str]], object]] = {
    "String": _single,
    "StringList": lambda _name, values: list(values),
    "Integer": _to_integer,
    "Boolean": _to_boolean,
    "StringMap": lambda name, values: _to_map(name, _single(name, values)),
    "MapList": lambda name, values: [_to_map(name, value) for value in values],
}


def _supplied_list(name: str, raw: object) -> list[str]:
    # A bare string is a Sequence[str] too; taking it letter by letter would be nonsense.
    if isinstance(raw, str) or not isinstance(raw, list | tuple):
        raise _parameter_error(name, f"must be given as a list of strings; got {_show(raw)}")
    if not all(isinstance(value, str) for value in raw):
        raise _parameter_error(name, f"must be given as a list of strings; got {_show(raw)}")
    return list(raw)


def _check_value(name: str, definition: Mapping[str, Any], value: str) -> None:
    allowed_values = definition.get("allowedValues")
    if allowed_values and value not in allowed_values:
        choices = ", ".join(allowed_values)
        raise _parameter_error(name, f"{_show(value)} is not one of the allowed values: {choices}")
    pattern = definition.get("allowedPattern")
    # fullmatch, not search: with search, "^[0-9]+$" would let "22\n" through, since $
    # also matches before a final newline.
    if pattern is not None and re.fullmatch(pattern, value) is None:
        raise _parameter_error(name, f"{_show(value)} fails to match required pattern {pattern}")
    if len(value) < definition.get("minChars", 0):
        raise _parameter_error(
            name, f"{_show(value)} is shorter than {definition['minChars']} characters"
        )
    if "maxChars" in definition and len(value) > definition["maxChars"]:
        raise _parameter_error(
            name, f"{_show(value)} is longer than {definition['maxChars']} characters"
        )


def _check_item_count(name: str, definition: Mapping[str, Any], values: list[str]) -> None:
    if len(values) < definition.get("minItems", 0):
        raise _parameter_error(name, f"needs at least {definition['minItems']} values")
    if "maxItems" in definition and len(values) > definition["maxItems"]:
        raise _parameter_error(name, f"takes at most {definition['maxItems']} values")


def _resolve_one(name: str, definition: Mapping[str, Any], raw: object) -> object:
    if raw is None:
        if "default" in definition:
            return copy.deepcopy(definition["default"])
        raise _parameter_error(name, "is required but no value was supplied")
    values = _supplied_list(name, raw)
    parameter_type = definition.get("type", "String")
    if parameter_type in ("StringList", "MapList"):
        _check_item_count(name, definition, values)
    for value in values:
        _check_value(name, definition, value)
    return _CONVERTERS[parameter_type](name, values)


def resolve_parameters(
    document: Mapping[str, Any], supplied: Mapping[str, Sequence[str]] | None
) -> dict[str, object]:
    """Turn StartSession's Parameters into the typed values the agent substitutes.

    A String parameter becomes one string and a StringList stays a list: the agent puts
    the value in place as it is, and a list where a string belongs makes it fail (§1.8).
    Missing parameters take their default. Raises InvalidParameters for an unknown name,
    a missing required parameter, or a value its definition refuses.
    """
    declared: Mapping[str, Any] = document.get("parameters") or {}
    given: Mapping[str, Sequence[str]] = supplied or {}
    for name in given:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise _parameter_error(
                str(name), f"is not defined by the document (its parameters: {known})"
            )
    return {
        name: _resolve_one(name, definition, given.get(name))
        for name, definition in declared.items()
    }


# ---------------------------------------------------------------------------
# Substitution (agent spec §3.2)
# ---------------------------------------------------------------------------


def _as_text(value: object) -> str:
    # Non-strings are written as JSON text (true, ["a", "b"]) rather than Python's repr,
    # since the document travels as JSON.
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _substitute_string(text: str, values: Mapping[str, object]) -> object:
    whole = _PLACEHOLDER.fullmatch(text)
    if whole is not None and whole.group(1) in values:
        # The value replaces the whole string, so its type reaches the agent (§3.2).
        return copy.deepcopy(values[whole.group(1)])

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return _as_text(values[name]) if name in values else match.group(0)

    # One pass only: a value that itself contains {{ x }} is not expanded again.
    return _PLACEHOLDER.sub(replace, text)


def _substitute_value(value: object, values: Mapping[str, object]) -> object:
    if isinstance(value, str):
        return _substitute_string(value, values)
    if isinstance(value, dict):
        return {key: _substitute_value(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute_value(item, values) for item in value]
    return value


def substitute(document: Mapping[str, Any], values: Mapping[str, object]) -> Document:
    """A deep copy of the document with {{ name }} placeholders in properties and inputs
    replaced. Unknown placeholders and {{ssm:...}} references are left as they are."""
    result: Document = copy.deepcopy(dict(document))
    for section in ("properties", "inputs"):
        if section in result:
            result[section] = _substitute_value(result[section], values)
    return result


# ---------------------------------------------------------------------------
# Preferences the service enforces itself (agent spec §4.6)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionPreferences:
    """What the service needs from a document's inputs to run and police a session."""

    session_type: str
    idle_timeout_minutes: int = DEFAULT_IDLE_TIMEOUT_MINUTES
    max_duration_minutes: int | None = None
    kms_key_id: str | None = None
    run_as_enabled: bool = False
    run_as_default_user: str = ""
    shell_profile_linux: str = ""


def _input_string(inputs: Mapping[str, Any], key: str, field: str) -> str:
    value = inputs.get(key, "")
    if not isinstance(value, str):
        raise _content_error(field, f"must be a string; got {_show(value)}")
    return value


def session_preferences(document: Mapping[str, Any]) -> SessionPreferences:
    """Read the preferences from a document, after substitution.

    An empty idleSessionTimeout means the service's 20-minute default; an empty
    maxSessionDuration means no limit; an empty kmsKeyId means no encryption.
    """
    inputs = _check_object(document.get("inputs") or {}, "inputs")
    profile = _check_object(inputs.get("shellProfile") or {}, "inputs.shellProfile")
    idle = _parse_minutes(
        inputs.get("idleSessionTimeout"), "inputs.idleSessionTimeout", IDLE_TIMEOUT_RANGE
    )
    return SessionPreferences(
        session_type=_check_session_type(document.get("sessionType")),
        idle_timeout_minutes=DEFAULT_IDLE_TIMEOUT_MINUTES if idle is None else idle,
        max_duration_minutes=_parse_minutes(
            inputs.get("maxSessionDuration"), "inputs.maxSessionDuration", MAX_DURATION_RANGE
        ),
        kms_key_id=_input_string(inputs, "kmsKeyId", "inputs.kmsKeyId") or None,
        run_as_enabled=_parse_flag(inputs.get("runAsEnabled", False), "inputs.runAsEnabled"),
        run_as_default_user=_input_string(inputs, "runAsDefaultUser", "inputs.runAsDefaultUser"),
        shell_profile_linux=_input_string(profile, "linux", "inputs.shellProfile.linux"),
    )


# ---------------------------------------------------------------------------
# DescribeDocument and GetDocument helpers
# ---------------------------------------------------------------------------


def document_hash(content: str) -> str:
    """The SHA-256 hex digest that DescribeDocument reports as Hash (HashType Sha256)."""
    return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()


def describe_parameters(document: Mapping[str, Any]) -> list[dict[str, str]]:
    """The document's parameters in the shape of DescribeDocument's Parameters list."""
    described: list[dict[str, str]] = []
    for name, definition in (document.get("parameters") or {}).items():
        entry = {"Name": name, "Type": definition["type"]}
        if "description" in definition:
            entry["Description"] = definition["description"]
        if "default" in definition:
            entry["DefaultValue"] = _as_text(definition["default"])
        described.append(entry)
    return described
