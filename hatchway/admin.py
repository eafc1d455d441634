"""``hatchway iam``: users, access keys, policies, tags and console passwords.

The commands take the ``aws iam`` CLI's flags and print its JSON, and they call the
server's IAM API with botocore, signed with your credentials, so the server checks each call
against your policies. The server is ``--endpoint-url``, else ``AWS_ENDPOINT_URL_IAM``,
``AWS_ENDPOINT_URL_SSM``, ``AWS_ENDPOINT_URL``, else the profile's ``endpoint_url``; with
none of them the commands stop, so nothing goes to AWS's own endpoints by accident. Exit
statuses follow the AWS CLI: 255 when the server cannot be reached, 254 for an error from
the service, 253 for missing credentials or configuration, 252 for bad arguments.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import click

TRANSPORT_ERROR, SERVICE_ERROR, CONFIGURATION_ERROR, INVALID_ARGUMENTS = 255, 254, 253, 252

# Where each admin command's service finds the server, after --endpoint-url and before the
# profile: its own variable where AWS has one, then the SSM one start-session uses.
ENDPOINT_VARIABLES = {
    "iam": ("AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL"),
    "ssm": ("AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL"),
}


class NoEndpoint(Exception):
    """No Hatchway endpoint is configured: botocore would call AWS's own."""

    def __init__(self, service: str) -> None:
        variables = ", ".join(ENDPOINT_VARIABLES[service])
        super().__init__(
            f"no Hatchway endpoint is configured, so nothing was sent (botocore would call "
            f"AWS's own {service} endpoint): pass --endpoint-url URL, or set one of {variables} "
            "(as `hatchway up` prints it), or endpoint_url in the profile."
        )


def admin_endpoint(
    service: str, flag: str | None, environ: Mapping[str, str], profile_config: Mapping[str, Any]
) -> str:
    """The Hatchway server for an admin command, or NoEndpoint."""
    if flag:
        return flag
    for name in ENDPOINT_VARIABLES[service]:
        if environ.get(name):
            return environ[name]
    configured = profile_config.get("endpoint_url")
    if isinstance(configured, str) and configured:
        return configured
    raise NoEndpoint(service)


def admin_client(
    service: str,
    *,
    profile: str | None,
    region: str | None,
    endpoint_url: str | None,
    debug: bool,
    default_region: str | None = None,
) -> Any:
    """A botocore client for ``service`` pointed at the Hatchway server (never AWS's)."""
    import botocore.session

    session = botocore.session.Session(profile=profile)
    url = admin_endpoint(service, endpoint_url, os.environ, session.get_scoped_config())
    region = region or session.get_config_variable("region") or default_region
    client = session.create_client(service, region_name=region, endpoint_url=url)
    if debug:
        explain_session(session, client, f"hatchway.{'iam' if service == 'iam' else 'activation'}")
    return client


def failure_status(exc: Exception) -> int:
    """The AWS CLI's exit status for a botocore failure (or NoEndpoint)."""
    import botocore.exceptions

    if isinstance(exc, botocore.exceptions.ClientError):
        return SERVICE_ERROR
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return INVALID_ARGUMENTS
    transport = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)
    if isinstance(exc, transport):
        return TRANSPORT_ERROR  # refused, timed out, TLS, a proxy: the server was not reached
    return CONFIGURATION_ERROR


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot print {type(value).__name__}")


def parse_tags(values: tuple[str, ...]) -> list[dict[str, str]]:
    """``Key=K,Value=V`` (repeatable) or a JSON list, as ``aws iam --tags`` takes them."""
    tags: list[dict[str, str]] = []
    for value in values:
        text = value.strip()
        if text.startswith("["):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as exc:
                raise click.BadParameter(f"not JSON: {exc}", param_hint="--tags") from None
            if not isinstance(loaded, list) or not all(isinstance(t, dict) for t in loaded):
                raise click.BadParameter("a JSON list of objects is needed", param_hint="--tags")
            tags.extend(
                {"Key": str(t.get("Key", "")), "Value": str(t.get("Value", ""))} for t in loaded
            )
            continue
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        if "Key" not in fields:
            raise click.BadParameter(f"{value!r} is not Key=K,Value=V", param_hint="--tags")
        tags.append({"Key": fields["Key"], "Value": fields.get("Value", "")})
    return tags


