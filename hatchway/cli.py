"""The ``hatchway`` command. Each subcommand imports its part only when it runs."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__
from .doctor.command import run_options  # already loaded: `hatchway doctor` is registered below
from .private import private_dir

if TYPE_CHECKING:
    from .server.forwarded import Network


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def free_port_near(host: str, port: int) -> int:
    """A port after ``port`` that ``host`` can bind now (0 when none of the next 100 can),
    to suggest in place of a taken one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in range(port + 1, min(port + 101, 65536)):
        with socket.socket(family) as probe, contextlib.suppress(OSError):
            probe.bind((host, candidate))
            return candidate
    return 0


def listen_failure(exc: OSError, host: str, port: int, *, make_run: bool) -> click.ClickException:
    """One line for a --listen address that cannot be bound, saying how to choose another."""
    shown = f"[{host}]" if ":" in host else host
    if exc.errno == errno.EADDRINUSE:
        other = f"{shown}:{free_port_near(host, port)}"
        hint = f"choose another with --listen {other}"
        if make_run:
            hint += f" (make run LISTEN={other})"
        return click.ClickException(f"{shown}:{port} is already in use: {hint}.")
    if exc.errno == errno.EACCES:
        return click.ClickException(
            f"no permission to listen on {shown}:{port} (ports below 1024 need root): choose "
            f"another with --listen {shown}:8080."
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return click.ClickException(
            f"{host} is not an address of this machine: choose another with --listen "
            f"127.0.0.1:{port}."
        )
    return click.ClickException(f"cannot listen on {shown}:{port}: {exc.strerror or exc}.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hatchway")
def main() -> None:
    """Hatchway: a self-hosted, wire-compatible Session Manager."""


@main.command()
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    envvar="HATCHWAY_LISTEN",
    help="HOST:PORT",
)
@click.option("--home", default=".hatchway", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--public-url",
    envvar="HATCHWAY_PUBLIC_URL",
    help="Base of StreamUrl; defaults to the request's Host. Behind a load balancer, its URL.",
)
@click.option("--database", envvar="HATCHWAY_DATABASE", help="SQLAlchemy URL; SQLite in home.")
@click.option("--tls-cert", type=click.Path(exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, path_type=Path))
@click.option("--region", default="us-east-1", show_default=True, envvar="HATCHWAY_REGION")
@click.option("--log-json", is_flag=True, help="Write the log as JSON lines.")
@click.option(
    "--agent-grace",
    type=click.FloatRange(min=0),
    default=90.0,
    show_default=True,
    envvar="HATCHWAY_AGENT_GRACE",
    help="Seconds the sessions of an agent that went away wait for it to come back.",
)
@click.option(
    "--trusted-proxies",
    default="",
    envvar="HATCHWAY_TRUSTED_PROXIES",
    help="CIDR,... of reverse proxies whose X-Forwarded-* headers are believed; none by default.",
)
@click.option(
    "--header-timeout",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a connection has to send its first request's headers.",
)
@click.option(
    "--node-name",
    envvar="HATCHWAY_NODE_NAME",
    help="This node's name among the servers sharing the database; the host name by default.",
)
@click.option(
    "--advertise-url",
    envvar="HATCHWAY_ADVERTISE_URL",
    help="URL the other nodes reach this one on; by default the --listen address (the host "
    "name when it is a wildcard such as 0.0.0.0).",
)
@click.option(
    "--master-key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="HATCHWAY_MASTER_KEY",
    help="File of the master key that seals secrets in the database; every node of a "
    "cluster reads the same one. Must exist when given; default DIR/master.key, created on "
    "the first start.",
)
def server(
    listen: str,
    home: Path,
    public_url: str | None,
    database: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    region: str,
    log_json: bool,
    agent_grace: float,
    trusted_proxies: str,
    header_timeout: float,
    node_name: str | None,
    advertise_url: str | None,
    master_key: Path | None,
) -> None:
    """The control plane, the relay and the console."""
    from . import logs
    from .server.config import ServerConfig
    from .server.keystore import KeystoreError
    from .server.run import describe_start, serve

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    proxies = _trusted_proxies(trusted_proxies)
    host, port = parse_listen(listen)
    home = home.resolve()
    config = ServerConfig(
        home=home,
        host=host,
        port=port,
        public_url=public_url,
        database=database,
        tls_cert=tls_cert,
        tls_key=tls_key,
        region=region,
        log_json=log_json,
        agent_grace_seconds=agent_grace,
        trusted_proxies=proxies,
        header_timeout=header_timeout,
        advertise_url=_advertise_url(advertise_url),
        master_key=master_key.resolve() if master_key else None,
        node_name=node_name or socket.gethostname(),
    )
    private_dir(home)
    logs.setup(home / "logs", "server", json_lines=log_json)
    try:
        asyncio.run(serve(config, lambda app, url: click.echo(describe_start(app, url))))
    except KeystoreError as exc:  # a missing or wrong master key: say which file
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise listen_failure(exc, host, port, make_run=False) from None


