"""metrics: per-interval instance samples and the detailed-monitoring flag

Revision ID: 0007m
Revises: 0006p
Create Date: 2026-12-06 04:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007m"
down_revision: str | None = "0006p"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.String(length=32), nullable=False),
        sa.Column("node_name", sa.String(length=64), nullable=False),
        sa.Column("sampled_at", sa.DateTime(), nullable=False),
        sa.Column("interval_seconds", sa.Float(), nullable=False),
        sa.Column("cpu_utilization", sa.Float(), nullable=True),
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in (
            "network_in", "network_out", "network_packets_in", "network_packets_out",
            "disk_read_bytes", "disk_write_bytes", "disk_read_ops", "disk_write_ops")],
        sa.Column("memory_used_mib", sa.Float(), nullable=True),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_metric_samples_instance_time", "metric_samples", ["instance_id", "sampled_at"])
    op.create_index("ix_metric_samples_time", "metric_samples", ["sampled_at"])
    op.create_table(
        "instance_monitoring",
        sa.Column("instance_id", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id"),
    )


def downgrade() -> None:
    op.drop_table("instance_monitoring")
    op.drop_index("ix_metric_samples_time", table_name="metric_samples")
    op.drop_index("ix_metric_samples_instance_time", table_name="metric_samples")
    op.drop_table("metric_samples")
