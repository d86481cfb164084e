"""s3 tags: tag sets on buckets, objects and multipart uploads (x-amz-tagging)

Revision ID: 0005t
Revises: 0004g
Create Date: 2026-12-06 04:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005t"
down_revision: str | None = "0004g"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("s3_buckets", "s3_objects", "s3_uploads")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("tags", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tags")
