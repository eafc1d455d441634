"""The client's commands: ``start-session``, ``session-manager-plugin`` and ``install-plugin``.

Each is a module-level click command, registered by hatchway/cli.py. Exit statuses follow
interfaces.md: the remote status when there is one, else 0 on channel_closed; 255 transport,
254 service error, 253 missing configuration or credentials, 252 invalid arguments, 130
interrupted. Usage errors exit 252, not click's 2.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import stat
import sys
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .config import AwsSettings, StartedSession, kms_endpoint_for
from .errors import ClientFailure, ExitStatus, InvalidArguments
from .terminal import Terminal

if TYPE_CHECKING:
    from .controlplane import ControlPlane

# What ``session-manager-plugin --version`` reports. The AWS CLI passes the session through
# the environment only above 1.2.497.0 (keeping the token out of argv), and awscli 1.46
# warns on every session below 1.2.764.0. The handshake reports CLIENT_VERSION.
PLUGIN_VERSION = "1.2.764.0"
START_RESPONSE_ENV_PREFIX = "AWS_SSM_START_SESSION_RESPONSE"
INSTALLED_BANNER = (
    "\nThe Session Manager plugin was installed successfully. "
    "Use the AWS CLI to start a session.\n\n"
)
# Documents whose sessions are port sessions. A custom document counts as one when the
# request passes it a portNumber; the handshake catches any other mismatch.
PORT_DOCUMENT_PREFIXES = ("AWS-StartPortForwarding", "AWS-StartSSHSession")
PORT_PARAMETERS = ("portNumber", "localPortNumber")
PLUGIN_MARKER = "# Written by hatchway install-plugin."

log = logging.getLogger("hatchway.client")


class ClientCommand(click.Command):
    """A command whose usage errors exit 252 (invalid arguments), as interfaces.md says."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            # click types exit_code as a class constant; this instance's status is ours.
            setattr(exc, "exit_code", int(ExitStatus.INVALID_ARGUMENTS))  # noqa: B010
            raise


# --- argument parsing -------------------------------------------------------------------


def parse_parameters(text: str | None) -> dict[str, list[str]]:
    """``--parameters``: a JSON object of lists (or strings), or ``k=v,k=v``. A key given
    twice in the short form collects both values."""
    if text is None or not text.strip():
        return {}
    text = text.strip()
    if text.startswith("{"):
        return _parameters_from_json(text)
    result: dict[str, list[str]] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InvalidArguments(
                f"--parameters: {part.strip()!r} is not KEY=VALUE; "
                'use k=v,k=v or JSON such as {"portNumber":["22"]}'
            )
        result.setdefault(key.strip(), []).append(value.strip())
    return result


def _parameters_from_json(text: str) -> dict[str, list[str]]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArguments(f"--parameters is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArguments("--parameters must be a JSON object")
    result: dict[str, list[str]] = {}
    for key, value in obj.items():
        if isinstance(value, str):
            result[key] = [value]
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            result[key] = list(value)
        else:
            raise InvalidArguments(f"--parameters: {key} must be a string or a list of strings")
    return result


def is_port_session(document_name: str | None, parameters: dict[str, Any]) -> bool:
    if document_name and document_name.startswith(PORT_DOCUMENT_PREFIXES):
        return True
    return any(name in parameters for name in PORT_PARAMETERS)


# --- running a session ------------------------------------------------------------------


def configure_debug(enabled: bool, terminal: Terminal) -> None:
    """--debug: each step on stderr with a timestamp. botocore's own debug log stays off,
    since it prints request headers that carry session tokens."""
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
    if not enabled:
        log.addHandler(logging.NullHandler())
        log.setLevel(logging.WARNING)
        return
    handler = logging.StreamHandler(terminal.error_stream)
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d debug: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)


def control_plane(settings: AwsSettings) -> ControlPlane:
    # botocore and aiohttp load only when a session runs: `hatchway --help` stays quick.
    from .controlplane import ControlPlane

    return ControlPlane(settings, log)


def run_session(
    api: ControlPlane,
    started: StartedSession,
    terminal: Terminal,
    *,
    target: str,
    port: bool = False,
    accept_kms: bool = True,
    local_host: str | None = None,
) -> int:
    from .port import PortRunner
    from .runner import SessionOptions
    from .shell import ShellRunner

    terminal.status(f"\nStarting session with SessionId: {started.session_id}\n")
    options = SessionOptions(started, target, accept_kms=accept_kms, local_host=local_host)
    runner = PortRunner if port else ShellRunner
    return asyncio.run(runner(options, api, terminal, log).run())


