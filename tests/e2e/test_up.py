"""The quick start: `hatchway up`, then the commands it prints, from another process."""

import configparser
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).parents[2]  # where `make run` runs, and so where its lines are pasted


def encrypted_document(exports):
    """A new KMS key and a Session document that encrypts with it, made as the admin."""
    parser = configparser.ConfigParser()
    parser.read(exports["AWS_SHARED_CREDENTIALS_FILE"])
    session = boto3.session.Session(
        aws_access_key_id=parser["default"]["aws_access_key_id"],
        aws_secret_access_key=parser["default"]["aws_secret_access_key"],
        region_name=exports["AWS_DEFAULT_REGION"],
    )
    url = exports["AWS_ENDPOINT_URL"]
    key_id = session.client("kms", endpoint_url=url).create_key()["KeyMetadata"]["KeyId"]
    content = {
        "schemaVersion": "1.0",
        "description": "encrypted",
        "sessionType": "Standard_Stream",
        "inputs": {"kmsKeyId": key_id},
    }
    session.client("ssm", endpoint_url=url).create_document(
        Name="Encrypted-Shell", DocumentType="Session", Content=json.dumps(content)
    )
    return "Encrypted-Shell"


def test_up_prints_commands_that_work(tmp_path):
    home = tmp_path / "hatchway"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # Sessions as the agent's own user: the test leaves no hatchway-user behind.
    env["HATCHWAY_SESSION_USER"] = ""
    up = subprocess.Popen(
        [sys.executable, "-m", "hatchway", "up", "--home", str(home), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        printed = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            printed.append(line)
            if "Ctrl-C stops" in line or not line:
                break
        text = "".join(printed)
        target = re.search(r"registered as (mi-[0-9a-f]{17})", text).group(1)
        exports = {}
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("export "):
                for item in shlex.split(line)[1:]:
                    key, _, value = item.partition("=")
                    exports[key] = value
        assert set(exports) >= {
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_ENDPOINT_URL",
            "AWS_DEFAULT_REGION",
        }
        command = next(x.strip() for x in text.splitlines() if "hatchway start-session" in x)
        argv = shlex.split(command)
        assert argv[-2:] == ["--target", target]
        result = subprocess.run(
            [sys.executable, "-m", "hatchway", *argv[1:]],
            input="echo quick-$((3*3))\nexit\n",
            env=env | exports,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "quick-9" in result.stdout, result.stderr
        assert result.returncode == 0
        # The console's URL, as printed, answers with the console's page.
        console = re.search(r"Web console: (\S+)", text).group(1)
        assert console == exports["AWS_ENDPOINT_URL"] + "/console/"
        with urllib.request.urlopen(console, timeout=30) as page:
            assert page.status == 200
            assert "<html" in page.read().decode().lower()
        # The AWS CLI's lines, as printed, in a shell from the folder `make run` runs in.
        lines = text.split("or with the AWS CLI", 1)[1].split("Ctrl-C stops", 1)[0]
        script = [line.strip() for line in lines.splitlines()[1:] if line.strip()]
        assert script[-1].endswith(f"aws ssm start-session --target {target}"), script
        exported = [
            line.strip() for line in text.splitlines() if line.strip().startswith("export ")
        ]
        result = subprocess.run(
            ["bash", "-e", "-c", "\n".join(exported + script)],
            input="echo cli-$((4*4))\nexit\n",
            env=env | {"HOME": str(tmp_path)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "cli-16" in result.stdout, result.stdout + result.stderr
        assert result.returncode == 0
        # Nodes have no KMS rights of their own; up gives the local agent's role Decrypt.
        document = encrypted_document(exports)
        encrypted = subprocess.run(
            [sys.executable, "-m", "hatchway", *argv[1:], "--document-name", document],
            input="echo sealed-$((3*3))\nexit\n",
            env=env | exports,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "sealed-9" in encrypted.stdout, encrypted.stderr
        assert "This session is encrypted using AWS KMS." in encrypted.stderr
        assert (home / "logs" / "server.log").exists()
        assert (home / "agent" / "identity.json").exists()
    finally:
        up.terminate()
        assert up.wait(30) == 0
    # A second run keeps the same target.
    again = subprocess.Popen(
        [sys.executable, "-m", "hatchway", "up", "--home", str(home), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        for _ in range(40):
            line = again.stdout.readline()
            if "registered as" in line or not line:
                break
        assert target in line
    finally:
        again.terminate()
        again.wait(30)


def taken_port():
    """A socket that holds a loopback port (listening, as another server would)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


@pytest.mark.parametrize("command", ["up", "server"])
def test_a_taken_port_gets_one_line_that_says_how_to_choose_another(tmp_path, command):
    with taken_port() as holder:
        port = holder.getsockname()[1]
        argv = [command, "--home", str(tmp_path), "--listen", f"127.0.0.1:{port}"]
        result = subprocess.run(
            [sys.executable, "-m", "hatchway", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]
    assert "--listen 127.0.0.1:" in lines[0]
    if command == "up":
        assert "make run LISTEN=127.0.0.1:" in lines[0]


def test_make_run_passes_listen_on():
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "run", "LISTEN=127.0.0.1:8181"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "hatchway up --home .hatchway --listen 127.0.0.1:8181" in result.stdout


def test_make_run_installs_the_aws_cli_the_quick_start_uses(tmp_path):
    # -B -n: what `make run` would do in a fresh clone, printed and not done.
    result = subprocess.run(
        ["make", "-B", "-n", "-C", str(ROOT), "run", f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    install = next(line for line in result.stdout.splitlines() if "pip install" in line)
    assert "'.[cli]'" in install
    cli = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("awscli==") for req in cli["cli"])
