"""Session documents: standard documents, validation, parameters and substitution."""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hatchway.aws.errors import (
    AwsError,
    InvalidDocumentContent,
    InvalidDocumentSchemaVersion,
    InvalidParameters,
    MaxDocumentSizeExceeded,
    ValidationException,
)
from hatchway.server.documents import (
    DEFAULT_SESSION_DOCUMENT,
    MAX_DOCUMENT_BYTES,
    STANDARD_DOCUMENTS,
    SessionPreferences,
    describe_parameters,
    document_hash,
    parse_session_document,
    resolve_parameters,
    session_preferences,
    substitute,
)

PORT = STANDARD_DOCUMENTS["AWS-StartPortForwardingSession"]
REMOTE = STANDARD_DOCUMENTS["AWS-StartPortForwardingSessionToRemoteHost"]
SSH = STANDARD_DOCUMENTS["AWS-StartSSHSession"]
INTERACTIVE = STANDARD_DOCUMENTS["AWS-StartInteractiveCommand"]
NON_INTERACTIVE = STANDARD_DOCUMENTS["AWS-StartNonInteractiveCommand"]
SHELL = STANDARD_DOCUMENTS["SSM-SessionManagerRunShell"]


def start(document: dict[str, Any], supplied: dict[str, list[str]] | None) -> dict[str, Any]:
    """What StartSession does: resolve, then substitute."""
    return substitute(document, resolve_parameters(document, supplied))


def custom(parameters: dict[str, Any], **properties: Any) -> dict[str, Any]:
    """A small valid Port document with the given parameters."""
    return {
        "schemaVersion": "1.0",
        "sessionType": "Port",
        "parameters": parameters,
        "properties": {"portNumber": "{{ portNumber }}", **properties},
    }


# --- the standard documents -------------------------------------------------------------


def test_default_document_is_the_shell_document() -> None:
    assert DEFAULT_SESSION_DOCUMENT == "SSM-SessionManagerRunShell"
    assert DEFAULT_SESSION_DOCUMENT in STANDARD_DOCUMENTS


def test_all_six_standard_documents_exist_with_their_session_types() -> None:
    assert {name: doc["sessionType"] for name, doc in STANDARD_DOCUMENTS.items()} == {
        "SSM-SessionManagerRunShell": "Standard_Stream",
        "AWS-StartPortForwardingSession": "Port",
        "AWS-StartPortForwardingSessionToRemoteHost": "Port",
        "AWS-StartSSHSession": "Port",
        "AWS-StartInteractiveCommand": "InteractiveCommands",
        "AWS-StartNonInteractiveCommand": "NonInteractiveCommands",
    }
    assert all(doc["schemaVersion"] == "1.0" for doc in STANDARD_DOCUMENTS.values())
    assert all(doc["description"] for doc in STANDARD_DOCUMENTS.values())


def test_shell_document_inputs_are_the_cli_template_preferences() -> None:
    assert SHELL["inputs"] == {
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
    }


def test_ssh_document_has_no_forwarding_type() -> None:
    assert set(SSH["properties"]) == {"portNumber"}


def test_command_documents_require_command_for_every_os() -> None:
    for document in (INTERACTIVE, NON_INTERACTIVE):
        assert "default" not in document["parameters"]["command"]
        for os_key in ("linux", "windows", "macos"):
            assert document["properties"][os_key] == {
                "commands": "{{command}}",
                "runAsElevated": False,
            }


@pytest.mark.parametrize("name", sorted(STANDARD_DOCUMENTS))
def test_standard_documents_pass_validation(name: str) -> None:
    document = STANDARD_DOCUMENTS[name]
    assert parse_session_document(json.dumps(document)) == document
    assert parse_session_document(json.dumps(document, indent=2), "JSON") == document


@pytest.mark.parametrize(
    ("name", "supplied", "values", "properties"),
    [
        ("SSM-SessionManagerRunShell", None, {}, None),
        (
            "AWS-StartPortForwardingSession",
            None,
            {"portNumber": "80", "localPortNumber": "0"},
            {"portNumber": "80", "localPortNumber": "0", "type": "LocalPortForwarding"},
        ),
        (
            "AWS-StartPortForwardingSession",
            {"portNumber": ["22"], "localPortNumber": ["0"]},
            {"portNumber": "22", "localPortNumber": "0"},
            {"portNumber": "22", "localPortNumber": "0", "type": "LocalPortForwarding"},
        ),
        (
            "AWS-StartPortForwardingSessionToRemoteHost",
            {"host": ["db.internal"], "portNumber": ["5432"], "localPortNumber": ["15432"]},
            {"host": "db.internal", "portNumber": "5432", "localPortNumber": "15432"},
            {
                "host": "db.internal",
                "portNumber": "5432",
                "localPortNumber": "15432",
                "type": "LocalPortForwarding",
            },
        ),
        (
            "AWS-StartPortForwardingSessionToRemoteHost",
            {"host": ["10.0.0.7"]},
            {"host": "10.0.0.7", "portNumber": "80", "localPortNumber": "0"},
            {
                "host": "10.0.0.7",
                "portNumber": "80",
                "localPortNumber": "0",
                "type": "LocalPortForwarding",
            },
        ),
        ("AWS-StartSSHSession", None, {"portNumber": "22"}, {"portNumber": "22"}),
        ("AWS-StartSSHSession", {"portNumber": ["2222"]}, {"portNumber": "2222"}, None),
    ],
)
def test_standard_documents_resolve_and_substitute(
    name: str,
    supplied: dict[str, list[str]] | None,
    values: dict[str, object],
    properties: dict[str, Any] | None,
) -> None:
    document = STANDARD_DOCUMENTS[name]
    assert resolve_parameters(document, supplied) == values
    resolved = start(document, supplied)
    if properties is not None:
        assert resolved["properties"] == properties
    assert "{{" not in json.dumps(resolved.get("properties", {}))


