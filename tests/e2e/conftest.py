"""End to end: a real server and a real agent on loopback, with real shells."""

import asyncio
import json
import os

import pytest

from hatchway.up import node_kms_policy
from tests.helpers import REGION, LoopThread, running_server


class AgentRunner:
    """A registered Hatchway agent running in its own event-loop thread."""

    def __init__(self, server, home, loop: LoopThread):
        from hatchway.agent.register import register

        self.server, self.home, self.loop = server, home, loop
        activation = server.client().create_activation(IamRole="e2e", RegistrationLimit=1)
        # Nodes have no KMS rights of their own: the role gets what encrypted sessions need.
        server.client("iam").put_role_policy(
            RoleName="e2e",
            PolicyName="sessions",
            PolicyDocument=json.dumps(node_kms_policy(server.region, server.app_state().account)),
        )
        self.identity = loop.run(
            register(server.url, activation["ActivationId"], activation["ActivationCode"], REGION)
        )
        self.identity.save(home)
        self.start()

    @property
    def instance_id(self):
        return self.identity.instance_id

    def start(self, kms_url=None, session_user=None):
        """Sessions run as the agent's own user unless a test names a session user."""
        from hatchway.agent.runtime import Agent, AgentConfig

        self.stop_event = asyncio.Event()
        config = AgentConfig(
            home=self.home, health_interval=3600, kms_url=kms_url, session_user=session_user
        )
        self.agent = Agent(config, self.identity)
        self.task = self.loop.submit(self.agent.run(self.stop_event))
        ssm = self.server.client()
        for _ in range(500):
            if ssm.get_connection_status(Target=self.instance_id)["Status"] == "connected":
                return
            import time

            time.sleep(0.02)
        raise AssertionError("the agent did not connect")

    def stop(self):
        self.loop.loop.call_soon_threadsafe(self.stop_event.set)
        self.task.result(30)


def clear_stale_pyenv_lock(max_age: float = 60.0) -> None:
    """The sessions here are login shells of the agent's user (root on CI), and this
    machine's root profile runs `pyenv init`, whose `pyenv rehash` takes a lock file. A
    shell killed while it holds it (a test that ends its session early, under load) leaves
    the lock behind, and every later login shell then waits 60 s for it at its profile. The
    lock of a rehash that runs for over a minute is stale: remove it."""
    import time
    from pathlib import Path

    lock = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "shims" / ".pyenv-shim"
    try:
        if time.time() - lock.stat().st_mtime > max_age:
            lock.unlink()
    except FileNotFoundError:
        pass


@pytest.fixture
def stack(tmp_path):
    clear_stale_pyenv_lock()
    loop = LoopThread()
    with running_server(tmp_path / "server") as server:
        agent = AgentRunner(server, tmp_path / "agent", loop)
        try:
            yield server, agent
        finally:
            agent.stop()
            loop.stop()


@pytest.fixture
def client_env(stack):
    server, _ = stack
    env = server.env()
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = os.environ["PATH"]
    return env


@pytest.fixture
def plugin_env(client_env, tmp_path):
    """client_env with Hatchway's session-manager-plugin drop-in first on PATH, for the AWS
    CLI."""
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    subprocess.run(
        [sys.executable, "-m", "hatchway", "install-plugin", "--dir", str(bin_dir)],
        check=True,
        env=client_env,
        capture_output=True,
        timeout=30,
    )
    return client_env | {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.fixture
def pyssm(pyssm_python):
    """The pyssm-client command, a third-party client."""
    return str(pyssm_python.parent / "pyssm")


@pytest.fixture
def cluster(tmp_path):
    """Three server processes on one PostgreSQL behind HAProxy (tests/cluster.py)."""
    from tests.cluster import running_cluster

    with running_cluster(tmp_path / "cluster") as running:
        yield running
