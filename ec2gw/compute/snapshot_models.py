"""EBS snapshots: a point-in-time copy of a volume whose bytes live in Cumulus, so that a volume can
be made from it on any node of any zone.

CreateSnapshot writes a row in state ``pending``; the compute worker (compute/snapshot_tasks.py)
copies the volume on its node (libvirt's push-mode backup for a disk a running guest uses, the
storage API's clone otherwise), streams the copy into the Cumulus object ``location`` and marks
the snapshot ``completed`` (or ``error`` with the reason in ``state_message``).

``data_format`` says what the object holds: ``qcow2`` (the flattened, compact copy) or ``empty``
(a volume of libvirt's test driver, which keeps no bytes: the object is empty and a volume made
from the snapshot is a new empty volume of the size).

Who may make volumes from a snapshot (createVolumePermission): its owner, everyone when
``is_public``, and the users with a SnapshotPermission row. ImageBlockDevice records the block
device mappings of an image (its snapshots); a snapshot an image uses cannot be deleted.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from ec2gw.db.models import Base, UTCDateTime, utcnow


class Snapshot(Base):
    __tablename__ = "snapshots"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: the volume it was taken of (kept when that volume is deleted, as EC2 reports it)
    volume_id: Mapped[str] = mapped_column(String(32), index=True)
    volume_size: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(255), default="")
    #: pending | completed | error
    state: Mapped[str] = mapped_column(String(16), default="pending")
    #: 0..100
    progress: Mapped[int] = mapped_column(Integer, default=0)
    state_message: Mapped[str] = mapped_column(String(255), default="")
    start_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: "bucket/key" of the Cumulus object holding the bytes, its size and ETag once stored
    location: Mapped[str] = mapped_column(String(1024), default="")
    data_format: Mapped[str] = mapped_column(String(16), default="qcow2")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    etag: Mapped[str] = mapped_column(String(80), default="")
    #: createVolumePermission Group=all
    is_public: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    __table_args__ = (Index("ix_snapshots_owner_id", "owner_id", "id"),
                      Index("ix_snapshots_state", "state"))


class SnapshotPermission(Base):
    """createVolumePermission for one other user."""

    __tablename__ = "snapshot_permissions"
    snapshot_id: Mapped[str] = mapped_column(ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class ImageBlockDevice(Base):
    """One EBS block device mapping of an image: a volume made from ``snapshot_id`` (or an empty
    one of ``volume_size`` GiB) at ``device_name`` of each instance launched from it."""

    __tablename__ = "image_block_devices"
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    device_name: Mapped[str] = mapped_column(String(32), primary_key=True)
    snapshot_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    volume_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    volume_type: Mapped[str] = mapped_column(String(16), default="gp2")
    delete_on_termination: Mapped[bool] = mapped_column(Boolean, default=True)