@pytest.mark.parametrize("document", [INTERACTIVE, NON_INTERACTIVE], ids=["interactive", "non"])
def test_command_documents_substitute_the_command(document: dict[str, Any]) -> None:
    resolved = start(document, {"command": ["top -d 5"]})
    for os_key in ("linux", "windows", "macos"):
        assert resolved["properties"][os_key] == {"commands": "top -d 5", "runAsElevated": False}
    assert document["properties"]["linux"]["commands"] == "{{command}}"


@pytest.mark.parametrize(
    ("document", "missing"),
    [(REMOTE, "host"), (INTERACTIVE, "command"), (NON_INTERACTIVE, "command")],
)
def test_required_parameters_must_be_supplied(document: dict[str, Any], missing: str) -> None:
    with pytest.raises(InvalidParameters, match=f'"{missing}".*required'):
        resolve_parameters(document, {})


def test_shell_document_takes_no_parameters() -> None:
    with pytest.raises(InvalidParameters, match='"portNumber" is not defined'):
        resolve_parameters(SHELL, {"portNumber": ["22"]})


# --- parameter checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "supplied", "name", "value"),
    [
        (PORT, {"portNumber": ["abc"]}, "portNumber", "abc"),
        (PORT, {"portNumber": ["0"]}, "portNumber", "0"),
        (PORT, {"portNumber": ["65536"]}, "portNumber", "65536"),
        (PORT, {"portNumber": ["022"]}, "portNumber", "022"),
        # $ in Python matches before a final newline; the check must not let it through.
        (PORT, {"portNumber": ["22\n"]}, "portNumber", "22\\n"),
        (PORT, {"localPortNumber": ["-1"]}, "localPortNumber", "-1"),
        (SSH, {"portNumber": [""]}, "portNumber", ""),
        (REMOTE, {"host": ["db; rm -rf /"]}, "host", "db; rm -rf /"),
        (REMOTE, {"host": ["{{ssm:/x}}"]}, "host", "{{ssm:/x}}"),
    ],
)
def test_values_failing_the_pattern_are_refused(
    document: dict[str, Any], supplied: dict[str, list[str]], name: str, value: str
) -> None:
    with pytest.raises(InvalidParameters) as caught:
        resolve_parameters(document, supplied)
    assert f'"{name}"' in caught.value.message
    assert f'"{value}"' in caught.value.message
    assert "fails to match required pattern" in caught.value.message


@pytest.mark.parametrize("port", ["1", "22", "443", "65535"])
def test_valid_ports_pass(port: str) -> None:
    assert resolve_parameters(PORT, {"portNumber": [port]})["portNumber"] == port


def test_local_port_zero_is_allowed() -> None:
    assert resolve_parameters(PORT, {"localPortNumber": ["0"]})["localPortNumber"] == "0"


def test_allowed_values() -> None:
    document = custom(
        {
            "portNumber": {"type": "String", "default": "80"},
            "mode": {"type": "String", "allowedValues": ["fast", "safe"], "default": "safe"},
        }
    )
    assert resolve_parameters(document, {"mode": ["fast"]})["mode"] == "fast"
    with pytest.raises(InvalidParameters, match=r'"mode" "slow" is not one of .*fast, safe'):
        resolve_parameters(document, {"mode": ["slow"]})


def test_min_and_max_chars() -> None:
    document = custom(
        {"portNumber": {"type": "String", "minChars": 2, "maxChars": 4, "default": "80"}}
    )
    assert resolve_parameters(document, {"portNumber": ["8080"]}) == {"portNumber": "8080"}
    with pytest.raises(InvalidParameters, match='"portNumber" "8" is shorter than 2'):
        resolve_parameters(document, {"portNumber": ["8"]})
    with pytest.raises(InvalidParameters, match='"portNumber" "80808" is longer than 4'):
        resolve_parameters(document, {"portNumber": ["80808"]})


def test_unknown_parameter_names_the_parameter_and_the_known_ones() -> None:
    with pytest.raises(InvalidParameters) as caught:
        resolve_parameters(PORT, {"port": ["22"]})
    assert '"port" is not defined' in caught.value.message
    assert "localPortNumber, portNumber" in caught.value.message


