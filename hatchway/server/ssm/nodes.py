"""Managed nodes: activations, registration, health, DescribeInstanceInformation, tags."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from ...aws import arns
from ...aws.errors import ValidationException
from .. import validation as v
from ..credentials import create_access_key
from ..mgs import MessageGateway
from ..state import Call
from ..storage.models import AccessKey, Activation, ManagedInstance, Role
from . import ssm
from .common import INSTANCE_ID, merge_tags, new_instance_id, parse_tags, tag_list
from .errors import (
    InvalidActivation,
    InvalidActivationId,
    InvalidFilterKey,
    InvalidInstanceId,
    InvalidInstanceInformationFilterValue,
    InvalidResourceId,
    InvalidResourceType,
)

MAX_ACTIVATION_DAYS = 30
PING_STATUSES = ("Online", "ConnectionLost", "Inactive")


def ping_status(node: ManagedInstance, now: datetime, timeout: timedelta) -> str:
    """Online while the node's control channel is up and recently heard from."""
    if node.deregistered:
        return "Inactive"
    if node.connected_to and node.last_ping and now - node.last_ping <= timeout:
        return "Online"
    return "ConnectionLost"


def is_online(call: Call, node: ManagedInstance | None) -> bool:
    return (
        node is not None and ping_status(node, call.now, call.state.config.ping_timeout) == "Online"
    )


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


# --- activations ----------------------------------------------------------------------


