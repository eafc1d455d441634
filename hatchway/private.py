"""Folders and files only their owner may read: a home holds keys, tokens' hashes, the
database and logs that name users and nodes. Shared by the server and the agent."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import cast

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed, and make it the owner's only. Parents
    that already exist keep their mode; only the folder itself is the caller's to close."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def private_files(*paths: Path) -> None:
    """Make the files that exist among ``paths`` the owner's only."""
    for path in paths:
        try:
            os.chmod(path, FILE_MODE)
        except FileNotFoundError:
            pass


def touch_private(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist (SQLite takes an empty file as
    a new database, and gives its -wal and -shm files the database's mode)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    private_files(path)


def open_private(
    path: Path, mode: str = "a", encoding: str = "utf-8", errors: str | None = None
) -> io.TextIOWrapper:
    """``open(path, mode)``, but a file it creates is 0600 from the start (no window in
    which the umask's mode applies), and an existing one is made 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return cast(io.TextIOWrapper, os.fdopen(fd, mode, encoding=encoding, errors=errors))