def report(failure: ClientFailure, terminal: Terminal) -> int:
    if failure.message:
        terminal.error(failure.message.rstrip("\n") + "\n")
    return int(failure.exit_status)


def _guarded(terminal: Terminal, body: Callable[[], int]) -> int:
    """Run ``body()``, turning each failure into its message and exit status."""
    try:
        return body()
    except ClientFailure as failure:
        return report(failure, terminal)
    except KeyboardInterrupt:
        terminal.restore()
        return int(ExitStatus.INTERRUPTED)


# --- start-session ----------------------------------------------------------------------


@click.command("start-session", cls=ClientCommand)
@click.option("--target", required=True, help="The managed node, e.g. mi-0123456789abcdef0.")
@click.option("--document-name", help="The session document; a shell when omitted.")
@click.option("--parameters", help='JSON such as {"k":["v"]}, or k=v,k=v.')
@click.option("--reason", help="Why the session is started; recorded by the service.")
@click.option(
    "--local-host",
    help="Port forwarding: the local address to listen on (default 127.0.0.1).",
)
@click.option("--endpoint-url", help="The SSM endpoint (and KMS, unless it is AWS's).")
@click.option("--region", help="The region; botocore's resolution when omitted.")
@click.option("--profile", help="The profile for credentials, region and endpoint.")
@click.option("--debug", is_flag=True, help="Log each step to stderr (secrets hidden).")
@click.pass_context
def start_session(
    ctx: click.Context,
    target: str,
    document_name: str | None,
    parameters: str | None,
    reason: str | None,
    local_host: str | None,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    debug: bool,
) -> None:
    """Start a session on a managed node and connect this terminal to it.

    Status lines go to stdout when it is a terminal and to stderr otherwise, so that piped
    output holds only the remote output. Piped stdin is sent as it comes, then Ctrl-D.
    """
    terminal = Terminal()
    configure_debug(debug, terminal)

    def body() -> int:
        if not target.strip():
            raise InvalidArguments("--target must not be empty")
        params = parse_parameters(parameters)
        port = is_port_session(document_name, params)
        if local_host and not port:
            raise InvalidArguments("--local-host is for port forwarding documents only")
        settings = AwsSettings(
            profile, region, endpoint_url, kms_endpoint_url=kms_endpoint_for(endpoint_url)
        )
        api = control_plane(settings)
        api.check_credentials()
        started = api.start_session(target, document_name, params, reason)
        return run_session(
            api, started, terminal, target=target, port=port, local_host=local_host or None
        )

    ctx.exit(_guarded(terminal, body))


# --- session-manager-plugin -------------------------------------------------------------


