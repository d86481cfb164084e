"""Looking up buckets and objects, and committing a new object version: the shared core of the
operation modules and of the image helpers.

`commit_object` is the one place an object row is written: in a single write transaction it
re-checks the bucket and the caller's right to write, evaluates If-Match / If-None-Match
against the current version, swaps the row to the new blobs, charges the owner's storage total
(refusing past the quota, storage/usage.py) and tells the image registry; the blobs of the
version it replaced are removed only after the commit, so a reader never finds a row whose blobs
are gone (and a reader that already opened them keeps reading them).

The lookups every request makes use prebuilt Core statements on a plain connection rather than
ORM queries in a Session: the same SQL for a third of the CPU time, which is what small-object
throughput is made of. For the same reason GET/HEAD find bucket and object in one query, and
writers queue before SQLite's lock (write_transaction).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ec2gw.db.models import User, utcnow
from ec2gw.errors import ServiceError
from storage import image_state, usage
from storage.access import canonical_id, check_bucket_name
from storage.conditions import etag_matches, precondition_failed
from storage.context import no_such_bucket, no_such_key
from storage.models import Bucket, Object

if TYPE_CHECKING:
    from ec2gw.db.session import Database
    from storage.blobstore import BlobStore
    from storage.host import Host, StorageQuota

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
    #: explicit grants beyond the canned ACL (JSON, storage/access.py), or None
    grants: str | None = None
    #: tag set (JSON, storage/tagging.py), or None
    tags: str | None = None

    @property
    def content_type(self) -> str:
        return self.content_headers.get("ContentType") or DEFAULT_CONTENT_TYPE

    @property
    def quoted_etag(self) -> str:
        return f'"{self.etag}"'

    @classmethod
    def of(cls, bucket: str, row: Any) -> ObjectInfo:
        """From an object row (ORM instance or Core row of _OBJECT_COLUMNS)."""
        return cls(bucket, row.key, row.size, row.etag, row.last_modified, row.owner_id, row.acl,
                   json.loads(row.headers_json or "{}"), json.loads(row.metadata_json or "{}"),
                   json.loads(row.segments_json), row.parts_count, row.storage_class, row.checksum_algorithm,
                   row.checksum_value, row.checksum_type, row.upload_id, row.grants, row.tags)

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
    grants: str | None = None
    tags: str | None = None


@dataclass(frozen=True)
class BucketRef:
    """What requests need to know about a bucket (a detached row, no ORM instance)."""

    id: int
    name: str
    owner_id: int
    acl: str
    region: str
    grants: str | None = None


_BUCKET_BY_NAME = select(Bucket.id, Bucket.name, Bucket.owner_id, Bucket.acl, Bucket.region, Bucket.grants).where(
    Bucket.name == bindparam("name"))


@functools.lru_cache(maxsize=8)
def _bucket_and_quota(quota: StorageQuota) -> Any:
    """The bucket and the new version's owner's storage quota columns, in one round trip (built
    once per quota rule)."""
    return select(Bucket.id, Bucket.name, Bucket.owner_id, Bucket.acl, Bucket.region, Bucket.grants,
                  *quota.limit_columns(bindparam("owner"))).where(Bucket.name == bindparam("name"))


_OBJECT_COLUMNS = (Object.id, Object.key, Object.size, Object.etag, Object.last_modified, Object.owner_id, Object.acl,
                   Object.headers_json, Object.metadata_json, Object.segments_json, Object.parts_count,
                   Object.storage_class, Object.checksum_algorithm, Object.checksum_value, Object.checksum_type,
                   Object.upload_id, Object.grants, Object.tags)
_OBJECT_BY_KEY = select(*_OBJECT_COLUMNS).where(Object.bucket_id == bindparam("bid"), Object.key == bindparam("key"))
#: the current version of a key, locked until commit where the database locks rows (PostgreSQL), so
#: a concurrent overwrite or delete waits instead of counting the same bytes twice
_CURRENT = select(Object.id, Object.etag, Object.segments_json, Object.size, Object.owner_id).where(
    Object.bucket_id == bindparam("bid"), Object.key == bindparam("key")).with_for_update()
_INSERT_OBJECT = insert(Object)
_UPDATE_OBJECT = update(Object).where(Object.id == bindparam("object_id"))
_DELETE_OBJECT = delete(Object).where(Object.id == bindparam("object_id"))


def _conn(s: Session | Connection) -> Connection:
    """Core statements run on the session's connection: through Session.execute the ORM layer
    costs more CPU than the query itself."""
    return s.connection() if isinstance(s, Session) else s


def get_bucket(s: Session | Connection, name: str) -> BucketRef:
    """The bucket, or NoSuchBucket (InvalidBucketName for names no bucket can have)."""
    check_bucket_name(name)
    row = _conn(s).execute(_BUCKET_BY_NAME, {"name": name}).first()
    if row is None:
        raise no_such_bucket(name)
    return BucketRef(row.id, row.name, row.owner_id, row.acl, row.region, row.grants)


def bucket_row(s: Session, name: str) -> Bucket:
    """The bucket as an ORM instance, for the operations that change it."""
    check_bucket_name(name)
    bucket = s.scalar(select(Bucket).where(Bucket.name == name))
    if bucket is None:
        raise no_such_bucket(name)
    return bucket


_BUCKET_AND_OBJECT = (
    select(Bucket.id.label("bucket_id"), Bucket.name.label("bucket_name"), Bucket.owner_id.label("bucket_owner_id"),
           Bucket.acl.label("bucket_acl"), Bucket.region.label("bucket_region"),
           Bucket.grants.label("bucket_grants"), *_OBJECT_COLUMNS)
    .select_from(Bucket)
    .outerjoin(Object, (Object.bucket_id == Bucket.id) & (Object.key == bindparam("key")))
    .where(Bucket.name == bindparam("name"))
)


def lookup_object(db: Database, bucket_name: str, key: str) -> tuple[BucketRef, ObjectInfo | None]:
    """The bucket (NoSuchBucket if none) and the object at `key` in it, in one query: what every
    GET and HEAD asks first."""
    check_bucket_name(bucket_name)
    with db.engine.connect() as conn:
        row = conn.execute(_BUCKET_AND_OBJECT, {"name": bucket_name, "key": key}).first()
    if row is None:
        raise no_such_bucket(bucket_name)
    bucket = BucketRef(row.bucket_id, row.bucket_name, row.bucket_owner_id, row.bucket_acl, row.bucket_region,
                       row.bucket_grants)
    if row.key is None:  # no object joined
        return bucket, None
    return bucket, ObjectInfo.of(bucket.name, row)


def find_object(s: Session | Connection, bucket: BucketRef, key: str) -> ObjectInfo | None:
    row = _conn(s).execute(_OBJECT_BY_KEY, {"bid": bucket.id, "key": key}).first()
    return None if row is None else ObjectInfo.of(bucket.name, row)


def require_object(s: Session | Connection, bucket: BucketRef, key: str) -> ObjectInfo:
    info = find_object(s, bucket, key)
    if info is None:
        raise no_such_key(key)
    return info


def set_object_acl(s: Session, bucket: BucketRef, key: str, acl: str, grants: str | None,
                   etag: str | None = None) -> None:
    """Set the object's ACL (only while it is still the version with `etag`, when given)."""
    where = [Object.bucket_id == bucket.id, Object.key == key]
    if etag is not None:
        where.append(Object.etag == etag)
    done = s.execute(update(Object).where(*where).values(acl=acl, grants=grants))
    if not done.rowcount:  # type: ignore[attr-defined]
        raise no_such_key(key)


