"""OpenSSH through a session: `ssh -o ProxyCommand="hatchway start-session ... AWS-StartSSHSession"`
against a real sshd on a loopback port."""

import hashlib
import os
import shlex
import subprocess
import time

from tests.e2e.ports import HATCHWAY


def proxy_command(server) -> str:
    return " ".join(
        shlex.quote(part)
        for part in [
            *HATCHWAY,
            "start-session",
            "--target",
            "%h",
            "--document-name",
            "AWS-StartSSHSession",
            "--parameters",
            "portNumber=%p",
            "--endpoint-url",
            server.url,
            "--region",
            server.region,
        ]
    )


def ssh(sshd, server, agent, *command, stdin=None):
    return subprocess.run(
        [
            "ssh",
            *sshd.ssh_options(),
            "-o",
            f"ProxyCommand={proxy_command(server)}",
            "-p",
            str(sshd.port),
            f"{sshd.user}@{agent.instance_id}",
            *command,
        ],
        input=stdin,
        env=server.env() | {"PATH": os.environ["PATH"]},
        capture_output=True,
        timeout=120,
    )


def test_ssh_through_a_session(stack, sshd):
    server, agent = stack
    result = ssh(sshd, server, agent, "echo", "over-$((6*7))-ssh")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"over-42-ssh\n"
    # The SSH session ended, and so did the Session Manager session that carried it
    # (ssh may exit before its ProxyCommand has finished, so allow it a moment).
    ssm = server.client()
    deadline = time.monotonic() + 30
    while ssm.describe_sessions(State="Active")["Sessions"]:
        assert time.monotonic() < deadline, "the session outlived the SSH connection"
        time.sleep(0.1)
    statuses = [s["Status"] for s in ssm.describe_sessions(State="History")["Sessions"]]
    assert statuses == ["Terminated"], statuses


def test_bulk_data_through_ssh_keeps_its_bytes(stack, sshd):
    server, agent = stack
    payload = os.urandom(8 << 20)
    result = ssh(sshd, server, agent, "sha256sum", stdin=payload)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.split()[0].decode() == hashlib.sha256(payload).hexdigest()
