"""The compute worker's side of a move (compute/migration.py records it): live or cold.

Live (a running guest), on QEMU/KVM nodes, through libvirt's APIs only:
1. the destination gets what a launch there would: its pools, the image's cached base volume
   (compute/image_cache.py; kernel and ramdisk too), the pool networks with the instance's DHCP
   host entries (so it keeps its addresses), and its seed (compute/provision.py), except that
   2. its overlay there is created empty beforehand, on the destination's copy of the image,
   with the source overlay's capacity (incremental disk copies need the target to exist), and so
   is each EBS volume attached to it (its data volumes, and the root volume of an instance of an
   EBS-backed image, which has no overlay), in the destination's volume pool, and
   3. what its console printed so far is copied there first as the console's earlier output,
   shown before the destination's log, so GetConsoleOutput keeps what the guest printed;
4. the source node migrates the guest peer to peer (backends Driver.migrate: memory, the
   overlay's own blocks and every block of its volumes copied while it runs; defined on the
   destination, undefined on the source), the streams going to the destination's address (the
   host of its URI);
5. the instance's row names the destination (the move is done), and so do its volumes' and its
   elastic addresses' records of where their bytes and NICs are; then the source's overlay, seed,
   log, volumes and DHCP entries go. Just before the move is recorded, the console's earlier output
   on the destination is completed with what the guest printed on the source while it moved.
If the migration fails, the guest runs on where it was, with its volumes there, and what step 1-3
made on the destination is removed. Instances' NICs get any node-level filters through provision's preparation, which the
destination runs as for a launch; so do future per-instance pieces added there.

Cold (a stopped instance): its overlay's bytes are streamed from the source into the
destination (download, then upload; the overlay names the same image volume path on both), its
volumes' and its log likewise; the destination is prepared as above and the domain defined there
with its volumes, not started; the source's domain is undefined and, once the move is recorded,
its pieces and volumes removed. On libvirt's test driver a disk is a name only: the domain is
defined on the destination and undefined on the source, its volumes made there empty.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import select, update

from backends.base import (
    DomainExists,
    DriverError,
    MigrationTarget,
    NodeUnavailable,
    NotSupported,
    PowerState,
)
from ec2gw.compute import image_cache, launch_context, launch_volumes, node_layout, provision, volume_store
from ec2gw.compute.jobs import Job
from ec2gw.compute.migration_models import ACTIVE, InstanceMigration
from ec2gw.compute.placement import NodeRef, ref_of
from ec2gw.db.models import Instance, Node
from ec2gw.db.volume_models import Volume
from ec2gw.network.models import Address

if TYPE_CHECKING:
    from backends.base import Driver
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute")
#: seconds a live migration may take before it is aborted
MIGRATE_TIMEOUT = 900.0
#: bytes of console output a move carries to the destination (GetConsoleOutput shows the last 64 KiB)
CONSOLE_CARRIED = 1 << 20
_RUNS = (PowerState.RUNNING, PowerState.PAUSED)


class MoveFailed(Exception):
    """The move did not happen; the message says why (the instance stayed where it was)."""


def migration_address(node: NodeRef) -> str | None:
    """Where the source sends the memory and disk streams: the host of the destination's URI
    (nodes sharing a hostname would otherwise stream to themselves); None for local URIs."""
    return urlsplit(node.uri).hostname or None


def run(worker: ComputeWorker, job: Job) -> None:
    """Carry out the instance's pending move; always ends with the move done or failed."""
    with worker.db.session(write=True) as s:
        mig = s.scalar(select(InstanceMigration).where(InstanceMigration.instance_id == job.instance_id,
                                                       InstanceMigration.state.in_(ACTIVE))
                       .order_by(InstanceMigration.id.desc()).limit(1))
        dest_row = s.get(Node, mig.destination) if mig is not None else None
        if mig is None or dest_row is None:
            if mig is not None:
                _end(mig, "failed", f"node {mig.destination} was removed meanwhile", None)
            s.execute(update(Instance).where(Instance.id == job.instance_id, Instance.task == "migrate")
                      .values(task=None))
            return
        mig.state, mig.started_at = "running", datetime.now(UTC)
        mig_id, kind, dest = mig.id, mig.kind, ref_of(dest_row)
    started = time.monotonic()
    volumes = attached_volumes(worker, job.instance_id)
    try:
        if kind == "live":
            live(worker, job, dest, volumes)
        else:
            cold(worker, job, dest, volumes)
    except Exception as exc:  # the move ends failed whatever happened; the log has the trace
        if isinstance(exc, (MoveFailed, DriverError, FileNotFoundError)):
            log.warning("%s: move from %s to %s failed: %s", job.instance_id, job.node.name, dest.name, exc)
        else:
            log.exception("%s: move from %s to %s failed", job.instance_id, job.node.name, dest.name)
        _record(worker, mig_id, job, "failed", str(exc) or type(exc).__name__, time.monotonic() - started)
        return
    _record(worker, mig_id, job, "done", None, time.monotonic() - started, volumes)
    log.info("%s: moved %s from node %s to %s in %.2f s", job.instance_id, kind, job.node.name, dest.name,
             time.monotonic() - started)
    # after the move is recorded: the guest runs on its new node, this is housekeeping (removing a
    # DHCP entry makes the node's dnsmasq reload, about 2 s of the move otherwise)
    cleaning = time.monotonic()
    _clean_source(worker, job, volumes)
    log.info("%s: its pieces on node %s removed in %.2f s", job.instance_id, job.node.name, time.monotonic() - cleaning)


