"""``hatchway up``: a server and a local agent registered to it; the agent runs as a child
process, as it would on a real node.

This is the composition root for the quick start, so it is the one place (with cli.py)
that imports both the server and the agent.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import ctypes
import dataclasses
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import click
from aiohttp import web

from .agent.api import call_json
from .agent.identity import Identity, IdentityError
from .agent.register import register
from .agent.signing import signed_headers
from .aws.query import FORM_CONTENT_TYPE
from .server.app import STATE
from .server.config import ServerConfig
from .server.forwarded import Network
from .server.mgs import MessageGateway
from .server.run import describe_start, serve

log = logging.getLogger("hatchway.up")

AGENT_RESTARTS = 5
AGENT_STOP_SECONDS = 10.0
AGENT_CONNECT_SECONDS = 60.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
LOCAL_ROLE = "hatchway-local"
LOCAL_ROLE_POLICY = "hatchway-local-sessions"


def node_kms_policy(region: str, account: str) -> dict[str, Any]:
    """What a node's role needs for encrypted sessions: Decrypt on the account's keys. A
    node has no KMS rights of its own (as with AWS), so ``hatchway up`` gives its local
    agent's role this policy, and encrypted sessions work out of the box."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": f"arn:aws:kms:{region}:{account}:key/*",
            }
        ],
    }


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
                "IamRole": LOCAL_ROLE,
                "Description": "hatchway up",
                "DefaultInstanceName": "local",
            },
            admin,
        )
    identity = await register(url, activation["ActivationId"], activation["ActivationCode"], region)
    identity.save(agent_home)
    return identity


def command_path(name: str) -> str:
    """How to run ``name`` from this installation: beside this Python (the virtualenv's
    bin/, shown relative to the current folder when it is under it), else from PATH."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return name
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


async def give_local_role_kms(url: str, admin: Identity, region: str, account: str) -> None:
    """PutRolePolicy (IAM's query protocol) of ``node_kms_policy`` on the local agent's role,
    on every start, so a home made before nodes lost their built-in Decrypt works too."""
    body = urlencode(
        {
            "Action": "PutRolePolicy",
            "Version": "2010-05-08",
            "RoleName": LOCAL_ROLE,
            "PolicyName": LOCAL_ROLE_POLICY,
            "PolicyDocument": json.dumps(node_kms_policy(region, account)),
        }
    ).encode()
    endpoint = url.rstrip("/") + "/"
    headers = signed_headers(
        admin, "POST", endpoint, "iam", body, {"Content-Type": FORM_CONTENT_TYPE}
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(endpoint, data=body, headers=headers) as response,
    ):
        if response.status != 200:
            text = (await response.text())[:500]
            raise click.ClickException(
                f"could not give the local agent's role {LOCAL_ROLE} its KMS policy "
                f"(HTTP {response.status}): {text}"
            )


def connect_help(home: Path, url: str, region: str, target: str) -> str:
    hatchway, aws = command_path("hatchway"), command_path("aws")
    credentials = home / "credentials"
    return "\n".join(
        [
            "",
            f"Local agent registered as {target}.",
            f"Web console: {url}/console/ (sign in with the access key and secret in "
            f"{credentials})",
            "Connect from another terminal:",
            f"  export AWS_SHARED_CREDENTIALS_FILE={credentials}",
            f"  export AWS_ENDPOINT_URL={url} AWS_DEFAULT_REGION={region}",
            f"  {hatchway} start-session --target {target}",
            "or with the AWS CLI, once the plugin drop-in is on PATH:",
            f"  {hatchway} install-plugin --dir ~/.local/bin",
            '  export PATH="$HOME/.local/bin:$PATH"',
            f"  {aws} ssm start-session --target {target}",
            "Ctrl-C stops the server and the agent.",
        ]
    )


async def run_up(
    home: Path,
    host: str,
    port: int,
    stop: asyncio.Event,
    trusted_proxies: tuple[Network, ...] = (),
) -> None:
    """Serve until ``stop``; the caller has set up ``home`` and logging."""
    config = ServerConfig(home=home, host=host, port=port, trusted_proxies=trusted_proxies)
    ready: asyncio.Future[tuple[str, web.Application]] = asyncio.get_running_loop().create_future()

    def on_ready(app: web.Application, url: str) -> None:
        click.echo(describe_start(app, url))
        sys.stdout.flush()
        ready.set_result((url, app))

    server = asyncio.create_task(serve(config, on_ready, stop))
    done, _ = await asyncio.wait({server, ready}, return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        server.result()  # raises what stopped it, such as the port being taken
        return
    url, app = ready.result()
    region = app[STATE].region
    identity = await local_agent_identity(home, url, region)
    await give_local_role_kms(url, admin_identity(home, url, region), region, app[STATE].account)
    agent = asyncio.create_task(run_agent_process(home / "agent", stop))
    try:
        # Say "ready" only once a session can start: the agent has connected.
        connected = asyncio.create_task(
            app[STATE].services.get(MessageGateway).wait_connected(identity.instance_id)
        )
        await asyncio.wait(
            {connected, agent, server},
            timeout=AGENT_CONNECT_SECONDS,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not connected.done():
            connected.cancel()
            log.error("the local agent has not connected; see %s", home / "agent" / "logs")
        click.echo(connect_help(home, url, region, identity.instance_id))
        sys.stdout.flush()  # the quick start reads these lines; do not leave them in a buffer
        await asyncio.gather(server, agent)
    finally:
        stop.set()
        await asyncio.gather(agent, return_exceptions=True)


async def run_agent_process(agent_home: Path, stop: asyncio.Event) -> None:
    """The local agent runs as its own process, as it does on a real node: it gets a core
    of its own, and a crash in it cannot take the server down. It is restarted (a few
    times, with back-off) if it dies, and stopped with SIGTERM when ``stop`` is set."""
    command = [sys.executable, "-m", "hatchway", "agent", "run", "--home", str(agent_home)]
    for attempt in range(AGENT_RESTARTS + 1):
        # Its own process group: Ctrl-C in the terminal reaches only us, and we stop it.
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=stop_with_parent,
        )
        waiter = asyncio.create_task(process.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stop.is_set():
            await stop_process(process, waiter)
            return
        delay = min(30.0, 2.0**attempt)
        log.error(
            "the local agent exited with status %s; restarting it in %.0f s",
            process.returncode,
            delay,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return
    log.error("the local agent keeps exiting; see %s", agent_home / "logs")


def _find_prctl() -> Any:
    # Looked up here, in the parent: the child of a threaded process should do no more
    # than call it between fork and exec.
    try:
        return ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()


def stop_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when ``hatchway up`` dies, even by
    SIGKILL, so no agent is left behind dialling a server that is gone."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


async def stop_process(process: asyncio.subprocess.Process, waiter: asyncio.Task[int]) -> None:
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(asyncio.shield(waiter), AGENT_STOP_SECONDS)
    except TimeoutError:
        process.kill()
        await waiter
