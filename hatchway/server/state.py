"""The long-lived resources of a running server, and the context of one API call."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..aws import arns
from ..aws.errors import AccessDeniedException
from .config import ServerConfig
from .iam.principals import Principal
from .keystore import Keystore
from .pagination import Paginator

log = logging.getLogger("hatchway.server")


@dataclass
class ServerState:
    config: ServerConfig
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    keystore: Keystore
    paginator: Paginator
    account: str
    # Live connections that other parts register: control channels, the relay.
    extensions: dict[str, Any] = field(default_factory=dict)

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
        from .iam.authorize import authorize

        principal = self.require_principal()
        owned = owner is not None and owner == principal.arn
        await authorize(self.state, principal, action, resource, context or {}, owned=owned)
        return principal

    def instance_arn(self, instance_id: str) -> str:
        return arns.managed_instance(self.region, self.account, instance_id)