def _advertise_url(value: str | None) -> str | None:
    """--advertise-url: an http(s) URL with a host, and nothing after its port."""
    if not value:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--advertise-url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{value!r} is not http(s)://HOST[:PORT]", param_hint="--advertise-url"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise click.BadParameter(
            f"{value!r} has more than a scheme, host and port", param_hint="--advertise-url"
        )
    return value.rstrip("/")


def _client_commands() -> None:
    from .client.commands import install_plugin, session_manager_plugin, start_session

    for command in (start_session, session_manager_plugin, install_plugin):
        main.add_command(command)


_client_commands()


def _admin_commands() -> None:
    from .admin import iam

    main.add_command(iam)


_admin_commands()


def _doctor_commands() -> None:
    from .doctor.command import doctor

    main.add_command(doctor)


_doctor_commands()


@main.group()
def agent() -> None:
    """The agent that runs on each managed node."""


@agent.command("register")
@click.option("--server", "server_url", required=True, help="The Hatchway server's URL.")
@click.option("--activation-id", required=True)
@click.option("--activation-code", required=True)
@click.option(
    "--home", default="/var/lib/hatchway-agent", show_default=True, type=click.Path(path_type=Path)
)
@click.option(
    "--region",
    default="us-east-1",
    show_default=True,
    help="Only used if the server does not say its region.",
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True),
    envvar="HATCHWAY_CA_BUNDLE",
    help="PEM bundle to trust for the server's TLS certificate.",
)
def agent_register(
    server_url: str,
    activation_id: str,
    activation_code: str,
    home: Path,
    region: str,
    ca_bundle: str | None,
) -> None:
    """Register this machine with an activation; prints its managed-node id."""
    from .agent.api import ServiceError
    from .agent.register import register

    try:
        identity = asyncio.run(
            register(server_url, activation_id, activation_code, region, ca_bundle)
        )
    except ServiceError as exc:
        raise click.ClickException(f"registration failed: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach {server_url}: {exc}") from None
    path = identity.save(home)
    click.echo(identity.instance_id)
    click.echo(f"Identity saved to {path}", err=True)


@agent.command("run")
@click.option(
    "--home", default="/var/lib/hatchway-agent", show_default=True, type=click.Path(path_type=Path)
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True),
    envvar="HATCHWAY_CA_BUNDLE",
    help="PEM bundle to trust for the server's TLS certificate.",
)
@click.option(
    "--session-user",
    help="The OS user that sessions without RunAs run as, created on first use with sudo "
    "rights (when the agent runs as root); HATCHWAY_SESSION_USER, else hatchway-user. An "
    "empty value runs them as the agent's own user.",
)
@click.option("--kms-endpoint", help="KMS for session keys; the server's endpoint by default.")
@click.option("--health-interval", default=300.0, show_default=True, hidden=True)
@click.option("--log-json", is_flag=True)
def agent_run(
    home: Path,
    ca_bundle: str | None,
    session_user: str | None,
    kms_endpoint: str | None,
    health_interval: float,
    log_json: bool,
) -> None:
    """Run the agent in the foreground until SIGINT or SIGTERM."""
    from . import logs
    from .agent.identity import Identity, IdentityError
    from .agent.runtime import Agent, AgentConfig

    try:
        identity = Identity.load(home)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None
    logs.setup(home / "logs", "agent", json_lines=log_json)
    config = AgentConfig(
        home=home,
        health_interval=health_interval,
        ca_bundle=ca_bundle,
        kms_url=kms_endpoint or None,
        session_user=configured_session_user(session_user, os.environ),
    )
    click.echo(f"Hatchway agent {identity.instance_id} connecting to {identity.server_url}")
    asyncio.run(run_until_signalled(Agent(config, identity).run))


