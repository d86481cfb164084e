"""The sweep of orphaned Cumulus blobs (storage/maintenance.py): never a live object's blob, even
when a CompleteMultipartUpload commits in the middle of it on PostgreSQL, and run periodically by
the compute worker on its thread pool."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event, select

from backends.libvirt.testing import make_test_node_uri
from ec2gw import accounts
from ec2gw.app import App
from ec2gw.compute import worker as worker_mod
from ec2gw.compute.worker import ComputeWorker
from ec2gw.config import Settings
from storage import images, maintenance
from storage.blobstore import BlobStore
from storage.models import Part
from tests.pg import postgres_cluster, postgres_url  # noqa: F401  (fixtures)
from tests.unit.test_s3_usage import S3World

MiB = 1024 * 1024


def age_everything(monkeypatch: pytest.MonkeyPatch, seconds: float = 7200.0) -> None:
    """Move the sweep's clock forward: every blob written so far is past the grace period (utime
    cannot age a file, it sets the ctime to now)."""
    later = time.time() + seconds
    monkeypatch.setattr(maintenance, "time", SimpleNamespace(time=lambda: later))


def orphan_blob(store: BlobStore, data: bytes = b"orphan") -> str:
    """A blob no row names, as a crash between its rename and its row's commit leaves it."""
    with store.writer() as w:
        w.copy_from(io.BytesIO(data))
        return w.commit()


def test_complete_multipart_upload_between_the_sweeps_reads_keeps_its_parts_postgresql(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    world = S3World(tmp_path, database_url=postgres_url)
    try:
        a = world.s3("alice")
        a.create_bucket(Bucket="mpu")
        up = a.create_multipart_upload(Bucket="mpu", Key="obj")["UploadId"]
        e1 = a.upload_part(Bucket="mpu", Key="obj", UploadId=up, PartNumber=1, Body=b"1" * 5 * MiB)["ETag"]
        e2 = a.upload_part(Bucket="mpu", Key="obj", UploadId=up, PartNumber=2, Body=b"2" * 100)["ETag"]
        with world.app.db.session() as s:
            part_blobs = list(s.scalars(select(Part.blob_id)))
        assert len(part_blobs) == 2
        store = images.store_of(world.app)
        orphan = orphan_blob(store)
        age_everything(monkeypatch)  # the parts were uploaded long ago

        fired: list[str] = []

        def complete_between_reads(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            """Right after the sweep's first read of the rows (its snapshot taken), the upload completes."""
            if fired or not statement.lstrip().upper().startswith("SELECT"):
                return
            if "s3_parts" not in statement and "s3_objects" not in statement:
                return
            fired.append(statement)
            a.complete_multipart_upload(Bucket="mpu", Key="obj", UploadId=up, MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})

        event.listen(world.app.db.engine, "after_cursor_execute", complete_between_reads)
        try:
            removed = maintenance.sweep_orphans(world.app.db, store)
        finally:
            event.remove(world.app.db.engine, "after_cursor_execute", complete_between_reads)
        assert fired, "the upload was not completed during the sweep"
        with world.app.db.session() as s:
            assert not list(s.scalars(select(Part.blob_id)))  # completed: the blobs are the object's now
        assert [b for b in part_blobs if not store.path(b).exists()] == []
        assert removed == 1 and not store.path(orphan).exists()
        body = a.get_object(Bucket="mpu", Key="obj")["Body"].read()
        assert body == b"1" * 5 * MiB + b"2" * 100
    finally:
        world.app.db.dispose()


# -- the compute worker runs it -----------------------------------------------------------------
class SweepWorld:
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        node_dir = tmp_path / "node"
        node_dir.mkdir()
        uri = make_test_node_uri(node_dir)
        self.app = App(Settings(data_dir=tmp_path / "data", default_node_uri=uri, **settings))
        self.app.db.create_schema()
        with self.app.db.session(write=True) as s:
            accounts.create_user(s, "root", is_admin=True)
            uid = accounts.get_user(s, "root").id
        self.store = images.store_of(self.app)
        info = images.put_file(self.app, uid, "Repo", "VMS/root/x", io.BytesIO(b"kept"), 4)
        self.kept = info.segments[0]["b"]
        self.orphan = orphan_blob(self.store)
        self.worker = ComputeWorker(self.app.settings, self.app.db, cumulus=self.app.cumulus)

    def close(self) -> None:
        self.worker.pool.shutdown(wait=True)
        self.worker.drivers.close()
        self.app.db.dispose()


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SweepWorld]:
    world = SweepWorld(tmp_path)
    age_everything(monkeypatch)
    yield world
    world.close()


