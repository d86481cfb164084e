"""The compute worker's half of EBS volumes: what the API recorded in ``volumes.task``, done on the nodes.

Each pass picks the volumes with a task (ec2gw/db/volume_models.py lists them) and runs each on
the worker's pool, one at a time per volume; an attach or detach also holds its instance in the
worker's in-flight set, so no start, stop or spawn of that instance runs meanwhile, and waits while
the instance has a task of its own. Every update is compare-and-set on the task, as for instances.

* create: the qcow2 volume is made in the node's volume pool (compute/volume_store.py); a node
  that refuses leaves the volume in state error with the reason.
* attach: a volume on another node of the zone is moved to the instance's node first (volume
  download and upload streams); then the disk is hot-plugged into the running domain and written
  into its definition (a stopped instance gets it at its next start). On libvirt's test driver,
  which cannot hot-plug, the definition alone changes (backends/libvirt/hotplug.py).
* detach: unplugged and confirmed gone from the live definition; a guest that does not release
  it keeps the volume detaching (retried), unless Force was given.
* resize: a running guest's disk is grown live (blockResize: the guest sees the new size), any
  other volume through the storage API; a node that cannot (the test driver) fails the
  modification with the reason and the size stays.
* delete: removed from the node, state deleted; rows of deleted volumes go after
  terminated_visible_seconds.

Instances that end (TerminateInstances) release their volumes in ``release_instance``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from backends.base import DetachTimeout, DiskSpec, DomainNotFound, NodeUnavailable, NotSupported
from ec2gw.compute import node_layout, snapshot_tasks, volume_store
from ec2gw.compute.placement import NodeRef, node_ref
from ec2gw.compute.retry_later import RetryLater
from ec2gw.db.models import Instance, Tag
from ec2gw.db.volume_models import Volume

if TYPE_CHECKING:
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute")

#: seconds a detach waits for the guest to release the disk before it is retried (or forced)
DETACH_WAIT = 20.0
#: seconds before a volume whose node did not answer, or whose guest kept the disk, is tried again
RETRY_SECONDS = 5.0
_retry = RetryLater(RETRY_SECONDS)


@dataclass(frozen=True)
class VolumeJob:
    volume_id: str
    task: str
    node: NodeRef
    size_gib: int
    target_size_gib: int | None = None
    instance_id: str | None = None
    instance_node: NodeRef | None = None
    instance_state: str | None = None
    target: str | None = None
    force: bool = False
    #: "pool" (the volume pool) or "overlay" (the root of an instance of an image in Cumulus)
    storage: str = "pool"


def run_pending(worker: ComputeWorker) -> None:
    """Start the work of every volume with a task (at most 200 per pass)."""
    jobs: list[VolumeJob] = []
    now = time.monotonic()
    with worker.db.session() as s:
        rows = list(s.execute(select(Volume, Instance).join(Instance, Instance.id == Volume.instance_id, isouter=True)
                              .where(Volume.task.is_not(None)).order_by(Volume.updated_at).limit(200)))
        nodes: dict[str, NodeRef] = {}

        def ref(name: str | None) -> NodeRef:
            key = name or ""
            if key not in nodes:
                nodes[key] = node_ref(s, worker.settings, name)
            return nodes[key]

        for vol, inst in rows:
            if _retry.waits(vol.id, now):
                continue
            if vol.task in ("attach", "detach"):
                if inst is None or inst.state in ("terminated", "shutting-down"):
                    _release(worker, vol.id, vol.task)
                    continue
                if inst.task is not None:
                    continue  # the instance is spawning, stopping, ...: attach when it is done
            if vol.task == "resize" and inst is not None and inst.task is not None:
                continue  # its disk is being made, started, stopped or moved: grow it once that is done
            jobs.append(VolumeJob(vol.id, str(vol.task), ref(vol.node_name), vol.size_gib, vol.target_size_gib,
                                  vol.instance_id, ref(inst.node_name) if inst is not None else None,
                                  inst.state if inst is not None else None, vol.target, vol.force_detach,
                                  str(vol.storage)))
    for job in jobs:
        held = [job.volume_id] + ([job.instance_id] if job.instance_id and job.task in ("attach", "detach") else [])
        worker.submit_holding(held, _run, worker, job)


def _run(worker: ComputeWorker, job: VolumeJob) -> None:
    try:
        globals()[f"_do_{job.task}"](worker, job)
        _retry.clear(job.volume_id)
    except NodeUnavailable as exc:
        log.warning("volume %s: node does not answer (%s); will retry", job.volume_id, exc)
        _retry.later(job.volume_id)
    except DetachTimeout as exc:
        log.warning("volume %s: %s; will retry", job.volume_id, exc)
        _retry.later(job.volume_id)
    except Exception as exc:
        log.exception("volume %s: %s failed", job.volume_id, job.task)
        _failed(worker, job, str(exc))


def _update(worker: ComputeWorker, volume_id: str, task: str, **values: Any) -> bool:
    with worker.db.session(write=True) as s:
        res = s.execute(update(Volume).where(Volume.id == volume_id, Volume.task == task).values(task=None, **values))
        return bool(res.rowcount)  # type: ignore[attr-defined]


def _failed(worker: ComputeWorker, job: VolumeJob, why: str) -> None:
    """A task the node refused: the volume shows it, and is left as it was otherwise."""
    message = f"{job.task} failed: {why}"[:255]
    if job.task == "attach":  # DescribeVolumeStatus shows it as an attach-failed event of that instance
        message = f"attach to {job.instance_id} failed: {why}; the volume is available again"[:255]
    if job.task == "create":
        _update(worker, job.volume_id, "create", state="error", status_message=message)
    elif job.task == "resize":
        _update(worker, job.volume_id, "resize", modification_state="failed", status_message=message,
                target_size_gib=None, modification_end=datetime.now(UTC))
    elif job.task == "attach":
        _update(worker, job.volume_id, "attach", state="available", instance_id=None, device=None, target=None,
                attach_state=None, attach_time=None, status_message=message)
    elif job.task == "detach":  # still attached: the caller may detach again (with Force)
        _update(worker, job.volume_id, "detach", attach_state="attached", status_message=message)
    else:
        _update(worker, job.volume_id, job.task, state="error", status_message=message)


def _do_create(worker: ComputeWorker, job: VolumeJob) -> None:
    drv = worker.drivers.get(job.node)
    with worker.db.session() as s:
        snapshot_id = s.scalar(select(Volume.snapshot_id).where(Volume.id == job.volume_id))
    if snapshot_id is None:
        volume_store.create(drv, worker.settings, job.volume_id, job.size_gib)
    else:
        with snapshot_tasks.opened(worker, snapshot_id, drv) as fill:
            volume_store.create(drv, worker.settings, job.volume_id, job.size_gib, fill)
    _update(worker, job.volume_id, "create", state="available", status_message="")


def _do_delete(worker: ComputeWorker, job: VolumeJob) -> None:
    volume_store.delete(worker.drivers.get(job.node), job.volume_id)
    _update(worker, job.volume_id, "delete", state="deleted", deleted_at=datetime.now(UTC))


def _do_attach(worker: ComputeWorker, job: VolumeJob) -> None:
    assert job.instance_id and job.instance_node and job.target
    dst = worker.drivers.get(job.instance_node)
    if job.instance_node.name != job.node.name:
        volume_store.move(worker.drivers.get(job.node), dst, worker.settings, job.volume_id)
        with worker.db.session(write=True) as s:
            s.execute(update(Volume).where(Volume.id == job.volume_id).values(node_name=job.instance_node.name))
    disk = volume_store.disk_spec(job.volume_id, job.target, dst.domain_type == "test")
    try:
        live = dst.attach_disk(job.instance_id, disk)
    except DomainNotFound:  # no domain defined yet: the spawn includes the disk (attached_disks)
        live = False
    log.info("volume %s attached to %s as %s (%s)", job.volume_id, job.instance_id, job.target,
             "hot-plugged" if live else "from the next start")
    _update(worker, job.volume_id, "attach", state="in-use", attach_state="attached", status_message="")


def _do_detach(worker: ComputeWorker, job: VolumeJob) -> None:
    assert job.instance_id and job.instance_node and job.target
    drv = worker.drivers.get(job.instance_node)
    try:
        drv.detach_disk(job.instance_id, job.target, DETACH_WAIT, force=job.force)
    except DomainNotFound:
        pass
    _update(worker, job.volume_id, "detach", state="available", instance_id=None, device=None, target=None,
            attach_state=None, attach_time=None, force_detach=False, status_message="")


def _do_resize(worker: ComputeWorker, job: VolumeJob) -> None:
    assert job.target_size_gib is not None
    size = job.target_size_gib
    done = False
    if job.instance_id and job.instance_node and job.target and job.instance_state == "running":
        drv = worker.drivers.get(job.instance_node)
        try:
            drv.resize_disk(job.instance_id, job.target, size * volume_store.GIB)
            done = True
        except (DomainNotFound, NotSupported) as exc:
            if isinstance(exc, NotSupported):
                raise NotSupported(f"the node cannot grow the disk of a running guest: {exc}") from exc
    if not done and job.storage == "overlay":
        # the root of an instance of an image in Cumulus: its overlay on the instance's node; one
        # not made yet (the instance has not started) is made at the volume's size
        drv = worker.drivers.get(job.instance_node or job.node)
        overlay = node_layout.overlay_name(str(job.instance_id))
        if drv.volumes.volume_info(node_layout.INSTANCES_POOL, overlay) is not None:
            drv.volumes.resize_volume(node_layout.INSTANCES_POOL, overlay, size * volume_store.GIB)
    elif not done:
        volume_store.grow(worker.drivers.get(job.node), job.volume_id, size)
    _update(worker, job.volume_id, "resize", size_gib=size, modification_state="completed", target_size_gib=None,
            modification_end=datetime.now(UTC), status_message="")


def _release(worker: ComputeWorker, volume_id: str, task: str) -> None:
    """The instance of a pending attach or detach is gone: the volume is free again."""
    _update(worker, volume_id, task, state="available", instance_id=None, device=None, target=None, attach_state=None,
            attach_time=None, force_detach=False)


def attached_disks(worker: ComputeWorker, instance_id: str, test_node: bool) -> list[DiskSpec]:
    """The disks of the volumes attached to an instance, for its domain when it is (re)defined."""
    with worker.db.session() as s:
        rows = list(s.execute(select(Volume.id, Volume.target).where(
            Volume.instance_id == instance_id, Volume.attach_state.in_(("attached", "detaching")),
            Volume.is_root.is_(False))
            .order_by(Volume.target)))
    return [volume_store.disk_spec(vid, target, test_node) for vid, target in rows if target]


def release_instance(worker: ComputeWorker, instance_id: str) -> None:
    """After the instance's domain is gone: volumes marked DeleteOnTermination are deleted, the
    others detached (available); volumes its launch asked for and it never made are deleted."""
    with worker.db.session(write=True) as s:
        s.execute(update(Volume).where(Volume.instance_id == instance_id, Volume.state == "creating")
                  .values(delete_on_termination=True))
        s.execute(update(Volume).where(Volume.instance_id == instance_id, Volume.delete_on_termination.is_(True))
                  .values(state="deleting", task="delete", instance_id=None, device=None, target=None,
                          attach_state=None, attach_time=None))
        s.execute(update(Volume).where(Volume.instance_id == instance_id)
                  .values(state="available", task=None, instance_id=None, device=None, target=None, attach_state=None,
                          attach_time=None, force_detach=False, is_root=False))


def reap_deleted(worker: ComputeWorker) -> None:
    """Forget deleted volumes once they are no longer listed."""
    cutoff = datetime.now(UTC) - timedelta(seconds=worker.settings.terminated_visible_seconds)
    with worker.db.session(write=True) as s:
        gone = list(s.scalars(select(Volume.id).where(Volume.state == "deleted", Volume.deleted_at < cutoff).limit(1000)))
        if gone:
            s.execute(delete(Tag).where(Tag.resource_id.in_(gone)))
            s.execute(delete(Volume).where(Volume.id.in_(gone)))