@pytest.mark.parametrize("values", [["22", "23"], []])
def test_string_parameter_takes_exactly_one_value(values: list[str]) -> None:
    with pytest.raises(
        InvalidParameters, match=f'"portNumber" takes exactly one value; got {len(values)}'
    ):
        resolve_parameters(SSH, {"portNumber": values})


@pytest.mark.parametrize("raw", ["22", 22, [22], None])
def test_values_must_be_lists_of_strings(raw: object) -> None:
    if raw is None:
        # None for a name means "not given": the default applies.
        assert resolve_parameters(SSH, {"portNumber": raw}) == {"portNumber": "22"}  # type: ignore[dict-item]
        return
    with pytest.raises(InvalidParameters, match='"portNumber" must be given as a list of strings'):
        resolve_parameters(SSH, {"portNumber": raw})  # type: ignore[dict-item]


def test_typed_parameters_are_converted() -> None:
    document = custom(
        {
            "portNumber": {"type": "String", "default": "80"},
            "names": {"type": "StringList", "default": ["a"]},
            "count": {"type": "Integer", "default": 3},
            "verbose": {"type": "Boolean", "default": False},
            "tags": {"type": "StringMap", "default": {}},
            "rules": {"type": "MapList", "default": []},
        }
    )
    assert resolve_parameters(document, None) == {
        "portNumber": "80",
        "names": ["a"],
        "count": 3,
        "verbose": False,
        "tags": {},
        "rules": [],
    }
    supplied = {
        "names": ["x", "y"],
        "count": ["-12"],
        "verbose": ["True"],
        "tags": ['{"team": "ops"}'],
        "rules": ['{"port": 1}', '{"port": 2}'],
    }
    assert resolve_parameters(document, supplied) == {
        "portNumber": "80",
        "names": ["x", "y"],
        "count": -12,
        "verbose": True,
        "tags": {"team": "ops"},
        "rules": [{"port": 1}, {"port": 2}],
    }


@pytest.mark.parametrize(
    ("name", "values", "problem"),
    [
        ("count", ["3.5"], "is not an integer"),
        ("count", ["1", "2"], "takes exactly one value"),
        ("verbose", ["yes"], 'is not "true" or "false"'),
        ("tags", ["[1]"], "is not a JSON object"),
        ("rules", ["{", "{}"], "is not a JSON object"),
    ],
)
def test_typed_parameters_refuse_bad_values(name: str, values: list[str], problem: str) -> None:
    document = custom(
        {
            "portNumber": {"type": "String", "default": "80"},
            "count": {"type": "Integer", "default": 3},
            "verbose": {"type": "Boolean", "default": False},
            "tags": {"type": "StringMap", "default": {}},
            "rules": {"type": "MapList", "default": []},
        }
    )
    with pytest.raises(InvalidParameters, match=f'"{name}".*{problem}'):
        resolve_parameters(document, {name: values})


def test_string_list_checks_every_item_and_the_count() -> None:
    document = custom(
        {
            "portNumber": {"type": "String", "default": "80"},
            "ports": {
                "type": "StringList",
                "allowedPattern": "^[0-9]+$",
                "minItems": 1,
                "maxItems": 2,
                "default": ["1"],
            },
        }
    )
    assert resolve_parameters(document, {"ports": ["1", "2"]})["ports"] == ["1", "2"]
    with pytest.raises(InvalidParameters, match='"ports" "x" fails to match'):
        resolve_parameters(document, {"ports": ["1", "x"]})
    with pytest.raises(InvalidParameters, match='"ports" takes at most 2'):
        resolve_parameters(document, {"ports": ["1", "2", "3"]})
    with pytest.raises(InvalidParameters, match='"ports" needs at least 1'):
        resolve_parameters(document, {"ports": []})


def test_string_list_stays_a_list_through_substitution() -> None:
    document = custom(
        {"portNumber": {"type": "String", "default": "80"}, "hosts": {"type": "StringList"}},
        host="{{ hosts }}",
    )
    resolved = start(document, {"hosts": ["a", "b"]})
    assert resolved["properties"]["host"] == ["a", "b"]


def test_defaults_are_copies() -> None:
    document = custom(
        {
            "portNumber": {"type": "String", "default": "80"},
            "l": {"type": "StringList", "default": ["a"]},
        }
    )
    values = resolve_parameters(document, None)
    values["l"].append("b")  # type: ignore[attr-defined]
    assert document["parameters"]["l"]["default"] == ["a"]


# --- substitution -------------------------------------------------------------------------


def test_whole_placeholders_keep_the_value_type() -> None:
    document = {
        "properties": {"a": "{{ flag }}", "b": "{{count}}", "c": ["{{ names }}"], "d": "{{ s }}"},
        "inputs": {"runAsEnabled": "{{flag}}"},
    }
    values = {"flag": True, "count": 5, "names": ["x", "y"], "s": "text"}
    result = substitute(document, values)
    assert result["properties"] == {"a": True, "b": 5, "c": [["x", "y"]], "d": "text"}
    assert result["inputs"] == {"runAsEnabled": True}


