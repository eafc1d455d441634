"""The checks doctor asks of the agent over its control channel (and the server's half of
them): RunAs, KMS, logs. A real agent, real OS users (CI runs as root), Hatchway's KMS."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from typing import Any

import pytest

from hatchway.doctor.checks import Credentials, run_checks
from hatchway.doctor.results import Result, Status
from tests.doctor.conftest import World
from tests.e2e.conftest import AgentRunner
from tests.e2e.test_encryption import put_role_policy

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="RunAs needs a root agent")


def session_document(world: World, **inputs: Any) -> str:
    name = f"Doctor-{uuid.uuid4().hex[:8]}"
    document = {
        "schemaVersion": "1.0",
        "description": "doctor",
        "sessionType": "Standard_Stream",
        "inputs": inputs,
    }
    world.server.client().create_document(
        Name=name, Content=json.dumps(document), DocumentType="Session"
    )
    return name


def agent_problems(results: list[Result]) -> dict[str, tuple[str, str | None]]:
    return {
        r.id: (r.status.value, r.cause)
        for r in results
        if r.status in (Status.FAIL, Status.WARN) and r.id != "agent.logs"
    }


def doctor(world: World, document: str, target: str | None = None) -> list[Result]:
    return run_checks(world.settings(target=target or world.online, document_name=document))


@needs_root
def test_a_run_as_user_that_exists(world: World) -> None:
    name = f"hw{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--shell", "/bin/sh", name], check=True)
    try:
        results = doctor(world, session_document(world, runAsEnabled=True, runAsDefaultUser=name))
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
    assert agent_problems(results) == {}
    by_id = {r.id: r for r in results}
    assert by_id["runas.name"].status is Status.PASS
    assert by_id["agent.runas"].status is Status.PASS
    assert name in by_id["agent.runas"].evidence


def test_a_run_as_user_missing_on_the_node(world: World) -> None:
    name = f"hwmissing{uuid.uuid4().hex[:6]}"
    results = doctor(world, session_document(world, runAsEnabled=True, runAsDefaultUser=name))
    assert agent_problems(results) == {"agent.runas": ("fail", "runas.user_missing")}
    assert f"RunAs user {name} does not exist" in {r.id: r.evidence for r in results}["agent.runas"]


def test_run_as_without_a_user_name(world: World) -> None:
    results = doctor(world, session_document(world, runAsEnabled=True, runAsDefaultUser=""))
    assert agent_problems(results) == {"runas.name": ("fail", "runas.invalid_username")}
    assert "Invalid RunAs username" in {r.id: r.evidence for r in results}["runas.name"]


def test_a_kms_key_that_works(world: World) -> None:
    key_id = world.server.client("kms").create_key()["KeyMetadata"]["KeyId"]
    results = doctor(world, session_document(world, kmsKeyId=key_id))
    assert agent_problems(results) == {}
    statuses = {r.id: r.status for r in results}
    assert statuses["kms.key"] is statuses["kms.client"] is statuses["agent.kms"] is Status.PASS


def test_a_kms_key_that_does_not_exist(world: World) -> None:
    results = doctor(world, session_document(world, kmsKeyId="alias/no-such-key"))
    assert agent_problems(results) == {"kms.key": ("fail", "kms.key_not_found")}


def test_a_disabled_kms_key(world: World) -> None:
    kms = world.server.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    results = doctor(world, session_document(world, kmsKeyId=key_id))
    assert agent_problems(results) == {"kms.key": ("fail", "kms.key_disabled")}


def test_kms_decrypt_denied_to_the_node(world: World) -> None:
    key = world.server.client("kms").create_key()["KeyMetadata"]
    put_role_policy(
        world.server,
        "e2e",  # the IamRole of the agent's activation
        f"no-decrypt-{key['KeyId']}",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Action": "kms:Decrypt", "Resource": key["Arn"]}],
        },
    )
    results = doctor(world, session_document(world, kmsKeyId=key["KeyId"]))
    assert agent_problems(results) == {"agent.kms": ("fail", "kms.access_denied")}


def test_kms_unreachable_from_the_node(world: World, tmp_path: Any) -> None:
    agent = AgentRunner(world.server, tmp_path / "agent", world.loop)
    try:
        agent.stop()
        agent.start(kms_url="http://127.0.0.1:9")  # the discard port: nothing listens
        key_id = world.server.client("kms").create_key()["KeyMetadata"]["KeyId"]
        results = doctor(world, session_document(world, kmsKeyId=key_id), agent.instance_id)
    finally:
        agent.stop()
    assert agent_problems(results) == {"agent.kms": ("fail", "kms.unreachable")}


def test_where_the_agent_logs(world: World) -> None:
    logs = world.agent.home / "logs"
    results = doctor(world, session_document(world))
    assert {r.id: r.status for r in results}["agent.logs"] is Status.WARN
    logs.mkdir(exist_ok=True)
    (logs / "agent.log").touch()
    try:
        results = doctor(world, session_document(world))
    finally:
        (logs / "agent.log").unlink()
    logs_result = {r.id: r for r in results}["agent.logs"]
    assert logs_result.status is Status.PASS
    assert str(logs / "agent.log") in logs_result.evidence


def test_a_user_who_may_start_sessions_but_not_generate_data_keys(world: World) -> None:
    iam = world.server.client("iam")
    iam.create_user(UserName="sessions-only")
    iam.put_user_policy(
        UserName="sessions-only",
        PolicyName="ssm",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="sessions-only")["AccessKey"]
    key_id = world.server.client("kms").create_key()["KeyMetadata"]["KeyId"]
    results = run_checks(
        world.settings(
            target=world.online,
            document_name=session_document(world, kmsKeyId=key_id),
            credentials=Credentials(key["AccessKeyId"], key["SecretAccessKey"]),
        )
    )
    assert agent_problems(results) == {"kms.client": ("fail", "kms.access_denied")}
    assert "kms:GenerateDataKey" in {r.id: r.evidence for r in results}["kms.client"]


def test_the_agent_checks_need_start_session_rights(world: World) -> None:
    iam = world.server.client("iam")
    iam.create_user(UserName="looker")
    allow = {"Effect": "Allow", "Action": "ssm:DescribeInstanceInformation", "Resource": "*"}
    iam.put_user_policy(
        UserName="looker",
        PolicyName="look",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [allow]}),
    )
    key = iam.create_access_key(UserName="looker")["AccessKey"]
    creds = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    results = run_checks(world.settings(target=world.online, credentials=creds))
    assert agent_problems(results) == {"agent": ("fail", "auth.access_denied")}
    assert "ssm:StartSession" in {r.id: r.evidence for r in results}["agent"]


def test_a_node_that_does_not_answer(world: World) -> None:
    from tests.helpers import ConnectedNode

    node = ConnectedNode(world.server, world.loop)  # holds a channel, answers nothing
    try:
        world.server.set_config(agent_answer_seconds=0.5)
        results = doctor(world, session_document(world), node.instance_id)
    finally:
        world.server.set_config(agent_answer_seconds=15.0)
        node.close()
    assert {r.id: (r.status.value, r.cause) for r in results}["agent.answer"] == ("warn", None)
    assert "agent.logs" not in {r.id for r in results}
