"""--debug on the client commands: each step in plain words (credentials, the canonical
request and string to sign, the HTTP status and body), and no secret on the way."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.doctor.conftest import World

HATCHWAY = [sys.executable, "-m", "hatchway"]


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HATCHWAY, *args],
        env=env | {"PATH": os.environ["PATH"]},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_explained(stderr: str, operation: str, service: str) -> None:
    for step in (
        "credentials: from the shared credentials file",
        "SigV4 canonical request:\nPOST\n/\n",
        "SigV4 string to sign:\nAWS4-HMAC-SHA256\n",
        f"/us-east-1/{service}/aws4_request",
        "HTTP: POST http://127.0.0.1:",
        f"{operation}: HTTP 200, request id ",
    ):
        assert step in stderr, step
    assert "Signature=" not in stderr


def test_iam_create_access_key_debug_hides_the_new_secret(world: World) -> None:
    key_id, secret = world.server.admin_keys()
    done = run(world.server.env(), "iam", "create-access-key", "--debug")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)["AccessKey"]
    assert_explained(done.stderr, "CreateAccessKey", "iam")
    assert created["SecretAccessKey"] not in done.stderr  # printed once, on stdout only
    assert "<SecretAccessKey><40 characters, hidden></SecretAccessKey>" in done.stderr
    assert secret not in done.stderr and key_id not in done.stderr


def test_activation_create_debug_hides_the_code(world: World) -> None:
    done = run(world.server.env(), "activation", "create", "--debug")
    assert done.returncode == 0, done.stderr
    code = json.loads(done.stdout)["ActivationCode"]
    assert_explained(done.stderr, "CreateActivation", "ssm")
    assert code not in done.stderr


def test_a_refused_call_shows_the_status_and_the_body(world: World) -> None:
    env = world.server.env() | {"AWS_DEFAULT_REGION": "eu-west-1"}
    done = run(env, "iam", "list-users", "--debug")
    assert done.returncode == 254
    assert "ListUsers: HTTP 400" in done.stderr or "ListUsers: HTTP 403" in done.stderr
    assert "scoped to a valid region" in done.stderr


def test_session_manager_plugin_debug_from_the_environment(world: World) -> None:
    request = {
        "Target": world.online,
        "DocumentName": "AWS-StartNonInteractiveCommand",
        "Parameters": {"command": ["echo plugin-ok"]},
    }
    response = world.server.client().start_session(**request)
    started = {k: response[k] for k in ("SessionId", "TokenValue", "StreamUrl")}
    env = world.server.env() | {"HATCHWAY_DEBUG": "1"}
    done = run(
        env,
        "session-manager-plugin",
        json.dumps(started),
        "us-east-1",
        "StartSession",
        "",
        json.dumps(request),
        world.server.url,
        stdin="",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "plugin-ok\n"
    assert "websocket: upgrade status 101" in done.stderr
    assert "handshake:" in done.stderr
    assert started["TokenValue"] not in done.stderr
