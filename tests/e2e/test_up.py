"""The quick start: `hatchway up`, then the commands it prints, from another process."""

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import time

import boto3


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
