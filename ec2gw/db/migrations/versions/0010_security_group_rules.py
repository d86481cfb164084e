"""security group rules: rules of security groups and instances' group memberships; the default
groups get their rules (all traffic from the group's members, all egress)

Revision ID: 0010r
Revises: 0009h
Create Date: 2026-12-06 04:40:00
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0010r"
down_revision: str | None = "0009h"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rules = op.create_table(
        "security_group_rules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("group_id", sa.String(length=32), nullable=False),
        sa.Column("egress", sa.Boolean(), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("from_port", sa.Integer(), nullable=True),
        sa.Column("to_port", sa.Integer(), nullable=True),
        sa.Column("cidr_ipv4", sa.String(length=18), nullable=True),
        sa.Column("referenced_group_id", sa.String(length=32), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["security_groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_security_group_rules_group_id"), "security_group_rules", ["group_id"], unique=False)
    op.create_index(op.f("ix_security_group_rules_referenced_group_id"), "security_group_rules",
                    ["referenced_group_id"], unique=False)
    op.create_table(
        "instance_security_groups",
        sa.Column("instance_id", sa.String(length=32), nullable=False),
        sa.Column("group_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["security_groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["instance_id"], ["instances.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("instance_id", "group_id"),
    )
    op.create_index(op.f("ix_instance_security_groups_group_id"), "instance_security_groups", ["group_id"], unique=False)
    groups = sa.table("security_groups", sa.column("id", sa.String), sa.column("name", sa.String))
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for (gid,) in op.get_bind().execute(sa.select(groups.c.id).where(groups.c.name == "default")):
        common = {"group_id": gid, "protocol": "-1", "from_port": None, "to_port": None, "description": "",
                  "created_at": now}
        rows.append({**common, "id": f"sgr-{secrets.token_hex(9)[:17]}", "egress": False, "cidr_ipv4": None,
                     "referenced_group_id": gid})
        rows.append({**common, "id": f"sgr-{secrets.token_hex(9)[:17]}", "egress": True, "cidr_ipv4": "0.0.0.0/0",
                     "referenced_group_id": None})
    if rows:
        op.bulk_insert(rules, rows)


def downgrade() -> None:
    op.drop_index(op.f("ix_instance_security_groups_group_id"), table_name="instance_security_groups")
    op.drop_table("instance_security_groups")
    op.drop_index(op.f("ix_security_group_rules_referenced_group_id"), table_name="security_group_rules")
    op.drop_index(op.f("ix_security_group_rules_group_id"), table_name="security_group_rules")
    op.drop_table("security_group_rules")