def test_placeholders_inside_longer_strings_are_inserted_as_text() -> None:
    document = {
        "properties": {
            "cmd": "ping -c {{ count }} {{host}} # {{ host }}",
            "flag": "on={{ flag }}",
            "list": "hosts={{ names }}",
        }
    }
    values = {"count": 3, "host": "db", "flag": True, "names": ["a", "b"]}
    assert substitute(document, values)["properties"] == {
        "cmd": "ping -c 3 db # db",
        "flag": "on=true",
        "list": 'hosts=["a", "b"]',
    }


def test_unknown_placeholders_and_ssm_references_are_left_alone() -> None:
    document = {
        "properties": {
            "a": "{{ unknown }}",
            "b": "{{ssm:/team/port}}",
            "c": "{{ ssm-secure:/pw }} and {{ known }}",
            "d": "{{ known}} {{nope }}",
        }
    }
    assert substitute(document, {"known": "k"})["properties"] == {
        "a": "{{ unknown }}",
        "b": "{{ssm:/team/port}}",
        "c": "{{ ssm-secure:/pw }} and k",
        "d": "k {{nope }}",
    }


def test_substitution_is_one_pass() -> None:
    document = {"properties": {"a": "x {{ one }}", "b": "{{ one }}"}}
    result = substitute(document, {"one": "{{ two }}", "two": "boom"})
    assert result["properties"] == {"a": "x {{ two }}", "b": "{{ two }}"}


def test_substitution_touches_only_properties_and_inputs_and_copies() -> None:
    document = copy.deepcopy(INTERACTIVE)
    document["description"] = "runs {{command}}"
    before = copy.deepcopy(document)
    result = substitute(document, {"command": "ls"})
    assert document == before
    assert result["description"] == "runs {{command}}"
    assert result["parameters"] == before["parameters"]
    result["properties"]["linux"]["commands"] = "changed"
    result["parameters"]["command"]["type"] = "changed"
    assert document == before


def test_substituted_values_are_copies() -> None:
    names = ["a"]
    result = substitute({"properties": {"x": "{{ n }}"}}, {"n": names})
    result["properties"]["x"].append("b")
    assert names == ["a"]


def test_keys_are_not_substituted() -> None:
    result = substitute({"properties": {"{{ k }}": "{{ k }}"}}, {"k": "v"})
    assert result["properties"] == {"{{ k }}": "v"}


# --- preferences --------------------------------------------------------------------------


def test_preferences_of_the_shell_document() -> None:
    assert session_preferences(SHELL) == SessionPreferences(
        session_type="Standard_Stream",
        idle_timeout_minutes=20,
        max_duration_minutes=None,
        kms_key_id=None,
        run_as_enabled=False,
        run_as_default_user="",
        shell_profile_linux="",
    )


def test_preferences_read_every_input() -> None:
    document = copy.deepcopy(SHELL)
    document["inputs"].update(
        idleSessionTimeout="5",
        maxSessionDuration="90",
        kmsKeyId="alias/sessions",
        runAsEnabled="TRUE",
        runAsDefaultUser="ops",
        shellProfile={"linux": "exec bash -l", "windows": ""},
    )
    preferences = session_preferences(document)
    assert preferences == SessionPreferences(
        session_type="Standard_Stream",
        idle_timeout_minutes=5,
        max_duration_minutes=90,
        kms_key_id="alias/sessions",
        run_as_enabled=True,
        run_as_default_user="ops",
        shell_profile_linux="exec bash -l",
    )
    with pytest.raises(AttributeError):
        preferences.idle_timeout_minutes = 1  # type: ignore[misc]


def test_preferences_default_when_inputs_are_missing_or_empty() -> None:
    document = {"schemaVersion": "1.0", "sessionType": "Port", "inputs": {"idleSessionTimeout": ""}}
    preferences = session_preferences(document)
    assert preferences.idle_timeout_minutes == 20
    assert preferences.max_duration_minutes is None
    assert preferences.session_type == "Port"
    assert session_preferences({"sessionType": "Port"}).idle_timeout_minutes == 20


def test_preferences_accept_substituted_values() -> None:
    document = {
        "sessionType": "Standard_Stream",
        "inputs": {"idleSessionTimeout": "{{ idle }}", "runAsEnabled": "{{ runAs }}"},
    }
    preferences = session_preferences(substitute(document, {"idle": 7, "runAs": True}))
    assert (preferences.idle_timeout_minutes, preferences.run_as_enabled) == (7, True)


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"idleSessionTimeout": "0"}, "inputs.idleSessionTimeout"),
        ({"idleSessionTimeout": "{{ idle }}"}, "inputs.idleSessionTimeout"),
        ({"maxSessionDuration": "1441"}, "inputs.maxSessionDuration"),
        ({"runAsEnabled": "yes"}, "inputs.runAsEnabled"),
        ({"kmsKeyId": 5}, "inputs.kmsKeyId"),
    ],
)
def test_preferences_refuse_bad_inputs(inputs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidDocumentContent, match=field):
        session_preferences({"sessionType": "Standard_Stream", "inputs": inputs})


