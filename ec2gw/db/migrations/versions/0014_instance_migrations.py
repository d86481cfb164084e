"""instance migrations: moves of instances between nodes, reserving room on the destination

Revision ID: 0014g
Revises: 0010r
Create Date: 2026-12-06 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014g"
down_revision: str | None = "0010r"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instance_migrations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_instance_migrations_instance", "instance_migrations", ["instance_id", "id"])
    op.create_index("ix_instance_migrations_active", "instance_migrations", ["state", "destination"])


def downgrade() -> None:
    op.drop_index("ix_instance_migrations_active", table_name="instance_migrations")
    op.drop_index("ix_instance_migrations_instance", table_name="instance_migrations")
    op.drop_table("instance_migrations")
