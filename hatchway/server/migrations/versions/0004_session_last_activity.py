"""sessions.last_activity: when something last passed through a session, kept across
restarts so that a restart does not re-arm the idle timeout; sessions.client_joined: when a
client first opened the session's data channel, on any server (the join deadline's answer)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 14:05:00
"""

import sqlalchemy as sa
from alembic import op

import hatchway.server.storage.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sessions",
        sa.Column("last_activity", hatchway.server.storage.models.UtcDateTime(), nullable=True),
    )
    op.add_column(
        "sessions",
        sa.Column("client_joined", hatchway.server.storage.models.UtcDateTime(), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("client_joined")
        batch.drop_column("last_activity")
