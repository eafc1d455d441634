"""The long-lived resources of a running server, and the context of one API call."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..aws import arns
from ..aws.errors import AccessDeniedException
from .config import ServerConfig
from .iam.authorize import authorize
from .iam.principals import Principal
from .keystore import Keystore
from .pagination import Paginator

log = logging.getLogger("hatchway.server")

T = TypeVar("T")


class Services:
    """The server's long-lived parts (the message gateway, the relay, the session runtime),
    found by their type: ``state.services.get(Relay)`` is a Relay, and mypy knows it."""

    def __init__(self) -> None:
        self._by_type: dict[type[Any], Any] = {}

    def add(self, service: object) -> None:
        kind = type(service)
        if kind in self._by_type:
            raise ValueError(f"this server already has a {kind.__name__}")
        self._by_type[kind] = service

    def get(self, kind: type[T]) -> T:
        found = self._by_type.get(kind)
        if not isinstance(found, kind):
            raise LookupError(f"this server has no {kind.__name__}")
        return found


@dataclass
class ServerState:
    config: ServerConfig
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    keystore: Keystore
    paginator: Paginator
    account: str
    # The long-lived parts that find each other through this state, by type.
    services: Services = field(default_factory=Services)
    # Where bootstrap wrote the admin credentials it created on this start, if it did.
    created_credentials: str | None = None

    @property
    def region(self) -> str:
        return self.config.region


@dataclass
class Call:
    """One API call: who made it, when, and through which URL."""

    state: ServerState
    principal: Principal | None
    request_id: str
    now: datetime
    base_url: str  # scheme://host[:port][/prefix] as the caller reached us
    service: str = "ssm"

    @property
    def account(self) -> str:
        return self.state.account

    @property
    def region(self) -> str:
        return self.state.region

    def require_principal(self) -> Principal:
        if self.principal is None:
            raise AccessDeniedException("This operation requires a signed request")
        return self.principal

    async def authorize(
        self,
        action: str,
        resource: str,
        context: dict[str, Any] | None = None,
        *,
        owner: str | None = None,
    ) -> Principal:
        """Deny unless a policy of the caller allows ``action`` on ``resource``. When
        ``owner`` (an ARN) is the caller, only an explicit deny refuses."""
        principal = self.require_principal()
        owned = owner is not None and owner == principal.arn
        await authorize(self.state.db, principal, action, resource, context or {}, owned=owned)
        return principal

    def instance_arn(self, instance_id: str) -> str:
        return arns.managed_instance(self.region, self.account, instance_id)