@ssm.operation("CreateActivation")
async def create_activation(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    await call.authorize("ssm:CreateActivation", "*")
    role = v.string(params, "IamRole", required=True, min_len=1, max_len=64) or ""
    # The activation hands the role to every node it registers, so the caller must be
    # allowed to pass that role to SSM, as AWS requires.
    await call.authorize(
        "iam:PassRole",
        arns.role(call.account, role),
        {"iam:PassedToService": "ssm.amazonaws.com"},
    )
    description = v.string(params, "Description", max_len=256, default="")
    name = v.string(params, "DefaultInstanceName", max_len=256, default="")
    limit = v.integer(params, "RegistrationLimit", minimum=1, maximum=1000, default=1)
    expiration = v.timestamp(params, "ExpirationDate") or call.now + timedelta(hours=24)
    tags = merge_tags({}, parse_tags(params))
    if expiration <= call.now:
        raise ValidationException("ExpirationDate must be in the future")
    if expiration > call.now + timedelta(days=MAX_ACTIVATION_DAYS):
        raise ValidationException(
            f"ExpirationDate may be at most {MAX_ACTIVATION_DAYS} days in the future"
        )
    activation_id = str(uuid.uuid4())
    code = secrets.token_urlsafe(15)[:20]
    async with call.state.db() as db, db.begin():
        if await db.get(Role, role) is None:
            # The activation names the role its nodes act as; create it empty if needed.
            db.add(Role(name=role, created=call.now, tags={}))
        db.add(
            Activation(
                activation_id=activation_id,
                code_hash=_code_hash(code),
                description=description or "",
                default_instance_name=name or "",
                iam_role=role,
                registration_limit=limit or 1,
                registrations_count=0,
                expiration_date=expiration,
                created_date=call.now,
                tags=tags,
            )
        )
    return {"ActivationId": activation_id, "ActivationCode": code}


def _activation_view(row: Activation, now: datetime) -> dict[str, Any]:
    return {
        "ActivationId": row.activation_id,
        "Description": row.description,
        "DefaultInstanceName": row.default_instance_name,
        "IamRole": row.iam_role,
        "RegistrationLimit": row.registration_limit,
        "RegistrationsCount": row.registrations_count,
        "ExpirationDate": row.expiration_date,
        "Expired": row.expiration_date <= now,
        "CreatedDate": row.created_date,
        "Tags": tag_list(row.tags),
    }


ACTIVATION_FILTERS = {
    "ActivationIds": lambda row: row.activation_id,
    "DefaultInstanceName": lambda row: row.default_instance_name,
    "IamRole": lambda row: row.iam_role,
}


@ssm.operation("DescribeActivations")
async def describe_activations(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    await call.authorize("ssm:DescribeActivations", "*")
    max_results = v.integer(params, "MaxResults", minimum=1, maximum=50, default=50) or 50
    token = v.string(params, "NextToken")
    filters = []
    for item in v.obj_list(params, "Filters"):
        key = v.string(item, "FilterKey", required=True, choices=list(ACTIVATION_FILTERS))
        filters.append((ACTIVATION_FILTERS[key or ""], set(v.string_list(item, "FilterValues"))))
    async with call.state.db() as db:
        rows = list(await db.scalars(select(Activation).order_by(Activation.activation_id)))
    rows = [r for r in rows if all(get(r) in values for get, values in filters)]
    return call.state.paginator.respond(
        "DescribeActivations",
        rows,
        lambda r: r.activation_id,
        max_results,
        token,
        "ActivationList",
        lambda r: _activation_view(r, call.now),
    )


@ssm.operation("DeleteActivation")
async def delete_activation(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    activation_id = v.string(params, "ActivationId", required=True)
    await call.authorize("ssm:DeleteActivation", "*")
    async with call.state.db() as db, db.begin():
        row = await db.get(Activation, activation_id)
        if row is None:
            raise InvalidActivationId(f"The activation ID {activation_id} is not valid.")
        await db.delete(row)
    return {}


@ssm.operation("RegisterManagedInstance", anonymous=True)
async def register_managed_instance(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Unsigned: the activation code is the credential. Hatchway also returns the node's
    own access key (a Hatchway extension; AWS answers with the InstanceId only)."""
    activation_id = v.string(params, "ActivationId", required=True, max_len=36) or ""
    code = v.string(params, "ActivationCode", required=True, min_len=1, max_len=250) or ""
    async with call.state.db() as db, db.begin():
        activation = await db.get(Activation, activation_id)
        if activation is None:
            raise InvalidActivationId(f"The activation ID {activation_id} is not valid.")
        if not hmac.compare_digest(activation.code_hash, _code_hash(code)):
            raise InvalidActivation("The activation code is not valid for this activation.")
        if activation.expiration_date <= call.now:
            raise InvalidActivation(
                f"The activation {activation_id} expired at "
                f"{activation.expiration_date.isoformat()}."
            )
        if activation.registrations_count >= activation.registration_limit:
            raise InvalidActivation(
                f"The activation {activation_id} has reached its registration limit of "
                f"{activation.registration_limit}."
            )
        # One atomic update, so concurrent registrations cannot overshoot the limit.
        claimed = await db.execute(
            update(Activation)
            .where(
                Activation.activation_id == activation_id,
                Activation.registrations_count < Activation.registration_limit,
            )
            .values(registrations_count=Activation.registrations_count + 1)
        )
        if claimed.rowcount != 1:
            raise InvalidActivation(
                f"The activation {activation_id} has reached its registration limit of "
                f"{activation.registration_limit}."
            )
        instance_id = new_instance_id()
        db.add(
            ManagedInstance(
                instance_id=instance_id,
                activation_id=activation_id,
                iam_role=activation.iam_role,
                name=activation.default_instance_name,
                registration_date=call.now,
                tags={},
            )
        )
        key_id, secret = await create_access_key(
            db, call.state.keystore, "node", instance_id, call.now
        )
    return {
        "InstanceId": instance_id,
        "AccessKeyId": key_id,
        "SecretAccessKey": secret,
        "Region": call.region,
    }


@ssm.operation("DeregisterManagedInstance")
async def deregister_managed_instance(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    instance_id = v.string(params, "InstanceId", required=True, min_len=1, max_len=124) or ""
    await call.authorize("ssm:DeregisterManagedInstance", call.instance_arn(instance_id))
    async with call.state.db() as db, db.begin():
        node = await db.get(ManagedInstance, instance_id)
        if node is None or node.deregistered:
            raise InvalidInstanceId(f"Instance {instance_id} is not a registered managed node.")
        node.deregistered = True
        node.connected_to = None
        for key in await db.scalars(
            select(AccessKey).where(AccessKey.kind == "node", AccessKey.principal == instance_id)
        ):
            key.status = "Inactive"
    await call.state.services.get(MessageGateway).disconnect(
        instance_id, "the node was deregistered"
    )
    return {}


# --- health ---------------------------------------------------------------------------


@ssm.operation("UpdateInstanceInformation")
async def update_instance_information(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    instance_id = v.string(params, "InstanceId", required=True, min_len=1, max_len=124) or ""
    principal = await call.authorize(
        "ssm:UpdateInstanceInformation", call.instance_arn(instance_id)
    )
    if principal.name != instance_id:
        raise InvalidInstanceId(f"The caller is not the managed node {instance_id}.")
    fields = {
        "AgentName": "agent_name",
        "AgentVersion": "agent_version",
        "ComputerName": "computer_name",
        "IPAddress": "ip_address",
        "PlatformType": "platform_type",
        "PlatformName": "platform_name",
        "PlatformVersion": "platform_version",
    }
    async with call.state.db() as db, db.begin():
        node = await db.get(ManagedInstance, instance_id)
        if node is None or node.deregistered:
            raise InvalidInstanceId(f"Instance {instance_id} is not a registered managed node.")
        for wire, column in fields.items():
            value = v.string(params, wire, max_len=256)
            if value is not None:
                setattr(node, column, value)
        node.last_ping = call.now
    return {}


@ssm.operation("ListInstanceAssociations")
async def list_instance_associations(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    # The official agent asks for its associations every few minutes; there are none.
    await call.authorize("ssm:ListInstanceAssociations", "*")
    return {"Associations": []}


def _node_view(call: Call, node: ManagedInstance) -> dict[str, Any]:
    view: dict[str, Any] = {
        "InstanceId": node.instance_id,
        "PingStatus": ping_status(node, call.now, call.state.config.ping_timeout),
        "AgentVersion": node.agent_version,
        "IsLatestVersion": True,
        "PlatformType": node.platform_type,
        "PlatformName": node.platform_name,
        "PlatformVersion": node.platform_version,
        "ActivationId": node.activation_id or "",
        "IamRole": node.iam_role,
        "RegistrationDate": node.registration_date,
        "ResourceType": "ManagedInstance",
        "Name": node.name,
        "IPAddress": node.ip_address,
        "ComputerName": node.computer_name,
        "SourceId": node.instance_id,
        "SourceType": "AWS::SSM::ManagedInstance",
    }
    if node.last_ping is not None:
        view["LastPingDateTime"] = node.last_ping
    return {k: val for k, val in view.items() if val != ""}


_NODE_KEYS = {
    "InstanceIds": lambda view, node: [node.instance_id],
    "AgentVersion": lambda view, node: [node.agent_version],
    "PingStatus": lambda view, node: [view["PingStatus"]],
    "PlatformTypes": lambda view, node: [node.platform_type],
    "PlatformType": lambda view, node: [node.platform_type],
    "ActivationIds": lambda view, node: [node.activation_id or ""],
    "IamRole": lambda view, node: [node.iam_role],
    "ResourceType": lambda view, node: ["ManagedInstance"],
    "AssociationStatus": lambda view, node: [],
}


def _node_filters(params: dict[str, Any]) -> list[tuple[str, set[str]]]:
    legacy = v.obj_list(params, "InstanceInformationFilterList")
    modern = v.obj_list(params, "Filters")
    if legacy and modern:
        raise ValidationException(
            "You can use either InstanceInformationFilterList or Filters, not both"
        )
    filters = []
    for item in legacy:
        key = v.string(item, "key", required=True) or ""
        if key not in _NODE_KEYS:
            raise InvalidFilterKey(f"The filter key {key} is not valid.")
        values = v.string_list(item, "valueSet", min_items=1)
        filters.append((key, set(values)))
    for item in modern:
        key = v.string(item, "Key", required=True, min_len=1, max_len=163) or ""
        if key not in _NODE_KEYS and not key.startswith("tag:") and key != "tag-key":
            raise InvalidFilterKey(f"The filter key {key} is not valid.")
        values = v.string_list(item, "Values", min_items=1, max_items=100)
        filters.append((key, set(values)))
    for key, values in filters:
        if key == "PingStatus" and not values <= set(PING_STATUSES):
            raise InvalidInstanceInformationFilterValue(
                f"The PingStatus values {sorted(values - set(PING_STATUSES))} are not valid."
            )
    return filters


def _matches(view: dict[str, Any], node: ManagedInstance, key: str, values: set[str]) -> bool:
    if key == "tag-key":
        return bool(values & set(node.tags))
    if key.startswith("tag:"):
        return str(node.tags.get(key[4:], "\0missing")) in values
    return bool(values & set(_NODE_KEYS[key](view, node)))


@ssm.operation("DescribeInstanceInformation")
async def describe_instance_information(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    await call.authorize("ssm:DescribeInstanceInformation", "*")
    max_results = v.integer(params, "MaxResults", minimum=5, maximum=50, default=50) or 50
    token = v.string(params, "NextToken")
    filters = _node_filters(params)
    async with call.state.db() as db:
        nodes = list(
            await db.scalars(select(ManagedInstance).order_by(ManagedInstance.instance_id))
        )
    shown = []
    for node in nodes:
        view = _node_view(call, node)
        if node.deregistered and not any(k == "PingStatus" for k, _ in filters):
            continue
        if all(_matches(view, node, key, values) for key, values in filters):
            shown.append(view)
    return call.state.paginator.respond(
        "DescribeInstanceInformation",
        shown,
        lambda view: view["InstanceId"],
        max_results,
        token,
        "InstanceInformationList",
        lambda view: view,
    )


@ssm.operation("GetConnectionStatus")
async def get_connection_status(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    target = v.string(params, "Target", required=True, min_len=1, max_len=400) or ""
    await call.authorize("ssm:GetConnectionStatus", call.instance_arn(target))
    async with call.state.db() as db:
        node = await db.get(ManagedInstance, target)
    return {"Target": target, "Status": "connected" if is_online(call, node) else "notconnected"}


# --- tags -----------------------------------------------------------------------------


async def _tagged_node(call: Call, params: dict[str, Any], action: str) -> tuple[str, str]:
    resource_type = v.string(params, "ResourceType", required=True) or ""
    resource_id = v.string(params, "ResourceId", required=True, min_len=1) or ""
    if resource_type != "ManagedInstance":
        raise InvalidResourceType(
            f"Hatchway tags resources of type ManagedInstance, not {resource_type}"
        )
    if not INSTANCE_ID.match(resource_id):
        raise InvalidResourceId(f"{resource_id} is not a managed node id (mi- and 17 hex digits)")
    await call.authorize(action, call.instance_arn(resource_id))
    return resource_type, resource_id


async def _load_node(db: Any, resource_id: str) -> ManagedInstance:
    node: ManagedInstance | None = await db.get(ManagedInstance, resource_id)
    if node is None or node.deregistered:
        raise InvalidResourceId(f"The resource ID {resource_id} is not valid.")
    return node


@ssm.operation("AddTagsToResource")
async def add_tags_to_resource(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    _, resource_id = await _tagged_node(call, params, "ssm:AddTagsToResource")
    tags = parse_tags(params)
    if not tags:
        raise ValidationException("Tags must hold at least one tag")
    async with call.state.db() as db, db.begin():
        node = await _load_node(db, resource_id)
        node.tags = merge_tags(node.tags, tags)
    return {}


@ssm.operation("RemoveTagsFromResource")
async def remove_tags_from_resource(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    _, resource_id = await _tagged_node(call, params, "ssm:RemoveTagsFromResource")
    keys = set(v.string_list(params, "TagKeys", min_items=1))
    async with call.state.db() as db, db.begin():
        node = await _load_node(db, resource_id)
        node.tags = {k: val for k, val in node.tags.items() if k not in keys}
    return {}


@ssm.operation("ListTagsForResource")
async def list_tags_for_resource(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    _, resource_id = await _tagged_node(call, params, "ssm:ListTagsForResource")
    async with call.state.db() as db:
        node = await _load_node(db, resource_id)
    return {"TagList": tag_list(node.tags)}
