"""Test harness: a real Hatchway server on a loopback port, run in a thread with its own
event loop, so synchronous clients such as boto3 and awscli can talk to it."""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config

from hatchway.server.config import ServerConfig
from hatchway.server.run import serve

T = TypeVar("T")
REGION = "us-east-1"


def wait_until(check: Callable[[], T], timeout: float = 60.0, what: str = "the condition") -> T:
    """Poll ``check`` until it returns something true, and return that; the timeout only
    ends a test whose condition never comes."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)
    return value


@contextlib.contextmanager
def recording_proxy() -> Iterator[tuple[str, socket.socket]]:
    """A listener to use as HTTPS_PROXY/HTTP_PROXY: a request for AWS would connect to it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", listener


def nothing_connected(listener: socket.socket) -> bool:
    """Whether no connection reached ``listener``; call it once the command has exited, when
    a connection it made would be waiting in the backlog."""
    listener.setblocking(False)
    try:
        connection, _ = listener.accept()
    except BlockingIOError:
        return True
    connection.close()
    return False


class LoopThread:
    """An event loop in a daemon thread; ``run`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class RunningServer:
    url: str
    home: Path
    region: str = REGION
    extra_env: dict[str, str] = field(default_factory=dict)
    loop: LoopThread | None = None
    app: Any = None

    def app_state(self) -> Any:
        from hatchway.server.app import STATE

        return self.app[STATE]

    def loop_call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's own event loop."""
        assert self.loop is not None
        return self.loop.run(coro)

    def set_config(self, **changes: Any) -> None:
        import dataclasses

        state = self.app_state()
        state.config = dataclasses.replace(state.config, **changes)

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials"

    def tag_admin(self, tags: dict[str, str]) -> None:
        """Set the admin user's tags, as `hatchway iam tag-user` will."""
        from hatchway.server.storage.models import User

        async def tag() -> None:
            async with self.app_state().db() as db, db.begin():
                user = await db.get(User, "admin")
                assert user is not None
                user.tags = dict(tags)

        self.loop_call(tag())

    def admin_keys(self) -> tuple[str, str]:
        parser = configparser.ConfigParser()
        parser.read(self.credentials_file)
        return parser["default"]["aws_access_key_id"], parser["default"]["aws_secret_access_key"]

    def client(self, service: str = "ssm", keys: tuple[str, str] | None = None) -> Any:
        key_id, secret = keys or self.admin_keys()
        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(retries={"total_max_attempts": 1}, parameter_validation=False),
        )

    def env(self) -> dict[str, str]:
        """Environment for a CLI subprocess that should reach this server as admin."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_SHARED_CREDENTIALS_FILE=str(self.credentials_file),
            AWS_CONFIG_FILE="/dev/null",
            AWS_ENDPOINT_URL=self.url,
            AWS_DEFAULT_REGION=self.region,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_MAX_ATTEMPTS="1",
        )
        env.update(self.extra_env)
        return env


@contextlib.contextmanager
def running_server(home: Path, **overrides: Any) -> Iterator[RunningServer]:
    config = ServerConfig(home=home, host="127.0.0.1", port=0, **overrides)
    loop = LoopThread()
    ready: asyncio.Future[str] = loop.loop.create_future()
    stop = asyncio.Event()

    apps: list[Any] = []

    def on_ready(app: Any, url: str) -> None:
        apps.append(app)
        ready.set_result(url)

    async def main() -> None:
        try:
            await serve(config, on_ready, stop)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    async def wait_ready() -> str:
        return await asyncio.wait_for(asyncio.shield(ready), 60)

    task = loop.submit(main())
    try:
        url = loop.run(wait_ready())
        yield RunningServer(url=url, home=home, loop=loop, app=apps[0])
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        with contextlib.suppress(Exception):
            task.result(30)
        loop.stop()


class ConnectedNode:
    """A managed node registered through an activation, holding a control channel open.

    It records what the server sends down the channel, so tests can see StartSession
    reach the agent side."""

    def __init__(self, server: RunningServer, loop: LoopThread, iam_role: str = "node-role"):
        import aiohttp

        from hatchway.agent.control import Backoff, ControlChannel
        from hatchway.agent.register import register

        self.server, self.loop = server, loop
        activation = server.client().create_activation(IamRole=iam_role)
        self.identity = loop.run(
            register(server.url, activation["ActivationId"], activation["ActivationCode"], REGION)
        )
        self.messages: list[Any] = []
        self.stop = asyncio.Event()

        async def record(message: Any) -> None:
            self.messages.append(message)

        async def start() -> None:
            self.http = aiohttp.ClientSession()
            self.channel = ControlChannel(
                self.identity, self.http, record, backoff=Backoff(0.05, 0.2)
            )
            self.task = asyncio.ensure_future(self.channel.run_forever(self.stop))
            await asyncio.wait_for(self.channel.connected.wait(), 30)

        loop.run(start())
        # The server marks the node online once it has checked the channel's token.
        deadline = time.monotonic() + 30
        while server.client().get_connection_status(Target=self.instance_id)["Status"] != (
            "connected"
        ):
            assert time.monotonic() < deadline, f"{self.instance_id} never showed connected"
            time.sleep(0.02)

    @property
    def instance_id(self) -> str:
        return self.identity.instance_id

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        from hatchway.agent.api import call_json

        async def go() -> dict[str, Any]:
            async with aiohttp.ClientSession() as http:
                return await call_json(http, self.server.url, operation, params, self.identity)

        return self.loop.run(go())

    def wait_for(self, predicate: Any, timeout: float = 10) -> Any:
        async def poll() -> Any:
            for _ in range(int(timeout / 0.02)):
                for message in self.messages:
                    if predicate(message):
                        return message
                await asyncio.sleep(0.02)
            raise AssertionError(f"no matching control message in {timeout}s: {self.messages}")

        return self.loop.run(poll())

    def close(self) -> None:
        async def stop() -> None:
            self.stop.set()
            await asyncio.wait_for(self.task, 10)
            await self.http.close()

        self.loop.run(stop())
