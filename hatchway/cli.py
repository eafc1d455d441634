"""The ``hatchway`` command. Each subcommand imports its part only when it runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from . import __version__


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hatchway")
def main() -> None:
    """Hatchway: a self-hosted, wire-compatible Session Manager."""


@main.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT")
@click.option("--home", default=".hatchway", show_default=True, type=click.Path(path_type=Path))
@click.option("--public-url", help="Base of StreamUrl; defaults to the request's Host.")
@click.option("--database", envvar="HATCHWAY_DATABASE", help="SQLAlchemy URL; SQLite in home.")
@click.option("--tls-cert", type=click.Path(exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, path_type=Path))
@click.option("--region", default="us-east-1", show_default=True, envvar="HATCHWAY_REGION")
@click.option("--log-json", is_flag=True, help="Write the log as JSON lines.")
def server(
    listen: str,
    home: Path,
    public_url: str | None,
    database: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    region: str,
    log_json: bool,
) -> None:
    """The control plane, the relay and the console."""
    from . import logs
    from .server.config import ServerConfig
    from .server.run import describe_start, serve

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
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
    )
    home.mkdir(parents=True, exist_ok=True)
    logs.setup(home / "logs", "server", json_lines=log_json)
    asyncio.run(serve(config, lambda app, url: click.echo(describe_start(app, url), err=False)))


@main.command()
@click.option("--home", default=".hatchway", show_default=True, type=click.Path())
@click.option("--listen", default="127.0.0.1:8080", show_default=True)
def up(home: str, listen: str) -> None:
    """Run the server with a local agent registered to it."""
    raise click.ClickException("not yet: the agent arrives with issue 4; use 'hatchway server'")
