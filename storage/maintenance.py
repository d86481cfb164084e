"""Housekeeping of the blob store: what a crash can leave behind, found and removed.

A process killed mid-upload leaves a temp file; one killed between renaming a blob into place and
committing its row (or between a commit and removing the replaced blobs) leaves a blob no row
names. Neither is ever visible to clients; these functions reclaim the space. `sweep_tmp` runs
when a gateway starts; `sweep_orphans` reads every row, so it runs in the compute worker (the one
holding the worker lease) every `cumulus_sweep_hours`, on one of its threads, not at each start.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from storage.blobstore import BlobStore
from storage.models import Object, Part

if TYPE_CHECKING:
    from ec2gw.db.session import Database

#: a blob younger than this may belong to an upload that is committing right now
ORPHAN_GRACE_SECONDS = 3600.0


def referenced_blobs(db: Database) -> set[str]:
    """Every blob id a row points at (multipart parts and object segments).

    The parts are read first, then the objects, in two statements: on PostgreSQL (READ COMMITTED)
    each statement sees the rows committed when it starts, so a CompleteMultipartUpload that
    commits in between (it moves its part blobs from Part rows into the new Object's segments in
    one transaction) is seen by one read or the other, never by neither. This holds because a blob
    only ever moves from a part to an object, never back (copies, UploadPartCopy included, make new
    blobs, which are young and so not candidates). The order alone closes the gap on any database
    and isolation level, so no REPEATABLE READ snapshot is needed; SQLite's read transaction sees
    one snapshot anyway.
    """
    ids: set[str] = set()
    with db.session() as s:
        ids.update(s.scalars(select(Part.blob_id)))
        for (segments_json,) in s.execute(select(Object.segments_json)).yield_per(1000):
            ids.update(seg["b"] for seg in json.loads(segments_json))
    return ids


def sweep_orphans(db: Database, store: BlobStore, older_than: float = ORPHAN_GRACE_SECONDS,
                  stop: threading.Event | None = None) -> int:
    """Remove blobs no row references and that are older than `older_than` seconds; returns how many.

    Age is the file's ctime (BlobStore.all_blob_ids): a blob CopyObject made by hard-linking an old
    one is new by ctime though its mtime is the source's, so it survives until its row commits.
    The candidates are listed before the rows are read: a blob that first gets a row after the read
    is a new file (written or linked since), so it is young and not among them.
    When `stop` is set, the sweep ends at the next blob (listed, or removed) and returns what it
    removed so far: a large store does not hold up the worker's shutdown, and the next sweep
    finds whatever is left.
    """
    cutoff = time.time() - older_than
    candidates = []
    for blob_id, ctime in store.all_blob_ids():
        if stop is not None and stop.is_set():
            return 0
        if ctime < cutoff:
            candidates.append(blob_id)
    if not candidates:
        return 0
    keep = referenced_blobs(db)
    removed = 0
    for blob_id in candidates:
        if stop is not None and stop.is_set():
            break
        if blob_id not in keep:
            store.delete([blob_id])
            removed += 1
    return removed
