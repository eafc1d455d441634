"""The sshd fixture: a real OpenSSH server that the port-forwarding tests can log in to."""

import subprocess

from tests.sshd import SshServer


def test_ssh_runs_a_command_on_the_fixture_server(sshd: SshServer) -> None:
    result = subprocess.run(
        sshd.ssh_args("echo", "hello"), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
