"""Amazon Resource Names in the forms AWS uses for Session Manager resources."""

from __future__ import annotations


def managed_instance(region: str, account: str, instance_id: str) -> str:
    return f"arn:aws:ssm:{region}:{account}:managed-instance/{instance_id}"


def document(region: str, account: str, name: str, *, aws_owned: bool) -> str:
    # AWS-owned documents have no account in their ARN.
    return f"arn:aws:ssm:{region}:{'' if aws_owned else account}:document/{name}"


def session(region: str, account: str, session_id: str) -> str:
    return f"arn:aws:ssm:{region}:{account}:session/{session_id}"


def user(account: str, name: str) -> str:
    return f"arn:aws:iam::{account}:user/{name}"


def role(account: str, name: str) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


def assumed_role(account: str, role_name: str, session_name: str) -> str:
    return f"arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}"


def kms_key(region: str, account: str, key_id: str) -> str:
    return f"arn:aws:kms:{region}:{account}:key/{key_id}"


def kms_alias(region: str, account: str, alias: str) -> str:
    return f"arn:aws:kms:{region}:{account}:{alias}"
