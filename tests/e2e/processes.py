"""A Hatchway server and agent as real processes, for tests that kill or stop them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.ports import free_port
from tests.helpers import REGION, RunningServer

HATCHWAY = [sys.executable, "-m", "hatchway"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    """``hatchway server`` on a fixed loopback port, so a restart keeps its URL."""

    def __init__(self, home: Path, *args: str, port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.args = args
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home.parent / f"{home.name}.out"

    def start(self) -> RunningServer:
        self.spawn()
        return self.wait_ready()

    def spawn(self) -> None:
        """Start the process without waiting for it (several can then start together)."""
        command = [*HATCHWAY, "server", "--listen", f"127.0.0.1:{self.port}"]
        command += ["--home", str(self.home), *self.args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=_env()
            )

    def wait_ready(self, timeout: float = 60) -> RunningServer:
        """Until /healthz answers; fails at once if the process exits."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return RunningServer(url=self.url, home=self.home)
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the server did not answer: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class AgentProcess:
    """``hatchway agent run`` registered with ``server``; sessions run as this user."""

    def __init__(self, server: RunningServer, home: Path) -> None:
        from hatchway.agent.register import register

        activation = server.client().create_activation(IamRole="e2e", RegistrationLimit=1)
        self.identity = asyncio.run(
            register(server.url, activation["ActivationId"], activation["ActivationCode"], REGION)
        )
        self.identity.save(home)
        self.home = home
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home.parent / f"{home.name}.out"

    @property
    def instance_id(self) -> str:
        return str(self.identity.instance_id)

    def start(self) -> None:
        command = [*HATCHWAY, "agent", "run", "--home", str(self.home), "--session-user", ""]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=_env()
            )

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)


def node_status(server: RunningServer, instance_id: str) -> tuple[str, str]:
    """(PingStatus, GetConnectionStatus) as a client sees them."""
    ssm = server.client()
    (info,) = ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
    )["InstanceInformationList"]
    return info["PingStatus"], ssm.get_connection_status(Target=instance_id)["Status"]


def wait_for_node(server: RunningServer, instance_id: str, wanted: tuple[str, str]) -> None:
    deadline = time.monotonic() + 60
    seen: Any = None
    while time.monotonic() < deadline:
        seen = node_status(server, instance_id)
        if seen == wanted:
            return
        time.sleep(0.05)
    raise AssertionError(f"{instance_id} is {seen}, never {wanted}")
