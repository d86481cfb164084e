"""VM images in Cumulus, Nimbus's way: the Python API the EC2 side uses (RegisterImage, import).

An image is an object. A user's images live at `<image_bucket>/<image_prefix>/<user>/<name>`,
shared ones at `<image_prefix>/common/<name>` (defaults `Repo` and `VMS`, as Nimbus had them). The
image bucket belongs to the first administrator and is created on first use. When an object that
backs a registered image is deleted, or replaced by anyone but an image's owner, those images
become `failed` (DescribeImages shows why); when the image's owner uploads the object again, their
images are `available` again with the new size. Every use of an image also checks that its owner
may still read the object (`can_read`; see README.md, "An image never exposes bytes...").
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING, BinaryIO

from sqlalchemy import select

from ec2gw.aws.gateway import Principal

# the image key layout and format sniffing are the EC2 side's rules (also used from here)
from ec2gw.compute.cumulus import QCOW2_MAGIC as QCOW2_MAGIC
from ec2gw.compute.cumulus import common_image_key as common_image_key
from ec2gw.compute.cumulus import detect_format as detect_format
from ec2gw.compute.cumulus import user_image_key as user_image_key
from ec2gw.db.models import User
from ec2gw.errors import ServiceError
from storage import access
from storage.blobstore import BlobStore, SegmentReader
from storage.buckets import ensure_bucket
from storage.models import Bucket
from storage.records import (
    NewVersion,
    ObjectInfo,
    commit_object,
    delete_object_row,
    find_object,
    get_bucket,
    write_session,
)

if TYPE_CHECKING:
    from storage.host import Host



def store_of(app: Host) -> BlobStore:
    """The blob store of an app (shared with its S3 gateway when there is one)."""
    gateway = getattr(app, "s3", None)
    store = getattr(gateway, "store", None)
    if isinstance(store, BlobStore):
        return store
    return BlobStore(app.settings.data_dir / "cumulus", app.settings.cumulus_direct_io)


def ensure_image_bucket(app: Host) -> None:
    """Create the image repository bucket, owned by the first administrator, if it is missing."""
    name = app.settings.image_bucket
    with app.db.session() as s:
        if s.scalar(select(Bucket.id).where(Bucket.name == name)) is not None:
            return
        admin_id = s.scalar(select(User.id).where(User.is_admin.is_(True)).order_by(User.id))
    if admin_id is not None:
        ensure_bucket(app, name, admin_id)


def object_info(app: Host, bucket: str, key: str) -> ObjectInfo | None:
    """The object's metadata (size, etag, content type...), or None if there is no such object or bucket."""
    try:
        with app.db.session() as s:
            return find_object(s, get_bucket(s, bucket), key)
    except ServiceError:
        return None


def can_read(app: Host, user_id: int, bucket: str, key: str) -> bool:
    """Whether the user may read the object (by Cumulus's rules: owner, admin, ACL, shared prefix)."""
    with app.db.session() as s:
        user = s.get(User, user_id)
        if user is None or not user.enabled:
            return False
        try:
            b = get_bucket(s, bucket)
        except ServiceError:
            return False
        row = find_object(s, b, key)
        if row is None:
            return False
        return access.can_read_object(app.settings, _principal(user), b, key, row)


def _principal(user: User) -> Principal:
    return Principal(user.id, user.name, user.account_id, user.secret_key, user.is_admin, user.group)


def open_object(app: Host, bucket: str, key: str) -> tuple[BinaryIO, int]:
    """A readable (and seekable) stream of the object's bytes and its size; close it when done."""
    store = store_of(app)
    for _ in range(3):
        info = object_info(app, bucket, key)
        if info is None:
            raise FileNotFoundError(f"no object {bucket}/{key} in Cumulus")
        try:
            reader = SegmentReader(store, [(seg["b"], seg["n"]) for seg in info.segments])
        except FileNotFoundError:
            continue  # replaced while we opened it
        return reader, info.size  # type: ignore[return-value]
    raise FileNotFoundError(f"the object {bucket}/{key} kept changing while it was opened")


def put_file(app: Host, owner_user_id: int, bucket: str, key: str, path_or_stream: str | os.PathLike[str] | IO[bytes],
             size: int) -> ObjectInfo:
    """Store a local file (or a readable stream of `size` bytes) as the object `bucket/key`.

    The image bucket is created on first use; other buckets must exist. The owner must be allowed
    to write there by the same rules as an S3 PUT. Written like any PUT: temp file, fsync, rename.
    """
    if bucket == app.settings.image_bucket:
        ensure_image_bucket(app)
    access.check_key(key)
    with app.db.session() as s:
        user = s.get(User, owner_user_id)
        if user is None:
            raise ServiceError("InvalidParameterValue", f"No user with id {owner_user_id}.")
        principal = _principal(user)

    def may_write(b: object) -> None:
        access.require(access.can_write_object(app.settings, principal, b, key))  # type: ignore[arg-type]

    with app.db.session() as s:
        may_write(get_bucket(s, bucket))
    access.check_storage_quota(app, owner_user_id, size)
    store = store_of(app)
    with ExitStack() as stack:
        if isinstance(path_or_stream, (str, os.PathLike)):
            stream: IO[bytes] = stack.enter_context(open(path_or_stream, "rb"))
        else:
            stream = path_or_stream
        writer = stack.enter_context(store.writer())
        copied = writer.copy_from(stream, limit=size)
        if copied != size:
            raise ServiceError("IncompleteBody", f"The file ended after {copied} of {size} bytes.")
        writer.commit()
    version = NewVersion(key, owner_user_id, [{"b": writer.blob_id, "n": size, "c": None}], size, writer.etag,
                         {"ContentType": "application/octet-stream"})
    return commit_object(app, store, bucket, version, may_write)


def delete_object(app: Host, bucket: str, key: str) -> None:
    """Remove the object (its bytes leave its owner's usage), as the service itself: the EC2 side
    deletes only objects it wrote (a deleted snapshot's). No such object or bucket: nothing to do."""
    try:
        with write_session(app.db) as s:
            blobs = delete_object_row(s, get_bucket(s, bucket), key)
    except ServiceError:  # no such bucket
        return
    store_of(app).delete(blobs)