@agent.command("doctor")
@click.option(
    "--home", default="/var/lib/hatchway-agent", show_default=True, type=click.Path(path_type=Path)
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False),
    envvar="HATCHWAY_CA_BUNDLE",
    help="PEM bundle to trust for the server's TLS certificate.",
)
@click.option("--kms-endpoint", help="KMS for session keys; the server's endpoint by default.")
@run_options
def agent_doctor(
    home: Path,
    ca_bundle: str | None,
    kms_endpoint: str | None,
    timeout: float,
    as_json: bool,
    debug: bool,
) -> None:
    """The agent's side: the server through the agent's proxy, its credentials, KMS, and
    where it logs. Exit status 0 when every check passes, 1 when any fails."""
    import sys

    from .agent.diagnose import check_logs
    from .agent.identity import Identity, IdentityError
    from .doctor.checks import Credentials, Settings, from_wire, run_checks
    from .doctor.command import proxy_from_environment, report, with_debug

    try:
        identity = Identity.load(home)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None
    proxy, proxy_headers, proxy_source = proxy_from_environment(identity.server_url, os.environ)
    settings = Settings(
        endpoint_url=identity.server_url,
        region=identity.region,
        endpoint_source=f"{home / 'identity.json'}",
        credentials=Credentials(
            identity.access_key_id,
            identity.secret_access_key,
            source=f"the node's identity ({identity.instance_id})",
        ),
        proxy_url=proxy,
        proxy_source=proxy_source,
        proxy_headers=proxy_headers,
        ca_bundle=ca_bundle
        or os.environ.get("AWS_CA_BUNDLE")
        or os.environ.get("SSL_CERT_FILE")
        or None,
        timeout=timeout,
        probe_target="AmazonSSM.ListInstanceAssociations",
        probe_params={"InstanceId": identity.instance_id},
        kms_url=kms_endpoint or identity.server_url,
        node_side=True,
    )
    if debug:
        settings = with_debug(settings)
    results = [*run_checks(settings), from_wire(check_logs(home))]
    sys.exit(report(results, as_json))


def configured_session_user(flag: str | None, environ: Mapping[str, str]) -> str | None:
    """--session-user, else HATCHWAY_SESSION_USER (set but empty counts: it means the
    agent's own user, which click's envvar handling would read as unset), else the
    default."""
    from .agent.users import DEFAULT_SESSION_USER

    value = flag if flag is not None else environ.get("HATCHWAY_SESSION_USER")
    if value is None:
        return DEFAULT_SESSION_USER
    return value.strip() or None


async def run_until_signalled(main_fn: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main_fn(stop)``; SIGINT and SIGTERM set ``stop``."""

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await main_fn(stop)


@main.group()
def activation() -> None:
    """Hybrid activations: the one-time codes that register nodes."""


@activation.command("create")
@click.option("--iam-role", default="hatchway-node", show_default=True)
@click.option("--registration-limit", default=1, show_default=True, type=int)
@click.option("--expires", "expires", help="ISO 8601 time; 24 hours from now by default.")
@click.option("--description", default="")
@click.option("--endpoint-url")
@click.option("--region")
@click.option("--profile")
@click.option("--debug", is_flag=True, help="Explain each step on stderr (secrets hidden).")
def activation_create(
    iam_role: str,
    registration_limit: int,
    expires: str | None,
    description: str,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    debug: bool,
) -> None:
    """Wrap CreateActivation; print ActivationId and ActivationCode. Exit status as the
    AWS CLI's: 255 the server cannot be reached, 254 a service error, 253 configuration."""
    import json
    from datetime import datetime

    import botocore.exceptions

    from .admin import NoEndpoint, admin_client, failure_status

    params: dict[str, object] = {
        "IamRole": iam_role,
        "RegistrationLimit": registration_limit,
        "Description": description,
    }
    if expires:
        try:
            params["ExpirationDate"] = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires") from None
    try:
        client = admin_client(
            "ssm", profile=profile, region=region, endpoint_url=endpoint_url, debug=debug
        )
        result = client.create_activation(**params)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, NoEndpoint) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(failure_status(exc))
    click.echo(json.dumps({k: result[k] for k in ("ActivationId", "ActivationCode")}, indent=2))


@main.command()
@click.option("--home", default=".hatchway", show_default=True, type=click.Path(path_type=Path))
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT")
@click.option(
    "--trusted-proxies",
    default="",
    envvar="HATCHWAY_TRUSTED_PROXIES",
    help="CIDR,... of reverse proxies whose X-Forwarded-* headers are believed; none by default.",
)
def up(home: Path, listen: str, trusted_proxies: str) -> None:
    """Run the server with a local agent registered to it. Ctrl-C stops both."""
    from . import logs
    from .server.keystore import KeystoreError
    from .up import run_up

    host, port = parse_listen(listen)
    proxies = _trusted_proxies(trusted_proxies)
    home = home.resolve()
    private_dir(home)
    logs.setup(home / "logs", "server", json_lines=False)
    try:
        asyncio.run(run_until_signalled(lambda stop: run_up(home, host, port, stop, proxies)))
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise listen_failure(exc, host, port, make_run=True) from None


def _trusted_proxies(text: str) -> tuple[Network, ...]:
    from .server.forwarded import parse_trusted_proxies

    try:
        return parse_trusted_proxies(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trusted-proxies") from None
