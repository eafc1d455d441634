"""What an activation can hand out: a role the creator may pass, and no KMS rights beyond
what that role's policies and the key's policy allow (the escalation of issue 14)."""

import json

import pytest

from hatchway.agent.api import ServiceError, kms_decrypt
from hatchway.agent.register import register
from tests.helpers import REGION, ConnectedNode
from tests.server.test_iam_api import code_of, new_user

ACTIVATIONS_ONLY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "ssm:CreateActivation", "Resource": "*"}],
}


def activations_and_pass_role(resource):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ssm:CreateActivation", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": resource,
                "Condition": {"StringEquals": {"iam:PassedToService": "ssm.amazonaws.com"}},
            },
        ],
    }


def test_create_activation_needs_pass_role_on_the_role(server):
    server.client().create_activation(IamRole="admins")  # a role that exists already
    ssm, _ = new_user(server, "mallory", ACTIVATIONS_ONLY)
    with pytest.raises(ssm.exceptions.ClientError) as refused:
        ssm.create_activation(IamRole="admins")
    account = server.app_state().account
    assert code_of(refused) == (
        "AccessDeniedException",
        f"User: arn:aws:iam::{account}:user/mallory is not authorized to perform: "
        f"iam:PassRole on resource: arn:aws:iam::{account}:role/admins",
    )
    assert [a["IamRole"] for a in server.client().describe_activations()["ActivationList"]] == [
        "admins"
    ]


def test_pass_role_allows_only_the_roles_it_names(server):
    account = server.app_state().account
    ssm, _ = new_user(
        server, "ops", activations_and_pass_role(f"arn:aws:iam::{account}:role/edge-*")
    )
    created = ssm.create_activation(IamRole="edge-nodes")
    assert created["ActivationId"]
    with pytest.raises(ssm.exceptions.ClientError) as refused:
        ssm.create_activation(IamRole="admins")
    assert "iam:PassRole on resource: arn:aws:iam::" in code_of(refused)[1]


def admin_ciphertext(server):
    kms = server.client("kms")
    key = kms.create_key(Description="admin secrets")["KeyMetadata"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"the admin's secret")["CiphertextBlob"]
    return key, blob


def decrypt_as(node, key, blob):
    async def go():
        import aiohttp

        async with aiohttp.ClientSession() as http:
            return await kms_decrypt(http, node.server.url, node.identity, blob, key["Arn"], {})

    return node.loop.run(go())


def test_a_node_has_no_kms_rights_its_role_does_not_give(server, loop_thread):
    key, blob = admin_ciphertext(server)
    node = ConnectedNode(server, loop_thread, iam_role="plain-nodes")
    try:
        with pytest.raises(ServiceError) as refused:
            decrypt_as(node, key, blob)
        assert refused.value.code == "AccessDeniedException"
        assert refused.value.message == (
            f"User: arn:aws:sts::{server.app_state().account}:assumed-role/plain-nodes/"
            f"{node.instance_id} is not authorized to perform: kms:Decrypt on resource: "
            f"{key['Arn']}"
        )
        # The role's policy is what gives it; the same node may then Decrypt.
        server.client("iam").put_role_policy(
            RoleName="plain-nodes",
            PolicyName="sessions",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key["Arn"]}
                    ],
                }
            ),
        )
        assert decrypt_as(node, key, blob) == b"the admin's secret"
    finally:
        node.close()


def test_the_escalation_of_issue_14_is_closed(server, loop_thread):
    """A user allowed only CreateActivation cannot register a node as a role with KMS
    rights, and a node of a role they may pass reads no admin ciphertext."""
    key, blob = admin_ciphertext(server)
    server.client().create_activation(IamRole="admins")
    server.client("iam").put_role_policy(
        RoleName="admins",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    ssm, _ = new_user(server, "mallory", activations_and_pass_role("*:role/mallory-*"))
    with pytest.raises(ssm.exceptions.ClientError):
        ssm.create_activation(IamRole="admins")
    activation = ssm.create_activation(IamRole="mallory-nodes")
    identity = loop_thread.run(
        register(server.url, activation["ActivationId"], activation["ActivationCode"], REGION)
    )

    async def decrypt():
        import aiohttp

        async with aiohttp.ClientSession() as http:
            return await kms_decrypt(http, server.url, identity, blob, key["Arn"], {})

    with pytest.raises(ServiceError) as refused:
        loop_thread.run(decrypt())
    assert refused.value.code == "AccessDeniedException"
    assert "assumed-role/mallory-nodes/" in refused.value.message
