"""The ec2messages service (``EC2WindowsMessageDeliveryService``) that the official agent
long-polls for Run Command. Hatchway sends commands over the control channel instead, so
these calls answer "nothing for you" after a long-poll delay."""

from __future__ import annotations

import asyncio
from typing import Any

from ..aws.json11 import Service
from . import validation as v
from .state import Call

ec2messages: Service[Call] = Service("EC2WindowsMessageDeliveryService", "ec2messages")
# The official agent gives up on this call after Mds.StopTimeoutMillis (20 s by default),
# so the answer must come well before that or it is lost and the call retried.
LONG_POLL_SECONDS = 10.0


@ec2messages.operation("GetMessages")
async def get_messages(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    destination = v.string(params, "Destination", required=True, max_len=100) or ""
    await call.authorize("ec2messages:GetMessages", call.instance_arn(destination))
    await asyncio.sleep(LONG_POLL_SECONDS)
    return {
        "Destination": destination,
        "Messages": [],
        "MessagesRequestId": v.string(params, "MessagesRequestId", default="") or "",
    }


def _accept(name: str) -> None:
    async def accept(call: Call, params: dict[str, Any]) -> dict[str, Any]:
        await call.authorize(f"ec2messages:{name}", "*")
        return {}

    ec2messages.operation(name)(accept)


for _name in ("AcknowledgeMessage", "SendReply", "FailMessage", "DeleteMessage"):
    _accept(_name)
