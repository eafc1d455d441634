"""What a client session is given: the AWS settings from flags or argv, and StartSession's
answer. Kept free of botocore and aiohttp so the commands load fast."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AwsSettings:
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None  # SSM; None lets botocore resolve it
    kms_endpoint_url: str | None = None  # None lets botocore resolve it


@dataclass(frozen=True, slots=True)
class StartedSession:
    """StartSession's answer: what the data channel needs."""

    session_id: str
    token: str
    stream_url: str


# Hosts of AWS's own endpoints. Any other SSM endpoint is a self-hosted server such as
# Hatchway's, which answers KMS on the same URL.
_AWS_DOMAINS = ("amazonaws.com", "amazonaws.com.cn", "api.aws")


def kms_endpoint_for(ssm_endpoint: str | None) -> str | None:
    """The KMS endpoint to go with an explicit SSM endpoint: the same URL for a self-hosted
    server, and None (botocore's own resolution) for AWS, whose KMS lives elsewhere."""
    if not ssm_endpoint:
        return None
    host = (urllib.parse.urlsplit(ssm_endpoint).hostname or "").lower()
    if any(host == domain or host.endswith("." + domain) for domain in _AWS_DOMAINS):
        return None
    return ssm_endpoint
