"""The admin commands (`hatchway iam`, `hatchway activation`) find the Hatchway server as the
client does, never fall back to AWS's endpoints, and tell configuration (253) from a
server they cannot reach (255)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers import nothing_connected, recording_proxy

LIST_USERS = ("iam", "list-users")
CREATE_ACTIVATION = ("activation", "create", "--iam-role", "r")


def hatchway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hatchway", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextmanager
def closed_port() -> Iterator[str]:
    """A loopback URL whose port is held but not listening: connections are refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


def without_endpoint(server) -> dict[str, str]:
    return {k: v for k, v in server.env().items() if k != "AWS_ENDPOINT_URL"}


@pytest.mark.parametrize("command", [LIST_USERS, CREATE_ACTIVATION], ids=["iam", "activation"])
def test_with_no_endpoint_they_stop_and_send_nothing(server, command):
    with recording_proxy() as (proxy, listener):
        env = without_endpoint(server) | {"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy}
        done = hatchway(env, *command)
        assert nothing_connected(listener)
    assert done.returncode == 253, done.stderr
    assert done.stdout == ""
    assert "no Hatchway endpoint" in done.stderr
    assert "--endpoint-url" in done.stderr and "AWS_ENDPOINT_URL" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "variable", ["AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL"]
)
def test_iam_finds_the_server_through_each_variable(server, variable):
    done = hatchway(without_endpoint(server) | {variable: server.url}, *LIST_USERS)
    assert done.returncode == 0, done.stderr
    assert "admin" in [user["UserName"] for user in json.loads(done.stdout)["Users"]]


def test_the_order_is_flag_iam_ssm_then_any(server):
    with closed_port() as dead:
        base = without_endpoint(server)
        # Each earlier source wins over a later one that points nowhere.
        for env, args in (
            (base | {"AWS_ENDPOINT_URL_IAM": dead}, ("--endpoint-url", server.url)),
            (base | {"AWS_ENDPOINT_URL_IAM": server.url, "AWS_ENDPOINT_URL_SSM": dead}, ()),
            (base | {"AWS_ENDPOINT_URL_SSM": server.url, "AWS_ENDPOINT_URL": dead}, ()),
        ):
            done = hatchway(env, *LIST_USERS, *args)
            assert done.returncode == 0, (env, done.stderr)
        # activation is SSM's: the IAM variable is not its.
        env = base | {"AWS_ENDPOINT_URL_IAM": dead, "AWS_ENDPOINT_URL_SSM": server.url}
        done = hatchway(env, *CREATE_ACTIVATION)
        assert done.returncode == 0, done.stderr
        assert set(json.loads(done.stdout)) == {"ActivationId", "ActivationCode"}


def test_the_profiles_endpoint_url(server, tmp_path):
    config = tmp_path / "config"
    key_id, secret = server.admin_keys()
    config.write_text(
        f"[profile hatchway]\nendpoint_url = {server.url}\nregion = us-east-1\n"
        f"aws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    )
    env = without_endpoint(server) | {"AWS_CONFIG_FILE": str(config)}
    for command in (LIST_USERS, CREATE_ACTIVATION):
        done = hatchway(env, *command, "--profile", "hatchway")
        assert done.returncode == 0, (command, done.stderr)


@pytest.mark.parametrize("command", [LIST_USERS, CREATE_ACTIVATION], ids=["iam", "activation"])
def test_a_server_that_cannot_be_reached_is_255(server, command):
    with closed_port() as dead:
        done = hatchway(server.env() | {"AWS_ENDPOINT_URL": dead}, *command)
    assert done.returncode == 255, done.stderr
    assert "Could not connect" in done.stderr
    assert "Traceback" not in done.stderr
