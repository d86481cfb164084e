"""s3_usage: a running total of the bytes each user holds in Cumulus (storage quota checks)

Revision ID: 0003s
Revises: 0002a
Create Date: 2026-11-26 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003s"
down_revision: str | None = "0002a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "s3_usage",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )
    # what is stored already: objects by owner, parts of unfinished uploads by the upload's owner
    op.execute(
        "INSERT INTO s3_usage (user_id, bytes) "
        "SELECT owner_id, SUM(size) FROM ("
        " SELECT owner_id, size FROM s3_objects"
        " UNION ALL"
        " SELECT u.owner_id, p.size FROM s3_parts p JOIN s3_uploads u ON u.id = p.upload_id"
        ") held GROUP BY owner_id"
    )


def downgrade() -> None:
    op.drop_table("s3_usage")