def _end(mig: InstanceMigration, state: str, error: str | None, seconds: float | None) -> None:
    mig.state, mig.error, mig.seconds, mig.finished_at = state, error, seconds, datetime.now(UTC)


def attached_volumes(worker: ComputeWorker, instance_id: str) -> tuple[str, ...]:
    """The ids of the volume-pool volumes in the instance's domain, which move with it: its data
    volumes (also one being detached: the domain still has it) and an EBS root volume. One still
    being attached is not in the domain yet; it stays where it is and its attach follows the move."""
    with worker.db.session() as s:
        return tuple(s.scalars(select(Volume.id).where(
            Volume.instance_id == instance_id, Volume.storage == "pool",
            Volume.attach_state.in_(("attached", "detaching"))).order_by(Volume.id)))


def _record(worker: ComputeWorker, mig_id: int, job: Job, state: str, error: str | None, seconds: float,
            volumes: tuple[str, ...] = ()) -> None:
    """End the move; when done, the instance names its new node, and so do its root volume, the
    ``volumes`` that moved with it and its elastic addresses' NICs, in the same transaction."""
    with worker.db.session(write=True) as s:
        mig = s.get(InstanceMigration, mig_id)
        if mig is None:
            return
        _end(mig, state, error, seconds)
        values: dict[str, object] = {"node_name": mig.destination} if state == "done" else {}
        s.execute(update(Instance).where(Instance.id == job.instance_id).values(**values))
        if values:  # its root volume (its overlay) and its elastic addresses' NICs moved with it
            s.execute(update(Volume).where(Volume.instance_id == job.instance_id, Volume.is_root.is_(True),
                                           Volume.storage == "overlay").values(node_name=mig.destination))
            if volumes:
                s.execute(update(Volume).where(Volume.id.in_(volumes)).values(node_name=mig.destination))
            s.execute(update(Address).where(Address.plugged_into == job.instance_id)
                      .values(plugged_node=mig.destination))
        s.execute(update(Instance).where(Instance.id == job.instance_id, Instance.task == "migrate").values(task=None))


def _job_on(job: Job, node: NodeRef) -> Job:
    return replace(job, node=node, task="spawn")


def copy_volume(src: Driver, dst: Driver, pool: str, name: str, backing_path: str | None = None) -> bool:
    """Stream volume ``pool/name`` from ``src`` into ``dst`` (replacing one there); False when the
    source has none. Goes through a temporary file: memory stays bounded whatever the size."""
    info = src.volumes.volume_info(pool, name)
    if info is None:
        return False
    with tempfile.TemporaryFile(prefix="ec2gw-move-") as buf:
        size = src.volumes.download_volume(pool, name, buf)
        buf.seek(0)
        dst.volumes.delete_volume(pool, name)
        dst.volumes.upload_volume(pool, name, buf, size, backing_path=backing_path)
    return True


