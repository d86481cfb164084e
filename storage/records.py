"""Looking up buckets and objects, and committing a new object version: the shared core of the
operation modules and of the image helpers.

`commit_object` is the one place an object row is written: in a single write transaction it
re-checks the bucket and the caller's right to write, evaluates If-Match / If-None-Match
against the current version, swaps the row to the new blobs and tells the image registry; the
blobs of the version it replaced are removed only after the commit, so a reader never finds a row
whose blobs are gone (and a reader that already opened them keeps reading them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ec2gw.db.models import User, utcnow
from ec2gw.errors import ServiceError
from storage.access import check_bucket_name
from storage.conditions import etag_matches, precondition_failed
from storage.context import no_such_bucket, no_such_key
from storage.models import Bucket, Object

if TYPE_CHECKING:
    from ec2gw.app import App
    from storage.blobstore import BlobStore

#: headers kept with an object and returned on GET / HEAD (name as the output member, wire name)
CONTENT_HEADERS = {
    "ContentType": "Content-Type",
    "ContentEncoding": "Content-Encoding",
    "ContentDisposition": "Content-Disposition",
    "ContentLanguage": "Content-Language",
    "CacheControl": "Cache-Control",
    "Expires": "Expires",
    "WebsiteRedirectLocation": "x-amz-website-redirect-location",
}
DEFAULT_CONTENT_TYPE = "binary/octet-stream"


@dataclass
class ObjectInfo:
    """An object's metadata, detached from any session."""

    bucket: str
    key: str
    size: int
    etag: str  # hex, without quotes ("<md5>-N" for multipart)
    last_modified: datetime
    owner_id: int
    acl: str
    content_headers: dict[str, str]
    metadata: dict[str, str]
    segments: list[dict[str, Any]]
    parts_count: int | None = None
    storage_class: str = "STANDARD"
    checksum_algorithm: str | None = None
    checksum_value: str | None = None
    checksum_type: str | None = None
    upload_id: str | None = None

    @property
    def content_type(self) -> str:
        return self.content_headers.get("ContentType") or DEFAULT_CONTENT_TYPE

    @property
    def quoted_etag(self) -> str:
        return f'"{self.etag}"'

    @classmethod
    def of(cls, bucket: str, row: Object) -> "ObjectInfo":
        return cls(bucket, row.key, row.size, row.etag, row.last_modified, row.owner_id, row.acl, row.content_headers,
                   row.user_metadata, row.segments, row.parts_count, row.storage_class, row.checksum_algorithm,
                   row.checksum_value, row.checksum_type, row.upload_id)

    def checksum_members(self) -> dict[str, str]:
        """{"ChecksumCRC32": value, "ChecksumType": ...} when the object has a checksum."""
        if not self.checksum_algorithm or not self.checksum_value:
            return {}
        out = {f"Checksum{self.checksum_algorithm}": self.checksum_value}
        if self.checksum_type:
            out["ChecksumType"] = self.checksum_type
        return out


@dataclass
class NewVersion:
    """Everything an object row holds, for commit_object."""

    key: str
    owner_id: int
    segments: list[dict[str, Any]]
    size: int
    etag: str
    content_headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    acl: str = "private"
    storage_class: str = "STANDARD"
    parts_count: int | None = None
    upload_id: str | None = None
    checksum_algorithm: str | None = None
    checksum_value: str | None = None
    checksum_type: str | None = None


def get_bucket(s: Session, name: str) -> Bucket:
    check_bucket_name(name)
    bucket = s.scalar(select(Bucket).where(Bucket.name == name))
    if bucket is None:
        raise no_such_bucket(name)
    return bucket


def find_object(s: Session, bucket: Bucket, key: str) -> Object | None:
    return s.scalar(select(Object).where(Object.bucket_id == bucket.id, Object.key == key))


def require_object(s: Session, bucket: Bucket, key: str) -> Object:
    row = find_object(s, bucket, key)
    if row is None:
        raise no_such_key(key)
    return row


def check_write_conditions(current: Object | None, key: str, if_match: str | None, if_none_match: str | None) -> None:
    """Conditional writes (PutObject / CompleteMultipartUpload / CopyObject with If-Match, If-None-Match: *)."""
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise ServiceError("NotImplemented", "If-None-Match on a write only takes '*'.", 501,
                               Header="If-None-Match")
        if current is not None:
            raise precondition_failed("If-None-Match")
    if if_match is not None:
        if current is None:
            raise no_such_key(key)
        if not etag_matches(if_match, current.etag):
            raise precondition_failed("If-Match")


def commit_object(app: "App", store: "BlobStore", bucket_name: str, version: NewVersion,
                  may_write: Callable[[Bucket], None], if_match: str | None = None,
                  if_none_match: str | None = None, before: Callable[[Session, Bucket, Object | None], None] | None = None,
                  owns_blobs: bool = True) -> ObjectInfo:
    """Make `version` the object's current version.

    `before(session, bucket, current row)` runs in the transaction just before the row changes.
    On any error the new blobs are removed here (unless `owns_blobs` is False: a multipart
    upload's parts stay with the upload), so the caller never cleans up blobs it handed over.
    """
    new_blobs = [seg["b"] for seg in version.segments]
    try:
        with app.db.session(write=True) as s:
            bucket = get_bucket(s, bucket_name)
            may_write(bucket)
            row = find_object(s, bucket, version.key)
            check_write_conditions(row, version.key, if_match, if_none_match)
            if before is not None:
                before(s, bucket, row)
            old_blobs = [seg["b"] for seg in row.segments] if row is not None else []
            if row is None:
                row = Object(bucket_id=bucket.id, key=version.key)
                s.add(row)
            row.owner_id = version.owner_id
            row.size = version.size
            row.etag = version.etag
            row.last_modified = utcnow()
            row.headers_json = json.dumps(version.content_headers)
            row.metadata_json = json.dumps(version.metadata)
            row.acl = version.acl
            row.storage_class = version.storage_class
            row.segments_json = json.dumps(version.segments)
            row.parts_count = version.parts_count
            row.upload_id = version.upload_id
            row.checksum_algorithm = version.checksum_algorithm
            row.checksum_value = version.checksum_value
            row.checksum_type = version.checksum_type
            s.flush()
            image_object_changed(s, bucket_name, version.key, version.size)
            info = ObjectInfo.of(bucket_name, row)
    except BaseException:
        if owns_blobs:
            store.delete(new_blobs)
        raise
    store.delete(b for b in old_blobs if b not in new_blobs)
    return info


def delete_object_row(s: Session, bucket: Bucket, key: str) -> list[str]:
    """Remove the object row (if any) in the caller's transaction; returns the blobs to remove after commit."""
    row = find_object(s, bucket, key)
    if row is None:
        return []
    blobs = [seg["b"] for seg in row.segments]
    s.delete(row)
    image_object_changed(s, bucket.name, key, None)
    return blobs


def image_object_changed(s: Session, bucket: str, key: str, size: int | None) -> None:
    """Keep registered images in step with their objects (storage/README.md: deleted -> unavailable)."""
    from storage.images import object_changed

    object_changed(s, bucket, key, size)


def user_names(s: Session, user_ids: set[int]) -> dict[int, tuple[str, str]]:
    """user id -> (account id, name), for Owner elements."""
    if not user_ids:
        return {}
    rows = s.execute(select(User.id, User.account_id, User.name).where(User.id.in_(user_ids)))
    return {uid: (acct, name) for uid, acct, name in rows}
