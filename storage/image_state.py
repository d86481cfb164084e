"""Registered images follow their Cumulus objects: deleted -> failed, uploaded again -> available.

Called by storage/records.py in the very transaction that writes or deletes an object, so an image
never points at bytes that are gone without saying so (storage/README.md).
"""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ec2gw.db.models import Image

_IMAGE_AT = select(Image.id).where(Image.location == bindparam("location")).limit(1)
OBJECT_DELETED_REASON = "Client.ObjectDeleted: the image's Cumulus object was deleted; upload it again"


def object_changed(s: Session | Connection, bucket: str, key: str, size: int | None) -> None:
    """Called in the transaction that writes (size) or deletes (None) the object `bucket/key`."""
    location = f"{bucket}/{key}"
    if s.execute(_IMAGE_AT, {"location": location}).first() is None:
        return
    if size is None:
        s.execute(update(Image).where(Image.location == location)
                  .values(state="failed", state_reason=OBJECT_DELETED_REASON))
        return
    s.execute(update(Image).where(Image.location == location).values(size_bytes=size))
    s.execute(update(Image).where(Image.location == location, Image.state == "failed",
                                  Image.state_reason == OBJECT_DELETED_REASON)
              .values(state="available", state_reason=""))
