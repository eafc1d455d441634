"""The IAM administration API (IAM's query protocol) with boto3 as the oracle, and
`hatchway iam` on top of it."""

import json
import subprocess
import sys

import pytest

START_ONLY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*"}],
}


def new_user(server, name, policy=None, tags=None):
    """A user with an access key (and a policy); returns its ssm client and its keys."""
    iam = server.client("iam")
    iam.create_user(UserName=name, Tags=tags or [])
    key = iam.create_access_key(UserName=name)["AccessKey"]
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    keys = (key["AccessKeyId"], key["SecretAccessKey"])
    return server.client("ssm", keys=keys), keys


def code_of(error):
    return error.value.response["Error"]["Code"], error.value.response["Error"]["Message"]


def test_users_keys_tags_and_policies(server):
    iam = server.client("iam")
    user = iam.create_user(UserName="alice", Tags=[{"Key": "team", "Value": "ops"}])["User"]
    assert user["Arn"].endswith(":user/alice") and user["UserId"].startswith("AIDA")
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_user(UserName="alice")
    key = iam.create_access_key(UserName="alice")["AccessKey"]
    assert key["Status"] == "Active" and len(key["SecretAccessKey"]) == 40
    iam.create_access_key(UserName="alice")
    with pytest.raises(iam.exceptions.LimitExceededException):
        iam.create_access_key(UserName="alice")  # IAM's quota of two
    iam.delete_access_key(UserName="alice", AccessKeyId=key["AccessKeyId"])
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_access_key(UserName="alice", AccessKeyId=key["AccessKeyId"])
    iam.tag_user(UserName="alice", Tags=[{"Key": "SSMSessionRunAs", "Value": "alice"}])
    (alice,) = [u for u in iam.list_users()["Users"] if u["UserName"] == "alice"]
    assert {t["Key"]: t["Value"] for t in alice["Tags"]} == {
        "team": "ops",
        "SSMSessionRunAs": "alice",
    }
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.put_user_policy(UserName="alice", PolicyName="bad", PolicyDocument='{"Statement": 1}')
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.put_role_policy(
            RoleName="no-such-role", PolicyName="p", PolicyDocument=json.dumps(START_ONLY)
        )
    iam.create_login_profile(UserName="alice", Password="a long password")
    with pytest.raises(iam.exceptions.PasswordPolicyViolationException):
        iam.update_login_profile(UserName="alice", Password="short")


def test_list_users_pages(server):
    iam = server.client("iam")
    for n in range(5):
        iam.create_user(UserName=f"user{n}")
    first = iam.list_users(MaxItems=4)
    assert first["IsTruncated"] and len(first["Users"]) == 4
    rest = iam.list_users(MaxItems=4, Marker=first["Marker"])
    names = [u["UserName"] for u in first["Users"] + rest["Users"]]
    assert names == sorted(["admin", *(f"user{n}" for n in range(5))])


def test_the_admin_api_is_itself_checked_against_policy(server):
    _, keys = new_user(server, "bob", START_ONLY)
    bob_iam = server.client("iam", keys=keys)
    with pytest.raises(bob_iam.exceptions.ClientError) as error:
        bob_iam.create_user(UserName="mallory")
    code, message = code_of(error)
    assert code == "AccessDenied"
    assert message.endswith(
        "is not authorized to perform: iam:CreateUser on resource: "
        f"arn:aws:iam::{server.app_state().account}:user/mallory"
    )


def test_denied_calls_name_the_action_and_resource(server, node):
    ssm, _ = new_user(server, "carol")  # no policy at all
    with pytest.raises(ssm.exceptions.ClientError) as error:
        ssm.start_session(Target=node.instance_id)
    code, message = code_of(error)
    assert code == "AccessDeniedException"
    account = server.app_state().account
    assert message == (
        f"User: arn:aws:iam::{account}:user/carol is not authorized to perform: "
        f"ssm:StartSession on resource: arn:aws:ssm:{server.region}:{account}:"
        f"managed-instance/{node.instance_id}"
    )


def test_sessions_can_be_ended_by_their_owner_and_by_whom_a_policy_allows(server, node):
    dave, _ = new_user(server, "dave", START_ONLY)
    erin, _ = new_user(server, "erin", START_ONLY)
    mine = dave.start_session(Target=node.instance_id)["SessionId"]
    assert mine.startswith("dave-")
    dave.resume_session(SessionId=mine)  # the owner needs no policy for these
    with pytest.raises(erin.exceptions.ClientError) as error:
        erin.terminate_session(SessionId=mine)
    assert code_of(error)[0] == "AccessDeniedException"
    dave.terminate_session(SessionId=mine)
    # A policy that grants more: everyone's sessions.
    server.client("iam").put_user_policy(
        UserName="erin",
        PolicyName="ops",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "ssm:TerminateSession", "Resource": "*"}
                ],
            }
        ),
    )
    other = dave.start_session(Target=node.instance_id)["SessionId"]
    erin.terminate_session(SessionId=other)
    # And an explicit deny binds even the owner.
    server.client("iam").put_user_policy(
        UserName="dave",
        PolicyName="no-resume",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Deny", "Action": "ssm:ResumeSession", "Resource": "*"}],
            }
        ),
    )
    third = dave.start_session(Target=node.instance_id)["SessionId"]
    with pytest.raises(dave.exceptions.ClientError):
        dave.resume_session(SessionId=third)


def test_the_hatchway_iam_cli(server):
    env = server.env()

    def hatchway_iam(*args):
        return subprocess.run(
            [sys.executable, "-m", "hatchway", "iam", *args, "--endpoint-url", server.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    created = hatchway_iam("create-user", "--user-name", "frank", "--tags", "Key=team,Value=ops")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["User"]["UserName"] == "frank"
    key = hatchway_iam("create-access-key", "--user-name", "frank")
    access_key = json.loads(key.stdout)["AccessKey"]
    assert set(access_key) >= {"UserName", "AccessKeyId", "SecretAccessKey", "Status"}
    policy = hatchway_iam(
        "put-user-policy",
        "--user-name",
        "frank",
        "--policy-name",
        "p",
        "--policy-document",
        json.dumps(START_ONLY),
    )
    assert policy.returncode == 0 and policy.stdout == "", policy.stderr
    assert (
        hatchway_iam(
            "tag-user", "--user-name", "frank", "--tags", "Key=SSMSessionRunAs,Value=frank"
        ).returncode
        == 0
    )
    assert (
        hatchway_iam(
            "set-console-password", "--user-name", "frank", "--password", "correct horse"
        ).returncode
        == 0
    )
    assert (
        hatchway_iam(
            "set-console-password", "--user-name", "frank", "--password", "battery staple"
        ).returncode
        == 0
    )
    users = json.loads(hatchway_iam("list-users").stdout)["Users"]
    assert "frank" in [u["UserName"] for u in users]
    deleted = hatchway_iam(
        "delete-access-key", "--user-name", "frank", "--access-key-id", access_key["AccessKeyId"]
    )
    assert deleted.returncode == 0, deleted.stderr
    again = hatchway_iam("create-user", "--user-name", "frank")
    assert again.returncode == 254
    assert "EntityAlreadyExists" in again.stderr
    assert hatchway_iam("create-user").returncode == 252  # --user-name is required
