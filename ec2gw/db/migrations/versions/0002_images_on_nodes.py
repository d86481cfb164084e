"""images on nodes: per-node image cache records and CreateImage tasks

Revision ID: 0002a
Revises: 0001
Create Date: 2026-11-25 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002a"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node_images",
        sa.Column("node_name", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.String(length=32), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("volume", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=80), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("capacity", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("cached_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("node_name", "image_id"),
    )
    op.create_table(
        "image_tasks",
        sa.Column("image_id", sa.String(length=32), nullable=False),
        sa.Column("instance_id", sa.String(length=32), nullable=False),
        sa.Column("no_reboot", sa.Boolean(), nullable=False),
        sa.Column("restart", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("image_id"),
    )
    op.create_index(op.f("ix_image_tasks_instance_id"), "image_tasks", ["instance_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_image_tasks_instance_id"), table_name="image_tasks")
    op.drop_table("image_tasks")
    op.drop_table("node_images")
