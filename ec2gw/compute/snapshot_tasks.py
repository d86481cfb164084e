"""The compute worker's half of CreateSnapshot: a point-in-time copy of a volume, into Cumulus.

How the bytes leave the node, with libvirt API calls only (no file access to the node):
1. the copy, on the node, as a new qcow2 volume of the volume pool: a volume that a running guest
   uses is copied by libvirt's push-mode backup (Driver.backup_disk; QEMU writes the disk as it was
   when the job began while the guest runs on), any other volume by the storage API's clone
   (virStorageVolCreateXMLFrom, qemu-img convert on the node). Both give a standalone, compact qcow2.
2. that copy streams back through the volume download (bounded chunks) into a temporary file of
   the data directory, which is stored as the snapshot's Cumulus object
   ``<image_bucket>/<image_prefix>/<owner>/snapshots/<snap-id>`` (the owner's storage quota
   applies); the copy on the node and the temporary file are deleted.
A volume made from the snapshot, on any node, is uploaded from that object (compute/volume_store.py).

libvirt's test driver keeps no bytes in its volumes (no upload, download or backup): a snapshot
of a volume there records ``data_format`` "empty" with an empty object, and a volume made from it
is a new empty volume, which is exactly what the test volume held.

Each snapshot holds its id, its volume's id and (for an attached volume) its instance's id in the
worker's in-flight set while it runs, so no attach, detach, stop or terminate runs meanwhile.
Progress: the node's copy counts for the first 60 %, the download and store for the rest.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from backends.base import InvalidState, NodeUnavailable, PowerState
from ec2gw.compute import node_layout, volume_store
from ec2gw.compute.placement import NodeRef, node_ref
from ec2gw.compute.retry_later import RetryLater
from ec2gw.compute.snapshot_models import ImageBlockDevice, Snapshot
from ec2gw.db.models import Image, Instance, User
from ec2gw.db.volume_models import Volume

if TYPE_CHECKING:
    from backends.base import Driver
    from backends.volumes import Readable
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute")

#: seconds the node's copy of one volume may take
COPY_TIMEOUT = 3600.0
#: seconds before a snapshot whose node did not answer is tried again
RETRY_SECONDS = 5.0
_retry = RetryLater(RETRY_SECONDS)


@dataclass(frozen=True)
class SnapshotJob:
    snapshot_id: str
    owner_id: int
    location: str
    volume_id: str
    node: NodeRef
    #: the instance the volume is attached to (its domain may be running), else None
    instance_id: str | None
    #: where the volume's bytes are on the node: the volume pool, or an instance's overlay (a root volume)
    pool: str = volume_store.VOLUMES_POOL
    source: str = ""


def object_location(bucket: str, prefix: str, owner_name: str, snapshot_id: str) -> str:
    return f"{bucket}/{prefix}/{owner_name}/snapshots/{snapshot_id}"


def run_pending(worker: ComputeWorker) -> None:
    """Start a copy for every pending snapshot whose volume is idle; fail those whose volume went."""
    now = time.monotonic()
    jobs: list[SnapshotJob] = []
    with worker.db.session() as s:
        rows = list(s.execute(
            select(Snapshot, Volume, User.name)
            .join(Volume, Volume.id == Snapshot.volume_id, isouter=True)
            .join(User, User.id == Snapshot.owner_id)
            .where(Snapshot.state == "pending").order_by(Snapshot.start_time).limit(50)))
        for snap, vol, owner_name in rows:
            if _retry.waits(snap.id, now):
                continue
            if vol is None or vol.state in ("deleting", "deleted", "error"):
                fail(worker, snap.id, f"the volume {snap.volume_id} was deleted before it was copied")
                continue
            if vol.task is not None or vol.state == "creating":
                continue  # being created, attached, detached, moved or resized: copy it once that is done
            attached = vol.instance_id if vol.attach_state == "attached" else None
            if attached is not None:
                inst = s.get(Instance, attached)
                if inst is not None and inst.task is not None:
                    continue  # starting, stopping, ...: wait until the domain's state is settled
            location = snap.location or object_location(worker.settings.image_bucket, worker.settings.image_prefix,
                                                         owner_name, snap.id)
            node_name, pool, source = vol.node_name, volume_store.VOLUMES_POOL, volume_store.volume_name(vol.id)
            if vol.storage == "overlay" and vol.instance_id:  # a root volume: the instance's overlay, on its node
                inst = s.get(Instance, vol.instance_id)
                node_name = inst.node_name if inst is not None and inst.node_name else node_name
                pool, source = node_layout.INSTANCES_POOL, node_layout.overlay_name(vol.instance_id)
            jobs.append(SnapshotJob(snap.id, snap.owner_id, location, vol.id, node_ref(s, worker.settings, node_name),
                                    attached, pool, source))
    for job in jobs:
        held = [job.snapshot_id, job.volume_id] + ([job.instance_id] if job.instance_id else [])
        worker.submit_holding(held, _run, worker, job)


def _run(worker: ComputeWorker, job: SnapshotJob) -> None:
    try:
        size, etag, fmt = save(worker, job)
    except NodeUnavailable as exc:
        log.warning("snapshot %s: node %s does not answer (%s); will retry", job.snapshot_id, job.node.name, exc)
        _retry.later(job.snapshot_id)
        return
    except Exception as exc:
        log.exception("snapshot %s: copying volume %s failed", job.snapshot_id, job.volume_id)
        fail(worker, job.snapshot_id, f"copying the volume {job.volume_id} failed: {exc}")
        return
    _retry.clear(job.snapshot_id)
    with worker.db.session(write=True) as s:
        done = s.execute(update(Snapshot).where(Snapshot.id == job.snapshot_id, Snapshot.state == "pending")
                         .values(state="completed", progress=100, location=job.location, size_bytes=size, etag=etag,
                                 data_format=fmt, state_message=""))
        completed = bool(done.rowcount)  # type: ignore[attr-defined]
    settle_images(worker, job.snapshot_id)
    if not completed and worker.cumulus is not None:  # deleted meanwhile: its object goes too
        bucket, _, key = job.location.partition("/")
        worker.cumulus.delete_object(bucket, key)
    log.info("snapshot %s of %s stored (%d bytes, %s)", job.snapshot_id, job.volume_id, size, fmt)


def fail(worker: ComputeWorker, snapshot_id: str, reason: str) -> None:
    with worker.db.session(write=True) as s:
        s.execute(update(Snapshot).where(Snapshot.id == snapshot_id, Snapshot.state == "pending")
                  .values(state="error", state_message=reason[:255]))
    settle_images(worker, snapshot_id)


def settle_images(worker: ComputeWorker, snapshot_id: str) -> None:
    """The pending EBS-backed images (CreateImage of an instance booting from a volume) naming the
    snapshot: available once all their snapshots are completed, failed when one of them failed."""
    with worker.db.session(write=True) as s:
        images = list(s.scalars(select(Image).join(ImageBlockDevice, ImageBlockDevice.image_id == Image.id).where(
            ImageBlockDevice.snapshot_id == snapshot_id, Image.state == "pending", Image.location == "")))
        for image in images:
            states = {sid: state for sid, state in s.execute(
                select(Snapshot.id, Snapshot.state).join(ImageBlockDevice, ImageBlockDevice.snapshot_id == Snapshot.id)
                .where(ImageBlockDevice.image_id == image.id))}
            failed = [sid for sid, state in states.items() if state == "error"]
            if failed:
                image.state, image.state_reason = "failed", f"the snapshot {failed[0]} of its volume failed"
            elif all(state == "completed" for state in states.values()):
                image.state = "available"


def _progress(worker: ComputeWorker, snapshot_id: str, percent: int) -> None:
    with worker.db.session(write=True) as s:
        s.execute(update(Snapshot).where(Snapshot.id == snapshot_id, Snapshot.state == "pending",
                                         Snapshot.progress < percent).values(progress=percent))


def save(worker: ComputeWorker, job: SnapshotJob) -> tuple[int, str, str]:
    """Copy the volume into the snapshot's Cumulus object; (size, ETag, data format)."""
    store = worker.cumulus
    if store is None:
        raise RuntimeError("no Cumulus was given to the compute worker; the snapshot cannot be stored")
    bucket, _, key = job.location.partition("/")
    drv = worker.drivers.get(job.node)
    if drv.domain_type == "test":  # no bytes to copy (see the module doc)
        with tempfile.TemporaryFile() as empty:
            info = store.put_file(job.owner_id, bucket, key, empty, 0)
        return 0, info.etag, "empty"
    pool, source = job.pool, job.source or volume_store.volume_name(job.volume_id)
    if drv.volumes.volume_info(pool, source) is None:
        raise FileNotFoundError(f"node {job.node.name} has no volume {pool}/{source}")
    copy = f"{job.snapshot_id}.qcow2"
    drv.volumes.delete_volume(pool, copy)  # left by an attempt the node interrupted
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if total and time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            _progress(worker, job.snapshot_id, min(59, 60 * done // total))

    running = job.instance_id is not None and drv.info(job.instance_id).state in (PowerState.RUNNING, PowerState.PAUSED)
    try:
        if running:
            assert job.instance_id is not None
            try:
                drv.backup_disk(job.instance_id, pool, source, copy, COPY_TIMEOUT, progress)
            except InvalidState:  # it stopped meanwhile: the disk is free for the storage API
                running = False
        if not running:
            drv.volumes.copy_volume(pool, copy, pool, source, "qcow2", COPY_TIMEOUT)
        _progress(worker, job.snapshot_id, 60)
        tmp_dir = os.path.join(worker.settings.data_dir, "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=tmp_dir, prefix=f"{job.snapshot_id}-", suffix=".qcow2") as tmp:
            size = drv.volumes.download_volume(pool, copy, tmp)
            tmp.flush()
            tmp.seek(0)
            _progress(worker, job.snapshot_id, 80)
            info = store.put_file(job.owner_id, bucket, key, tmp, size)
    finally:
        try:
            drv.volumes.delete_volume(pool, copy)
        except NodeUnavailable:
            pass
    return size, info.etag, "qcow2"


class SnapshotUnavailable(Exception):
    """A volume cannot be made from the snapshot: its object is gone or no longer what was stored."""


@contextmanager
def opened(worker: ComputeWorker, snapshot_id: str, drv: Driver) -> Iterator[tuple[Readable, int] | None]:
    """The snapshot's bytes and their count, to fill a new volume on the node of ``drv``; None when
    the new volume is to be empty (a snapshot of a test-driver volume, or a volume made on a
    test-driver node, which keeps no bytes). The object must still be what the snapshot stored
    (size and ETag): one replaced through S3 is refused."""
    with worker.db.session() as s:
        snap = s.get(Snapshot, snapshot_id)
        if snap is None or snap.state != "completed":
            raise SnapshotUnavailable(f"the snapshot {snapshot_id} is gone or not completed")
        location, size, etag, fmt = snap.location, snap.size_bytes, snap.etag, snap.data_format
    if fmt == "empty" or drv.domain_type == "test":
        yield None
        return
    if worker.cumulus is None:
        raise SnapshotUnavailable("no Cumulus was given to the compute worker; snapshots cannot be read")
    bucket, _, key = location.partition("/")
    info = worker.cumulus.object_info(bucket, key)
    if info is None or info.size != size or info.etag != etag:
        raise SnapshotUnavailable(f"the object {location} of snapshot {snapshot_id} is missing or was replaced")
    handle, length = worker.cumulus.open_object(bucket, key)
    try:
        yield handle, length
    finally:
        handle.close()