# --- hash and DescribeDocument ------------------------------------------------------------


def test_document_hash_is_sha256_hex() -> None:
    assert document_hash("") == hashlib.sha256(b"").hexdigest()
    assert document_hash("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert document_hash("é") == hashlib.sha256("é".encode()).hexdigest()


def test_describe_parameters() -> None:
    assert describe_parameters(REMOTE) == [
        {
            "Name": "host",
            "Type": "String",
            "Description": REMOTE["parameters"]["host"]["description"],
        },
        {
            "Name": "portNumber",
            "Type": "String",
            "Description": REMOTE["parameters"]["portNumber"]["description"],
            "DefaultValue": "80",
        },
        {
            "Name": "localPortNumber",
            "Type": "String",
            "Description": REMOTE["parameters"]["localPortNumber"]["description"],
            "DefaultValue": "0",
        },
    ]
    assert describe_parameters(SHELL) == []
    typed = custom(
        {"n": {"type": "StringList", "default": ["a"]}, "b": {"type": "Boolean", "default": True}}
    )
    assert describe_parameters(typed) == [
        {"Name": "n", "Type": "StringList", "DefaultValue": '["a"]'},
        {"Name": "b", "Type": "Boolean", "DefaultValue": "true"},
    ]


# --- parse_session_document ---------------------------------------------------------------


def with_changes(base: dict[str, Any], path: str, value: object) -> str:
    """JSON of a copy of base with the value at a dotted path replaced (or removed)."""
    document = copy.deepcopy(base)
    *parents, last = path.split(".")
    target = document
    for key in parents:
        target = target[key]
    if value is REMOVE:
        del target[last]
    else:
        target[last] = value
    return json.dumps(document)


REMOVE = object()

BAD_DOCUMENTS: list[tuple[str, type[AwsError], str]] = [
    ("", InvalidDocumentContent, "Content is not valid JSON"),
    ("{", InvalidDocumentContent, "Content is not valid JSON"),
    ('{"a": NaN}', InvalidDocumentContent, "Content is not valid JSON"),
    ('{"a": 1e999}', InvalidDocumentContent, "Content holds inf"),
    ("[]", InvalidDocumentContent, "Content must be a JSON object"),
    ('"text"', InvalidDocumentContent, "Content must be a JSON object"),
    ("[" * 5000 + "]" * 5000, InvalidDocumentContent, "Content"),
    ('{"properties":' * 40 + "1" + "}" * 40, InvalidDocumentContent, "Content nests deeper"),
    ("{}", InvalidDocumentSchemaVersion, "schemaVersion"),
    (with_changes(SHELL, "schemaVersion", "2.2"), InvalidDocumentSchemaVersion, "schemaVersion"),
    (with_changes(SHELL, "schemaVersion", 1.0), InvalidDocumentSchemaVersion, "schemaVersion"),
    (with_changes(SHELL, "mainSteps", []), InvalidDocumentContent, "mainSteps"),
    (with_changes(SHELL, "description", 3), InvalidDocumentContent, "description"),
    (with_changes(SHELL, "sessionType", REMOVE), InvalidDocumentContent, "sessionType"),
    (with_changes(SHELL, "sessionType", "Shell"), InvalidDocumentContent, "sessionType"),
    (with_changes(SHELL, "sessionType", ["Port"]), InvalidDocumentContent, "sessionType"),
    (with_changes(SHELL, "inputs", []), InvalidDocumentContent, "inputs"),
    (with_changes(SHELL, "inputs.s3BucketName", 1), InvalidDocumentContent, "inputs.s3BucketName"),
    (
        with_changes(SHELL, "inputs.runAsEnabled", "yes"),
        InvalidDocumentContent,
        "inputs.runAsEnabled",
    ),
    (
        with_changes(SHELL, "inputs.cloudWatchStreamingEnabled", None),
        InvalidDocumentContent,
        "inputs.cloudWatchStreamingEnabled",
    ),
    (
        with_changes(SHELL, "inputs.idleSessionTimeout", "0"),
        InvalidDocumentContent,
        "inputs.idleSessionTimeout",
    ),
    (
        with_changes(SHELL, "inputs.idleSessionTimeout", "61"),
        InvalidDocumentContent,
        "inputs.idleSessionTimeout",
    ),
    (
        with_changes(SHELL, "inputs.idleSessionTimeout", 20),
        InvalidDocumentContent,
        "inputs.idleSessionTimeout",
    ),
    (
        with_changes(SHELL, "inputs.idleSessionTimeout", "ten"),
        InvalidDocumentContent,
        "inputs.idleSessionTimeout",
    ),
    (
        with_changes(SHELL, "inputs.maxSessionDuration", "1441"),
        InvalidDocumentContent,
        "inputs.maxSessionDuration",
    ),
    (
        with_changes(SHELL, "inputs.maxSessionDuration", "-5"),
        InvalidDocumentContent,
        "inputs.maxSessionDuration",
    ),
    (
        with_changes(SHELL, "inputs.shellProfile", "bash"),
        InvalidDocumentContent,
        "inputs.shellProfile",
    ),
    (
        with_changes(SHELL, "inputs.shellProfile.linux", ["a"]),
        InvalidDocumentContent,
        "inputs.shellProfile.linux",
    ),
    (with_changes(PORT, "parameters", []), InvalidDocumentContent, "parameters"),
    (
        with_changes(PORT, "parameters.portNumber", "String"),
        InvalidDocumentContent,
        "parameters.portNumber",
    ),
    (
        with_changes(PORT, "parameters.portNumber.type", "Number"),
        InvalidDocumentContent,
        "parameters.portNumber.type",
    ),
    (
        with_changes(PORT, "parameters.portNumber.type", REMOVE),
        InvalidDocumentContent,
        "parameters.portNumber.type",
    ),
    (
        with_changes(PORT, "parameters.portNumber.type", {}),
        InvalidDocumentContent,
        "parameters.portNumber.type",
    ),
    (
        with_changes(PORT, "parameters.portNumber.default", 80),
        InvalidDocumentContent,
        "parameters.portNumber.default",
    ),
    (
        with_changes(PORT, "parameters.portNumber.allowedPattern", "(["),
        InvalidDocumentContent,
        "parameters.portNumber.allowedPattern",
    ),
    (
        with_changes(PORT, "parameters.portNumber.allowedPattern", "a{99999999999}"),
        InvalidDocumentContent,
        "parameters.portNumber.allowedPattern",
    ),
    (
        with_changes(PORT, "parameters.portNumber.allowedPattern", 5),
        InvalidDocumentContent,
        "parameters.portNumber.allowedPattern",
    ),
    (
        with_changes(PORT, "parameters.portNumber.allowedValues", "80"),
        InvalidDocumentContent,
        "parameters.portNumber.allowedValues",
    ),
    (
        with_changes(PORT, "parameters.portNumber.maxChars", -1),
        InvalidDocumentContent,
        "parameters.portNumber.maxChars",
    ),
    (
        with_changes(PORT, "parameters.portNumber.minChars", "1"),
        InvalidDocumentContent,
        "parameters.portNumber.minChars",
    ),
    (
        json.dumps(custom({"portNumber": {"type": "String", "minChars": 9, "maxChars": 2}})),
        InvalidDocumentContent,
        "parameters.portNumber.minChars is greater than maxChars",
    ),
    (
        json.dumps(custom({"p": {"type": "StringList", "minItems": 3, "maxItems": 2}})),
        InvalidDocumentContent,
        "parameters.p.minItems is greater than maxItems",
    ),
    (
        with_changes(PORT, "parameters.portNumber.maxChars", True),
        InvalidDocumentContent,
        "parameters.portNumber.maxChars",
    ),
    (
        with_changes(PORT, "parameters.portNumber.allowedPatern", "x"),
        InvalidDocumentContent,
        "parameters.portNumber.allowedPatern",
    ),
    (
        with_changes(PORT, "parameters.bad name", {"type": "String"}),
        InvalidDocumentContent,
        "parameters.bad name",
    ),
    (with_changes(PORT, "properties", "x"), InvalidDocumentContent, "properties"),
    (
        with_changes(PORT, "properties.portNumber", REMOVE),
        InvalidDocumentContent,
        "properties.portNumber",
    ),
    (
        with_changes(PORT, "properties.portNumber", 22),
        InvalidDocumentContent,
        "properties.portNumber",
    ),
    (
        with_changes(PORT, "properties.type", "RemotePortForwarding"),
        InvalidDocumentContent,
        "properties.type",
    ),
    (
        with_changes(PORT, "properties.localPortNumber", 0),
        InvalidDocumentContent,
        "properties.localPortNumber",
    ),
    (with_changes(REMOTE, "properties.host", ["a"]), InvalidDocumentContent, "properties.host"),
    (with_changes(INTERACTIVE, "properties", {}), InvalidDocumentContent, "properties"),
    (
        with_changes(INTERACTIVE, "properties.linux", "ls"),
        InvalidDocumentContent,
        "properties.linux",
    ),
    (
        with_changes(INTERACTIVE, "properties.linux.commands", REMOVE),
        InvalidDocumentContent,
        "properties.linux.commands",
    ),
    (
        with_changes(INTERACTIVE, "properties.macos.runAsElevated", "maybe"),
        InvalidDocumentContent,
        "properties.macos.runAsElevated",
    ),
    (
        with_changes(INTERACTIVE, "properties.linux.separateOutputStream", 1),
        InvalidDocumentContent,
        "properties.linux.separateOutputStream",
    ),
    (
        with_changes(INTERACTIVE, "properties.linux.stdOutSeparatorPrefix", "x" * 31),
        InvalidDocumentContent,
        "properties.linux.stdOutSeparatorPrefix",
    ),
    (
        with_changes(INTERACTIVE, "properties.linux.stdErrSeparatorPrefix", "a b"),
        InvalidDocumentContent,
        "properties.linux.stdErrSeparatorPrefix",
    ),
]


@pytest.mark.parametrize(("content", "error", "field"), BAD_DOCUMENTS)
def test_bad_documents_are_refused_naming_the_field(
    content: str, error: type[AwsError], field: str
) -> None:
    with pytest.raises(error) as caught:
        parse_session_document(content)
    assert type(caught.value) is error
    assert field in caught.value.message


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            INTERACTIVE,
            "Invalid format in session properties map[...]; error json: cannot unmarshal array "
            "into Go struct field ShellConfig.linux.commands of type string",
        ),
        (
            NON_INTERACTIVE,
            "Fail to remarshal shell properties: json: cannot unmarshal array "
            "into Go struct field ShellConfig.linux.commands of type string",
        ),
    ],
    ids=["interactive", "non-interactive"],
)
def test_command_list_gives_the_agent_error(document: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidDocumentContent) as caught:
        parse_session_document(with_changes(document, "properties.linux.commands", ["ls"]))
    assert caught.value.message.startswith("properties.linux.commands must be a string")
    assert message in caught.value.message


