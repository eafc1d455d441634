"""Shell sessions for end-to-end tests: a Session document made for the test, and
`hatchway start-session` fed a script on stdin."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

HATCHWAY = [sys.executable, "-m", "hatchway"]


def shell_document(server: Any, inputs: dict[str, Any], name: str | None = None) -> str:
    """A Standard_Stream document with these ``inputs``, created in the server's account."""
    name = name or f"Shell-{uuid.uuid4().hex[:8]}"
    document = {
        "schemaVersion": "1.0",
        "description": "a shell for a test",
        "sessionType": "Standard_Stream",
        "inputs": inputs,
    }
    server.client().create_document(Name=name, Content=json.dumps(document), DocumentType="Session")
    return name


def run_shell(
    env: dict[str, str], target: str, document: str | None, commands: str
) -> subprocess.CompletedProcess[str]:
    """``hatchway start-session`` with ``commands`` on stdin; the default document when
    ``document`` is None."""
    named = ["--document-name", document] if document else []
    return subprocess.run(
        [*HATCHWAY, "start-session", "--target", target, *named],
        input=commands,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