def _carry_console(src: Driver, dst: Driver, instance_id: str, *, fresh_log: bool) -> None:
    """What the console printed on the source (its earlier output, then its log; the last
    CONSOLE_CARRIED bytes) becomes the console's earlier output on the destination, which the node
    shows before its own log. ``fresh_log``: the destination's log is removed as well, to start
    empty (before the domain is there); after a live move it is left alone, the guest writes it."""
    pool = node_layout.CONSOLE_POOL
    log_name, earlier_name = node_layout.console_name(instance_id), node_layout.console_earlier_name(instance_id)
    try:
        with tempfile.TemporaryFile(prefix="ec2gw-console-") as buf:
            for name in (earlier_name, log_name):
                if src.volumes.volume_info(pool, name) is not None:
                    src.volumes.download_volume(pool, name, buf)
            size = buf.tell()
            keep = min(size, CONSOLE_CARRIED)
            buf.seek(size - keep)
            if fresh_log:
                dst.volumes.delete_volume(pool, log_name)
            dst.volumes.delete_volume(pool, earlier_name)
            if keep:
                dst.volumes.upload_volume(pool, earlier_name, buf, keep)
    except (DriverError, OSError) as exc:  # the console history is worth a try, not a failed move
        if isinstance(exc, NodeUnavailable):
            raise
        log.warning("%s: its console output could not be carried to the destination (%s); it shows only what the "
                    "guest prints there", instance_id, exc)


def _base_on(worker: ComputeWorker, dest: NodeRef, dst: Driver, instance_id: str) -> image_cache.CachedImage:
    """The instance's image in the destination's cache (uploaded there if needed)."""
    ctx = launch_context.load(worker.db, instance_id)
    env = image_cache.CacheEnv(worker.settings, worker.db, worker.cumulus)
    if ctx.image is None:
        raise launch_context.LaunchError(f"the image of {instance_id} is EBS-backed but it has no root volume")
    return image_cache.ensure(env, dest, dst, ctx.image)


def _boots_from_volume(worker: ComputeWorker, instance_id: str) -> bool:
    """True for an instance of an EBS-backed image: its root disk is a volume of the pool, no overlay."""
    root = launch_volumes.root_of(worker, instance_id)
    return root is not None and root.storage == "pool"


def _clean_destination(worker: ComputeWorker, job: Job, dest: NodeRef, dst: Driver,
                       volumes: tuple[str, ...] = ()) -> None:
    """Remove what a failed move made on the destination; the domain, and the copies of its
    volumes, only if the source still has the domain (its volumes stay there)."""
    try:
        here = worker.drivers.get(job.node).info(job.instance_id).state
        if here is not PowerState.MISSING:
            dst.destroy(job.instance_id)
            for volume_id in volumes:
                volume_store.delete(dst, volume_id)
        provision.cleanup(worker, _job_on(job, dest))
    except DriverError as exc:
        log.warning("%s: clean-up on node %s after the failed move left something behind: %s", job.instance_id,
                    dest.name, exc)


def live(worker: ComputeWorker, job: Job, dest: NodeRef, volumes: tuple[str, ...] = ()) -> None:
    src, dst = worker.drivers.get(job.node), worker.drivers.get(dest)
    iid = job.instance_id
    if "test" in (src.domain_type, dst.domain_type):
        raise NotSupported(f"node {job.node.name if src.domain_type == 'test' else dest.name} is libvirt's test "
                           "driver, which cannot migrate a running guest; stop the instance to move it cold")
    if src.info(iid).state not in _RUNS:
        raise MoveFailed(f"{iid} does not run on node {job.node.name}; nothing was moved")
    if dst.info(iid).state is not PowerState.MISSING:
        raise MoveFailed(f"node {dest.name} already has a domain {iid}; remove it there first")
    started = time.monotonic()
    overlay = node_layout.overlay_name(iid)
    from_volume = _boots_from_volume(worker, iid)
    ours = None if from_volume else src.volumes.volume_info(node_layout.INSTANCES_POOL, overlay)
    if ours is None and not from_volume:
        raise MoveFailed(f"{iid} has no overlay {overlay} on node {job.node.name}; it cannot be copied")
    try:
        node_layout.ensure_pools(dst, worker.settings)
        copies: list[tuple[str, str, str]] = []
        if ours is not None:
            base = _base_on(worker, dest, dst, iid)
            dst.volumes.delete_volume(node_layout.INSTANCES_POOL, overlay)  # a stale one from an earlier try
            made = dst.volumes.create_overlay(node_layout.INSTANCES_POOL, overlay, base.pool, base.volume,
                                              ours.capacity)
            copies.append((node_layout.INSTANCES_POOL, overlay, made.path))
        copies.extend(volume_store.blank_copy(src, dst, worker.settings, v) for v in volumes)
        _carry_console(src, dst, iid, fresh_log=True)
        spec = provision.prepare(worker, _job_on(job, dest))
        prepared = time.monotonic()
        target = MigrationTarget(driver=dst, address=migration_address(dest), copy_disks=tuple(copies),
                                 kernel=spec.kernel, initrd=spec.initrd, timeout=MIGRATE_TIMEOUT)
        src.migrate(iid, target)
        log.info("%s: destination %s prepared in %.2f s, guest migrated in %.2f s", iid, dest.name,
                 prepared - started, time.monotonic() - prepared)
    except Exception as exc:
        if _arrived(worker, job, dest):  # the call failed after the guest had moved (a timeout, say)
            log.warning("%s: the migration call failed (%s) but the guest runs on node %s", iid, exc, dest.name)
        else:
            _clean_destination(worker, job, dest, dst, volumes)
            raise
    # before the move is recorded (until then GetConsoleOutput reads the source's log): what the
    # guest printed on the source while it moved
    _carry_console(src, dst, iid, fresh_log=False)


