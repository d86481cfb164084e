"""Registered images follow their Cumulus objects: deleted or replaced by another user -> failed,
uploaded again by the image's owner -> available.

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
OBJECT_REPLACED_REASON = ("Client.ObjectReplaced: another user replaced the image's Cumulus object; register the new "
                          "object as a new image if you trust it, or upload your own again")
_GONE = (OBJECT_DELETED_REASON, OBJECT_REPLACED_REASON)


def object_changed(s: Session | Connection, bucket: str, key: str, size: int | None,
                   writer_id: int | None = None) -> None:
    """Called in the transaction that writes (size, by the user `writer_id`) or deletes (None) the
    object `bucket/key`.

    An image is the bytes its owner registered: a new version written by anyone else (the
    object's owner, a user with bucket WRITE, an administrator) fails the images of other owners
    at that location (Client.ObjectReplaced), so an image never switches to bytes its owner did
    not vouch for, nor to bytes its owner may not read. A new version by the image's owner makes
    its image available again (with the new size).
    """
    location = f"{bucket}/{key}"
    if s.execute(_IMAGE_AT, {"location": location}).first() is None:
        return
    if size is None:
        s.execute(update(Image).where(Image.location == location)
                  .values(state="failed", state_reason=OBJECT_DELETED_REASON))
        return
    others = Image.owner_id != writer_id if writer_id is not None else Image.owner_id.is_not(None)
    s.execute(update(Image).where(Image.location == location, others, Image.state != "pending")
              .values(state="failed", state_reason=OBJECT_REPLACED_REASON))
    if writer_id is None:
        return
    mine = (Image.location == location, Image.owner_id == writer_id)
    s.execute(update(Image).where(*mine).values(size_bytes=size))
    s.execute(update(Image).where(*mine, Image.state == "failed", Image.state_reason.in_(_GONE))
              .values(state="available", state_reason=""))
