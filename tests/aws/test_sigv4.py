"""SigV4 verification, with botocore's own signer as the oracle."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import string
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack
from unittest import mock
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from hatchway.aws import sigv4
from hatchway.aws.errors import (
    MISSING_AUTH_MESSAGE,
    SIGNATURE_MISMATCH_MESSAGE,
    AwsError,
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
)

ACCESS_KEY = "AKIAHATCHWAYEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEHatchwaySessionToken//////////wEaCXVzLWVhc3QtMSJH"
REGION = "us-east-1"
SIGNED_AT = datetime(2024, 2, 21, 18, 18, 23, tzinfo=UTC)
ENDPOINT = "http://127.0.0.1:8080"


class SignOptions(TypedDict, total=False):
    token: str | None
    secret: str
    region: str
    at: datetime


class CheckOptions(TypedDict, total=False):
    secret: str
    region: str
    now: datetime
    allow_unsigned_payload: bool


def sign(
    method: str,
    url: str,
    *,
    service: str,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    params: Sequence[tuple[str, str]] = (),
    token: str | None = None,
    secret: str = SECRET,
    region: str = REGION,
    at: datetime = SIGNED_AT,
    payload_signing: bool = True,
) -> sigv4.Request:
    """Sign with botocore at ``at`` and return the request as a server would receive it."""
    aws = AWSRequest(method=method, url=url, data=body, params=list(params))
    for name, value in headers:
        # HTTPHeaders appends on assignment, so repeated names stay repeated.
        aws.headers[name] = value
    aws.context["payload_signing_enabled"] = payload_signing
    signer = SigV4Auth(Credentials(ACCESS_KEY, secret, token), service, region)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        signer.add_auth(aws)
    prepared = aws.prepare()
    wire_headers = list(aws.headers.items())
    names = {name.lower() for name, _ in wire_headers}
    # What the HTTP client adds after signing, unsigned.
    if "host" not in names:
        wire_headers.append(("Host", signer.headers_to_sign(aws)["host"]))
    if "content-length" not in names and body:
        wire_headers.append(("Content-Length", str(len(body))))
    wire_headers.append(("User-Agent", "Boto3/1.44.5 md/Botocore#1.44.5"))
    parts = urlsplit(prepared.url)
    return sigv4.Request(
        method=method,
        path=parts.path,
        query=parts.query,
        headers=tuple(wire_headers),
        body=body,
    )


def check(
    request: sigv4.Request,
    *,
    service: str | Sequence[str],
    secret: str = SECRET,
    region: str = REGION,
    now: datetime = SIGNED_AT,
    allow_unsigned_payload: bool = False,
) -> sigv4.Authorization:
    auth = sigv4.parse(request)
    sigv4.verify(
        request,
        auth,
        secret,
        now=now,
        region=region,
        service=service,
        allow_unsigned_payload=allow_unsigned_payload,
    )
    return auth


def rejected(
    request: sigv4.Request, service: str | Sequence[str] = "ssm", **options: Unpack[CheckOptions]
) -> AwsError:
    with pytest.raises(AwsError) as caught:
        check(request, service=service, **options)
    return caught.value


def json_call(
    service: str, target: str, payload: dict[str, object], **options: Unpack[SignOptions]
) -> sigv4.Request:
    return sign(
        "POST",
        ENDPOINT + "/",
        service=service,
        body=json.dumps(payload).encode(),
        headers=[("X-Amz-Target", target), ("Content-Type", "application/x-amz-json-1.1")],
        **options,
    )


def start_session(**options: Unpack[SignOptions]) -> sigv4.Request:
    return json_call("ssm", "AmazonSSM.StartSession", {"Target": "mi-0123456789abcdef0"}, **options)


def data_channel(**options: Unpack[SignOptions]) -> sigv4.Request:
    return sign(
        "GET",
        ENDPOINT + "/v1/data-channel/user-abc%3A1?role=publish_subscribe",
        service="ssmmessages",
        **options,
    )


def replace_header(request: sigv4.Request, name: str, value: str | None) -> sigv4.Request:
    """Drop every ``name`` header, then add ``value`` if it is not None."""
    headers = [(n, v) for n, v in request.headers if n.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return dataclasses.replace(request, headers=tuple(headers))


def header(request: sigv4.Request, name: str) -> str:
    return next(v for n, v in request.headers if n.lower() == name.lower())


# --- Published vectors, independent of botocore ------------------------------------------

EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
EXAMPLE_NOW = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)


def test_aws_test_suite_get_vanilla() -> None:
    request = sigv4.Request(
        method="GET",
        path="/",
        query="",
        headers=(
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                "SignedHeaders=host;x-amz-date, "
                "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        ),
        body=b"",
    )
    auth = check(request, service="service", secret=EXAMPLE_SECRET, now=EXAMPLE_NOW)
    assert auth == sigv4.Authorization(
        access_key_id="AKIDEXAMPLE",
        date="20150830",
        region="us-east-1",
        service="service",
        signed_headers=("host", "x-amz-date"),
        signature="5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        amz_date="20150830T123600Z",
        security_token=None,
    )


def test_aws_documentation_iam_list_users() -> None:
    request = sigv4.Request(
        method="GET",
        path="/",
        query="Action=ListUsers&Version=2010-05-08",
        headers=(
            ("Host", "iam.amazonaws.com"),
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("X-Amz-Date", "20150830T123600Z"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request,"
                "SignedHeaders=content-type;host;x-amz-date,"
                "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            ),
        ),
        body=b"",
    )
    check(request, service="iam", secret=EXAMPLE_SECRET, now=EXAMPLE_NOW)


# --- Requests botocore signs verify --------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "target"),
    [
        ("ssm", "AmazonSSM.StartSession"),
        ("kms", "TrentService.Decrypt"),
        ("ssmmessages", "AmazonSSMMessageGatewayService.CreateControlChannel"),
    ],
)
def test_json_requests_verify(service: str, target: str) -> None:
    request = json_call(service, target, {"Target": "mi-0123456789abcdef0"})
    auth = check(request, service=service)
    assert auth.access_key_id == ACCESS_KEY
    assert (auth.date, auth.region, auth.service) == ("20240221", REGION, service)
    assert auth.amz_date == "20240221T181823Z"
    assert auth.signed_headers == ("content-type", "host", "x-amz-date", "x-amz-target")
    assert auth.security_token is None


def test_data_channel_get_with_query_and_port_verifies() -> None:
    request = data_channel()
    assert request.query == "role=publish_subscribe"
    assert header(request, "host") == "127.0.0.1:8080"
    check(request, service="ssmmessages")


def test_encoded_path_is_encoded_again() -> None:
    assert sigv4.canonical_uri("/v1/data-channel/user-abc%3A1") == (
        "/v1/data-channel/user-abc%253A1"
    )


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("//", "/"),
        ("/a/./b//c/../d/", "/a/b/d/"),
        ("/a/..", "/"),
        ("/../a", "/a"),
        ("/a b/~x", "/a%20b/~x"),
    ],
)
def test_canonical_uri_normalizes_like_botocore(raw: str, canonical: str) -> None:
    assert sigv4.canonical_uri(raw) == canonical


def test_session_token_is_signed_and_exposed() -> None:
    request = start_session(token=TOKEN)
    auth = check(request, service="ssm")
    assert auth.security_token == TOKEN
    assert "x-amz-security-token" in auth.signed_headers
    tampered = replace_header(request, "X-Amz-Security-Token", TOKEN + "x")
    assert rejected(tampered).message == SIGNATURE_MISMATCH_MESSAGE


def test_extra_signed_headers_runs_of_spaces_and_repeats_verify() -> None:
    body = b'{"Name": "AWS-StartInteractiveCommand"}'
    request = sign(
        "POST",
        ENDPOINT + "/",
        service="ssm",
        body=body,
        headers=[
            ("Content-Length", str(len(body))),
            ("X-Amz-Target", "  AmazonSSM.GetDocument   "),
            ("X-Hatchway-Note", "several   spaces\there  and\t\ttabs "),
            ("X-Hatchway-Repeat", "first"),
            ("x-hatchway-repeat", "  second  value "),
        ],
    )
    auth = check(request, service="ssm")
    assert "content-length" in auth.signed_headers
    assert "x-hatchway-repeat" in auth.signed_headers
    canonical = sigv4.canonical_request(
        request, auth.signed_headers, hashlib.sha256(body).hexdigest()
    )
    assert "x-hatchway-note:several spaces here and tabs\n" in canonical
    assert "x-hatchway-repeat:first,second value\n" in canonical


def test_signed_like_other_sdks_with_content_sha256() -> None:
    body = b'{"Target":"mi-0123456789abcdef0"}'
    request = sign(
        "POST",
        ENDPOINT + "/",
        service="ssm",
        body=body,
        headers=[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Content-Length", str(len(body))),
            ("X-Amz-Target", "AmazonSSM.StartSession"),
            ("X-Amz-Content-Sha256", hashlib.sha256(body).hexdigest()),
        ],
    )
    auth = check(request, service="ssm")
    assert auth.signed_headers == (
        "content-length",
        "content-type",
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-target",
    )


def test_date_header_instead_of_x_amz_date() -> None:
    request = sign(
        "POST",
        ENDPOINT + "/",
        service="ssm",
        body=b"{}",
        headers=[("Date", "anything, botocore rewrites it")],
    )
    assert not any(name.lower() == "x-amz-date" for name, _ in request.headers)
    assert header(request, "date") == "Wed, 21 Feb 2024 18:18:23 -0000"
    assert check(request, service="ssm").amz_date == "20240221T181823Z"


def test_one_endpoint_may_answer_to_several_services() -> None:
    check(data_channel(), service=["ssm", "ssmmessages"])
    error = rejected(data_channel(), service=["kms", "ssm"])
    assert error.message == "Credential should be scoped to correct service: 'kms' or 'ssm'. "


def test_clock_skew_of_exactly_15_minutes_is_accepted() -> None:
    request = start_session()
    check(request, service="ssm", now=SIGNED_AT + timedelta(minutes=15, microseconds=999_999))
    check(request, service="ssm", now=SIGNED_AT - timedelta(minutes=15))


# --- Query strings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_query", "canonical"),
    [
        ("a=c&a=b", "a=b&a=c"),
        ("a=", "a="),
        ("a", "a="),
        ("b=1&a-b=2&a=3", "a=3&a-b=2&b=1"),
        ("x=%2B&y=%20", "x=%2B&y=%20"),
        # Escapes are normalized: a client that sent %7e signed ~.
        ("k=%7e%2f", "k=~%2F"),
        ("a=1&&b=2&", "a=1&b=2"),
        ("X-Amz-Signature-Extra=1", "X-Amz-Signature-Extra=1"),
    ],
)
def test_canonical_query_string(url_query: str, canonical: str) -> None:
    assert sigv4.canonical_query_string(url_query) == canonical


def test_plus_on_the_wire_is_a_space() -> None:
    # botocore signs a space as %20 but urlencode sends it as '+', and a literal '+' as %2B.
    request = sign(
        "GET",
        ENDPOINT + "/v1/data-channel/abc",
        service="ssmmessages",
        params=[("role", "publish subscribe"), ("plus", "a+b")],
    )
    assert request.query == "role=publish+subscribe&plus=a%2Bb"
    check(request, service="ssmmessages")


@pytest.mark.parametrize("query", ["a=c&a=b", "a=&b=1", "flag&x=1", "k=%2B%20~", "=v"])
def test_encoded_queries_in_the_url_verify(query: str) -> None:
    check(sign("GET", f"{ENDPOINT}/x?{query}", service="ssmmessages"), service="ssmmessages")


# --- Tampering ----------------------------------------------------------------------------


def test_tampered_body() -> None:
    request = start_session()
    tampered = dataclasses.replace(request, body=request.body.replace(b"mi-0", b"mi-1"))
    assert rejected(tampered).message == SIGNATURE_MISMATCH_MESSAGE


def test_tampered_signed_header() -> None:
    tampered = replace_header(start_session(), "X-Amz-Target", "AmazonSSM.TerminateSession")
    assert rejected(tampered).message == SIGNATURE_MISMATCH_MESSAGE


def test_unsigned_header_may_change() -> None:
    check(replace_header(start_session(), "User-Agent", "curl/8"), service="ssm")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: dataclasses.replace(r, query="role=publish"),
        lambda r: dataclasses.replace(r, query="role=publish_subscribe&extra=1"),
        lambda r: dataclasses.replace(r, query=""),
        lambda r: dataclasses.replace(r, path="/v1/data-channel/user-abc%3A2"),
        lambda r: dataclasses.replace(r, path="/v1/data-channel/user-abc:1"),
        lambda r: dataclasses.replace(r, method="POST"),
    ],
    ids=["query-value", "query-extra", "query-dropped", "path", "path-decoded", "method"],
)
def test_tampered_request_line(tamper: Callable[[sigv4.Request], sigv4.Request]) -> None:
    tampered = tamper(data_channel())
    error = rejected(tampered, service="ssmmessages")
    assert isinstance(error, InvalidSignatureException)
    assert error.message == SIGNATURE_MISMATCH_MESSAGE


def test_wrong_secret() -> None:
    error = rejected(start_session(secret="not-the-secret"))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == SIGNATURE_MISMATCH_MESSAGE


def test_replayed_with_another_body() -> None:
    captured = start_session()
    other = b'{"Target": "mi-ffffffffffffffff0"}'
    replayed = replace_header(dataclasses.replace(captured, body=other), "Content-Length", "34")
    assert rejected(replayed).message == SIGNATURE_MISMATCH_MESSAGE


def test_replayed_with_another_body_and_content_sha256() -> None:
    body = b'{"Target":"mi-0123456789abcdef0"}'
    captured = sign(
        "POST",
        ENDPOINT + "/",
        service="ssm",
        body=body,
        headers=[("X-Amz-Content-Sha256", hashlib.sha256(body).hexdigest())],
    )
    error = rejected(dataclasses.replace(captured, body=b'{"Target":"mi-ffffffffffffffff0"}'))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == (
        "The provided 'x-amz-content-sha256' header does not match what was computed."
    )


def test_unsigned_payload_is_refused_unless_allowed() -> None:
    request = sign(
        "POST", "https://ssm.example.test/", service="ssm", body=b"{}", payload_signing=False
    )
    assert header(request, "x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    error = rejected(request)
    assert error.message == (
        "UNSIGNED-PAYLOAD is not accepted by this service: sign the request body."
    )
    check(request, service="ssm", allow_unsigned_payload=True)


# --- Scope and clock ----------------------------------------------------------------------


def test_wrong_service_in_scope() -> None:
    error = rejected(json_call("kms", "TrentService.Decrypt", {}))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == "Credential should be scoped to correct service: 'ssm'. "


def test_wrong_region_in_scope() -> None:
    error = rejected(start_session(region="eu-west-1"))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == "Credential should be scoped to a valid region. "


def test_scope_date_must_match_request_date() -> None:
    request = replace_header(start_session(), "X-Amz-Date", "20240222T001500Z")
    error = rejected(request, now=datetime(2024, 2, 22, 0, 15, tzinfo=UTC))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == (
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
        "HTTP: '20240221' != '20240222', from '20240222T001500Z'."
    )


def test_signature_expired() -> None:
    request = start_session(at=datetime(2013, 5, 24, 0, 0, 0, tzinfo=UTC))
    error = rejected(request, now=datetime(2013, 5, 24, 0, 30, 0, 500_000, tzinfo=UTC))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == (
        "Signature expired: 20130524T000000Z is now earlier than 20130524T001500Z "
        "(20130524T003000Z - 15 min.)"
    )


def test_signature_not_yet_current() -> None:
    request = start_session(at=datetime(2013, 5, 24, 1, 0, 0, tzinfo=UTC))
    error = rejected(request, now=datetime(2013, 5, 24, 0, 30, 0, tzinfo=UTC))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == (
        "Signature not yet current: 20130524T010000Z is still later than 20130524T004500Z "
        "(20130524T003000Z + 15 min.)"
    )


def test_now_in_another_timezone_is_converted() -> None:
    tokyo = SIGNED_AT.astimezone(datetime.fromisoformat("2024-01-01T00:00+09:00").tzinfo)
    check(start_session(), service="ssm", now=tokyo)


def test_naive_now_is_a_programming_error() -> None:
    request = start_session()
    with pytest.raises(ValueError, match="timezone-aware"):
        sigv4.verify(
            request,
            sigv4.parse(request),
            SECRET,
            now=SIGNED_AT.replace(tzinfo=None),
            region=REGION,
            service="ssm",
        )


# --- Missing and malformed authentication -------------------------------------------------


def test_missing_authorization() -> None:
    request = replace_header(start_session(), "Authorization", None)
    with pytest.raises(MissingAuthenticationTokenException) as caught:
        sigv4.parse(request)
    assert caught.value.message == MISSING_AUTH_MESSAGE
    assert caught.value.status == 403


def test_presigned_query_is_not_supported() -> None:
    request = sigv4.Request(
        "GET",
        "/",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=" + "0" * 64,
        (("Host", "h"),),
        b"",
    )
    with pytest.raises(IncompleteSignatureException, match="Presigned URLs are not supported"):
        sigv4.parse(request)


def test_header_and_query_signature_together_are_refused() -> None:
    request = data_channel()
    request = dataclasses.replace(request, query=request.query + "&X-Amz-Signature=00")
    with pytest.raises(IncompleteSignatureException, match="Only one auth mechanism allowed"):
        sigv4.parse(request)


GOOD_CREDENTIAL = f"Credential={ACCESS_KEY}/20240221/us-east-1/ssm/aws4_request"
GOOD_SIGNATURE = "Signature=" + "a" * 64


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (
            f"AWS4-HMAC-SHA512 {GOOD_CREDENTIAL}, SignedHeaders=host, {GOOD_SIGNATURE}",
            "Unsupported Authorization algorithm 'AWS4-HMAC-SHA512': "
            "only AWS4-HMAC-SHA256 is supported.",
        ),
        (
            f"AWS {ACCESS_KEY}:c2lnbmF0dXJl",
            "Unsupported Authorization algorithm 'AWS': only AWS4-HMAC-SHA256 is supported.",
        ),
        (
            "AWS4-HMAC-SHA256",
            "Authorization header requires 'Credential' parameter. "
            "Authorization header requires 'Signature' parameter. "
            "Authorization header requires 'SignedHeaders' parameter.",
        ),
        (
            f"AWS4-HMAC-SHA256 SignedHeaders=host, {GOOD_SIGNATURE}",
            "Authorization header requires 'Credential' parameter.",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, {GOOD_SIGNATURE}",
            "Authorization header requires 'SignedHeaders' parameter.",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=",
            "Authorization header requires 'Signature' parameter.",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host {GOOD_SIGNATURE}",
            "Authorization header requires 'Signature' parameter.",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, junk, {GOOD_SIGNATURE}",
            "'junk' not a valid key=value pair (missing equal-sign) in Authorization header.",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, {GOOD_CREDENTIAL}, SignedHeaders=host, "
            + GOOD_SIGNATURE,
            "Authorization header has more than one 'Credential' parameter.",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240221/us-east-1/ssm, "
            f"SignedHeaders=host, {GOOD_SIGNATURE}",
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/term, got '{ACCESS_KEY}/20240221/us-east-1/ssm'",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240221/us-east-1/ssm/aws4, "
            f"SignedHeaders=host, {GOOD_SIGNATURE}",
            "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws4'. ",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/2024-02-21/us-east-1/ssm/aws4_request, "
            f"SignedHeaders=host, {GOOD_SIGNATURE}",
            "Credential scope date must be in yyyyMMdd format, got '2024-02-21'.",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host;;x-amz-date, "
            + GOOD_SIGNATURE,
            "SignedHeaders has an empty header name: 'host;;x-amz-date'.",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=ABC",
            "Signature must be 64 lowercase hexadecimal characters.",
        ),
    ],
)
def test_malformed_authorization(authorization: str, message: str) -> None:
    request = replace_header(start_session(), "Authorization", authorization)
    with pytest.raises(IncompleteSignatureException) as caught:
        sigv4.parse(request)
    assert caught.value.message == message


def test_compact_authorization_without_spaces_parses() -> None:
    request = start_session()
    compact = header(request, "Authorization").replace(", ", ",")
    check(replace_header(request, "Authorization", compact), service="ssm")


def test_missing_date() -> None:
    request = replace_header(start_session(), "X-Amz-Date", None)
    with pytest.raises(IncompleteSignatureException) as caught:
        sigv4.parse(request)
    assert caught.value.message == (
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    )


@pytest.mark.parametrize("value", ["2024-02-21T18:18:23Z", "20240221T181823", "20241341T181823Z"])
def test_bad_x_amz_date(value: str) -> None:
    request = replace_header(start_session(), "X-Amz-Date", value)
    with pytest.raises(IncompleteSignatureException) as caught:
        sigv4.parse(request)
    assert caught.value.message == (
        f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
        "See http://en.wikipedia.org/wiki/ISO_8601"
    )


def test_bad_date_header() -> None:
    request = replace_header(replace_header(start_session(), "X-Amz-Date", None), "Date", "soon")
    with pytest.raises(IncompleteSignatureException, match="Got 'soon'"):
        sigv4.parse(request)


@pytest.mark.parametrize("name", ["Authorization", "X-Amz-Date", "X-Amz-Security-Token"])
def test_repeated_auth_headers_are_ambiguous(name: str) -> None:
    request = start_session(token=TOKEN)
    request = dataclasses.replace(
        request, headers=(*request.headers, (name, header(request, name)))
    )
    with pytest.raises(IncompleteSignatureException, match="more than one"):
        sigv4.parse(request)


def test_signed_header_missing_from_request() -> None:
    error = rejected(replace_header(start_session(), "X-Amz-Target", None))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == (
        "Header 'x-amz-target' is listed in SignedHeaders but is absent from the request."
    )


def test_host_must_be_signed() -> None:
    request = start_session()
    authorization = header(request, "Authorization").replace(
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target",
        "SignedHeaders=content-type;x-amz-date;x-amz-target",
    )
    error = rejected(replace_header(request, "Authorization", authorization))
    assert isinstance(error, IncompleteSignatureException)
    assert error.message == (
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    )


def test_signature_for_another_request_does_not_verify() -> None:
    request = start_session()
    other = json_call("ssm", "AmazonSSM.StartSession", {"Target": "mi-other"})
    swapped = replace_header(request, "Authorization", header(other, "Authorization"))
    assert rejected(swapped).message == SIGNATURE_MISMATCH_MESSAGE


# --- Properties ---------------------------------------------------------------------------

_PCHAR = st.one_of(
    st.sampled_from(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"),
    st.integers(0, 255).map(lambda byte: f"%{byte:02X}"),
    st.integers(0, 255).map(lambda byte: f"%{byte:02x}"),
)
_SEGMENT = st.one_of(st.lists(_PCHAR, max_size=6).map("".join), st.sampled_from([".", ".."]))
_PATHS = st.lists(_SEGMENT, max_size=5).map(lambda segments: "/" + "/".join(segments))
_TEXT = st.text(st.characters(codec="utf-8"), max_size=8)
_PARAMS = st.lists(st.tuples(_TEXT, _TEXT), max_size=5)
_URL_PARAMS = st.lists(
    st.tuples(_TEXT, st.one_of(st.none(), _TEXT))
    .map(
        lambda pair: (
            quote(pair[0], safe="-_.~")
            + ("" if pair[1] is None else "=" + quote(pair[1], safe="-_.~"))
        )
    )
    # botocore signs an empty field ("a=1&&b=2") as "="; Hatchway, like Go's SDK, drops it.
    .filter(bool),
    max_size=4,
)
_HEADER_VALUES = st.text(st.sampled_from(string.ascii_letters + string.digits + " \t:;,./-_"))
_HEADERS = st.lists(
    st.tuples(
        st.from_regex(r"X-Hw-[a-z0-9]{1,6}", fullmatch=True).map(
            lambda name: name if len(name) % 2 else name.lower()
        ),
        _HEADER_VALUES,
    ),
    max_size=4,
)


@given(
    path=_PATHS,
    url_params=_URL_PARAMS,
    params=_PARAMS,
    headers=_HEADERS,
    body=st.binary(max_size=64),
    token=st.one_of(st.none(), st.just(TOKEN)),
)
def test_whatever_botocore_signs_verifies(
    path: str,
    url_params: list[str],
    params: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    body: bytes,
    token: str | None,
) -> None:
    # With params set, botocore signs only them and not the URL's own query, so one or other.
    url = ENDPOINT + path + ("?" + "&".join(url_params) if url_params and not params else "")
    request = sign(
        "POST", url, service="ssmmessages", body=body, headers=headers, params=params, token=token
    )
    check(request, service="ssmmessages")


@given(path=_PATHS, url_params=_URL_PARAMS, headers=_HEADERS)
def test_canonical_request_matches_botocore(
    path: str, url_params: list[str], headers: list[tuple[str, str]]
) -> None:
    url = ENDPOINT + path + ("?" + "&".join(url_params) if url_params else "")
    aws = AWSRequest(method="GET", url=url)
    for name, value in headers:
        aws.headers[name] = value
    aws.context["timestamp"] = "20240221T181823Z"
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET), "ssmmessages", REGION)
    expected = signer.canonical_request(aws)
    signed = tuple(signer.signed_headers(signer.headers_to_sign(aws)).split(";"))
    parts = urlsplit(url)
    request = sigv4.Request(
        "GET",
        parts.path,
        parts.query,
        (*aws.headers.items(), ("Host", "127.0.0.1:8080")),
        b"",
    )
    assert sigv4.canonical_request(request, signed, hashlib.sha256(b"").hexdigest()) == expected


@given(body=st.binary(min_size=1, max_size=256), data=st.data())
def test_flipping_any_body_byte_fails(body: bytes, data: st.DataObject) -> None:
    request = sign("POST", ENDPOINT + "/", service="ssm", body=body)
    check(request, service="ssm")
    index = data.draw(st.integers(0, len(body) - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(body)
    tampered[index] ^= flip
    error = rejected(dataclasses.replace(request, body=bytes(tampered)))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == SIGNATURE_MISMATCH_MESSAGE


# --- Signing -------------------------------------------------------------------------------


def test_sign_matches_the_aws_test_suite_get_vanilla() -> None:
    request = sigv4.Request("GET", "/", "", (("Host", "example.amazonaws.com"),), b"")
    signed = sigv4.sign(
        request,
        access_key_id="AKIDEXAMPLE",
        secret_key=EXAMPLE_SECRET,
        region="us-east-1",
        service="service",
        now=EXAMPLE_NOW,
    )
    headers = dict(signed.headers)
    assert headers["X-Amz-Date"] == "20150830T123600Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )
    assert signed.string_to_sign.startswith("AWS4-HMAC-SHA256\n20150830T123600Z\n")
    assert signed.canonical_request.startswith("GET\n/\n\nhost:example.amazonaws.com\n")


def test_signed_json_request_verifies_and_carries_its_token() -> None:
    body = json.dumps({"Target": "mi-0123456789abcdef0"}).encode()
    request = sigv4.Request(
        "POST",
        "/",
        "",
        (
            ("Host", "127.0.0.1:8080"),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "AmazonSSM.StartSession"),
        ),
        body,
    )
    now = datetime(2024, 2, 21, 18, 18, 23, tzinfo=UTC)
    signed = sigv4.sign(
        request,
        access_key_id=ACCESS_KEY,
        secret_key=SECRET,
        region=REGION,
        service="ssm",
        now=now,
        security_token="token-value",
    )
    received = dataclasses.replace(request, headers=signed.headers)
    auth = sigv4.parse(received)
    assert auth.security_token == "token-value"
    assert "x-amz-security-token" in auth.signed_headers
    sigv4.verify(received, auth, SECRET, now=now, region=REGION, service="ssm")
    with pytest.raises(InvalidSignatureException):
        sigv4.verify(received, auth, SECRET + "x", now=now, region=REGION, service="ssm")


def test_target_added_after_signing_is_refused() -> None:
    request = sign(
        "POST",
        ENDPOINT + "/",
        service="ssm",
        body=b"{}",
        headers=[("Content-Type", "application/x-amz-json-1.1")],
    )
    check(request, service="ssm")
    error = rejected(replace_header(request, "X-Amz-Target", "AmazonSSM.StartSession"))
    assert isinstance(error, IncompleteSignatureException)
    assert error.message == (
        "There were headers present in the request which were not signed: x-amz-target"
    )


def test_botocore_signs_every_amz_header_it_sends() -> None:
    request = sign(
        "POST",
        ENDPOINT + "/",
        service="ssm",
        body=b"{}",
        headers=[
            ("X-Amz-Target", "AmazonSSM.StartSession"),
            ("X-Amz-User-Agent", "aws-sdk-js/3"),
            ("X-Amz-Content-Sha256", hashlib.sha256(b"{}").hexdigest()),
        ],
        token=TOKEN,
    )
    auth = check(request, service="ssm")
    assert {"x-amz-target", "x-amz-user-agent", "x-amz-content-sha256"} <= set(auth.signed_headers)
    assert "x-amz-security-token" in auth.signed_headers
