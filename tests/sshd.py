"""A real OpenSSH server on loopback, for the tests and bench/port_forward.py.

Port forwarding is judged against what people use today, ssh; and an ssh session carried
through a Hatchway tunnel must reach a real sshd, not a fake one. The server runs as the
current user with its own throwaway host key, client key and config in a temporary folder,
so nothing on the machine is read or changed (except /run/sshd, which sshd insists on).

    with running_sshd(tmp_path) as server:
        subprocess.run(server.ssh_args("echo", "hello"))
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SSHD = Path("/usr/sbin/sshd")
HOST = "127.0.0.1"
# sshd starts in well under a second; the bound only turns a hang into an error.
READY_TIMEOUT = 10.0


class SshdMissing(RuntimeError):
    """Debian ships sshd apart from the ssh client; ``make test`` installs it."""


@dataclass(frozen=True)
class SshServer:
    """A running sshd and what a client needs to log in to it."""

    host: str
    port: int
    client_key: Path
    user: str
    pid: int

    def ssh_options(self) -> list[str]:
        """The options that make ssh use only this server's key and ask nothing: no
        user config, no known_hosts, no prompts. Without host or port, so a caller can
        reach the server another way, such as ``-o ProxyCommand=...``."""
        return [
            "-F",
            "/dev/null",
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
        ]

    def ssh_args(self, *command: str, options: Sequence[str] = ()) -> list[str]:
        """The full ``ssh`` argv to this server: extra ``options`` (such as ``-N -L ...``)
        go before the destination, ``command`` after it."""
        return [
            "ssh",
            *self.ssh_options(),
            *options,
            "-p",
            str(self.port),
            f"{self.user}@{self.host}",
            *command,
        ]


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def require_sshd() -> None:
    if not os.access(SSHD, os.X_OK):
        raise SshdMissing(
            f"OpenSSH server not found at {SSHD}; run `make test` (or `make bench`), "
            "which installs Debian's openssh-server"
        )


def make_key(path: Path) -> Path:
    """A fresh ed25519 key pair with no passphrase; returns the private key's path."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hatchway-test", "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path


def write_config(folder: Path, port: int, host_key: Path, authorized_keys: Path) -> Path:
    """An sshd_config that needs nothing outside ``folder``: key logins only, no PAM (so
    root may log in, as the tests run as root), TCP forwarding on for ``ssh -L``."""
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {HOST}",
                f"Port {port}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized_keys}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                f"PidFile {folder / 'sshd.pid'}",
                "AllowTcpForwarding yes",
                "PermitRootLogin prohibit-password",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    return config


def wait_for_banner(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Return once the port answers with an SSH-2.0 banner; raise with sshd's own words
    if it exits first or stays silent past READY_TIMEOUT. sshd announces readiness no
    other way, so this polls."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with status {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as probe:
                if probe.recv(256).startswith(b"SSH-2.0-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"sshd sent no banner on port {port} within {READY_TIMEOUT:.0f} s")


@contextlib.contextmanager
def running_sshd(tmp_dir: Path) -> Iterator[SshServer]:
    """Start sshd on a free loopback port with keys and config in ``tmp_dir``; stop it
    on exit. Sessions already open end when their clients close."""
    require_sshd()
    tmp_dir = tmp_dir.resolve()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    host_key = make_key(tmp_dir / "host_ed25519")
    client_key = make_key(tmp_dir / "client_ed25519")
    authorized_keys = tmp_dir / "authorized_keys"
    authorized_keys.write_text((tmp_dir / "client_ed25519.pub").read_text())
    port = free_port()
    config = write_config(tmp_dir, port, host_key, authorized_keys)
    # sshd refuses to start without its privilege separation folder. Only root can make
    # it; anyone else gets sshd's own message below.
    with contextlib.suppress(PermissionError):
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = tmp_dir / "sshd.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        wait_for_banner(process, port, log)
        yield SshServer(
            host=HOST,
            port=port,
            client_key=client_key,
            user=pwd.getpwuid(os.getuid()).pw_name,
            pid=process.pid,
        )
    finally:
        stop_process(process)
