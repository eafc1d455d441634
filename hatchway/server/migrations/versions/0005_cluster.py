"""Clusters: cluster_nodes (each server node, the URL its peers reach it on, its
heartbeat); managed_instances.route_epoch (so a stale node cannot overwrite a newer route);
sessions.relay_node, relay_epoch (the node that pairs a session's two ends) and
start_message (a start waiting for the node that holds the agent's control channel)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 17:30:00
"""

import sqlalchemy as sa
from alembic import op

import hatchway.server.storage.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_nodes",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("started", hatchway.server.storage.models.UtcDateTime(), nullable=False),
        sa.Column("heartbeat", hatchway.server.storage.models.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.add_column(
        "managed_instances",
        sa.Column("route_epoch", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index(
        "ix_managed_instances_connected_to", "managed_instances", ["connected_to"], unique=False
    )
    op.add_column("sessions", sa.Column("relay_node", sa.String(length=64), nullable=True))
    op.add_column(
        "sessions", sa.Column("relay_epoch", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("sessions", sa.Column("start_message", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("start_message")
        batch.drop_column("relay_epoch")
        batch.drop_column("relay_node")
    op.drop_index("ix_managed_instances_connected_to", table_name="managed_instances")
    with op.batch_alter_table("managed_instances") as batch:
        batch.drop_column("route_epoch")
    op.drop_table("cluster_nodes")
