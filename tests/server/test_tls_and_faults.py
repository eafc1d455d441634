"""HTTPS with --tls-cert/--tls-key, and how an unexpected fault is reported."""

import json

import pytest

from hatchway.server.ssm import ssm as ssm_service
from tests.certs import PrivateCA
from tests.helpers import running_server
from tests.server.test_api_basics import raw_post


def test_https(tmp_path):
    ca = PrivateCA(tmp_path / "pki")
    issued = ca.issue(["127.0.0.1", "localhost"])
    with running_server(tmp_path / "home", tls_cert=issued.cert, tls_key=issued.key) as server:
        assert server.url.startswith("https://127.0.0.1:")
        import boto3
        from botocore.config import Config

        key_id, secret = server.admin_keys()
        client = boto3.session.Session().client(
            "ssm",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            verify=str(ca.path),
            config=Config(retries={"total_max_attempts": 1}),
        )
        assert client.describe_sessions(State="Active")["Sessions"] == []


def test_an_unexpected_fault_is_a_500_with_a_request_id(server, monkeypatch, caplog):
    async def boom(call, params):
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(ssm_service.operations, "Boom", boom)
    status, headers, body = raw_post(server, b"{}", "AmazonSSM.Boom")
    assert status == 500
    error = json.loads(body)
    assert error["__type"] == "InternalServerError"
    request_id = headers["x-amzn-RequestId"]
    assert request_id in error["message"]
    assert "disk on fire" not in error["message"]  # internals stay in the log
    faults = [r for r in caplog.records if r.getMessage() == "unexpected fault"]
    assert faults and faults[0].request_id == request_id and faults[0].exc_info
    # The server is still serving.
    assert raw_post(server, b'{"State":"Active"}')[0] == 200


@pytest.mark.parametrize("target", [None, "NoDotHere", "OtherService.Foo"])
def test_targets_that_name_no_operation(server, target):
    status, _, body = raw_post(server, b"{}", target)
    assert status == 400 and json.loads(body)["__type"] == "UnknownOperationException"