def test_port_number_as_a_number_gives_the_agent_error() -> None:
    with pytest.raises(InvalidDocumentContent) as caught:
        parse_session_document(with_changes(PORT, "properties.portNumber", 22))
    assert (
        "Unable to remarshal session properties. json: cannot unmarshal number into Go "
        "struct field PortParameters.portNumber of type string"
    ) in caught.value.message


def test_documents_may_leave_typed_fields_to_parameters() -> None:
    document = copy.deepcopy(SHELL)
    document["parameters"] = {"idle": {"type": "String", "default": "15"}}
    document["inputs"]["idleSessionTimeout"] = "{{ idle }}"
    document["inputs"]["runAsEnabled"] = "{{ssm:/sessions/runas}}"
    document["inputs"]["s3EncryptionEnabled"] = "false"
    assert parse_session_document(json.dumps(document)) == document
    resolved = start(document, None)
    assert resolved["inputs"]["idleSessionTimeout"] == "15"
    # {{ssm:...}} is left for whoever resolves SSM parameters; until then it is not a flag.
    assert resolved["inputs"]["runAsEnabled"] == "{{ssm:/sessions/runas}}"
    with pytest.raises(InvalidDocumentContent, match=r"inputs\.runAsEnabled"):
        session_preferences(resolved)
    resolved["inputs"]["runAsEnabled"] = "true"
    assert session_preferences(resolved).idle_timeout_minutes == 15


