"""EBS volumes: the volumes table, volume quotas (count and bytes) and nodes' volume storage capacity

Revision ID: 0011v
Revises: 0012e
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011v"
down_revision: str | None = "0012e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("availability_zone", sa.String(length=64), nullable=False),
        sa.Column("node_name", sa.String(length=64), nullable=False),
        sa.Column("size_gib", sa.Integer(), nullable=False),
        sa.Column("volume_type", sa.String(length=16), nullable=False),
        sa.Column("iops", sa.Integer(), nullable=True),
        sa.Column("throughput", sa.Integer(), nullable=True),
        sa.Column("encrypted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("snapshot_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("task", sa.String(length=16), nullable=True),
        sa.Column("status_message", sa.String(length=255), nullable=False),
        sa.Column("auto_enable_io", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("client_token", sa.String(length=64), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("instance_id", sa.String(length=32), nullable=True),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("target", sa.String(length=8), nullable=True),
        sa.Column("attach_state", sa.String(length=16), nullable=True),
        sa.Column("attach_time", sa.DateTime(), nullable=True),
        sa.Column("delete_on_termination", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("force_detach", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("modification_state", sa.String(length=16), nullable=True),
        sa.Column("original_size_gib", sa.Integer(), nullable=True),
        sa.Column("target_size_gib", sa.Integer(), nullable=True),
        sa.Column("original_volume_type", sa.String(length=16), nullable=True),
        sa.Column("target_volume_type", sa.String(length=16), nullable=True),
        sa.Column("modification_start", sa.DateTime(), nullable=True),
        sa.Column("modification_end", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id", "client_token", name="uq_volume_token"),
    )
    op.create_index("ix_volumes_owner_id", "volumes", ["owner_id", "id"], unique=False)
    op.create_index("ix_volumes_task", "volumes", ["task"], unique=False)
    op.create_index("ix_volumes_node_state", "volumes", ["node_name", "state"], unique=False)
    op.create_index(op.f("ix_volumes_instance_id"), "volumes", ["instance_id"], unique=False)
    op.add_column("quotas", sa.Column("volumes", sa.Integer(), nullable=True))
    op.add_column("quotas", sa.Column("volume_bytes", sa.BigInteger(), nullable=True))
    op.add_column("nodes", sa.Column("volume_gb", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("volume_gb")
    with op.batch_alter_table("quotas") as batch:
        batch.drop_column("volume_bytes")
        batch.drop_column("volumes")
    op.drop_index(op.f("ix_volumes_instance_id"), table_name="volumes")
    op.drop_index("ix_volumes_node_state", table_name="volumes")
    op.drop_index("ix_volumes_task", table_name="volumes")
    op.drop_index("ix_volumes_owner_id", table_name="volumes")
    op.drop_table("volumes")
