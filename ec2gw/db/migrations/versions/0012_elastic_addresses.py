"""elastic addresses: an address row of a public pool can be allocated to a user (eipalloc-) and
associated with an instance's network interface (eipassoc-), with what the node has of it; the
quota of elastic addresses per user or group

Revision ID: 0012e
Revises: 0014g
Create Date: 2026-12-06 16:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012e"
down_revision: str | None = "0014g"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("allocation_id", sa.String(length=32)),
    ("owner_id", sa.Integer()),
    ("allocated_at", sa.DateTime()),
    ("association_id", sa.String(length=32)),
    ("nic_address_id", sa.Integer()),
    ("plugged_into", sa.String(length=32)),
    ("plugged_node", sa.String(length=64)),
)


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column("addresses", sa.Column(name, kind, nullable=True))
    op.create_index(op.f("ix_addresses_allocation_id"), "addresses", ["allocation_id"], unique=True)
    op.create_index(op.f("ix_addresses_association_id"), "addresses", ["association_id"], unique=True)
    op.create_index(op.f("ix_addresses_owner_id"), "addresses", ["owner_id"], unique=False)
    op.add_column("quotas", sa.Column("addresses", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quotas") as batch:
        batch.drop_column("addresses")
    op.drop_index(op.f("ix_addresses_owner_id"), table_name="addresses")
    op.drop_index(op.f("ix_addresses_association_id"), table_name="addresses")
    op.drop_index(op.f("ix_addresses_allocation_id"), table_name="addresses")
    with op.batch_alter_table("addresses") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
