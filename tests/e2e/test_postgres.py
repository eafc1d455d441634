"""The server on a real PostgreSQL (asyncpg) instead of the embedded SQLite: migrations,
registration, a shell session, KMS, IAM, the console's sessions, and all of it still there
after a restart."""

from __future__ import annotations

import json

import pytest
import requests

from tests.e2e.conftest import AgentRunner
from tests.e2e.shells import run_shell, shell_document
from tests.helpers import LoopThread, running_server
from tests.postgres import running_postgres


@pytest.fixture(scope="module")
def database():
    with running_postgres() as url:
        yield url


def test_the_server_runs_on_postgresql_and_keeps_its_state(database, tmp_path):
    loop = LoopThread()
    try:
        with running_server(tmp_path / "server", database=database) as server:
            agent = AgentRunner(server, tmp_path / "agent", loop)
            env = server.env()
            try:
                result = run_shell(env, agent.instance_id, None, "echo pg-$((6*7))\nexit 5\n")
                assert "pg-42" in result.stdout, result.stderr
                assert result.returncode == 5

                key_id = server.client("kms").create_key()["KeyMetadata"]["KeyId"]
                document = shell_document(server, {"kmsKeyId": key_id})
                encrypted = run_shell(env, agent.instance_id, document, "echo sealed\nexit\n")
                assert "This session is encrypted using AWS KMS." in encrypted.stderr
                assert "sealed" in encrypted.stdout

                server.client("iam").create_user(UserName="dana")
                keys = server.admin_keys()
                signed_in = requests.post(
                    f"{server.url}/console/api/sign-in",
                    json={"accessKeyId": keys[0], "secretAccessKey": keys[1]},
                    timeout=30,
                )
                assert signed_in.status_code == 200, signed_in.text
            finally:
                agent.stop()
        # The same database under a new server process: nothing was kept in memory only.
        with running_server(tmp_path / "server", database=database) as again:
            ssm = again.client()
            history = ssm.describe_sessions(State="History")["Sessions"]
            assert len(history) == 2
            nodes = ssm.describe_instance_information()["InstanceInformationList"]
            assert [n["InstanceId"] for n in nodes] == [agent.instance_id]
            users = {u["UserName"] for u in again.client("iam").list_users()["Users"]}
            assert {"admin", "dana"} <= users
            sealed = again.client("kms").encrypt(KeyId=key_id, Plaintext=b"kept")
            plain = again.client("kms").decrypt(CiphertextBlob=sealed["CiphertextBlob"])
            assert plain["Plaintext"] == b"kept"
            content = json.loads(ssm.get_document(Name=document)["Content"])
            assert content["inputs"]["kmsKeyId"] == key_id
    finally:
        loop.stop()
