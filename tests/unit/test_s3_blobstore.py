"""The blob store: atomic commit, cleanup on every failure, immutable blobs, segment reads."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ec2gw.errors import ServiceError
from storage.blobstore import CHUNK, BlobStore, SegmentReader


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "cumulus")


def files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


class Exploding(io.RawIOBase):
    """A body that fails after `after` bytes, as a cut-off or rejected upload does."""

    def __init__(self, after: int) -> None:
        self.left = after

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise ServiceError("IncompleteBody", "cut off")
        n = min(n if n > 0 else CHUNK, self.left)
        self.left -= n
        return b"x" * n


@pytest.mark.parametrize("size", [0, 10, CHUNK + 7, 9 * CHUNK + 3])
def test_commit_writes_hashes_and_renames(store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    with store.writer({"sha": hashlib.sha256()}) as w:
        assert w.copy_from(io.BytesIO(data)) == size
        assert files(store.blobs) == []  # nothing visible before commit
        blob_id = w.commit()
    assert w.etag == hashlib.md5(data).hexdigest()
    assert w.checksums["sha"].digest() == hashlib.sha256(data).digest()
    assert store.path(blob_id).read_bytes() == data
    assert files(store.tmp) == []


@pytest.mark.parametrize("size", [100, 8 * CHUNK])
def test_failure_mid_stream_leaves_nothing(store: BlobStore, size: int) -> None:
    with pytest.raises(ServiceError), store.writer() as w:
        w.copy_from(Exploding(size - 1))
        w.commit()
    assert files(store.root) == []


def test_failed_check_after_reading_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(ValueError), store.writer() as w:
        w.copy_from(io.BytesIO(b"data"))
        raise ValueError("digest mismatch")
    assert files(store.root) == []


def test_write_error_leaves_nothing(store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    w = store.writer()
    calls = {"n": 0}
    real = w._write_raw

    def failing(data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real(data)

    monkeypatch.setattr(w, "_write_raw", failing)
    with pytest.raises(OSError), w:
        w.copy_from(io.BytesIO(os.urandom(10 * CHUNK)))
    assert files(store.root) == []


def test_blob_ids_are_opaque(store: BlobStore) -> None:
    for bad in ("../x", "/etc/passwd", "a" * 31, "A" * 32, ""):
        with pytest.raises(ValueError):
            store.path(bad)


def test_clone_is_independent(store: BlobStore) -> None:
    with store.writer() as w:
        w.copy_from(io.BytesIO(b"same bytes"))
        a = w.commit()
    b = store.clone(a)
    assert a != b and store.path(b).read_bytes() == b"same bytes"
    store.delete([a])
    assert store.path(b).read_bytes() == b"same bytes"
    store.delete([a, b, "0" * 32])  # missing blobs are fine


def test_open_reader_survives_delete(store: BlobStore) -> None:
    with store.writer() as w:
        w.copy_from(io.BytesIO(b"0123456789"))
        a = w.commit()
    reader = SegmentReader(store, [(a, 10)])
    store.delete([a])
    assert reader.read() == b"0123456789"
    with pytest.raises(FileNotFoundError):
        SegmentReader(store, [(a, 10)])


def test_segment_reader_ranges(store: BlobStore) -> None:
    parts = [os.urandom(n) for n in (5, 0, 7, 3)]
    segs = []
    for p in parts:
        with store.writer() as w:
            w.copy_from(io.BytesIO(p))
            segs.append((w.commit(), len(p)))
    whole = b"".join(parts)
    for start in range(len(whole)):
        for end in range(start, len(whole) + 1):
            r = SegmentReader(store, segs, start, end)
            assert b"".join(r.chunks(4)) == whole[start:end], (start, end)
            r.close()
    r = SegmentReader(store, segs, 6, 9)
    r.seek(1)
    assert r.read(100) + r.read(100) == whole[7:9]
    single = SegmentReader(store, segs, 5, 9)
    f = single.take_single_file()
    assert f is not None and f.read(4) == whole[5:9]
    f.close()
    assert SegmentReader(store, segs, 3, 9).take_single_file() is None


def test_sweep_tmp(store: BlobStore) -> None:
    stale = store.tmp / "old.part"
    stale.write_bytes(b"x")
    os.utime(stale, (1, 1))
    fresh = store.tmp / "new.part"
    fresh.write_bytes(b"y")
    assert store.sweep_tmp() == 1
    assert files(store.tmp) == [fresh]


def _sweep_world(tmp_path: Path) -> tuple[Any, BlobStore, int]:
    from ec2gw import accounts
    from ec2gw.app import App
    from ec2gw.config import Settings
    from storage import images

    app = App(Settings(data_dir=tmp_path))
    app.db.create_schema()
    with app.db.session(write=True) as s:
        accounts.create_user(s, "root", is_admin=True)
        uid = accounts.get_user(s, "root").id
    return app, images.store_of(app), uid


def test_sweep_orphans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from storage import images, maintenance

    app, store, uid = _sweep_world(tmp_path)
    info = images.put_file(app, uid, "Repo", "VMS/root/x", io.BytesIO(b"kept"), 4)
    with store.writer() as w:
        w.copy_from(io.BytesIO(b"orphan"))
        orphan = w.commit()
    assert maintenance.sweep_orphans(app.db, store) == 0  # too young: it may be committing right now
    assert store.path(orphan).exists()
    # two hours later by the sweep's clock (utime cannot age a file: it sets the ctime to now)
    later = time.time() + 7200
    monkeypatch.setattr(maintenance, "time", SimpleNamespace(time=lambda: later))
    assert maintenance.sweep_orphans(app.db, store) == 1
    assert not store.path(orphan).exists()
    assert store.path(info.segments[0]["b"]).read_bytes() == b"kept"
    assert maintenance.sweep_orphans(app.db, store) == 0
    app.db.dispose()


def test_sweep_orphans_spares_a_fresh_clone_of_an_old_blob(tmp_path: Path) -> None:
    """CopyObject hard-links the source's blob (BlobStore.clone) before it commits the copy's row:
    the new name has the source's old mtime, but a new ctime, and the sweep goes by the ctime."""
    from storage import images, maintenance

    app, store, uid = _sweep_world(tmp_path)
    info = images.put_file(app, uid, "Repo", "VMS/root/x", io.BytesIO(b"source"), 6)
    source = info.segments[0]["b"]
    with store.writer() as w:
        w.copy_from(io.BytesIO(b"orphan"))
        orphan = w.commit()
    os.utime(store.path(source), (1, 1))  # written long ago (by its mtime)
    time.sleep(0.2)
    boundary = time.time()
    time.sleep(0.2)
    copy = store.clone(source)  # a CopyObject between its link and the commit of its row
    assert store.path(copy).stat().st_mtime == 1
    # everything before `boundary` is old enough
    assert maintenance.sweep_orphans(app.db, store, older_than=time.time() - boundary) == 1
    assert not store.path(orphan).exists()
    assert store.path(copy).read_bytes() == b"source"
    assert store.path(source).read_bytes() == b"source"
    app.db.dispose()