def canonical_users(s: Session | Connection) -> dict[str, tuple[int, str, str]]:
    """canonical user id -> (user id, account id, name) of every enabled user (grants name users
    by canonical ID; there are few enough users to compute them all)."""
    rows = _conn(s).execute(select(User.id, User.account_id, User.name).where(User.enabled.is_(True)))
    return {canonical_id(acct): (uid, acct, name) for uid, acct, name in rows}


def known_user_check(db: Database) -> Callable[[str], bool]:
    """A `known(canonical id)` for access.resolve_grants that reads the users once, when first asked."""
    cache: list[dict[str, tuple[int, str, str]]] = []

    def known(canonical: str) -> bool:
        if not cache:
            with db.engine.connect() as conn:
                cache.append(canonical_users(conn))
        return canonical in cache[0]

    return known


#: Cumulus's write transactions in this process take turns here before asking SQLite for its lock
_SQLITE_WRITERS = threading.RLock()
#: (process, database file) -> an open lock file next to it, flock()ed by the process's current
#: writer (opened per process: a descriptor inherited over fork() would share its lock)
_WRITER_LOCK_FILES: dict[tuple[int, str], int] = {}


def _writer_lock_file(db: Database) -> int | None:
    """The fd of `<database>.writers.lock` (created on first use), None for in-memory databases.
    The lock only orders Cumulus's writers; SQLite's own lock is what keeps them apart."""
    path = db.engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    key = (os.getpid(), path)
    fd = _WRITER_LOCK_FILES.get(key)
    if fd is None:
        try:
            fd = os.open(f"{path}.writers.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None  # (a read-only directory, say) SQLite's lock alone then
        _WRITER_LOCK_FILES[key] = fd
    return fd


@contextmanager
def write_transaction(db: Database) -> Iterator[Connection]:
    """A write transaction on a Core connection: what Database.session(write=True) does (on
    SQLite, BEGIN IMMEDIATE takes the write lock first), without the ORM Session around it.

    On SQLite, Cumulus's writers queue for the database first: the threads of a process on a lock
    of their own, then one thread per process on flock() of a file next to the database. SQLite
    lets a writer that finds its lock taken sleep 1, 2, 5, 10... ms before trying again, far longer
    than a Cumulus transaction holds it, so eight threads storing small objects spent more time
    asleep than writing; a queue hands the lock over as soon as it is free. (Other writers, the
    EC2 side's, still meet Cumulus's at SQLite's lock, as before.)
    """
    with _writers_queue(db), db.engine.connect() as conn:
        if db.is_sqlite:
            conn.execution_options(ec2gw_immediate=True)
        with conn.begin():
            yield conn


@contextmanager
def write_session(db: Database) -> Iterator[Session]:
    """Database.session(write=True) after the same queue as write_transaction()."""
    with _writers_queue(db), db.session(write=True) as s:
        yield s


@contextmanager
def _writers_queue(db: Database) -> Iterator[None]:
    if not db.is_sqlite:
        yield
        return
    with _SQLITE_WRITERS:
        fd = _writer_lock_file(db)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)