def test_worker_sweeps_a_minute_after_start_then_every_cumulus_sweep_hours(
        sw: SweepWorld, caplog: pytest.LogCaptureFixture) -> None:
    w = sw.worker
    assert 50 < w._next_sweep - time.monotonic() <= worker_mod.CUMULUS_SWEEP_DELAY
    w.run_once()
    assert w._sweep is None and sw.store.path(sw.orphan).exists()  # not at start
    w._next_sweep = time.monotonic()  # a minute went by
    caplog.set_level(logging.INFO, logger="ec2gw.compute")
    w.run_once()
    assert w._sweep is not None
    w._sweep.result(timeout=30)
    assert not sw.store.path(sw.orphan).exists()
    assert sw.store.path(sw.kept).read_bytes() == b"kept"
    assert "sweep of orphaned Cumulus blobs removed 1" in caplog.text
    assert 6 * 3600 - 60 < w._next_sweep - time.monotonic() <= 6 * 3600
    first = w._sweep
    w.run_once()
    assert w._sweep is first  # not due again for six hours


def test_worker_never_runs_two_sweeps_at_once(sw: SweepWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    release, started = threading.Event(), threading.Event()
    calls: list[BlobStore] = []

    def slow_sweep(_db: Any, store: BlobStore, **_: Any) -> int:
        calls.append(store)
        started.set()
        assert release.wait(30)
        return 0

    monkeypatch.setattr(maintenance, "sweep_orphans", slow_sweep)
    w = sw.worker
    w._next_sweep = time.monotonic()
    w.run_once()
    assert started.wait(30)
    w._next_sweep = time.monotonic()  # due again while the first still runs
    w.run_once()
    release.set()
    assert w._sweep is not None
    w._sweep.result(timeout=30)
    assert len(calls) == 1
    assert calls[0].root == sw.app.settings.data_dir / "cumulus"


def test_a_failed_sweep_is_logged_and_the_worker_goes_on(sw: SweepWorld, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: Any, **__: Any) -> int:
        raise OSError("disk on fire")

    monkeypatch.setattr(maintenance, "sweep_orphans", broken)
    w = sw.worker
    w._next_sweep = time.monotonic()
    w.run_once()
    assert w._sweep is not None
    assert w._sweep.result(timeout=30) is None
    assert any(r.exc_info and "sweep of orphaned Cumulus blobs failed" in r.getMessage()
               for r in caplog.records)
    w.run_once()  # the loop is unharmed


def test_cumulus_sweep_hours_0_turns_the_sweep_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = SweepWorld(tmp_path, cumulus_sweep_hours=0)
    try:
        age_everything(monkeypatch)
        w = world.worker
        w._next_sweep = time.monotonic() - 3600
        w.run_once()
        w.run_once()
        assert w._sweep is None
        w.pool.shutdown(wait=True)
        assert world.store.path(world.orphan).exists()
        assert world.store.path(world.kept).exists()
    finally:
        world.close()


class _SetAfter:
    """A stop event that reads as set from its n-th look on."""

    def __init__(self, n: int) -> None:
        self.looks, self.n = 0, n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.n


def test_a_stopped_sweep_ends_at_the_next_blob_and_the_next_sweep_finishes_it(sw: SweepWorld) -> None:
    orphans = [sw.orphan] + [orphan_blob(sw.store, b"o%d" % i) for i in range(9)]
    blobs = 11  # the ten orphans and the kept object's blob
    # stopped while listing: nothing removed
    assert maintenance.sweep_orphans(sw.app.db, sw.store, stop=_SetAfter(5)) == 0  # type: ignore[arg-type]
    assert all(sw.store.path(b).exists() for b in orphans)
    # stopped after three removals (eleven looks while listing, then one before each blob)
    stop = _SetAfter(blobs + 4)
    removed = maintenance.sweep_orphans(sw.app.db, sw.store, stop=stop)  # type: ignore[arg-type]
    assert 1 <= removed <= 3
    assert sum(not sw.store.path(b).exists() for b in orphans) == removed
    assert maintenance.sweep_orphans(sw.app.db, sw.store, stop=threading.Event()) == 10 - removed
    assert not any(sw.store.path(b).exists() for b in orphans)
    assert sw.store.path(sw.kept).read_bytes() == b"kept"


def test_stopping_the_worker_does_not_wait_for_a_long_sweep(sw: SweepWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose listing takes minutes: the worker's run() still returns within seconds of its stop."""
    started, over = threading.Event(), threading.Event()
    real = BlobStore.all_blob_ids

    def slow_listing(self: BlobStore) -> Iterator[tuple[str, float]]:
        started.set()
        for _ in range(3000):  # 0.05 s each: two and a half minutes unless the sweep stops
            if over.wait(0.05):
                return
            yield from real(self)

    monkeypatch.setattr(BlobStore, "all_blob_ids", slow_listing)
    w = sw.worker
    w._next_sweep = time.monotonic() - 1
    stop = threading.Event()
    runner = threading.Thread(target=w.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert started.wait(30), "the sweep did not start"
        t0 = time.monotonic()
        stop.set()
        runner.join(15)
        assert not runner.is_alive(), "run() is still waiting for the sweep"
        assert time.monotonic() - t0 < 15
        assert sw.store.path(sw.orphan).exists()  # stopped before it removed anything
    finally:
        over.set()
        runner.join(30)
