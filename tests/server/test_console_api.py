"""The console's backend over real HTTP: sign-in both ways, the cookie's flags, CSRF and
Origin checks, policies applied to console calls, sign-out, and the WebSocket probe."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from tests.helpers import running_server

HATCHWAY = [sys.executable, "-m", "hatchway"]


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path / "server") as server:
        yield server


def sign_in(server, body, headers=None):
    session = requests.Session()
    response = session.post(f"{server.url}/console/api/sign-in", json=body, headers=headers)
    return session, response


def admin(server):
    key_id, secret = server.admin_keys()
    session, response = sign_in(server, {"accessKeyId": key_id, "secretAccessKey": secret})
    assert response.status_code == 200, response.text
    return session, response.json()["csrfToken"]


def call(session, server, target, params, csrf):
    return session.post(
        f"{server.url}/console/api/call",
        data=json.dumps(params),
        headers={"X-Amz-Target": target, "X-CSRF-Token": csrf},
    )


def test_sign_in_with_an_access_key_sets_a_strict_http_only_cookie(server):
    session, csrf = admin(server)
    (cookie,) = session.cookies
    assert cookie.name == "hatchway_console" and cookie.path == "/console/"
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") == "Strict"
    assert not cookie.secure  # plain HTTP: a Secure cookie would never come back
    me = session.get(f"{server.url}/console/api/me").json()
    assert me["userName"] == "admin" and me["csrfToken"] == csrf


def test_the_cookie_is_secure_behind_a_tls_terminating_proxy(server):
    from hatchway.server.forwarded import parse_trusted_proxies

    server.set_config(trusted_proxies=parse_trusted_proxies("127.0.0.0/8"))
    key_id, secret = server.admin_keys()
    _, response = sign_in(
        server,
        {"accessKeyId": key_id, "secretAccessKey": secret},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/ops/hatchway"},
    )
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "Path=/ops/hatchway/console/" in cookie


@pytest.mark.parametrize(
    "body",
    [
        {"accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": "x"},
        {"userName": "admin", "password": "not-set"},
        {"userName": "nobody", "password": "x"},
    ],
)
def test_bad_sign_in_details_are_refused_alike(server, body):
    _, response = sign_in(server, body)
    assert response.status_code == 400
    assert response.json() == {
        "__type": "AccessDeniedException",
        "message": "The sign-in details are not valid.",
    }


def test_a_wrong_secret_is_refused(server):
    key_id, _ = server.admin_keys()
    _, response = sign_in(server, {"accessKeyId": key_id, "secretAccessKey": "wrong"})
    assert response.json()["__type"] == "AccessDeniedException"


def test_a_sign_in_with_nothing_says_what_it_needs(server):
    _, response = sign_in(server, {})
    assert response.json()["__type"] == "ValidationException"


def test_sign_in_with_a_console_password(server):
    env = server.env()
    for args in (
        ["iam", "create-user", "--user-name", "carol"],
        ["iam", "set-console-password", "--user-name", "carol", "--password", "Correct-Horse-9"],
    ):
        result = subprocess.run([*HATCHWAY, *args], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    session, response = sign_in(server, {"userName": "carol", "password": "Correct-Horse-9"})
    assert response.status_code == 200, response.text
    assert response.json()["userName"] == "carol"
    # carol has no policy: signed in, but every call is denied, in AWS's words.
    listed = call(
        session,
        server,
        "AmazonSSM.DescribeSessions",
        {"State": "Active"},
        response.json()["csrfToken"],
    )
    assert listed.status_code == 400
    assert listed.json()["__type"] == "AccessDeniedException"
    assert "User: arn:aws:iam::" in listed.json()["message"]
    assert (
        "user/carol is not authorized to perform: ssm:DescribeSessions" in listed.json()["message"]
    )


def test_state_changing_calls_need_the_csrf_token(server):
    session, csrf = admin(server)
    params = {"State": "Active"}
    assert call(session, server, "AmazonSSM.DescribeSessions", params, csrf).status_code == 200
    refused = call(session, server, "AmazonSSM.DescribeSessions", params, "forged")
    assert refused.json()["__type"] == "AccessDeniedException"
    assert "CSRF" in refused.json()["message"]


def test_another_origin_is_refused(server):
    session, csrf = admin(server)
    response = session.post(
        f"{server.url}/console/api/call",
        data="{}",
        headers={
            "X-Amz-Target": "AmazonSSM.DescribeSessions",
            "X-CSRF-Token": csrf,
            "Origin": "https://evil.example",
        },
    )
    assert response.json()["__type"] == "AccessDeniedException"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json", "SerializationException"),
        ("[1, 2]", "SerializationException"),
        ("x" * (2 * 1024 * 1024), "RequestEntityTooLargeException"),
    ],
)
def test_bad_bodies_get_aws_errors(server, body, error):
    session, csrf = admin(server)
    response = session.post(
        f"{server.url}/console/api/call",
        data=body,
        headers={"X-Amz-Target": "AmazonSSM.DescribeSessions", "X-CSRF-Token": csrf},
    )
    assert response.json()["__type"] == error
    assert session.get(f"{server.url}/console/api/me").status_code == 200  # still serving


def test_only_the_consoles_operations_can_be_called(server):
    session, csrf = admin(server)
    response = call(session, server, "AmazonSSM.CreateActivation", {"IamRole": "x"}, csrf)
    assert response.json()["__type"] == "UnknownOperationException"


def test_without_a_session_nothing_is_answered(server):
    response = requests.get(f"{server.url}/console/api/nodes")
    assert response.status_code == 401
    assert response.json()["__type"] == "NotSignedInException"


def test_sign_out_ends_the_session(server):
    session, csrf = admin(server)
    stolen = dict(session.cookies)
    assert session.post(f"{server.url}/console/api/sign-out", headers={"X-CSRF-Token": csrf}).ok
    response = requests.get(f"{server.url}/console/api/me", cookies=stolen)
    assert response.status_code == 401


def test_deleting_the_access_key_ends_its_console_sessions(server):
    env = server.env()
    result = subprocess.run(
        [*HATCHWAY, "iam", "create-access-key", "--user-name", "admin"],
        env=env,
        capture_output=True,
        text=True,
    )
    key = json.loads(result.stdout)["AccessKey"]
    session, response = sign_in(
        server, {"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}
    )
    assert response.status_code == 200
    assert session.get(f"{server.url}/console/api/me").status_code == 200
    delete = ["iam", "delete-access-key", "--user-name", "admin", "--access-key-id"]
    result = subprocess.run(
        [*HATCHWAY, *delete, key["AccessKeyId"]],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert session.get(f"{server.url}/console/api/me").status_code == 401


def test_the_page_and_its_packages_are_served(server):
    page = requests.get(f"{server.url}/console/")
    assert page.status_code == 200 and "<title>Hatchway console</title>" in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in policy and "frame-ancestors 'none'" in policy
    xterm = requests.get(f"{server.url}/console/vendor/@xterm/xterm/lib/xterm.mjs")
    assert xterm.status_code == 200
    assert requests.get(f"{server.url}/console/vendor/left-pad/index.js").status_code == 404
    assert requests.get(f"{server.url}/console/..%2f..%2fserver%2fapp.py").status_code == 404


def test_the_websocket_probe_says_what_it_saw(server):
    stripped = requests.get(
        f"{server.url}/console/api/ws-probe?probe=p1",
        headers={"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"},
    )
    assert stripped.status_code == 426
    seen = requests.get(f"{server.url}/console/api/ws-probe/p1").json()
    assert seen == {"seen": "stripped"}
    assert requests.get(f"{server.url}/console/api/ws-probe/p2").json() == {"seen": "nothing"}
