"""Who is calling: IAM users with access keys, and managed nodes acting as their role."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ...aws import arns


class PrincipalKind(enum.StrEnum):
    USER = "user"
    NODE = "node"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    name: str  # user name, or the node's mi- id
    account: str
    access_key_id: str
    role: str = ""  # a node's IAM role
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        if self.kind is PrincipalKind.NODE:
            return arns.assumed_role(self.account, self.role or "hatchway-node", self.name)
        return arns.user(self.account, self.name)


# The built-in permissions every managed node has: what an agent needs to stay
# registered and serve sessions, and nothing else. No KMS rights: as with AWS, a node may
# Decrypt only what its role's policies (and the key's policy) allow, so whoever can create
# an activation cannot read every key's ciphertext through the node it registers.
NODE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ssm:UpdateInstanceInformation",
                "ssm:ListInstanceAssociations",
                "ssm:DescribeAssociation",
                "ssm:GetDocument",
                "ssm:PutInventory",
                "ssm:UpdateInstanceAssociationStatus",
                "ssmmessages:*",
                "ec2messages:*",
            ],
            "Resource": "*",
        },
    ],
}

ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
