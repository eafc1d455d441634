"""SigV4 as the live server enforces it: each way a signature can be wrong."""

import datetime as dt
import json
import urllib.error
import urllib.request
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

TARGET = "AmazonSSM.DescribeSessions"
BODY = b'{"State":"Active"}'


def sign(server, body=BODY, *, service="ssm", region=None, secret=None, when=None, extra=None):
    key_id, real_secret = server.admin_keys()
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET}
    headers.update(extra or {})
    request = AWSRequest(method="POST", url=server.url + "/", data=body, headers=headers)
    signer = SigV4Auth(Credentials(key_id, secret or real_secret), service, region or server.region)
    if when is None:
        signer.add_auth(request)
    else:
        # botocore takes its clock from this one function; pretend it is another time.
        with mock.patch(
            "botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)
        ):
            signer.add_auth(request)
    return dict(request.headers.items())


def send(server, headers, body=BODY, path="/"):
    request = urllib.request.Request(server.url + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_correct_signature_passes(server):
    assert send(server, sign(server))[0] == 200


def test_signed_like_other_sdks_with_extra_headers(server):
    import hashlib

    headers = sign(
        server,
        extra={
            "Content-Length": str(len(BODY)),
            "X-Amz-Content-Sha256": hashlib.sha256(BODY).hexdigest(),
            "X-Amz-User-Agent": "aws-sdk-js/3.0",
        },
    )
    assert send(server, headers)[0] == 200


def test_tampered_body(server):
    status, body = send(server, sign(server), b'{"State":"History"}')
    assert (status, body["__type"]) == (400, "InvalidSignatureException")


def test_replayed_with_another_body(server):
    captured = sign(server)
    assert send(server, captured)[0] == 200
    _status, body = send(server, captured, b'{"State":"History"} ')
    assert body["__type"] == "InvalidSignatureException"


def test_tampered_header(server):
    headers = sign(server)
    headers["X-Amz-Target"] = "AmazonSSM.DescribeInstanceInformation"
    assert send(server, headers, b"{}")[1]["__type"] == "InvalidSignatureException"


def test_tampered_query(server):
    _status, body = send(server, sign(server), path="/?extra=1")
    assert body["__type"] == "InvalidSignatureException"


def test_wrong_secret(server):
    assert send(server, sign(server, secret="x" * 40))[1]["__type"] == "InvalidSignatureException"


def test_wrong_service_in_scope(server):
    _status, body = send(server, sign(server, service="kms"))
    assert body["__type"] == "InvalidSignatureException"
    assert "Credential should be scoped to correct service: 'ssm'" in body["message"]


def test_wrong_region_in_scope(server):
    _status, body = send(server, sign(server, region="eu-west-3"))
    assert body["__type"] == "InvalidSignatureException"
    assert "Credential should be scoped to a valid region" in body["message"]


@pytest.mark.parametrize("minutes", [-20, 20])
def test_clock_skew_names_both_times(server, minutes):
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    _status, body = send(server, sign(server, when=when))
    assert body["__type"] == "InvalidSignatureException"
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    assert stamp in body["message"]
    assert ("Signature expired" if minutes < 0 else "Signature not yet current") in body["message"]


def test_unsigned_target_swapped_after_signing_is_refused(server, node):
    # A client that signs only content-type, host and x-amz-date: the target rides along
    # outside the signature, so a captured GetConnectionStatus could become StartSession.
    body = json.dumps({"Target": node.instance_id}).encode()
    key_id, secret = server.admin_keys()
    request = AWSRequest(
        method="POST",
        url=server.url + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1"},
    )
    SigV4Auth(Credentials(key_id, secret), "ssm", server.region).add_auth(request)
    captured = dict(request.headers.items())
    assert "x-amz-target" not in captured["Authorization"]
    for target in ("AmazonSSM.GetConnectionStatus", "AmazonSSM.StartSession"):
        status, answer = send(server, {**captured, "X-Amz-Target": target}, body)
        assert (status, answer["__type"]) == (400, "IncompleteSignatureException")
        assert answer["message"] == (
            "There were headers present in the request which were not signed: x-amz-target"
        )
    sessions = server.client().describe_sessions(State="Active")["Sessions"]
    assert sessions == []


def test_every_amz_header_must_be_signed(server):
    headers = sign(server)
    headers["X-Amz-Content-Sha256"] = "UNSIGNED-PAYLOAD"
    headers["X-Amz-Meta"] = "x"
    status, answer = send(server, headers)
    assert (status, answer["__type"]) == (400, "IncompleteSignatureException")
    assert answer["message"].endswith("not signed: x-amz-content-sha256, x-amz-meta")
