"""`hatchway doctor` as users run it: its own process, configured by the environment as
botocore reads it, printing a table or JSON, exiting 0 or 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from hatchway.doctor.checks import is_aws_endpoint
from tests.doctor.conftest import World
from tests.helpers import nothing_connected, recording_proxy
from tests.proxy import ConnectProxy


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hatchway", "doctor", "--timeout", "2", *args],
        env=env | {"PATH": os.environ["PATH"], "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def causes(output: str) -> dict[str, str | None]:
    return {r["id"]: r["cause"] for r in json.loads(output) if r["status"] in ("fail", "warn")}


def test_all_pass_exits_0_with_json(world: World) -> None:
    done = doctor(world.server.env(), "--json", "--target", world.online)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert all(set(r) == {"id", "status", "cause", "evidence", "fix"} for r in results)
    assert {r["id"] for r in results if r["status"] != "pass"} == {"agent.logs"}
    by_id = {r["id"]: r for r in results}
    assert "AWS_ENDPOINT_URL" in by_id["config.endpoint"]["evidence"]
    assert "shared credentials file" in by_id["config.credentials"]["evidence"]


def test_a_failure_exits_1_and_the_table_says_the_cause_and_fix(world: World) -> None:
    env = world.server.env() | {"AWS_DEFAULT_REGION": "eu-west-1"}
    done = doctor(env)
    assert done.returncode == 1
    assert "auth.wrong_scope" in done.stdout
    assert "fix:" in done.stdout
    assert "Failed: auth.signature - auth.wrong_scope. Fix: Use the server's region" in done.stdout
    assert "Traceback" not in done.stderr


def test_https_proxy_from_the_environment_and_no_proxy(world: World) -> None:
    proxy = ConnectProxy(int(world.tls_server.url.rsplit(":", 1)[1]), refuse=True)
    world.loop.run(proxy.start())
    try:
        env = world.server.env() | {
            "AWS_ENDPOINT_URL": "https://hatchway.invalid",
            "HTTPS_PROXY": proxy.url,
        }
        done = doctor(env, "--json")
        assert done.returncode == 1
        assert causes(done.stdout) == {"proxy.connect": "proxy.connect_refused"}
        assert "HTTPS_PROXY" in done.stdout
        # NO_PROXY takes the host out: now it is looked up directly, and does not exist.
        done = doctor(env | {"NO_PROXY": ".invalid"}, "--json")
        assert causes(done.stdout) == {"dns": "dns.not_found"}
    finally:
        world.loop.run(proxy.close())


def test_debug_explains_the_signing_and_hides_secrets(world: World) -> None:
    key_id, secret = world.server.admin_keys()
    done = doctor(world.server.env(), "--debug", "--json")
    assert done.returncode == 0
    assert "SigV4 canonical request:" in done.stderr
    assert "SigV4 string to sign:" in done.stderr
    assert "HTTP 200" in done.stderr
    assert "WebSocket: upgrade accepted" in done.stderr
    for output in (done.stdout, done.stderr):
        assert secret not in output
        assert key_id not in output


def test_no_credentials_anywhere(world: World) -> None:
    env = {k: v for k, v in world.server.env().items() if k != "AWS_SHARED_CREDENTIALS_FILE"}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "HOME": "/nonexistent"}
    done = doctor(env, "--json")
    assert done.returncode == 1
    assert causes(done.stdout) == {"config.credentials": "auth.no_credentials"}


def test_bad_input_gets_a_clear_error(world: World) -> None:
    env: dict[str, Any] = world.server.env()
    for args, words in (
        (["--endpoint-url", "ftp://example.com"], "not an http:// or https:// URL"),
        (["--proxy", "nonsense"], "not an http:// or https:// URL"),
        (["--ca-bundle", "/nonexistent.pem"], "does not exist"),
        (["--timeout", "0"], "must be positive"),
    ):
        done = doctor(env, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr
        assert "Traceback" not in done.stderr


def agent_doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hatchway", "agent", "doctor", "--timeout", "2", *args],
        env=env | {"PATH": os.environ["PATH"], "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_agent_doctor_checks_the_node_side(world: World) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    home = str(world.agent.home)
    done = agent_doctor(env, "--home", home, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    by_id = {r["id"]: r for r in json.loads(done.stdout)}
    assert by_id["auth.signature"]["status"] == "pass"
    assert world.online in by_id["config.credentials"]["evidence"]
    assert by_id["kms.reachable"]["status"] == "pass"
    assert by_id["agent.logs"]["status"] == "warn"
    assert "target.registered" not in by_id
    done = agent_doctor(env, "--home", home, "--json", "--kms-endpoint", "http://127.0.0.1:9")
    assert done.returncode == 1
    assert causes(done.stdout) == {
        "kms.reachable": "kms.unreachable",
        "agent.logs": None,
    }


def test_agent_doctor_without_an_identity(tmp_path: Any) -> None:
    done = agent_doctor(dict(os.environ), "--home", str(tmp_path))
    assert done.returncode == 1
    assert "register first" in done.stderr
    assert "Traceback" not in done.stderr


def test_agent_doctor_goes_through_the_agents_proxy(world: World, tmp_path: Any) -> None:
    # The agent's identity names the server by a name only the proxy can reach.
    port = int(world.server.url.rsplit(":", 1)[1])
    identity = json.loads((world.agent.home / "identity.json").read_text())
    identity["server_url"] = f"http://hatchway.example:{port}"
    (tmp_path / "identity.json").write_text(json.dumps(identity))
    proxy = ConnectProxy(port, forward_plain=True)
    world.loop.run(proxy.start())
    try:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        done = agent_doctor(env | {"HTTP_PROXY": proxy.url}, "--home", str(tmp_path), "--json")
    finally:
        world.loop.run(proxy.close())
    assert done.returncode == 0, done.stdout + done.stderr
    by_id = {r["id"]: r for r in json.loads(done.stdout)}
    assert "through the proxy" in by_id["config.endpoint"]["evidence"]
    assert {r["status"] for r in by_id.values()} == {"pass", "warn"}  # warn: agent.logs
    assert f"hatchway.example:{port}" in " ".join(target for target, _ in proxy.tunnels)


# --- doctor without configuration ----------------------------------------------------------


def by_id(output: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in json.loads(output)}


def test_no_region_is_taken_from_the_servers_healthz(world: World) -> None:
    env = {k: v for k, v in world.server.env().items() if k != "AWS_DEFAULT_REGION"}
    done = doctor(env, "--json", "--endpoint-url", world.server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    results = by_id(done.stdout)
    assert results["config.region"]["status"] == "pass"
    assert "us-east-1" in results["config.region"]["evidence"]
    assert "/healthz" in results["config.region"]["evidence"]
    assert results["auth.signature"]["status"] == "pass"


def test_a_region_and_no_endpoint_is_aws_and_said_so_without_calling_it(world: World) -> None:
    env = {k: v for k, v in world.server.env().items() if k != "AWS_ENDPOINT_URL"}
    with recording_proxy() as (proxy, listener):
        done = doctor(env | {"HTTPS_PROXY": proxy}, "--json")
        assert nothing_connected(listener)
    assert done.returncode == 1
    assert causes(done.stdout) == {"config.endpoint": "endpoint.aws"}
    results = by_id(done.stdout)
    evidence = results["config.endpoint"]["evidence"]
    assert "https://ssm.us-east-1.amazonaws.com" in evidence
    assert "not a Hatchway server" in evidence
    assert results["config.credentials"]["status"] == "pass"  # what can run, runs
    assert results["dns"]["status"] == "skip"


def test_an_explicit_aws_endpoint_is_named_as_such(world: World) -> None:
    with recording_proxy() as (proxy, listener):
        done = doctor(
            world.server.env() | {"HTTPS_PROXY": proxy},
            "--json",
            "--endpoint-url",
            "https://ssm.eu-west-1.amazonaws.com",
        )
        assert nothing_connected(listener)
    assert causes(done.stdout) == {"config.endpoint": "endpoint.aws"}
    assert "AWS's own endpoint" in by_id(done.stdout)["config.endpoint"]["evidence"]


def test_neither_region_nor_endpoint_is_two_findings_not_a_usage_error(world: World) -> None:
    env = {
        k: v
        for k, v in world.server.env().items()
        if k not in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")
    }
    done = doctor(env, "--json")
    assert done.returncode == 1, done.stderr
    assert causes(done.stdout) == {
        "config.endpoint": "endpoint.aws",
        "config.region": "region.unknown",
    }
    assert "Traceback" not in done.stderr


def test_aws_endpoints_are_told_from_hatchway_servers_on_aws() -> None:
    for host in (
        "ssm.us-east-1.amazonaws.com",
        "ssm-fips.us-gov-west-1.amazonaws.com",
        "ssm.cn-north-1.amazonaws.com.cn",
        "ssm.us-east-1.api.aws",
        "vpce-0123-abcd.ssm.eu-west-1.vpce.amazonaws.com",
        "kms.eu-west-1.amazonaws.com",
    ):
        assert is_aws_endpoint(host), host
    for host in (
        "ec2-203-0-113-5.compute-1.amazonaws.com",
        "hatchway-123.eu-west-1.elb.amazonaws.com",
        "hatchway.example",
        "127.0.0.1",
    ):
        assert not is_aws_endpoint(host), host
