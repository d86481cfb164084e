"""Tables of the image paths between Cumulus and the nodes: per-node image caches, image saves.

NodeImage records an image volume on a node that was uploaded completely and verified; a volume
without its row (an upload cut off when the node stopped answering, or one from before the node
was removed and added again) is used only once it is read back and found to hold the image
(compute/image_cache.py). ImageTask is a CreateImage still in progress: the compute worker stops the instance
if asked, copies its disk into Cumulus and makes the image available.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from ec2gw.db.models import Base, UTCDateTime, utcnow


class NodeImage(Base):
    __tablename__ = "node_images"
    node_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: the libvirt storage pool and volume holding the image on the node
    pool: Mapped[str] = mapped_column(String(64))
    volume: Mapped[str] = mapped_column(String(255))
    #: the Cumulus object's size and ETag when it was cached (a rewritten object is cached anew),
    #: the SHA-256 of the bytes sent, and the volume's capacity the node reported
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(80))
    sha256: Mapped[str] = mapped_column(String(64))
    capacity: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16), default="raw")
    cached_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImageTask(Base):
    __tablename__ = "image_tasks"
    image_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(32), index=True)
    #: copy without stopping the instance (NoReboot)
    no_reboot: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the instance ran when CreateImage came: start it again once its disk is copied
    restart: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
