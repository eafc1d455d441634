"""The OS user that sessions run as when RunAs is off.

Like AWS's agent with its ``ssm-user``, the agent, when it runs as root, does not hand out
root shells: it runs sessions as a dedicated user, ``hatchway-user`` by default, which it
creates on first use with passwordless sudo (so the user can still become root, and it
shows in the logs when they do). ``hatchway agent run --session-user NAME`` picks another
name; an empty name runs sessions as the agent's own user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

DEFAULT_SESSION_USER = "hatchway-user"
SUDOERS_FILE = Path("/etc/sudoers.d/hatchway-users")
COMMAND_TIMEOUT = 30.0
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class SessionUserError(Exception):
    """The session user cannot be made; the message says why."""


def session_user_for(configured: str | None) -> str | None:
    """Who sessions without RunAs run as: None means the agent's own user, which is also
    the answer when the agent is not root and so cannot switch users."""
    if not configured or os.geteuid() != 0:
        return None
    return configured


def ensure_session_user(name: str) -> None:
    """Create ``name`` with a home, a login shell and sudo rights, unless it exists."""
    if not USER_NAME.fullmatch(name):
        raise SessionUserError(f"{name!r} is not a valid user name")
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    shell = "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"
    _run(["useradd", "--create-home", "--shell", shell, "--comment", "Hatchway sessions", name])
    grant_sudo(name)


def grant_sudo(name: str, sudoers: Path = SUDOERS_FILE) -> None:
    line = (
        "# Written by the Hatchway agent: its session user may use sudo.\n"
        f"{name} ALL=(ALL) NOPASSWD:ALL\n"
    )
    if not sudoers.parent.is_dir():
        return  # no sudo on this machine: the user works, without root
    existing = sudoers.read_text() if sudoers.exists() else ""
    if f"\n{name} ALL=" in f"\n{existing}":
        return
    temporary = sudoers.with_name(f".{sudoers.name}.tmp")
    temporary.write_text(existing + line)
    temporary.chmod(0o440)
    visudo = shutil.which("visudo")
    if visudo is not None:
        _run([visudo, "-c", "-q", "-f", str(temporary)])
    temporary.replace(sudoers)


def _run(argv: list[str]) -> None:
    try:
        # argv is ours: fixed programs, and a user name checked by ensure_session_user.
        result = subprocess.run(  # noqa: S603
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SessionUserError(f"{argv[0]} failed: {exc}") from None
    if result.returncode != 0:
        raise SessionUserError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
