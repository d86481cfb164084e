"""snapshots: EBS snapshots, their createVolumePermission, images' block device mappings

Revision ID: 0013s
Revises: 0011v
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013s"
down_revision: str | None = "0011v"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("volume_id", sa.String(length=32), nullable=False),
        sa.Column("volume_size", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("state_message", sa.String(length=255), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("location", sa.String(length=1024), nullable=False),
        sa.Column("data_format", sa.String(length=16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=80), nullable=False),
        sa.Column("is_public", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_snapshots_owner_id", "snapshots", ["owner_id", "id"], unique=False)
    op.create_index("ix_snapshots_state", "snapshots", ["state"], unique=False)
    op.create_index(op.f("ix_snapshots_volume_id"), "snapshots", ["volume_id"], unique=False)
    op.create_table(
        "snapshot_permissions",
        sa.Column("snapshot_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["snapshot_id"], ["snapshots.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("snapshot_id", "user_id"),
    )
    op.create_index(op.f("ix_snapshot_permissions_user_id"), "snapshot_permissions", ["user_id"], unique=False)
    op.create_table(
        "image_block_devices",
        sa.Column("image_id", sa.String(length=32), nullable=False),
        sa.Column("device_name", sa.String(length=32), nullable=False),
        sa.Column("snapshot_id", sa.String(length=32), nullable=True),
        sa.Column("volume_size", sa.Integer(), nullable=True),
        sa.Column("volume_type", sa.String(length=16), nullable=False),
        sa.Column("delete_on_termination", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "device_name"),
    )
    op.create_index(op.f("ix_image_block_devices_snapshot_id"), "image_block_devices", ["snapshot_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_image_block_devices_snapshot_id"), table_name="image_block_devices")
    op.drop_table("image_block_devices")
    op.drop_index(op.f("ix_snapshot_permissions_user_id"), table_name="snapshot_permissions")
    op.drop_table("snapshot_permissions")
    op.drop_index(op.f("ix_snapshots_volume_id"), table_name="snapshots")
    op.drop_index("ix_snapshots_state", table_name="snapshots")
    op.drop_index("ix_snapshots_owner_id", table_name="snapshots")
    op.drop_table("snapshots")
