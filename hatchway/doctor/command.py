"""``hatchway doctor``: finds the endpoint, region, credentials, CA bundle and proxy the way
the client does (botocore's chain, HTTPS_PROXY/NO_PROXY), runs the checks and prints them.
botocore loads only when the command runs, so ``hatchway --help`` stays quick."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .results import Result, Status

F = TypeVar("F", bound=Any)

if TYPE_CHECKING:
    # The checks (cryptography, ssl) load when the command runs: `hatchway --help` stays quick.
    from .checks import Settings


AWS_DEFAULT_SOURCE = "AWS's endpoint for the region"  # nothing named an endpoint


def endpoint_source(flag: str | None, environ: Mapping[str, str], profile_has: bool) -> str:
    if flag:
        return "--endpoint-url"
    for name in ("AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL"):
        if environ.get(name):
            return name
    return "the profile's endpoint_url" if profile_has else AWS_DEFAULT_SOURCE


def resolve_settings(
    *,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    target: str | None,
    proxy: str | None,
    ca_bundle: str | None,
    timeout: float,
    environ: Mapping[str, str],
    document_name: str | None = None,
) -> Settings:
    import botocore.exceptions  # type: ignore[import-untyped]
    import botocore.session  # type: ignore[import-untyped]

    from ..aws.explain import credential_source
    from .checks import Credentials, Settings, is_aws_endpoint, parse_endpoint

    session = botocore.session.Session(profile=profile)
    try:
        region = region or session.get_config_variable("region") or None
        # Without a region, botocore still tells where the endpoint is (a placeholder region
        # only shapes AWS's default URL); the checks then ask the server's /healthz for it.
        client = session.create_client(
            "ssm", region_name=region or "us-east-1", endpoint_url=endpoint_url
        )
    except (botocore.exceptions.BotoCoreError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    resolved = str(client.meta.endpoint_url)
    try:
        parse_endpoint(resolved)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--endpoint-url") from None
    try:
        scoped = session.get_scoped_config()
    except botocore.exceptions.BotoCoreError:
        scoped = {}
    profile_has = bool(scoped.get("endpoint_url"))
    source = endpoint_source(endpoint_url, environ, profile_has)

    credentials: Credentials | None = None
    problem = (
        "no credentials in the chain (environment, shared credentials file, config file, "
        "SSO, container or instance role)"
    )
    try:
        found = session.get_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        found, problem = None, str(exc)
    if found is not None:
        frozen = found.get_frozen_credentials()
        credentials = Credentials(
            frozen.access_key,
            frozen.secret_key,
            frozen.token,
            credential_source(found.method, environ, profile),
        )

    proxy_headers: tuple[tuple[str, str], ...] = ()
    proxy_source = "--proxy"
    if proxy is None:
        proxy, proxy_headers, proxy_source = proxy_from_environment(resolved, environ)
    elif proxy:
        try:
            parse_endpoint(proxy)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--proxy") from None
    return Settings(
        endpoint_url=resolved,
        region=region,
        endpoint_source=source,
        # (botocore may also have found one where doctor does not look, such as [services])
        endpoint_configured=source != AWS_DEFAULT_SOURCE
        or not is_aws_endpoint(parse_endpoint(resolved).host),
        credentials=credentials,
        credentials_problem=problem,
        target=target,
        document_name=document_name,
        proxy_url=proxy or None,
        proxy_source=proxy_source,
        proxy_headers=proxy_headers,
        ca_bundle=ca_bundle or session.get_config_variable("ca_bundle") or None,
        timeout=timeout,
    )


def proxy_from_environment(
    endpoint_url: str, environ: Mapping[str, str]
) -> tuple[str | None, tuple[tuple[str, str], ...], str]:
    """(proxy URL, its Proxy-Authorization header, the variable it came from) as the
    client and agent pick it: HTTPS_PROXY/HTTP_PROXY minus NO_PROXY, loopback never."""
    from yarl import URL

    from ..aws.proxy import proxy_for
    from .checks import parse_endpoint

    endpoint = parse_endpoint(endpoint_url)
    scheme = "wss" if endpoint.scheme == "https" else "ws"
    found, extra = proxy_for(URL(f"{scheme}://{endpoint.authority}/"), environ)
    source = "HTTPS_PROXY" if endpoint.scheme == "https" else "HTTP_PROXY"
    return (str(found) if found else None), tuple(extra.items()), source


_STYLES = {Status.PASS: "green", Status.FAIL: "bold red", Status.WARN: "yellow", Status.SKIP: "dim"}


def print_table(results: list[Result]) -> None:
    import shutil

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_lines=True, expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("cause", no_wrap=True)
    table.add_column("evidence / fix", overflow="fold")
    for result in results:
        text = escape(result.evidence)
        if result.fix and result.status in (Status.FAIL, Status.WARN):
            text += f"\n[bold]fix:[/bold] {escape(result.fix)}"
        table.add_row(
            result.id,
            f"[{_STYLES[result.status]}]{result.status.value}[/]",
            result.cause or "",
            text,
        )
    console = Console(width=shutil.get_terminal_size((140, 24)).columns)
    console.print(table)
    console.print(escape(summary(results)))


def summary(results: list[Result]) -> str:
    """One line under the table: the first failure's cause, or that all passed."""
    failures = [r for r in results if r.status is Status.FAIL]
    warnings = [r for r in results if r.status is Status.WARN]
    if not failures:
        tail = f", {len(warnings)} warning(s)" if warnings else ""
        return f"No check failed{tail}."
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"Failed: {first.id} - {first.cause}{more}. Fix: {first.fix}"