def test_a_full_custom_document_is_accepted() -> None:
    document = {
        "schemaVersion": "1.0",
        "description": "Tail a log",
        "sessionType": "NonInteractiveCommands",
        "parameters": {
            "file": {
                "type": "String",
                "description": "Log file",
                "default": "/var/log/syslog",
                "allowedPattern": "^/var/log/[A-Za-z0-9._/-]+$",
                "minChars": 1,
                "maxChars": 200,
                "displayType": "textarea",
            },
            "tags": {"type": "StringMap", "default": {"a": "b"}},
            "lines": {"type": "Integer", "default": 10, "allowedValues": ["10", "100"]},
        },
        "inputs": {"idleSessionTimeout": "", "maxSessionDuration": "60", "customKey": 1},
        "properties": {
            "linux": {
                "commands": "tail -n {{ lines }} -F {{ file }}",
                "runAsElevated": True,
                "separateOutputStream": "true",
                "stdOutSeparatorPrefix": "OUT:",
                "stdErrSeparatorPrefix": "ERR:",
            }
        },
    }
    assert parse_session_document(json.dumps(document)) == document
    resolved = start(document, {"lines": ["100"]})
    assert resolved["properties"]["linux"]["commands"] == "tail -n 100 -F /var/log/syslog"
    assert session_preferences(resolved).max_duration_minutes == 60