def read_start_response(argument: str, environ: MutableMapping[str, str]) -> StartedSession:
    """argv[1]: StartSession's JSON, or the name of the environment variable that holds
    it, which is then unset so that no child process inherits the token (§1.2)."""
    if argument.startswith(START_RESPONSE_ENV_PREFIX):
        text = environ.pop(argument, None)
        if text is None:
            raise InvalidArguments(
                f"Cannot perform start session: the environment variable {argument} is not set"
            )
    else:
        text = argument
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArguments(f"Cannot perform start session: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArguments("Cannot perform start session: the response is not a JSON object")
    for name in ("SessionId", "TokenValue", "StreamUrl"):
        if not isinstance(obj.get(name), str) or not obj[name]:
            raise InvalidArguments(f"Cannot perform start session: the response has no {name}")
    return StartedSession(obj["SessionId"], obj["TokenValue"], obj["StreamUrl"])


def read_start_parameters(argument: str) -> dict[str, Any]:
    """argv[5]: the StartSession request as JSON; Target must be a string."""
    try:
        obj = json.loads(argument)
    except json.JSONDecodeError as exc:
        raise InvalidArguments(f"Cannot perform start session: parameters: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("Target"), str):
        raise InvalidArguments("Cannot perform start session: the parameters have no string Target")
    return obj


def plugin_main(args: Sequence[str], environ: MutableMapping[str, str], terminal: Terminal) -> int:
    """The argv contract of AWS's session-manager-plugin (data-channel.md §1.2, §7).

    ``args`` is argv[1:]. The contract's own texts (banner, version, unknown or invalid
    operation) go to stdout as the reference prints them; our errors go to stderr. Unlike
    the reference, bad argv exits 252 instead of exit 0 or a Go panic.
    """
    argc = len(args) + 1
    if argc == 1:
        click.echo(INSTALLED_BANNER, nl=False)
        return 0
    if argc == 2 and args[0] == "--version":
        click.echo(PLUGIN_VERSION)
        return 0
    if argc < 4:
        click.echo(
            f"\nUnknown operation {args[0]}. \n"
            "Use session-manager-plugin --version to check the version.\n\n",
            nl=False,
        )
        return int(ExitStatus.INVALID_ARGUMENTS)
    if args[2] != "StartSession":
        click.echo("Invalid Operation", nl=False)
        return int(ExitStatus.INVALID_ARGUMENTS)

    def body() -> int:
        started = read_start_response(args[0], environ)
        request = read_start_parameters(args[4]) if argc >= 6 else {"Target": ""}
        endpoint = (args[5] or None) if argc >= 7 else None
        settings = AwsSettings(
            profile=(args[3] or None) if argc >= 5 else None,
            region=args[1] or None,
            endpoint_url=endpoint,
            kms_endpoint_url=kms_endpoint_for(endpoint),
        )
        api = control_plane(settings)
        document = request.get("DocumentName")
        parameters = request.get("Parameters")
        port = is_port_session(
            document if isinstance(document, str) else None,
            parameters if isinstance(parameters, dict) else {},
        )
        # The 4-argument form comes from a CLI too old to pass a profile: the reference
        # refuses KMS for it, asking for an upgrade (§7).
        return run_session(
            api, started, terminal, target=request["Target"], port=port, accept_kms=argc != 4
        )

    return _guarded(terminal, body)


@click.command(
    "session-manager-plugin",
    cls=ClientCommand,
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def session_manager_plugin(ctx: click.Context, args: tuple[str, ...]) -> None:
    """A drop-in for AWS's session-manager-plugin, for the AWS CLI to run. Its argv is
    fixed by the AWS CLI, so HATCHWAY_DEBUG=1 stands in for --debug."""
    terminal = Terminal()
    configure_debug(os.environ.get("HATCHWAY_DEBUG", "") not in ("", "0"), terminal)
    ctx.exit(plugin_main(list(args), os.environ, terminal))


# --- install-plugin ---------------------------------------------------------------------


def plugin_script(python: str) -> str:
    return (
        "#!/bin/sh\n"
        f"{PLUGIN_MARKER}\n"
        "# The AWS CLI runs session-manager-plugin from PATH; this one is Hatchway's client.\n"
        f'exec {shlex.quote(python)} -m hatchway session-manager-plugin "$@"\n'
    )


def install_plugin_script(directory: Path, python: str) -> Path:
    path = directory / "session-manager-plugin"
    if path.exists() and PLUGIN_MARKER not in _head(path):
        raise InvalidArguments(f"{path} exists and was not written by hatchway; move it away first")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(plugin_script(python), encoding="utf-8")
        temporary.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        temporary.replace(path)
    except OSError as exc:
        raise InvalidArguments(f"cannot write {path}: {exc}") from exc
    return path


def _head(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _on_path(directory: Path, environ: MutableMapping[str, str]) -> bool:
    entries = [Path(entry) for entry in environ.get("PATH", "").split(os.pathsep) if entry]
    resolved = directory.resolve()
    return any(entry.resolve() == resolved for entry in entries)


@click.command("install-plugin", cls=ClientCommand)
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write session-manager-plugin, e.g. ~/.local/bin.",
)
@click.pass_context
def install_plugin(ctx: click.Context, directory: Path) -> None:
    """Install a session-manager-plugin for the AWS CLI that runs Hatchway's client."""
    terminal = Terminal()
    try:
        path = install_plugin_script(directory.expanduser(), sys.executable)
    except ClientFailure as failure:
        ctx.exit(report(failure, terminal))
    click.echo(f"Wrote {path}")
    click.echo(f"It runs: {sys.executable} -m hatchway session-manager-plugin")
    if _on_path(path.parent, os.environ):
        click.echo(f"{path.parent} is on PATH, so the AWS CLI will find it.")
    else:
        click.echo("Put it on PATH so the AWS CLI finds it, for example:")
        click.echo(f'  export PATH={shlex.quote(str(path.parent.resolve()))}:"$PATH"')
