"""The agent behind an HTTPS proxy, trusting a private CA: control and data channels."""

import asyncio
import subprocess
import sys

from hatchway.agent.register import register
from tests.certs import PrivateCA
from tests.helpers import REGION, LoopThread, running_server
from tests.proxy import ConnectProxy

NAME = "hatchway.test"  # resolved by the proxy alone: no DNS involved


def test_agent_serves_a_session_through_a_proxy(tmp_path, monkeypatch):
    from hatchway.agent.runtime import Agent, AgentConfig

    ca = PrivateCA(tmp_path / "pki")
    leaf = ca.issue([NAME, "127.0.0.1"])
    loop = LoopThread()
    with running_server(tmp_path / "server", tls_cert=leaf.cert, tls_key=leaf.key) as server:
        port = int(server.url.rsplit(":", 1)[1])
        proxy = ConnectProxy(port)
        loop.run(proxy.start())
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca.path))
        admin = server.client("ssm")
        admin._endpoint.http_session._verify = str(ca.path)
        activation = admin.create_activation(IamRole="proxied")
        via_name = f"https://{NAME}:{port}"
        identity = loop.run(
            register(via_name, activation["ActivationId"], activation["ActivationCode"], REGION)
        )
        stop = asyncio.Event()
        agent = Agent(AgentConfig(home=tmp_path / "agent", ca_bundle=str(ca.path)), identity)
        task = loop.submit(agent.run(stop))
        try:
            for _ in range(300):
                if (
                    admin.get_connection_status(Target=identity.instance_id)["Status"]
                    == "connected"
                ):
                    break
                loop.run(asyncio.sleep(0.05))
            else:
                raise AssertionError("the agent never connected through the proxy")
            env = server.env() | {"AWS_CA_BUNDLE": str(ca.path)}
            env.pop("HTTPS_PROXY", None)
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "hatchway",
                    "start-session",
                    "--target",
                    identity.instance_id,
                ],
                input="echo proxied-$((5+5))\nexit\n",
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert "proxied-10" in result.stdout, result.stderr
        finally:
            loop.loop.call_soon_threadsafe(stop.set)
            task.result(30)
            loop.run(proxy.close())
            loop.stop()
    # HTTP calls (on pooled connections), the control channel and the data channel went
    # through it
    # (the admin's boto3 calls to 127.0.0.1 may be tunnelled too, which is botocore's call).
    assert len([t for t in proxy.targets if t == f"{NAME}:{port}"]) >= 3
