"""The agent behind an HTTPS proxy, trusting a private CA: control and data channels."""

import asyncio
import subprocess
import sys

from hatchway.agent.register import register
from tests.certs import PrivateCA
from tests.helpers import REGION, LoopThread, running_server

NAME = "hatchway.test"  # resolved by the proxy alone: no DNS involved


class ConnectProxy:
    """CONNECT to anything reaches the server's port; records what was asked."""

    def __init__(self, loop: LoopThread, port: int) -> None:
        self.port, self.tunnels = port, []
        self.server = loop.run(asyncio.start_server(self.tunnel, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def tunnel(self, reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        method, target, _ = head.split("\r\n")[0].split(" ")
        self.tunnels.append(target)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def test_agent_serves_a_session_through_a_proxy(tmp_path, monkeypatch):
    from hatchway.agent.runtime import Agent, AgentConfig

    ca = PrivateCA(tmp_path / "pki")
    leaf = ca.issue([NAME, "127.0.0.1"])
    loop = LoopThread()
    with running_server(tmp_path / "server", tls_cert=leaf.cert, tls_key=leaf.key) as server:
        port = int(server.url.rsplit(":", 1)[1])
        proxy = ConnectProxy(loop, port)
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
            proxy.server.close()
            loop.stop()
    # HTTP calls (on pooled connections), the control channel and the data channel went
    # through it
    # (the admin's boto3 calls to 127.0.0.1 may be tunnelled too, which is botocore's call).
    assert len([t for t in proxy.tunnels if t == f"{NAME}:{port}"]) >= 3