def _arrived(worker: ComputeWorker, job: Job, dest: NodeRef) -> bool:
    """True when the guest runs on ``dest`` and no longer on its source."""
    try:
        there = worker.drivers.get(dest).info(job.instance_id).state
        here = worker.drivers.get(job.node).info(job.instance_id).state
    except DriverError:
        return False
    return there in _RUNS and here is PowerState.MISSING


def _clean_source(worker: ComputeWorker, job: Job, volumes: tuple[str, ...] = ()) -> None:
    try:
        provision.cleanup(worker, job)
        src = worker.drivers.get(job.node)
        for volume_id in volumes:
            volume_store.delete(src, volume_id)
    except DriverError as exc:
        log.warning("%s: moved, but its pieces on node %s were not all removed: %s", job.instance_id, job.node.name, exc)


def cold(worker: ComputeWorker, job: Job, dest: NodeRef, volumes: tuple[str, ...] = ()) -> None:
    src, dst = worker.drivers.get(job.node), worker.drivers.get(dest)
    iid = job.instance_id
    here = src.info(iid)
    if here.state in _RUNS or here.state is PowerState.SHUTDOWN_IN_PROGRESS:
        raise MoveFailed(f"{iid} is stopped but its domain runs on node {job.node.name}; wait for the next "
                         "reconciliation, then retry")
    if here.saved:
        raise MoveFailed(f"{iid}'s memory is saved on node {job.node.name} (hibernated); start it and migrate it live")
    if dst.info(iid).state is not PowerState.MISSING:
        raise MoveFailed(f"node {dest.name} already has a domain {iid}; remove it there first")
    defined = False
    real = dst.domain_type != "test"  # libvirt's test driver keeps no bytes and streams none
    try:
        if real:
            node_layout.ensure_pools(dst, worker.settings)
            if not _boots_from_volume(worker, iid):
                base = _base_on(worker, dest, dst, iid)
                overlay = node_layout.overlay_name(iid)
                ours = src.volumes.volume_info(node_layout.INSTANCES_POOL, overlay)
                if ours is not None and ours.backing_path != base.path:
                    raise MoveFailed(f"{iid}'s overlay on node {job.node.name} is backed by {ours.backing_path}, the "
                                     f"image on node {dest.name} is {base.path}; it cannot be moved as it is")
                copy_volume(src, dst, node_layout.INSTANCES_POOL, overlay, backing_path=base.path)
            _carry_console(src, dst, iid, fresh_log=True)
        for volume_id in volumes:  # on the test driver a volume is made there empty
            if real:
                volume_store.copy(src, dst, worker.settings, volume_id)
            else:
                volume_store.blank_copy(src, dst, worker.settings, volume_id)
        spec = worker.domain_spec(_job_on(job, dest))
        try:
            dst.define(spec)
        except DomainExists:  # made meanwhile by nothing of ours: refuse to adopt it
            raise MoveFailed(f"node {dest.name} already has a domain {iid}; remove it there first") from None
        defined = True
    except Exception:
        try:
            if defined:
                dst.destroy(iid)
            for volume_id in volumes:
                volume_store.delete(dst, volume_id)
            provision.cleanup(worker, _job_on(job, dest))
        except DriverError as exc:
            log.warning("%s: clean-up on node %s after the failed move left something behind: %s", iid, dest.name, exc)
        raise
    src.destroy(iid)
