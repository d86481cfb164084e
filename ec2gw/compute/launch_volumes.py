"""The volumes RunInstances recorded for an instance (api/launch_volumes.py), made at its spawn.

Before the instance's domain is defined, every volume of it still ``creating`` (attachment
``attaching``, no task) is made on the instance's node through compute/volume_store.py: empty, or
filled from its snapshot's Cumulus object (snapshot_tasks.opened), grown to its size; then it is
marked in-use and attached, so the domain gets it from its first start (volume_tasks.attached_disks).
A root volume of ``storage`` overlay is the instance's overlay, which provision.py makes: it is only
marked attached here. A root volume of ``storage`` pool (an EBS-backed image) is the domain's boot
disk. Made volumes are kept across retried spawns and restarts (volume_store.create keeps them).

When an instance ends, ``keep_root`` copies an overlay root whose DeleteOnTermination is false
into the volume pool (storage API, flattened on the node, grown to the volume's size) before the
overlay is removed, so the volume stays, available, with the disk's content.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from backends.base import NotSupported
from ec2gw.compute import node_layout, snapshot_tasks, volume_store
from ec2gw.db.volume_models import Volume

if TYPE_CHECKING:
    from backends.base import Driver
    from backends.volumes import VolumeInfo
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute")


@dataclass(frozen=True)
class Root:
    """The instance's root volume: its id, size and where its bytes are."""

    volume_id: str
    size_gib: int
    storage: str


def root_of(worker: ComputeWorker, instance_id: str) -> Root | None:
    with worker.db.session() as s:
        row = s.execute(select(Volume.id, Volume.size_gib, Volume.storage).where(
            Volume.instance_id == instance_id, Volume.is_root.is_(True))).first()
    return None if row is None else Root(row[0], int(row[1]), row[2])


def record_size(worker: ComputeWorker, root: Root, info: VolumeInfo | None) -> None:
    """An overlay root is as large as its image at least: its volume shows the size the guest sees."""
    if info is None:
        return
    gib = -(-info.capacity // volume_store.GIB)
    if gib > root.size_gib:
        with worker.db.session(write=True) as s:
            s.execute(update(Volume).where(Volume.id == root.volume_id).values(size_gib=gib))


def make(worker: ComputeWorker, drv: Driver, node_name: str, instance_id: str) -> None:
    """Make the instance's launch volumes on its node and mark them attached (see the module doc)."""
    with worker.db.session() as s:
        rows = list(s.execute(select(Volume.id, Volume.size_gib, Volume.snapshot_id, Volume.storage).where(
            Volume.instance_id == instance_id, Volume.state == "creating", Volume.attach_state == "attaching",
            Volume.task.is_(None))))
    for volume_id, size_gib, snapshot_id, storage in rows:
        if storage == "pool":
            if snapshot_id is None:
                volume_store.create(drv, worker.settings, volume_id, size_gib)
            else:
                with snapshot_tasks.opened(worker, snapshot_id, drv) as fill:
                    volume_store.create(drv, worker.settings, volume_id, size_gib, fill)
        with worker.db.session(write=True) as s:
            s.execute(update(Volume).where(Volume.id == volume_id, Volume.state == "creating")
                      .values(state="in-use", attach_state="attached", node_name=node_name, status_message=""))
        log.info("%s: volume %s made for it (%d GiB%s)", instance_id, volume_id, size_gib,
                 f", from {snapshot_id}" if snapshot_id else "")


def keep_root(worker: ComputeWorker, drv: Driver, instance_id: str) -> None:
    """Before an ending instance's overlay goes: a root volume that stays (DeleteOnTermination
    false) becomes a volume of the volume pool holding the overlay's content, flattened."""
    with worker.db.session() as s:
        row = s.execute(select(Volume.id, Volume.size_gib).where(
            Volume.instance_id == instance_id, Volume.is_root.is_(True), Volume.storage == "overlay",
            Volume.delete_on_termination.is_(False))).first()
    if row is None:
        return
    volume_id, size_gib = row[0], int(row[1])
    volume_store.ensure_pool(drv, worker.settings)
    name = volume_store.volume_name(volume_id)
    overlay = node_layout.overlay_name(instance_id)
    if volume_store.info(drv, volume_id) is None:
        if drv.domain_type != "test" and drv.volumes.volume_info(node_layout.INSTANCES_POOL, overlay) is not None:
            try:
                copied = drv.volumes.copy_volume(volume_store.VOLUMES_POOL, name, node_layout.INSTANCES_POOL, overlay,
                                                 "qcow2")
                if copied.capacity < size_gib * volume_store.GIB:  # the image's size, below the volume's whole GiB
                    volume_store.grow(drv, volume_id, size_gib)
            except NotSupported:
                volume_store.create(drv, worker.settings, volume_id, size_gib)
        else:  # the test driver keeps no bytes; a domain never made has none either
            volume_store.create(drv, worker.settings, volume_id, size_gib)
    with worker.db.session(write=True) as s:
        s.execute(update(Volume).where(Volume.id == volume_id).values(storage="pool", is_root=False))
    log.info("%s: root volume %s kept (copied from the overlay into the volume pool)", instance_id, volume_id)
