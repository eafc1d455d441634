"""Session documents over the API: the AWS-owned ones and the account's own, with versions."""

import json

import pytest

STANDARD = {
    "SSM-SessionManagerRunShell",
    "AWS-StartPortForwardingSession",
    "AWS-StartPortForwardingSessionToRemoteHost",
    "AWS-StartInteractiveCommand",
    "AWS-StartNonInteractiveCommand",
    "AWS-StartSSHSession",
}


def shell_doc(command="echo hello"):
    return json.dumps(
        {
            "schemaVersion": "1.0",
            "description": "a custom command",
            "sessionType": "InteractiveCommands",
            "parameters": {"greeting": {"type": "String", "default": "hi"}},
            "properties": {"linux": {"commands": command, "runAsElevated": False}},
        }
    )


def test_standard_documents_are_preloaded(ssm):
    names = {d["Name"] for d in ssm.list_documents()["DocumentIdentifiers"]}
    assert names == STANDARD
    port = ssm.describe_document(Name="AWS-StartPortForwardingSession")["Document"]
    assert port["Owner"] == "Amazon" and port["DocumentType"] == "Session"
    params = {p["Name"]: p for p in port["Parameters"]}
    assert params["portNumber"]["DefaultValue"] == "80"
    assert params["localPortNumber"]["DefaultValue"] == "0"
    ssh = json.loads(ssm.get_document(Name="AWS-StartSSHSession")["Content"])
    assert ssh["sessionType"] == "Port" and "type" not in ssh["properties"]
    shell = json.loads(ssm.get_document(Name="SSM-SessionManagerRunShell")["Content"])
    assert shell["sessionType"] == "Standard_Stream"


def test_create_get_update_delete(ssm):
    created = ssm.create_document(
        Name="Team-Shell",
        Content=shell_doc(),
        DocumentType="Session",
        DocumentFormat="JSON",
        Tags=[{"Key": "owner", "Value": "ops"}],
    )["DocumentDescription"]
    assert created["DocumentVersion"] == "1" and created["Owner"] != "Amazon"
    assert created["Tags"] == [{"Key": "owner", "Value": "ops"}]
    got = ssm.get_document(Name="Team-Shell")
    assert json.loads(got["Content"])["properties"]["linux"]["commands"] == "echo hello"
    updated = ssm.update_document(
        Name="Team-Shell", Content=shell_doc("echo v2"), DocumentVersion="$LATEST"
    )["DocumentDescription"]
    assert updated["DocumentVersion"] == "2" and updated["LatestVersion"] == "2"
    assert updated["DefaultVersion"] == "1"
    v1 = ssm.get_document(Name="Team-Shell")  # the default version
    assert "echo hello" in v1["Content"]
    v2 = ssm.get_document(Name="Team-Shell", DocumentVersion="$LATEST")
    assert "echo v2" in v2["Content"] and v2["DocumentVersion"] == "2"
    ssm.update_document_default_version(Name="Team-Shell", DocumentVersion="2")
    assert ssm.describe_document(Name="Team-Shell")["Document"]["DefaultVersion"] == "2"
    with pytest.raises(ssm.exceptions.DuplicateDocumentContent):
        ssm.update_document(
            Name="Team-Shell", Content=shell_doc("echo v2"), DocumentVersion="$LATEST"
        )
    mine = ssm.list_documents(Filters=[{"Key": "Owner", "Values": ["Self"]}])
    assert [d["Name"] for d in mine["DocumentIdentifiers"]] == ["Team-Shell"]
    ssm.delete_document(Name="Team-Shell")
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.get_document(Name="Team-Shell")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        (
            {"Name": "AWS-Mine", "Content": shell_doc(), "DocumentType": "Session"},
            "ValidationException",
        ),
        ({"Name": "x", "Content": shell_doc(), "DocumentType": "Session"}, "ValidationException"),
        ({"Name": "Cmd", "Content": shell_doc(), "DocumentType": "Command"}, "ValidationException"),
        (
            {"Name": "Bad", "Content": "{not json", "DocumentType": "Session"},
            "InvalidDocumentContent",
        ),
        (
            {
                "Name": "Old",
                "Content": json.dumps({"schemaVersion": "2.2", "sessionType": "Port"}),
                "DocumentType": "Session",
            },
            "InvalidDocumentSchemaVersion",
        ),
        (
            {
                "Name": "Arr",
                "Content": shell_doc().replace('"echo hello"', '["a", "b"]'),
                "DocumentType": "Session",
            },
            "InvalidDocumentContent",
        ),
    ],
)
def test_create_document_errors(ssm, kwargs, code):
    with pytest.raises(ssm.exceptions.ClientError) as info:
        ssm.create_document(**kwargs)
    assert info.value.response["Error"]["Code"] == code


