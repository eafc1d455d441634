"""kms keys and aliases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:40:00
"""

import sqlalchemy as sa
from alembic import op

import hatchway.server.storage.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kms_keys",
        sa.Column("key_id", sa.String(length=36), nullable=False),
        sa.Column("description", sa.String(length=8192), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("created", hatchway.server.storage.models.UtcDateTime(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("material_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("deletion_date", hatchway.server.storage.models.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_table(
        "kms_aliases",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("key_id", sa.String(length=36), nullable=False),
        sa.Column("created", hatchway.server.storage.models.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index(op.f("ix_kms_aliases_key_id"), "kms_aliases", ["key_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_kms_aliases_key_id"), table_name="kms_aliases")
    op.drop_table("kms_aliases")
    op.drop_table("kms_keys")
