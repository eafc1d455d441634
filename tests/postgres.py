"""A private PostgreSQL server for tests: a fresh cluster in a temporary folder, on a free
loopback port, stopped and removed afterwards. Debian's postgresql package provides the
binaries (make test installs it); the server refuses to run as root, so as root the
cluster belongs to the `postgres` user."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian keeps them by version)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts)
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: make test installs Debian's postgresql")
    return versions[-1].parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """A running cluster that a test may stop and start again (same port, same data)."""

    def __init__(self, binaries: Path, folder: Path, as_user: list[str]) -> None:
        self.binaries, self.folder, self.as_user = binaries, folder, as_user
        self.data, self.port = folder / "data", _free_port()
        self.url = f"postgresql://hatchway@127.0.0.1:{self.port}/hatchway"

    def run(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, *args], check=True, capture_output=True, timeout=120, cwd=self.folder
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        # -l: the server's output goes to a file, not to the pipes this process reads to EOF.
        log = str(self.folder / "server.log")
        pg_ctl = str(self.binaries / "pg_ctl")
        self.run(pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """As a crash would: connections drop at once."""
        self.run(
            str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
        )


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh cluster with an empty database ``hatchway``; removed afterwards."""
    binaries = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="hatchway-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        folder.chmod(0o755)
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(binaries, folder, as_user)
    server.run(
        str(binaries / "initdb"),
        "-D",
        str(server.data),
        "-A",
        "trust",
        "-U",
        "hatchway",
        "-E",
        "UTF8",
    )
    server.start()
    try:
        server.run(
            str(binaries / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            "hatchway",
            "hatchway",
        )
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Yields a SQLAlchemy-style URL (``postgresql://…``) of an empty database."""
    with postgres_server() as server:
        yield server.url