def test_duplicate_name_and_aws_owned_documents_are_read_only(ssm):
    ssm.create_document(Name="Mine", Content=shell_doc(), DocumentType="Session")
    with pytest.raises(ssm.exceptions.DocumentAlreadyExists):
        ssm.create_document(Name="Mine", Content=shell_doc(), DocumentType="Session")
    with pytest.raises(ssm.exceptions.InvalidDocumentOperation):
        ssm.delete_document(Name="AWS-StartSSHSession")
    with pytest.raises(ssm.exceptions.InvalidDocumentOperation):
        ssm.update_document(Name="AWS-StartSSHSession", Content=shell_doc())
    with pytest.raises(ssm.exceptions.InvalidDocumentVersion):
        ssm.get_document(Name="AWS-StartSSHSession", DocumentVersion="7")


def preferences(**inputs):
    return json.dumps(
        {
            "schemaVersion": "1.0",
            "description": "Session Manager preferences",
            "sessionType": "Standard_Stream",
            "inputs": {"idleSessionTimeout": "20", **inputs},
        }
    )


def test_the_account_writes_its_own_preferences(ssm):
    """SSM-SessionManagerRunShell is built in until the account updates it, as people do
    with `aws ssm update-document --name SSM-SessionManagerRunShell`; deleting the account's
    copy brings the built-in back."""
    built_in = ssm.describe_document(Name="SSM-SessionManagerRunShell")["Document"]
    assert built_in["Owner"] == "Amazon"
    updated = ssm.update_document(
        Name="SSM-SessionManagerRunShell",
        Content=preferences(kmsKeyId="alias/sessions"),
        DocumentVersion="$LATEST",
    )["DocumentDescription"]
    assert updated["LatestVersion"] == "2" and updated["Owner"] != "Amazon"
    assert updated["DocumentVersion"] == "2"
    ssm.update_document_default_version(Name="SSM-SessionManagerRunShell", DocumentVersion="2")
    content = json.loads(ssm.get_document(Name="SSM-SessionManagerRunShell")["Content"])
    assert content["inputs"]["kmsKeyId"] == "alias/sessions"
    original = json.loads(
        ssm.get_document(Name="SSM-SessionManagerRunShell", DocumentVersion="1")["Content"]
    )
    assert original["inputs"]["kmsKeyId"] == ""
    listed = [
        d["Name"]
        for d in ssm.list_documents()["DocumentIdentifiers"]
        if d["Name"] == "SSM-SessionManagerRunShell"
    ]
    assert listed == ["SSM-SessionManagerRunShell"]
    ssm.delete_document(Name="SSM-SessionManagerRunShell")
    assert ssm.describe_document(Name="SSM-SessionManagerRunShell")["Document"]["Owner"] == (
        "Amazon"
    )


def test_preferences_can_be_created_with_create_document(ssm):
    ssm.create_document(
        Name="SSM-SessionManagerRunShell",
        Content=preferences(runAsEnabled=True, runAsDefaultUser="ops"),
        DocumentType="Session",
        DocumentFormat="JSON",
    )
    content = json.loads(ssm.get_document(Name="SSM-SessionManagerRunShell")["Content"])
    assert content["inputs"]["runAsDefaultUser"] == "ops"
    with pytest.raises(ssm.exceptions.ClientError):
        ssm.create_document(Name="SSM-Other", Content=preferences(), DocumentType="Session")


def test_list_documents_pages(ssm):
    for i in range(8):
        ssm.create_document(
            Name=f"Doc-{i:02d}", Content=shell_doc(f"echo {i}"), DocumentType="Session"
        )
    pages = list(ssm.get_paginator("list_documents").paginate(PaginationConfig={"PageSize": 5}))
    names = [d["Name"] for p in pages for d in p["DocumentIdentifiers"]]
    assert len(pages) == 3 and len(names) == 14 == len(set(names))


def test_custom_document_starts_a_session(ssm, node):
    import json as _json

    from hatchway.protocol import MessageType

    ssm.create_document(
        Name="Greeter", Content=shell_doc("echo {{ greeting }}"), DocumentType="Session"
    )
    ssm.start_session(
        Target=node.instance_id, DocumentName="Greeter", Parameters={"greeting": ["yo"]}
    )
    message = node.wait_for(lambda m: m.message_type == MessageType.INTERACTIVE_SHELL)
    task = _json.loads(_json.loads(message.payload)["Content"])
    assert task["DocumentContent"]["properties"]["linux"]["commands"] == "echo yo"
