"""s3 grants: ACL grants beyond the canned ACL on buckets, objects and multipart uploads

Revision ID: 0004g
Revises: 0003s
Create Date: 2026-12-06 03:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004g"
down_revision: str | None = "0003s"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("s3_buckets", "s3_objects", "s3_uploads")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("grants", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("grants")
