"""The compute worker's half of CreateImage: copy a stopped instance's disk into Cumulus.

How the disk leaves a node that may be remote: libvirt's storage API copies the instance's
overlay into a new qcow2 volume on the node itself (virStorageVolCreateXMLFrom runs qemu-img
convert there, which merges the backing image in, so the copy is flattened and self-contained and
the base image never crosses the network), then that volume streams back through libvirt's volume
download (bounded chunks) into a temporary file in the data directory, which is stored into
Cumulus as the image's object; the copy on the node and the temporary file are deleted.
Why not blockCopy or qemu-img on the node: blockCopy needs a running domain and a target path the
service cannot then read remotely; qemu-img needs a shell on the node. The copy is compact
(qcow2 keeps only allocated clusters), so the download moves what the guest actually uses.

On libvirt's test driver there is no disk: the new image gets a copy of the source image's object.
The instance's id is kept in the worker's in-flight set while its disk is copied, so a
StartInstances waits until the copy is done.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from backends.base import NodeUnavailable
from ec2gw.compute import node_layout
from ec2gw.compute.cumulus import detect_format
from ec2gw.compute.image_models import ImageTask
from ec2gw.compute.placement import NodeRef, node_ref
from ec2gw.db.models import Image, Instance

if TYPE_CHECKING:
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute")


@dataclass(frozen=True)
class SaveJob:
    image_id: str
    instance_id: str
    owner_id: int
    location: str
    source_location: str
    node: NodeRef
    restart: bool
    #: the source image's owner, and whether the image was still available when the copy began
    source_owner_id: int | None = None
    source_available: bool = False


def run_pending(worker: ComputeWorker) -> None:
    """Start a copy for every CreateImage whose instance is stopped; fail those whose instance went."""
    with worker.db.session() as s:
        rows = list(s.execute(
            select(ImageTask, Image, Instance)
            .join(Image, Image.id == ImageTask.image_id, isouter=True)
            .join(Instance, Instance.id == ImageTask.instance_id, isouter=True)
            .order_by(ImageTask.created_at).limit(100)))
        jobs: list[SaveJob] = []
        for task, image, inst in rows:
            if image is None:  # deregistered while pending
                s.execute(delete(ImageTask).where(ImageTask.image_id == task.image_id))
                continue
            if inst is None or inst.state in ("terminated", "shutting-down"):
                _fail(worker, task.image_id, f"the instance {task.instance_id} was terminated before its disk was copied")
                continue
            node = node_ref(s, worker.settings, inst.node_name)
            live_ok = task.no_reboot and node.domain_type == "test"  # a test domain has no disk in use
            ready = inst.task is None and (inst.state == "stopped" or (live_ok and inst.state == "running"))
            if not ready:
                if inst.state in ("pending", "running") and not live_ok:  # StartInstances came first
                    _fail(worker, task.image_id, f"the instance {inst.id} was started again before its disk "
                                                 "was copied; stop it and call CreateImage again")
                continue
            source = s.get(Image, inst.image_id)
            jobs.append(SaveJob(image.id, inst.id, image.owner_id, image.location, source.location if source else "",
                                node, task.restart, source.owner_id if source else None,
                                source is not None and source.state == "available"))
    for job in jobs:
        worker.submit_holding((job.instance_id, job.image_id), _run, worker, job)


def _run(worker: ComputeWorker, job: SaveJob) -> None:
    try:
        size, fmt = save(worker, job)
    except NodeUnavailable as exc:
        log.warning("image %s: node %s does not answer (%s); will retry", job.image_id, job.node.name, exc)
        return
    except Exception as exc:  # the image fails with the reason; the instance gets its state back
        log.exception("image %s: copying the disk of %s failed", job.image_id, job.instance_id)
        _fail(worker, job.image_id, f"copying the disk of {job.instance_id} failed: {exc}")
        _restart(worker, job)
        return
    with worker.db.session(write=True) as s:
        s.execute(update(Image).where(Image.id == job.image_id, Image.state == "pending")
                  .values(state="available", state_reason="", size_bytes=size, disk_format=fmt))
        s.execute(delete(ImageTask).where(ImageTask.image_id == job.image_id))
    _restart(worker, job)
    log.info("image %s saved from %s (%d bytes, %s)", job.image_id, job.instance_id, size, fmt)


def _restart(worker: ComputeWorker, job: SaveJob) -> None:
    if not job.restart:
        return
    with worker.db.session(write=True) as s:
        s.execute(update(Instance).where(Instance.id == job.instance_id, Instance.state == "stopped",
                                         Instance.task.is_(None))
                  .values(state="pending", task="start", state_reason_code=None, state_reason_message=None))


def _fail(worker: ComputeWorker, image_id: str, reason: str) -> None:
    with worker.db.session(write=True) as s:
        s.execute(update(Image).where(Image.id == image_id, Image.state == "pending")
                  .values(state="failed", state_reason=f"Server.ImageSaveFailed: {reason}"[:255]))
        s.execute(delete(ImageTask).where(ImageTask.image_id == image_id))


def save(worker: ComputeWorker, job: SaveJob) -> tuple[int, str]:
    """Copy the instance's disk (flattened) into the image's Cumulus object; (size, format)."""
    store = worker.cumulus
    if store is None:
        raise RuntimeError("no Cumulus was given to the compute worker; the image cannot be stored")
    bucket, _, key = job.location.partition("/")
    drv = worker.drivers.get(job.node)
    if drv.domain_type == "test":
        # no disk: the copy is the source image's object, which must still be what the source
        # image stands for and readable by its owner (as a launch checks)
        src_bucket, _, src_key = job.source_location.partition("/")
        if not job.source_available or job.source_owner_id is None \
                or not store.can_read(job.source_owner_id, src_bucket, src_key):
            raise PermissionError(f"the source image's object {job.source_location} is no longer available to the "
                                  "source image's owner")
        handle, size = store.open_object(src_bucket, src_key)
        try:
            head = handle.read(4)
            handle.seek(0)
            store.put_file(job.owner_id, bucket, key, handle, size)
        finally:
            handle.close()
        return size, detect_format(head)
    pool = node_layout.INSTANCES_POOL
    copy = f"{job.image_id}-save.qcow2"
    drv.volumes.delete_volume(pool, copy)  # left by an attempt the node interrupted
    drv.volumes.copy_volume(pool, copy, pool, node_layout.overlay_name(job.instance_id), "qcow2")
    tmp_dir = os.path.join(worker.settings.data_dir, "tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    try:
        with tempfile.NamedTemporaryFile(dir=tmp_dir, prefix=f"{job.image_id}-", suffix=".qcow2") as tmp:
            size = drv.volumes.download_volume(pool, copy, tmp)
            tmp.flush()
            tmp.seek(0)
            store.put_file(job.owner_id, bucket, key, tmp, size)
    finally:
        drv.volumes.delete_volume(pool, copy)
    return size, "qcow2"
