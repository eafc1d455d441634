"""The AWS CLI against the server, including `aws ssm start-session` up to the plugin."""

import json
import os
import subprocess
import sys
from pathlib import Path

AWS = str(Path(sys.executable).parent / "aws")

FAKE_PLUGIN = """#!/bin/sh
if [ "$1" = "--version" ]; then echo 1.2.650.0; exit 0; fi
python3 - "$@" <<'PY'
import json, os, sys
record = {"argv": sys.argv[1:], "response": os.environ.get(sys.argv[1], "")}
open(os.environ["PLUGIN_RECORD"], "w").write(json.dumps(record))
PY
"""


def aws(server, *args, env=None, check=True):
    result = subprocess.run(
        [AWS, *args, "--output", "json"],
        env=env or server.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed:\n{result.stderr}")
    return result


def test_cli_lists_documents_and_nodes(server):
    docs = json.loads(aws(server, "ssm", "list-documents").stdout)
    assert len(docs["DocumentIdentifiers"]) == 6
    nodes = json.loads(aws(server, "ssm", "describe-instance-information").stdout)
    assert nodes["InstanceInformationList"] == []
    created = json.loads(aws(server, "ssm", "create-activation", "--iam-role", "r").stdout)
    assert set(created) == {"ActivationId", "ActivationCode"}


def test_cli_reports_service_errors(server):
    result = aws(server, "ssm", "start-session", "--target", "mi-00000000000000000", check=False)
    assert result.returncode in (254, 255)  # awscli v2 says 254, v1 255
    assert "TargetNotConnected" in result.stderr
    result = aws(server, "ssm", "get-document", "--name", "No-Such-Doc", check=False)
    assert result.returncode in (254, 255) and "InvalidDocument" in result.stderr


def test_cli_with_a_wrong_secret(server, tmp_path):
    creds = tmp_path / "creds"
    key_id, _ = server.admin_keys()
    creds.write_text(f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = bad\n")
    env = server.env() | {"AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    result = aws(server, "ssm", "describe-sessions", "--state", "Active", env=env, check=False)
    assert result.returncode in (254, 255) and "InvalidSignatureException" in result.stderr


def test_start_session_hands_off_to_the_plugin(server, node, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "session-manager-plugin"
    plugin.write_text(FAKE_PLUGIN)
    plugin.chmod(0o755)
    record = tmp_path / "record.json"
    env = server.env() | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PLUGIN_RECORD": str(record),
    }
    aws(server, "ssm", "start-session", "--target", node.instance_id, "--reason", "cli", env=env)
    seen = json.loads(record.read_text())
    argv = seen["argv"]
    assert argv[0] == "AWS_SSM_START_SESSION_RESPONSE"
    assert argv[1:4] == ["us-east-1", "StartSession", ""]
    assert json.loads(argv[4])["Target"] == node.instance_id
    assert argv[5] == server.url
    response = json.loads(seen["response"])
    assert response["StreamUrl"].startswith("ws://127.0.0.1:")
    assert response["SessionId"].startswith("admin-") and response["TokenValue"]


def test_start_session_without_a_plugin_terminates_the_session(server, node, tmp_path):
    env = server.env() | {"PATH": str(tmp_path)}  # nothing on PATH but an empty folder
    result = aws(server, "ssm", "start-session", "--target", node.instance_id, env=env, check=False)
    assert result.returncode != 0
    assert "SessionManagerPlugin is not found" in result.stderr
    history = json.loads(aws(server, "ssm", "describe-sessions", "--state", "History").stdout)[
        "Sessions"
    ]
    assert [s["Status"] for s in history] == ["Terminated"]
