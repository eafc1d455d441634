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


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Yields a SQLAlchemy-style URL (``postgresql://…``) of an empty database."""
    binaries = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="hatchway-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        folder.chmod(0o755)
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120, cwd=folder)

    run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "hatchway", "-E", "UTF8")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
    # -l: the server's output goes to a file, not to the pipes this process reads to EOF.
    log = str(folder / "server.log")
    run(
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        log,
        "-w",
        "-t",
        "60",
        "start",
    )
    try:
        run(
            str(binaries / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "hatchway",
            "hatchway",
        )
        yield f"postgresql://hatchway@127.0.0.1:{port}/hatchway"
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
