"""root volumes: an instance's root disk shown as an EBS volume

Every instance not yet terminated gets its root volume (its overlay, at its image's root device).

Revision ID: 0015b
Revises: 0013s
Create Date: 2026-12-06 20:30:00
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

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
    _root_volumes()


def _root_volumes() -> None:
    instances = sa.table("instances", sa.column("id"), sa.column("owner_id"), sa.column("availability_zone"),
                         sa.column("node_name"), sa.column("image_id"), sa.column("launch_time"), sa.column("state"))
    images = sa.table("images", sa.column("id"), sa.column("root_device_name"), sa.column("size_bytes"))
    volumes = sa.table("volumes", *(sa.column(c) for c in (
        "id", "owner_id", "availability_zone", "node_name", "size_gib", "volume_type", "state", "status_message",
        "request_hash", "created_at", "updated_at", "instance_id", "device", "target", "attach_state", "attach_time",
        "delete_on_termination", "is_root", "storage")))
    rows = op.get_bind().execute(
        sa.select(instances.c.id, instances.c.owner_id, instances.c.availability_zone, instances.c.node_name,
                  instances.c.launch_time, images.c.root_device_name, images.c.size_bytes)
        .select_from(instances.outerjoin(images, images.c.id == instances.c.image_id))
        .where(instances.c.state != "terminated")).all()
    now = datetime.now(UTC).replace(tzinfo=None)
    if rows:
        op.bulk_insert(volumes, [{
            "id": f"vol-{secrets.token_hex(9)[:17]}", "owner_id": owner, "availability_zone": zone,
            "node_name": node or "local", "size_gib": max(1, -(-int(size or 0) // (1 << 30))), "volume_type": "gp2",
            "state": "in-use", "status_message": "", "request_hash": "", "created_at": launched or now,
            "updated_at": now, "instance_id": iid, "device": device or "/dev/vda", "target": "vda",
            "attach_state": "attached", "attach_time": launched or now, "delete_on_termination": True,
            "is_root": True, "storage": "overlay"} for iid, owner, zone, node, launched, device, size in rows])


def downgrade() -> None:
    volumes = sa.table("volumes", sa.column("is_root"), sa.column("storage"))
    op.execute(volumes.delete().where(volumes.c.is_root.is_(True), volumes.c.storage == "overlay"))
    with op.batch_alter_table("volumes") as batch:
        batch.drop_column("storage")
        batch.drop_column("is_root")