def test_size_limit() -> None:
    document = copy.deepcopy(SHELL)
    document["description"] = "x" * MAX_DOCUMENT_BYTES
    with pytest.raises(MaxDocumentSizeExceeded, match=str(MAX_DOCUMENT_BYTES)):
        parse_session_document(json.dumps(document))
    # The limit counts bytes, not characters.
    document["description"] = "é" * (MAX_DOCUMENT_BYTES // 2)
    with pytest.raises(MaxDocumentSizeExceeded):
        parse_session_document(json.dumps(document, ensure_ascii=False))
    document["description"] = "x" * (MAX_DOCUMENT_BYTES - 1000)
    assert parse_session_document(json.dumps(document))["description"] == document["description"]


def test_unknown_format_is_a_validation_error_and_text_is_refused() -> None:
    content = json.dumps(SHELL)
    with pytest.raises(ValidationException, match="DocumentFormat"):
        parse_session_document(content, "XML")
    with pytest.raises(InvalidDocumentContent, match="DocumentFormat"):
        parse_session_document(content, "TEXT")


YAML_SHELL = """\
schemaVersion: '1.0'
description: Shell with a short idle timeout
sessionType: Standard_Stream
inputs:
  idleSessionTimeout: '5'
  runAsEnabled: false
  shellProfile:
    linux: exec bash
"""


def test_yaml_is_refused_without_pyyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` fail
    with pytest.raises(InvalidDocumentContent) as caught:
        parse_session_document(YAML_SHELL, "YAML")
    assert caught.value.message == "YAML documents are not supported by this server; use JSON"


def test_yaml_documents_when_pyyaml_is_present() -> None:
    pytest.importorskip("yaml")
    document = parse_session_document(YAML_SHELL, "YAML")
    assert session_preferences(document).idle_timeout_minutes == 5
    assert session_preferences(document).shell_profile_linux == "exec bash"
    for name, standard in STANDARD_DOCUMENTS.items():
        # JSON is valid YAML, so every standard document also loads this way.
        assert parse_session_document(json.dumps(standard), "YAML") == standard, name


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("a: [unclosed", "Content is not valid YAML"),
        ("a: 2001-13-45", "Content is not valid YAML"),
        ("a: !!python/object:os.system x", "Content is not valid YAML"),
        ("a: &x [1]\nb: *x", "Content uses YAML aliases"),
        ("a: 2001-01-01", "Content holds a date value"),
        ("a: !!binary aGk=", "Content holds a bytes value"),
        ("a: .nan", "Content holds nan"),
        ("? [1]\n: 2", "Content"),
        ("1: 2", "Content has a key that is not a string"),
        ("- 1", "Content must be a JSON object"),
        ("schemaVersion: 1.0\nsessionType: Port", "schemaVersion"),
    ],
)
def test_bad_yaml_is_refused(content: str, field: str) -> None:
    pytest.importorskip("yaml")
    with pytest.raises(AwsError) as caught:
        parse_session_document(content, "YAML")
    assert field in caught.value.message


# --- robustness ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
# Documents that get past the first checks, so the deeper ones are exercised too.
near_documents = st.fixed_dictionaries(
    {"schemaVersion": st.just("1.0")},
    optional={
        "sessionType": st.sampled_from(
            ["Standard_Stream", "InteractiveCommands", "NonInteractiveCommands", "Port", "x"]
        ),
        "description": json_values,
        "inputs": st.dictionaries(
            st.sampled_from(["idleSessionTimeout", "runAsEnabled", "shellProfile", "kmsKeyId"]),
            json_values,
        ),
        "parameters": st.dictionaries(
            st.sampled_from(["portNumber", "command", "x y"]),
            st.dictionaries(
                st.sampled_from(
                    ["type", "default", "allowedPattern", "allowedValues", "minChars", "maxChars"]
                ),
                json_values | st.sampled_from(["String", "StringList", "Integer", "(", "^a$"]),
            ),
        ),
        "properties": st.dictionaries(
            st.sampled_from(["linux", "macos", "portNumber", "type", "host"]),
            json_values | st.fixed_dictionaries({"commands": json_values}),
        ),
    },
)


def only_aws_errors(content: str, document_format: str) -> None:
    try:
        parse_session_document(content, document_format)
    except AwsError:
        pass


@given(json_values, st.sampled_from(["JSON", "YAML"]))
def test_any_json_value_gives_only_aws_errors(value: object, document_format: str) -> None:
    only_aws_errors(json.dumps(value), document_format)


@given(st.text(), st.sampled_from(["JSON", "YAML", "TEXT", "json", ""]))
def test_any_text_gives_only_aws_errors(content: str, document_format: str) -> None:
    only_aws_errors(content, document_format)


@given(near_documents)
def test_near_documents_give_only_aws_errors(document: dict[str, Any]) -> None:
    only_aws_errors(json.dumps(document), "JSON")


@given(
    st.sampled_from(sorted(STANDARD_DOCUMENTS)),
    st.dictionaries(
        st.sampled_from(["portNumber", "localPortNumber", "host", "command", "other"]),
        st.lists(st.text(max_size=10), max_size=3),
    ),
)
def test_resolving_gives_typed_values_or_invalid_parameters(
    name: str, supplied: dict[str, list[str]]
) -> None:
    document = STANDARD_DOCUMENTS[name]
    try:
        values = resolve_parameters(document, supplied)
    except InvalidParameters:
        return
    assert set(values) == set(document.get("parameters", {}))
    assert all(isinstance(value, str) for value in values.values())
    session_preferences(substitute(document, values))


@given(
    near_documents,
    st.dictionaries(
        st.sampled_from(["portNumber", "command"]), st.lists(st.text(max_size=10), max_size=3)
    ),
)
def test_accepted_documents_start_or_give_aws_errors(
    document: dict[str, Any], supplied: dict[str, list[str]]
) -> None:
    try:
        parsed = parse_session_document(json.dumps(document))
        session_preferences(start(parsed, supplied))
        describe_parameters(parsed)
    except AwsError:
        pass
