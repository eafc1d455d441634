"""The cause vocabulary is stable: issue 8's list and issue 13's additions, each documented in
README.md."""

from __future__ import annotations

import re
from pathlib import Path

from hatchway.doctor.results import CAUSES

ISSUE_8 = """
dns.not_found dns.timeout tcp.refused tcp.timeout tcp.unreachable tls.hostname_mismatch
tls.expired tls.not_yet_valid tls.self_signed tls.untrusted_issuer tls.incomplete_chain
tls.chain_out_of_order tls.no_shared_cipher tls.protocol_version proxy.connect_refused
proxy.auth_required proxy.websocket_blocked websocket.upgrade_failed auth.no_credentials
auth.unknown_access_key auth.signature_mismatch auth.clock_skew auth.wrong_scope
auth.access_denied target.not_registered target.offline kms.unreachable kms.access_denied
kms.key_not_found kms.key_disabled runas.invalid_username runas.user_missing upstream.error
""".split()

# What answers is not Hatchway (AWS's own endpoint, or another program), and no region.
ISSUE_13 = ["endpoint.aws", "endpoint.not_hatchway", "region.unknown"]


def test_the_vocabulary_is_the_issues() -> None:
    assert sorted(CAUSES) == sorted(ISSUE_8 + ISSUE_13)
    assert all(fix.strip() for fix in CAUSES.values())


def test_every_cause_is_in_the_readme_table() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### The cause vocabulary", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"`([a-z]+\.[a-z_]+)`", section))
    assert set(CAUSES) <= documented
    assert documented <= set(CAUSES)
