"""What a doctor check reports: a stable id, a status, a cause from a fixed vocabulary, the
evidence seen and the fix. Plain data, so the text table and ``--json`` show the same."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Status(enum.StrEnum):
    PASS = "pass"  # noqa: S105 (a status, not a password)
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


# The cause vocabulary (README.md documents it; it is stable: scripts match on it), with
# the fix doctor suggests when nothing more specific is known.
CAUSES: dict[str, str] = {
    "dns.not_found": "Check the host name in the endpoint URL (or the proxy URL); the name "
    "does not exist in DNS.",
    "dns.timeout": "No DNS server answered: check /etc/resolv.conf and that DNS traffic "
    "(port 53) may leave this machine.",
    "tcp.refused": "Nothing listens on that port: start the server, or fix the port in the "
    "endpoint URL.",
    "tcp.timeout": "Packets are dropped on the way: check firewalls and security groups "
    "between here and the server, or set HTTPS_PROXY if the network requires a proxy.",
    "tcp.unreachable": "There is no route to the server: check the address, the VPN and the "
    "network routes.",
    "tls.hostname_mismatch": "Connect with a name the certificate covers, or reissue the "
    "certificate with this name in its subject alternative names.",
    "tls.expired": "Renew the server's certificate (and check this machine's clock).",
    "tls.not_yet_valid": "Check this machine's clock, or wait until the certificate's start date.",
    "tls.self_signed": "Issue the server a certificate from a CA, or trust this one "
    "explicitly with --ca-bundle (AWS_CA_BUNDLE).",
    "tls.untrusted_issuer": "Pass the CA that issued the server's certificate with "
    "--ca-bundle (AWS_CA_BUNDLE, HATCHWAY_CA_BUNDLE for agents).",
    "tls.incomplete_chain": "Configure the server with the full chain (leaf then "
    "intermediates, e.g. fullchain.pem), not the leaf certificate alone.",
    "tls.chain_out_of_order": "Order the server's chain file leaf first, then each "
    "certificate followed by its issuer.",
    "tls.no_shared_cipher": "Enable modern ciphers on the server (ECDHE with AES-GCM or "
    "ChaCha20); this client does not offer the ones it accepts.",
    "tls.protocol_version": "Enable TLS 1.2 or 1.3 on the server (and check that the port "
    "speaks TLS at all).",
    "proxy.connect_refused": "Ask the proxy's administrators to allow CONNECT to the "
    "server's host and port, or add the host to NO_PROXY if it is reachable directly.",
    "proxy.auth_required": "Put the proxy credentials in the proxy URL "
    "(http://user:password@proxy:port) in HTTPS_PROXY or --proxy.",
    "proxy.websocket_blocked": "Configure the proxy to pass WebSocket upgrades (the Upgrade "
    "and Connection headers), or use an https:// endpoint so it tunnels with CONNECT.",
    "websocket.upgrade_failed": "Whatever is in front of the server (a load balancer or a "
    "reverse proxy) must pass WebSocket upgrades to /v1/data-channel/.",
    "auth.no_credentials": "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, point "
    "AWS_SHARED_CREDENTIALS_FILE at a credentials file, or name a profile with --profile.",
    "auth.unknown_access_key": "The server does not know this access key (deleted, "
    "inactive, or from another server): create one with `hatchway iam create-access-key`.",
    "auth.signature_mismatch": "The secret access key does not belong to this access key "
    "id, or something on the way changed the request: check the credentials file.",
    "auth.clock_skew": "Set this machine's clock right (enable NTP: timedatectl "
    "set-ntp true); signatures are valid for 15 minutes either side.",
    "auth.wrong_scope": "Use the server's region (--region or AWS_DEFAULT_REGION; the "
    "server's is set by `hatchway server --region`).",
    "auth.access_denied": "Ask an administrator for a policy that allows this action "
    "(`hatchway iam put-user-policy`).",
    "target.not_registered": "Check the target id, or register the machine with "
    "`hatchway agent register`.",
    "target.offline": "Start the agent on the machine (`systemctl start hatchway-agent`) "
    "and check its log: it cannot hold its control channel to the server.",
    "kms.unreachable": "The agent cannot reach KMS: check its --kms-endpoint, proxy and network.",
    "kms.access_denied": "Allow kms:Decrypt (agent) and kms:GenerateDataKey (client) on the "
    "key in their policies.",
    "kms.key_not_found": "Fix kmsKeyId in the session preferences: no such key or alias.",
    "kms.key_disabled": "Enable the key (EnableKey), or pick another in kmsKeyId.",
    "runas.invalid_username": "Tag the user with SSMSessionRunAs or set runAsDefaultUser to "
    "a valid OS user name.",
    "runas.user_missing": "Create the RunAs user on the machine, or pick one that exists.",
    "upstream.error": "Something between here and the server (a load balancer, reverse "
    "proxy or gateway) answered instead of it: check that it can reach the server.",
    "endpoint.aws": "Point doctor at the Hatchway server: --endpoint-url URL, or "
    "AWS_ENDPOINT_URL (AWS_ENDPOINT_URL_SSM) as `hatchway up` and `hatchway server` print it.",
    "endpoint.not_hatchway": "Check the endpoint URL's host and port: another program "
    "answers there (a web server, or a proxy that does not lead to Hatchway). Hatchway's "
    'GET /healthz answers {"status": "ok", ...}.',
    "region.unknown": "Pass --region or set AWS_DEFAULT_REGION to the server's region (the "
    "one `hatchway server` prints; us-east-1 unless it was given --region).",
}


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    status: Status
    evidence: str
    cause: str | None = None
    fix: str | None = None

    def __post_init__(self) -> None:
        if self.cause is not None and self.cause not in CAUSES:
            raise ValueError(f"unknown cause {self.cause!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "cause": self.cause,
            "evidence": self.evidence,
            "fix": self.fix,
        }


def passed(check_id: str, evidence: str) -> Result:
    return Result(check_id, Status.PASS, evidence)


def failed(check_id: str, cause: str, evidence: str, fix: str | None = None) -> Result:
    return Result(check_id, Status.FAIL, evidence, cause, fix or CAUSES[cause])


def warned(check_id: str, cause: str | None, evidence: str, fix: str | None = None) -> Result:
    return Result(check_id, Status.WARN, evidence, cause, fix or (CAUSES[cause] if cause else None))


def skipped(check_id: str, because: str) -> Result:
    return Result(check_id, Status.SKIP, f"not checked: {because}")
