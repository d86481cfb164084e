"""Housekeeping of the blob store: what a crash can leave behind, found and removed.

A process killed mid-upload leaves a temp file; one killed between renaming a blob into place and
committing its row (or between a commit and removing the replaced blobs) leaves a blob no row
names. Neither is ever visible to clients; these functions reclaim the space. `sweep_tmp` runs
when a gateway starts; `sweep_orphans` reads every row, so it is meant for an admin command or a
periodic job, not for each start.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from storage.blobstore import BlobStore
from storage.models import Object, Part

if TYPE_CHECKING:
    from ec2gw.app import App

#: a blob younger than this may belong to an upload that is committing right now
ORPHAN_GRACE_SECONDS = 3600.0


def referenced_blobs(app: App) -> set[str]:
    """Every blob id a row points at (object segments and multipart parts)."""
    ids: set[str] = set()
    with app.db.session() as s:
        for (segments_json,) in s.execute(select(Object.segments_json)).yield_per(1000):
            ids.update(seg["b"] for seg in json.loads(segments_json))
        ids.update(s.scalars(select(Part.blob_id)))
    return ids


def sweep_orphans(app: App, store: BlobStore, older_than: float = ORPHAN_GRACE_SECONDS) -> int:
    """Remove blobs no row references and that are older than `older_than` seconds; returns how many."""
    cutoff = time.time() - older_than
    candidates = [blob_id for blob_id, mtime in store.all_blob_ids() if mtime < cutoff]
    if not candidates:
        return 0
    keep = referenced_blobs(app)
    orphans = [b for b in candidates if b not in keep]
    store.delete(orphans)
    return len(orphans)
