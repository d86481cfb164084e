"""instance hibernation: instances.hibernation_configured and instances.hibernated

Revision ID: 0009h
Revises: 0008n
Create Date: 2026-12-06 04:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009h"
down_revision: str | None = "0008n"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("instances", sa.Column("hibernation_configured", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("instances", sa.Column("hibernated", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("hibernated")
        batch.drop_column("hibernation_configured")
