"""EBS volumes: a block device that outlives instances, lives in one zone and attaches to one instance.

Where a volume's bytes are: on one node of its zone (``node_name``), as a qcow2 volume of that
node's ``ec2gw-volumes`` storage pool (compute/volume_store.py names it), reached only through the
driver's storage API (backends.volumes.VolumeDriver). A shared backend (Ceph RBD, say) would make
``node_name`` the zone's storage instead; nothing above compute/volume_store.py would change.

The API writes rows; the compute worker carries out ``task`` on the node (compute/volume_tasks.py)
with compare-and-set updates, as it does for instances:

* ``create``: state creating -> available (or error); ``delete``: deleting -> deleted;
* ``attach``: attach_state attaching -> attached, state in-use (the volume is first moved to the
  instance's node when it is on another node of the zone);
* ``detach``: attach_state detaching -> the attachment is cleared, state available;
* ``resize``: modification_state modifying -> completed (size_gib grows) or failed.

Volumes made by RunInstances (its BlockDeviceMappings, an EBS-backed image's mappings, and every
instance's root device, ``is_root``) are rows in state creating, attach_state attaching, with no
task: the instance's spawn makes them on its node and puts them in the domain from its first start
(compute/launch_volumes.py), then marks them in-use and attached.

A deleted volume stays listed (state deleted) for ``terminated_visible_seconds``, then its row goes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    and_,
    false,
    or_,
)
from sqlalchemy.orm import Mapped, mapped_column

from ec2gw.db.models import Base, UTCDateTime, utcnow

#: states in which a volume holds storage and counts against quotas
LIVE_STATES = ("creating", "available", "in-use", "deleting", "error")


def holds_volume_storage() -> ColumnElement[bool]:
    """The volumes that count against volume quotas and a node's volume storage: those of the
    volume pool, and root volumes that stay after their instance (DeleteOnTermination false),
    which become volumes of the pool when it ends."""
    return or_(Volume.storage == "pool", and_(Volume.is_root.is_(True), Volume.delete_on_termination.is_(False)))


class Volume(Base):
    __tablename__ = "volumes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    availability_zone: Mapped[str] = mapped_column(String(64))
    #: the node whose storage pool holds the bytes (``local``: the implicit node)
    node_name: Mapped[str] = mapped_column(String(64))
    size_gib: Mapped[int] = mapped_column(Integer)
    volume_type: Mapped[str] = mapped_column(String(16), default="gp2")
    iops: Mapped[int | None] = mapped_column(Integer, nullable=True)
    throughput: Mapped[int | None] = mapped_column(Integer, nullable=True)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: the snapshot the volume was made from (filled by the snapshot side), else None
    snapshot_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: creating | available | in-use | deleting | deleted | error
    state: Mapped[str] = mapped_column(String(16), default="creating")
    #: what the compute worker still has to do: create | delete | attach | detach | resize
    task: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: why the last task failed (error state, failed modification), for logs and StatusMessage
    status_message: Mapped[str] = mapped_column(String(255), default="")
    auto_enable_io: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    client_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    # -- the attachment (one instance at most) -------------------------------------------------
    instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    #: the device name the caller asked for (/dev/sdf) and the guest target it became (vdb)
    device: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target: Mapped[str | None] = mapped_column(String(8), nullable=True)
    #: attaching | attached | detaching (None: not attached)
    attach_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    attach_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delete_on_termination: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    force_detach: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: the instance's root device (its boot disk): never detached from a running instance
    is_root: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: where the bytes are: ``pool`` (``<vol-id>.qcow2`` of the volume pool, every volume made by
    #: CreateVolume, a launch's block device mappings and roots made from snapshots) or ``overlay``
    #: (the root of an instance of a Cumulus image: its qcow2 overlay in the instances pool, on the
    #: instance's node; copied into the volume pool when the instance ends and the volume stays)
    storage: Mapped[str] = mapped_column(String(16), default="pool", server_default="pool")

    # -- the latest modification (ModifyVolume) ------------------------------------------------
    #: modifying | optimizing | completed | failed (None: never modified)
    modification_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    original_size_gib: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target_size_gib: Mapped[int | None] = mapped_column(Integer, nullable=True)
    original_volume_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    target_volume_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    modification_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    modification_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        Index("ix_volumes_owner_id", "owner_id", "id"),
        Index("ix_volumes_task", "task"),
        Index("ix_volumes_node_state", "node_name", "state"),
        UniqueConstraint("owner_id", "client_token", name="uq_volume_token"),
    )


def volume_bytes(size_gib: int) -> int:
    return size_gib << 30

