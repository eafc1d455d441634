"""The ``hatchway`` command."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hatchway")
def main() -> None:
    """Hatchway: a self-hosted, wire-compatible Session Manager."""


@main.command()
@click.option("--home", default=".hatchway", show_default=True, type=click.Path())
@click.option("--listen", default="127.0.0.1:8080", show_default=True)
def up(home: str, listen: str) -> None:
    """Run the server with a local agent registered to it."""
    raise click.ClickException("not yet: the server arrives with issue 3 and the agent with 4")