def check_write_conditions(current_etag: str | None, key: str, if_match: str | None,
                           if_none_match: str | None) -> None:
    """Conditional writes (PutObject / CompleteMultipartUpload / CopyObject with If-Match, If-None-Match: *)."""
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise ServiceError("NotImplemented", "If-None-Match on a write only takes '*'.", 501,
                               Header="If-None-Match")
        if current_etag is not None:
            raise precondition_failed("If-None-Match")
    if if_match is not None:
        if current_etag is None:
            raise no_such_key(key)
        if not etag_matches(if_match, current_etag):
            raise precondition_failed("If-Match")


def commit_object(host: Host, store: BlobStore, bucket_name: str, version: NewVersion,
                  may_write: Callable[[BucketRef], None], if_match: str | None = None,
                  if_none_match: str | None = None, before: Callable[[Connection], int | None] | None = None,
                  owns_blobs: bool = True) -> ObjectInfo:
    """Make `version` the object's current version.

    `before(connection)` runs in the transaction just before the row changes; it returns the bytes it
    released for the new version's owner (a completed upload's parts), if any. The owner's storage
    total changes by the new size less what was released and, when the key had a version, the old
    owner's by minus its size; if that adds bytes beyond the owner's quota the transaction is
    refused (QuotaExceeded). On any error the new blobs are removed here (unless `owns_blobs` is
    False: a multipart upload's parts stay with the upload), so the caller never cleans up blobs
    it handed over.
    """
    new_blobs = [seg["b"] for seg in version.segments]
    now = utcnow()
    values = {
        "owner_id": version.owner_id, "size": version.size, "etag": version.etag, "last_modified": now,
        "headers_json": json.dumps(version.content_headers), "metadata_json": json.dumps(version.metadata),
        "acl": version.acl, "grants": version.grants, "storage_class": version.storage_class, "segments_json": json.dumps(version.segments),
        "parts_count": version.parts_count, "upload_id": version.upload_id,
        "checksum_algorithm": version.checksum_algorithm, "checksum_value": version.checksum_value,
        "checksum_type": version.checksum_type, "tags": version.tags,
    }
    try:
        quota = host.storage_quota
        with write_transaction(host.db) as conn:
            check_bucket_name(bucket_name)
            row = conn.execute(_bucket_and_quota(quota), {"name": bucket_name, "owner": version.owner_id}).first()
            if row is None:
                raise no_such_bucket(bucket_name)
            bucket = BucketRef(row[0], row[1], row[2], row[3], row[4], row[5])
            may_write(bucket)
            current = conn.execute(_CURRENT, {"bid": bucket.id, "key": version.key}).first()
            check_write_conditions(current.etag if current else None, version.key, if_match, if_none_match)
            released = (before(conn) or 0) if before is not None else 0
            added = version.size - released
            if current is None:
                old_blobs = []
                conn.execute(_INSERT_OBJECT, {"bucket_id": bucket.id, "key": version.key, **values})
            else:
                old_blobs = [seg["b"] for seg in json.loads(current.segments_json)]
                conn.execute(_UPDATE_OBJECT, {"object_id": current.id, **values})
                if current.owner_id == version.owner_id:
                    added -= current.size
                else:
                    usage.add(conn, current.owner_id, -current.size)
            usage.charge(conn, quota, version.owner_id, added, quota.effective_limit(row[6], row[7]))
            image_state.object_changed(conn, bucket_name, version.key, version.size, version.owner_id)
    except BaseException:
        if owns_blobs:
            store.delete(new_blobs)
        raise
    store.delete(b for b in old_blobs if b not in new_blobs)
    return ObjectInfo(bucket_name, version.key, version.size, version.etag, now, version.owner_id, version.acl,
                      version.content_headers, version.metadata, version.segments, version.parts_count,
                      version.storage_class, version.checksum_algorithm, version.checksum_value,
                      version.checksum_type, version.upload_id, version.grants, version.tags)


def delete_object_row(s: Session | Connection, bucket: BucketRef, key: str) -> list[str]:
    """Remove the object row (if any) in the caller's transaction, and its bytes from its owner's
    total; returns the blobs to remove after commit."""
    conn = _conn(s)
    current = conn.execute(_CURRENT, {"bid": bucket.id, "key": key}).first()
    if current is None:
        return []
    conn.execute(_DELETE_OBJECT, {"object_id": current.id})
    usage.add(conn, current.owner_id, -current.size)
    image_state.object_changed(conn, bucket.name, key, None)
    return [seg["b"] for seg in json.loads(current.segments_json)]


def user_names(s: Session, user_ids: set[int]) -> dict[int, tuple[str, str]]:
    """user id -> (account id, name), for Owner elements."""
    if not user_ids:
        return {}
    rows = s.execute(select(User.id, User.account_id, User.name).where(User.id.in_(user_ids)))
    return {uid: (acct, name) for uid, acct, name in rows}


def bucket_owner_account(db: Any, name: str) -> str | None:
    """The account id (12 digits) of the bucket's owner; None if there is no such bucket."""
    with db.session() as s:
        return s.scalar(select(User.account_id).join(Bucket, Bucket.owner_id == User.id).where(Bucket.name == name))