def read_document(value: str) -> str:
    """A policy document: JSON text, or ``file://path`` as the AWS CLI accepts."""
    if value.startswith("file://"):
        try:
            return Path(value[len("file://") :]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(str(exc), param_hint="--policy-document") from None
    return value


class IamCommand(click.Command):
    """Usage errors exit 252, as the AWS CLI's do."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            setattr(exc, "exit_code", INVALID_ARGUMENTS)  # noqa: B010
            raise


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in (
        click.option("--profile", help="The profile for credentials and region."),
        click.option("--region", help="The region; botocore's resolution when omitted."),
        click.option("--endpoint-url", help="The server, e.g. http://127.0.0.1:8080."),
        click.option("--debug", is_flag=True, help="Explain each step on stderr (secrets hidden)."),
    ):
        fn = option(fn)
    return fn


def iam_client(ctx: click.Context) -> Any:
    options = ctx.params
    return admin_client(
        "iam",
        profile=options.get("profile"),
        region=options.get("region"),
        endpoint_url=options.get("endpoint_url"),
        debug=bool(options.get("debug")),
        default_region="us-east-1",
    )


def explain_session(session: Any, client: Any, name: str) -> None:
    """--debug for a botocore client: credentials, signing, each answer (aws/explain.py)."""
    import sys

    from .aws.explain import debug_logger, explain_client, explain_credentials

    log = debug_logger(name, sys.stderr)
    log.debug("endpoint %s, region %s", client.meta.endpoint_url, client.meta.region_name)
    explain_credentials(session.get_credentials(), log, session.profile)
    explain_client(client, log)


def call(ctx: click.Context, operation: str, **params: Any) -> None:
    """Run one IAM operation and print its result as the AWS CLI does."""
    import botocore.exceptions

    try:
        client = iam_client(ctx)
        result = getattr(client, operation)(**{k: v for k, v in params.items() if v is not None})
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, NoEndpoint) as exc:
        click.echo(f"\n{exc}", err=True)
        ctx.exit(failure_status(exc))
    result.pop("ResponseMetadata", None)
    if result:
        click.echo(json.dumps(result, indent=4, default=_json_default))


@click.group("iam")
def iam() -> None:
    """Users, access keys, policies and tags, with the aws iam CLI's flags."""


@iam.command("create-user", cls=IamCommand)
@click.option("--user-name", required=True)
@click.option("--tags", multiple=True, help="Key=K,Value=V; repeat for more.")
@connection_options
@click.pass_context
def create_user(ctx: click.Context, user_name: str, tags: tuple[str, ...], **_: Any) -> None:
    """Create a user."""
    call(ctx, "create_user", UserName=user_name, Tags=parse_tags(tags) or None)


@iam.command("list-users", cls=IamCommand)
@connection_options
@click.pass_context
def list_users(ctx: click.Context, **_: Any) -> None:
    """List the users."""
    call(ctx, "list_users")


@iam.command("create-access-key", cls=IamCommand)
@click.option("--user-name", help="The user; yourself when omitted.")
@connection_options
@click.pass_context
def create_access_key(ctx: click.Context, user_name: str | None, **_: Any) -> None:
    """Create an access key; its secret is shown this once."""
    call(ctx, "create_access_key", UserName=user_name)


@iam.command("delete-access-key", cls=IamCommand)
@click.option("--access-key-id", required=True)
@click.option("--user-name", help="The key's user; yourself when omitted.")
@connection_options
@click.pass_context
def delete_access_key(
    ctx: click.Context, access_key_id: str, user_name: str | None, **_: Any
) -> None:
    """Delete an access key."""
    call(ctx, "delete_access_key", AccessKeyId=access_key_id, UserName=user_name)


@iam.command("put-user-policy", cls=IamCommand)
@click.option("--user-name", required=True)
@click.option("--policy-name", required=True)
@click.option("--policy-document", required=True, help="JSON, or file://path.")
@connection_options
@click.pass_context
def put_user_policy(
    ctx: click.Context, user_name: str, policy_name: str, policy_document: str, **_: Any
) -> None:
    """Attach (or replace) an inline policy on a user."""
    call(
        ctx,
        "put_user_policy",
        UserName=user_name,
        PolicyName=policy_name,
        PolicyDocument=read_document(policy_document),
    )


@iam.command("put-role-policy", cls=IamCommand)
@click.option("--role-name", required=True)
@click.option("--policy-name", required=True)
@click.option("--policy-document", required=True, help="JSON, or file://path.")
@connection_options
@click.pass_context
def put_role_policy(
    ctx: click.Context, role_name: str, policy_name: str, policy_document: str, **_: Any
) -> None:
    """Attach (or replace) an inline policy on a role, such as a node role."""
    call(
        ctx,
        "put_role_policy",
        RoleName=role_name,
        PolicyName=policy_name,
        PolicyDocument=read_document(policy_document),
    )


@iam.command("tag-user", cls=IamCommand)
@click.option("--user-name", required=True)
@click.option("--tags", multiple=True, required=True, help="Key=K,Value=V; repeat for more.")
@connection_options
@click.pass_context
def tag_user(ctx: click.Context, user_name: str, tags: tuple[str, ...], **_: Any) -> None:
    """Add or change tags on a user (SSMSessionRunAs, for one)."""
    call(ctx, "tag_user", UserName=user_name, Tags=parse_tags(tags))


@iam.command("set-console-password", cls=IamCommand)
@click.option("--user-name", required=True)
@click.option("--password", help="Prompted for when omitted (and stdin is a terminal).")
@connection_options
@click.pass_context
def set_console_password(
    ctx: click.Context, user_name: str, password: str | None, **_: Any
) -> None:
    """Set the password a user signs in to the web console with."""
    if password is None:
        if not sys.stdin.isatty():
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"New console password for {user_name}: ")
    import botocore.exceptions

    # CreateLoginProfile the first time, UpdateLoginProfile after that, as IAM has them.
    try:
        iam_client(ctx).create_login_profile(UserName=user_name, Password=password)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
            click.echo(f"\n{exc}", err=True)
            ctx.exit(SERVICE_ERROR)
        call(ctx, "update_login_profile", UserName=user_name, Password=password)
    except (botocore.exceptions.BotoCoreError, NoEndpoint) as exc:
        click.echo(f"\n{exc}", err=True)
        ctx.exit(failure_status(exc))