def exit_status(results: list[Result]) -> int:
    return 1 if any(result.status is Status.FAIL for result in results) else 0


def report(results: list[Result], as_json: bool) -> int:
    if as_json:
        click.echo(json.dumps([result.to_json() for result in results], indent=2))
    else:
        print_table(results)
    return exit_status(results)


def _debug(text: str) -> None:
    for line in text.splitlines() or [""]:
        sys.stderr.write(f"debug: {line}\n")
    sys.stderr.flush()


def run_options(command: F) -> F:
    """--timeout, --json and --debug, shared by `hatchway doctor` and `agent doctor`."""
    for option in reversed(
        (
            click.option(
                "--timeout",
                default=5.0,
                show_default=True,
                callback=_positive,
                help="Seconds for each network wait.",
            ),
            click.option(
                "--json", "as_json", is_flag=True, help="Print the results as a JSON list."
            ),
            click.option(
                "--debug", is_flag=True, help="Explain each step on stderr (secrets hidden)."
            ),
        )
    ):
        command = option(command)
    return command


def _positive(context: click.Context, parameter: click.Parameter, value: float) -> float:
    if value <= 0:
        raise click.BadParameter("must be positive", context, parameter)
    return value


@click.command("doctor")
@click.option("--endpoint-url", help="The server; else AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL…")
@click.option("--target", help="A managed node to check: registered, online, its agent.")
@click.option("--document-name", help="The session document whose RunAs and KMS settings to check.")
@click.option("--proxy", help="HTTP proxy URL; else HTTPS_PROXY/HTTP_PROXY minus NO_PROXY.")
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM CAs to trust; else AWS_CA_BUNDLE or the profile's ca_bundle.",
)
@click.option("--region")
@click.option("--profile")
@run_options
def doctor(
    endpoint_url: str | None,
    target: str | None,
    document_name: str | None,
    proxy: str | None,
    ca_bundle: Path | None,
    region: str | None,
    profile: str | None,
    timeout: float,
    as_json: bool,
    debug: bool,
) -> None:
    """Find why connections fail: each layer from credentials to the target, with its
    cause and fix. Exit status 0 when every check passes, 1 when any fails."""
    settings = resolve_settings(
        endpoint_url=endpoint_url,
        region=region,
        profile=profile,
        target=target,
        proxy=proxy,
        ca_bundle=str(ca_bundle) if ca_bundle else None,
        timeout=timeout,
        environ=os.environ,
        document_name=document_name,
    )
    if debug:
        settings = with_debug(settings)
    from .checks import run_checks

    sys.exit(report(run_checks(settings), as_json))


def with_debug(settings: Settings) -> Settings:
    import dataclasses

    _debug(
        f"endpoint {settings.endpoint_url} ({settings.endpoint_source}), region "
        f"{settings.region}, credentials {settings.credentials!r}"
    )
    return dataclasses.replace(settings, debug=_debug)
