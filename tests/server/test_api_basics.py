"""The server's wire behaviour: bootstrap, health, error shapes, bad requests."""

import json
import os
import stat
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

from hatchway.agent.identity import Identity
from hatchway.agent.signing import signed_headers


def raw_post(server, body: bytes, target: str | None = "AmazonSSM.DescribeSessions", sign=True):
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target:
        headers["X-Amz-Target"] = target
    if sign:
        key_id, secret = server.admin_keys()
        ident = Identity("admin", server.url, server.region, key_id, secret)
        headers = signed_headers(ident, "POST", server.url + "/", "ssm", body, headers)
    request = urllib.request.Request(server.url + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_bootstrap_writes_admin_credentials_readable_by_owner_only(server):
    mode = stat.S_IMODE(os.stat(server.credentials_file).st_mode)
    assert mode == 0o600
    text = server.credentials_file.read_text()
    assert text.startswith("[default]\naws_access_key_id = AKIA")
    key_id, secret = server.admin_keys()
    # Stored encrypted at rest: the secret never appears in the database file.
    db = (server.home / "hatchway.db").read_bytes()
    wal = server.home / "hatchway.db-wal"
    blob = db + (wal.read_bytes() if wal.exists() else b"")
    assert key_id.encode() in blob and secret.encode() not in blob


def test_healthz(server):
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as response:
        assert response.status == 200
        assert response.headers["x-amzn-RequestId"]


def test_unknown_operation(server):
    status, headers, body = raw_post(server, b"{}", "AmazonSSM.FlyToTheMoon")
    assert status == 400
    assert json.loads(body)["__type"] == "UnknownOperationException"
    assert headers["x-amzn-RequestId"]


def test_malformed_json_is_a_serialization_error(server):
    status, _, body = raw_post(server, b'{"State": ')
    assert status == 400
    assert json.loads(body)["__type"] == "SerializationException"
    status, _, body = raw_post(server, b"[1, 2]")
    assert json.loads(body)["__type"] == "SerializationException"


def test_oversized_body_is_refused(server):
    status, headers, _body = raw_post(server, b"{" + b" " * (1024 * 1024 + 10) + b"}")
    assert status == 413
    assert headers["x-amzn-RequestId"]


def test_missing_authentication(server):
    status, _, body = raw_post(server, b"{}", sign=False)
    assert status == 403
    assert json.loads(body) == {
        "__type": "MissingAuthenticationTokenException",
        "message": "Missing Authentication Token",
    }


def test_unknown_key_via_boto3(server):
    client = server.client("ssm", keys=("AKIAAAAAAAAAAAAAAAAA", "nope"))
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.describe_sessions(State="Active")
    error = info.value.response["Error"]
    assert error["Code"] == "UnrecognizedClientException"
    assert error["Message"] == "The security token included in the request is invalid."


def test_wrong_secret_via_boto3(server):
    key_id, _ = server.admin_keys()
    client = server.client("ssm", keys=(key_id, "wrong-secret"))
    with pytest.raises(client.exceptions.ClientError) as info:
        client.describe_sessions(State="Active")
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert info.value.response["Error"]["Message"].startswith(
        "The request signature we calculated does not match the signature you provided."
    )


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe",
        b'{"State": 7}',
        b'{"State": "Sometimes"}',
        b'{"State": "Active", "MaxResults": "ten"}',
        b'{"State": "Active", "Filters": "x"}',
        b'{"State": "Active", "Filters": [{"key": "Nope", "value": "x"}]}',
        b'{"State": "Active", "NextToken": "garbage"}',
        json.dumps(
            {"State": "Active", "Filters": [{"key": "InvokedAfter", "value": "noon"}]}
        ).encode(),
    ],
)
def test_bad_input_gets_a_client_error_and_the_server_survives(server, body):
    status, headers, payload = raw_post(server, body)
    assert 400 <= status < 500, payload
    assert json.loads(payload)["__type"]
    assert headers["x-amzn-RequestId"]
    assert raw_post(server, b'{"State":"Active"}')[0] == 200
