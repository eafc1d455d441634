"""``hatchway up``: a server and a local agent registered to it, in one process.

This is the composition root for the quick start, so it is the one place (with cli.py)
that imports both the server and the agent.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import dataclasses
import sys
from pathlib import Path

import aiohttp
import click
from aiohttp import web

from .agent.api import call_json
from .agent.identity import Identity, IdentityError
from .agent.register import register
from .agent.runtime import Agent, AgentConfig
from .server.app import STATE
from .server.config import ServerConfig
from .server.run import describe_start, serve


def admin_identity(home: Path, url: str, region: str) -> Identity:
    parser = configparser.ConfigParser()
    parser.read(home / "credentials")
    section = parser["default"]
    return Identity(
        "admin", url, region, section["aws_access_key_id"], section["aws_secret_access_key"]
    )


async def local_agent_identity(home: Path, url: str, region: str) -> Identity:
    """The local agent's identity: reused when it is registered to this server, otherwise
    a fresh activation and registration."""
    agent_home = home / "agent"
    admin = admin_identity(home, url, region)
    async with aiohttp.ClientSession() as http:
        with contextlib.suppress(IdentityError):
            identity = Identity.load(agent_home)
            known = await call_json(
                http,
                url,
                "DescribeInstanceInformation",
                {"Filters": [{"Key": "InstanceIds", "Values": [identity.instance_id]}]},
                admin,
            )
            if known["InstanceInformationList"]:
                # Still registered here; the port may have changed since the last run.
                moved = dataclasses.replace(identity, server_url=url)
                moved.save(agent_home)
                return moved
        activation = await call_json(
            http,
            url,
            "CreateActivation",
            {
                "IamRole": "hatchway-local",
                "Description": "hatchway up",
                "DefaultInstanceName": "local",
            },
            admin,
        )
    identity = await register(url, activation["ActivationId"], activation["ActivationCode"], region)
    identity.save(agent_home)
    return identity


def connect_help(home: Path, url: str, region: str, target: str) -> str:
    return "\n".join(
        [
            "",
            f"Local agent registered as {target}.",
            "Connect from another terminal:",
            f"  export AWS_SHARED_CREDENTIALS_FILE={home / 'credentials'}",
            f"  export AWS_ENDPOINT_URL={url} AWS_DEFAULT_REGION={region}",
            f"  .venv/bin/hatchway start-session --target {target}",
            "or with the AWS CLI, after putting the plugin on PATH:",
            "  .venv/bin/hatchway install-plugin --dir ~/.local/bin",
            f"  aws ssm start-session --target {target}",
            "Ctrl-C stops the server and the agent.",
        ]
    )


async def run_up(home: Path, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve until ``stop``; the caller has set up ``home`` and logging."""
    config = ServerConfig(home=home, host=host, port=port)
    ready: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()

    def on_ready(app: web.Application, url: str) -> None:
        click.echo(describe_start(app, url))
        sys.stdout.flush()
        ready.set_result((url, app[STATE].region))

    server = asyncio.create_task(serve(config, on_ready, stop))
    done, _ = await asyncio.wait({server, ready}, return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        server.result()  # raises what stopped it, such as the port being taken
        return
    url, region = ready.result()
    identity = await local_agent_identity(home, url, region)
    click.echo(connect_help(home, url, region, identity.instance_id))
    sys.stdout.flush()  # the quick start reads these lines; do not leave them in a buffer
    agent = Agent(AgentConfig(home=home / "agent"), identity)
    try:
        await asyncio.gather(server, agent.run(stop))
    finally:
        stop.set()
