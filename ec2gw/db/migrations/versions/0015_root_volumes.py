"""root volumes: an instance's root disk shown as an EBS volume

Revision ID: 0015b
Revises: 0013s
Create Date: 2026-12-06 20:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015b"
down_revision: str | None = "0013s"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.add_column(sa.Column("is_root", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("storage", sa.String(length=16), server_default="pool", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.drop_column("storage")
        batch.drop_column("is_root")
