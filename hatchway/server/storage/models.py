"""The tables. Every change here ships with a migration in ``server/migrations/versions``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, LargeBinary, String, Text, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Setting(Base):
    """Server-wide values fixed at bootstrap, such as the account id."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created: Mapped[datetime]
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    console_password: Mapped[str | None] = mapped_column(String(255), default=None)


class Role(Base):
    __tablename__ = "roles"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created: Mapped[datetime]
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Policy(Base):
    """An inline policy attached to a user or a role."""

    __tablename__ = "policies"
    principal_kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # user | role
    principal_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    policy_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    document: Mapped[dict[str, Any]]


class AccessKey(Base):
    """A signing credential. ``kind`` says whose: an IAM user's, or a managed node's."""

    __tablename__ = "access_keys"
    access_key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # user | node
    principal: Mapped[str] = mapped_column(String(64), index=True)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)  # under the server's master key
    status: Mapped[str] = mapped_column(String(16), default="Active")
    created: Mapped[datetime]


class Activation(Base):
    __tablename__ = "activations"
    activation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the code; never the code
    description: Mapped[str] = mapped_column(String(256), default="")
    default_instance_name: Mapped[str] = mapped_column(String(256), default="")
    iam_role: Mapped[str] = mapped_column(String(64))
    registration_limit: Mapped[int] = mapped_column(Integer, default=1)
    registrations_count: Mapped[int] = mapped_column(Integer, default=0)
    expiration_date: Mapped[datetime]
    created_date: Mapped[datetime]
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ManagedInstance(Base):
    __tablename__ = "managed_instances"
    instance_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    activation_id: Mapped[str | None] = mapped_column(String(36), default=None)
    iam_role: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(String(256), default="")
    registration_date: Mapped[datetime]
    deregistered: Mapped[bool] = mapped_column(default=False)
    agent_name: Mapped[str] = mapped_column(String(64), default="")
    agent_version: Mapped[str] = mapped_column(String(32), default="")
    computer_name: Mapped[str] = mapped_column(String(256), default="")
    ip_address: Mapped[str] = mapped_column(String(64), default="")
    platform_type: Mapped[str] = mapped_column(String(16), default="")
    platform_name: Mapped[str] = mapped_column(String(128), default="")
    platform_version: Mapped[str] = mapped_column(String(64), default="")
    last_ping: Mapped[datetime | None] = mapped_column(default=None)
    # The server node whose control channel the agent holds, if any (its route), and the
    # route's epoch: each new control channel bumps it, and a node clears or refreshes a
    # route only at the epoch it set, so a stale node never overwrites a newer route.
    connected_to: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    route_epoch: Mapped[int] = mapped_column(Integer, default=0)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ClusterNode(Base):
    """A server node sharing this database: where its peers reach it, and its heartbeat."""

    __tablename__ = "cluster_nodes"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(512), default="")
    started: Mapped[datetime]
    heartbeat: Mapped[datetime]


class Document(Base):
    __tablename__ = "documents"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    document_type: Mapped[str] = mapped_column(String(32))
    document_format: Mapped[str] = mapped_column(String(8), default="JSON")
    created_date: Mapped[datetime]
    default_version: Mapped[int] = mapped_column(Integer, default=1)
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DocumentVersion(Base):
    __tablename__ = "document_versions"
    name: Mapped[str] = mapped_column(
        String(128), ForeignKey("documents.name", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_name: Mapped[str | None] = mapped_column(String(128), default=None)
    content: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_date: Mapped[datetime]


class Session(Base):
    __tablename__ = "sessions"
    session_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    target: Mapped[str] = mapped_column(String(400), index=True)
    document_name: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(256), index=True)
    reason: Mapped[str | None] = mapped_column(String(256), default=None)
    status: Mapped[str] = mapped_column(String(16), index=True)
    start_date: Mapped[datetime]
    end_date: Mapped[datetime | None] = mapped_column(default=None)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    details: Mapped[str] = mapped_column(Text, default="")
    max_session_duration: Mapped[str] = mapped_column(String(8), default="")
    # When something last passed through the session (saved at a low rate, for the idle
    # timeout after a restart); None for sessions from before it was kept.
    last_activity: Mapped[datetime | None] = mapped_column(default=None)
    # When a client first redeemed a token of the session (the join deadline is then met).
    client_joined: Mapped[datetime | None] = mapped_column(default=None)
    # The server node that pairs the session's two ends (its home), and the epoch of that
    # claim: a node takes a session over from a dead home only at the epoch it read.
    relay_node: Mapped[str | None] = mapped_column(String(64), default=None)
    relay_epoch: Mapped[int] = mapped_column(Integer, default=0)
    # The interactive_shell message waiting to reach the agent through the node that holds
    # its control channel (a start made on another node); None once delivered.
    start_message: Mapped[str | None] = mapped_column(Text, default=None)


class SessionToken(Base):
    """A single-use, short-lived channel token; only its hash is kept."""

    __tablename__ = "session_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(96), index=True)  # a session or instance id
    role: Mapped[str] = mapped_column(String(8))  # client | agent | control
    expires: Mapped[datetime]
    used: Mapped[bool] = mapped_column(default=False)


class KmsKey(Base):
    """A symmetric KMS key. Its material is sealed under the server's master key."""

    __tablename__ = "kms_keys"
    key_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    description: Mapped[str] = mapped_column(String(8192), default="")
    state: Mapped[str] = mapped_column(String(24), default="Enabled")
    created: Mapped[datetime]
    policy: Mapped[dict[str, Any]]
    material_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    deletion_date: Mapped[datetime | None] = mapped_column(default=None)


class KmsAlias(Base):
    __tablename__ = "kms_aliases"
    name: Mapped[str] = mapped_column(String(256), primary_key=True)  # alias/...
    key_id: Mapped[str] = mapped_column(String(36), index=True)
    created: Mapped[datetime]


class ConsoleSession(Base):
    """A signed-in web console. Only the cookie's hash is kept; the CSRF token is not a
    credential on its own (it works only beside the cookie)."""

    __tablename__ = "console_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64), index=True)
    # The access key it signed in with, if any: deleting or deactivating the key ends it.
    access_key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime]
    expires: Mapped[datetime]
