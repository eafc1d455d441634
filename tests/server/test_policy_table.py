"""Policy evaluation, one row per rule of the IAM grammar Hatchway implements."""

import pytest

from hatchway.server.iam.policy import Decision, PolicyError, Request, evaluate, validate

NODE = "arn:aws:ssm:us-east-1:111122223333:managed-instance/mi-0123456789abcdef0"
DOC = "arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession"
SESSION = "arn:aws:ssm:us-east-1:111122223333:session/alice-0123456789abcdef0"


def allow(action="ssm:StartSession", resource="*", **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action="ssm:StartSession", resource="*", **extra):
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


CASES = [
    # (name, policies, action, resource, context, expected)
    ("no policy: deny", [], "ssm:StartSession", NODE, {}, Decision.IMPLICIT_DENY),
    ("exact allow", [doc(allow(resource=NODE))], "ssm:StartSession", NODE, {}, Decision.ALLOW),
    ("other action", [doc(allow())], "ssm:TerminateSession", NODE, {}, Decision.IMPLICIT_DENY),
    ("action wildcard", [doc(allow("ssm:Start*"))], "ssm:StartSession", NODE, {}, Decision.ALLOW),
    ("action case", [doc(allow("SSM:startsession"))], "ssm:StartSession", NODE, {}, Decision.ALLOW),
    (
        "resource wildcard",
        [doc(allow(resource="arn:aws:ssm:*:*:managed-instance/mi-*"))],
        "ssm:StartSession",
        NODE,
        {},
        Decision.ALLOW,
    ),
    (
        "resource ? wildcard",
        [doc(allow(resource=NODE[:-1] + "?"))],
        "ssm:StartSession",
        NODE,
        {},
        Decision.ALLOW,
    ),
    (
        "other resource",
        [doc(allow(resource=DOC))],
        "ssm:StartSession",
        NODE,
        {},
        Decision.IMPLICIT_DENY,
    ),
    (
        "NotAction",
        [doc({"Effect": "Allow", "NotAction": "ssm:Delete*", "Resource": "*"})],
        "ssm:StartSession",
        NODE,
        {},
        Decision.ALLOW,
    ),
    (
        "NotAction excludes",
        [doc({"Effect": "Allow", "NotAction": "ssm:Start*", "Resource": "*"})],
        "ssm:StartSession",
        NODE,
        {},
        Decision.IMPLICIT_DENY,
    ),
    (
        "explicit deny wins",
        [doc(allow("ssm:*")), doc(deny())],
        "ssm:StartSession",
        NODE,
        {},
        Decision.DENY,
    ),
    (
        "deny in the same policy",
        [doc(allow("*"), deny(resource=NODE))],
        "ssm:StartSession",
        NODE,
        {},
        Decision.DENY,
    ),
    (
        "StringEquals resource tag",
        [doc(allow(Condition={"StringEquals": {"ssm:resourceTag/env": "dev"}}))],
        "ssm:StartSession",
        NODE,
        {"ssm:resourceTag/env": "dev"},
        Decision.ALLOW,
    ),
    (
        "StringEquals resource tag mismatch",
        [doc(allow(Condition={"StringEquals": {"ssm:resourceTag/env": "dev"}}))],
        "ssm:StartSession",
        NODE,
        {"ssm:resourceTag/env": "prod"},
        Decision.IMPLICIT_DENY,
    ),
    (
        "missing condition key",
        [doc(allow(Condition={"StringEquals": {"ssm:resourceTag/env": "dev"}}))],
        "ssm:StartSession",
        NODE,
        {},
        Decision.IMPLICIT_DENY,
    ),
    (
        "StringLike principal tag",
        [doc(allow(Condition={"StringLike": {"aws:PrincipalTag/team": "ops-*"}}))],
        "ssm:StartSession",
        NODE,
        {"aws:PrincipalTag/team": "ops-east"},
        Decision.ALLOW,
    ),
    (
        "aws:username in a resource",
        [doc(allow("ssm:TerminateSession", "arn:aws:ssm:*:*:session/${aws:username}-*"))],
        "ssm:TerminateSession",
        SESSION,
        {"aws:username": "alice"},
        Decision.ALLOW,
    ),
    (
        "aws:username of someone else",
        [doc(allow("ssm:TerminateSession", "arn:aws:ssm:*:*:session/${aws:username}-*"))],
        "ssm:TerminateSession",
        SESSION,
        {"aws:username": "bob"},
        Decision.IMPLICIT_DENY,
    ),
    (
        "Bool document access check",
        [doc(allow(Condition={"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}}))],
        "ssm:StartSession",
        DOC,
        {"ssm:SessionDocumentAccessCheck": "true"},
        Decision.ALLOW,
    ),
    (
        "Bool false",
        [doc(allow(Condition={"Bool": {"ssm:SessionDocumentAccessCheck": True}}))],
        "ssm:StartSession",
        DOC,
        {"ssm:SessionDocumentAccessCheck": "false"},
        Decision.IMPLICIT_DENY,
    ),
    (
        "conditions are ANDed",
        [
            doc(
                allow(
                    Condition={
                        "StringEquals": {"aws:username": "alice"},
                        "StringLike": {"ssm:resourceTag/env": "d*"},
                    }
                )
            )
        ],
        "ssm:StartSession",
        NODE,
        {"aws:username": "alice", "ssm:resourceTag/env": "prod"},
        Decision.IMPLICIT_DENY,
    ),
    (
        "values are ORed",
        [doc(allow(Condition={"StringEquals": {"aws:username": ["bob", "alice"]}}))],
        "ssm:StartSession",
        NODE,
        {"aws:username": "alice"},
        Decision.ALLOW,
    ),
]


@pytest.mark.parametrize(
    ("policies", "action", "resource", "context", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_policy_evaluation(policies, action, resource, context, expected):
    assert evaluate(policies, Request(action, resource, context)) is expected


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Maybe", "Action": "*", "Resource": "*"},
        {"Effect": "Allow", "Resource": "*"},
        {"Effect": "Allow", "Action": "*", "NotAction": "x", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "*",
            "Resource": "*",
            "Condition": {"NumericWayOff": {"a": "1"}},
        },
    ],
)
def test_malformed_statements_are_refused(statement):
    with pytest.raises(PolicyError):
        validate(doc(statement))
