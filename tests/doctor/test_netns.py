"""The two network causes loopback alone cannot produce, in a network namespace the test
makes itself: a DNS server that does not answer (dns.timeout) and an address with no route
(tcp.unreachable). Nothing leaves the namespace: it has only its own loopback, its resolver
points at a port there where nothing listens, and the address without a route is a
loopback one marked unreachable in its own table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
UNROUTABLE = "127.0.0.99"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"hw-doctor-{uuid.uuid4().hex[:8]}"
    # `ip netns exec` mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf.
    config = Path("/etc/netns") / name
    config.mkdir(parents=True)
    (config / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    ip("netns", "add", name)
    try:
        ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        ip(
            "netns",
            "exec",
            name,
            "ip",
            "route",
            "add",
            "unreachable",
            f"{UNROUTABLE}/32",
            "table",
            "local",
        )
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        shutil.rmtree(config, ignore_errors=True)


def doctor_in(namespace: str, endpoint: str) -> dict[str, tuple[str, str | None]]:
    env = {
        "PATH": os.environ["PATH"],
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-m",
            "hatchway",
            "doctor",
            "--timeout",
            "3",
            "--json",
            "--endpoint-url",
            endpoint,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    return {
        r["id"]: (r["status"], r["cause"])
        for r in json.loads(done.stdout)
        if r["status"] in ("fail", "warn")
    }


@needs_root
def test_a_dns_server_that_does_not_answer(namespace: str) -> None:
    assert doctor_in(namespace, "https://hatchway.example:8443") == {"dns": ("fail", "dns.timeout")}


@needs_root
def test_an_address_with_no_route(namespace: str) -> None:
    assert doctor_in(namespace, f"http://{UNROUTABLE}:8080") == {"tcp": ("fail", "tcp.unreachable")}
