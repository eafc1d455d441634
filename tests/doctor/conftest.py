"""A server with a real agent online and an offline node, an HTTPS server, a PKI and two users,
built once for the doctor tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from hatchway.doctor.checks import Credentials, Settings
from tests.certs import PrivateCA
from tests.e2e.conftest import AgentRunner
from tests.helpers import REGION, ConnectedNode, LoopThread, running_server
from tests.reverse_proxy import LOOPBACK

TIMEOUT = 2.0


@dataclass
class World:
    """Everything the cases share, built once for the module."""

    loop: LoopThread
    server: Any  # plain HTTP
    tls_server: Any  # HTTPS with a chain sent out of order
    pki: Path
    root: PrivateCA
    online: str  # a real Hatchway agent, which answers doctor's questions
    agent: Any
    offline: str
    admin: Credentials
    nobody: Credentials

    def settings(self, **changes: Any) -> Settings:
        base = Settings(
            endpoint_url=self.server.url,
            region=REGION,
            credentials=self.admin,
            timeout=TIMEOUT,
        )
        return replace(base, **changes)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("doctor")
    pki = base / "pki"
    root = PrivateCA(pki / "root", "Doctor Root CA")
    first = root.intermediate("Doctor Intermediate One")
    second = first.intermediate("Doctor Intermediate Two")
    shuffled = second.issue(
        ["localhost", "127.0.0.1"], stem="shuffled", chain=(first.cert, second.cert)
    )
    loop = LoopThread()
    with (
        # The reverse-proxy cases put a proxy in front, as deployments do, and say so.
        running_server(base / "server", trusted_proxies=LOOPBACK) as server,
        running_server(base / "tls", tls_cert=shuffled.cert, tls_key=shuffled.key) as tls,
    ):
        agent = AgentRunner(server, base / "agent", loop)
        offline = ConnectedNode(server, loop)
        offline.close()
        ssm = server.client()
        deadline = time.monotonic() + 30
        while ssm.get_connection_status(Target=offline.instance_id)["Status"] != "notconnected":
            assert time.monotonic() < deadline, f"{offline.instance_id} never showed notconnected"
            time.sleep(0.02)
        iam = server.client("iam")
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        key_id, secret = server.admin_keys()
        try:
            yield World(
                loop=loop,
                server=server,
                tls_server=tls,
                pki=pki,
                root=root,
                online=agent.instance_id,
                agent=agent,
                offline=offline.instance_id,
                admin=Credentials(key_id, secret, source="the test"),
                nobody=Credentials(key["AccessKeyId"], key["SecretAccessKey"], source="the test"),
            )
        finally:
            agent.stop()
    loop.stop()
