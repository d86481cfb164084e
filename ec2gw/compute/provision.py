"""Everything an instance needs on its node before its domain starts, and the clean-up after.

On libvirt's test driver there is nothing to provision (the disk is a name only). On QEMU/KVM
nodes, through libvirt's APIs only (so remote nodes need no shell or shared file system):

1. the node's three dir pools exist (compute/node_layout.py);
2. the machine image, and the kernel and ramdisk when it has them, are in the image pool
   (compute/image_cache.py: uploaded once per node, verified, then reused);
3. the instance gets a qcow2 overlay on the image volume (nothing copied), kept across
   stop/start and spawn retries;
4. its NoCloud seed ISO is uploaded as a volume (rebuilt each time, it is a few KiB);
5. an empty console log volume is created so the log is a volume of the console pool
   (readable from any node, and deleted with the instance);
6. the instance's network filters (its security groups and anti-spoofing, compute/filter_sync.py)
   are defined on the node;
7. each NIC's pool network exists on the node and has the NIC's static DHCP entry, and the NIC
   references the instance's filter with its own address.

cleanup() removes the DHCP entries, overlay, seed and console log; missing pieces are fine, so
it can run after a launch that failed half-way and can be repeated.
"""

from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING

from backends.base import AlreadyExists, DomainSpec, NicSpec
from backends.filters import nic_parameters
from backends.seed import build_seed_iso
from ec2gw.compute import (
    filter_sync,
    image_cache,
    launch_context,
    launch_volumes,
    node_layout,
    snapshot_tasks,
    volume_store,
)
from ec2gw.compute.specs import Volume, guest_domain_spec, test_domain_spec
from ec2gw.network import nodes as net_nodes
from ec2gw.network import pools
from ec2gw.network.layout import NetworkLayoutError
from ec2gw.network.models import Pool

if TYPE_CHECKING:
    from backends.base import Driver
    from ec2gw.compute.jobs import Job
    from ec2gw.compute.worker import ComputeWorker
    from ec2gw.config import Settings

log = logging.getLogger("ec2gw.compute")

GIB = 1 << 30


class ProvisionFailed(Exception):
    """The instance cannot be provisioned for a reason its StateReason should show (bad image,
    vanished pool, a pool that forms no network); the message says what to do."""


def prepare(worker: ComputeWorker, job: Job) -> DomainSpec:
    """The domain for ``job``'s instance, with its disks, seed and network in place on the node."""
    drv = worker.drivers.get(job.node)
    try:
        launch_volumes.make(worker, drv, job.node.name, job.instance_id)
        if drv.domain_type == "test":
            return test_domain_spec(job.node, job.instance_id, job.vcpus, job.memory_mib, job.mac)
        return _prepare(worker, job, drv)
    except (image_cache.ImageUnavailable, launch_context.LaunchError, NetworkLayoutError,
            snapshot_tasks.SnapshotUnavailable) as exc:
        raise ProvisionFailed(str(exc)) from exc


def _prepare(worker: ComputeWorker, job: Job, drv: Driver) -> DomainSpec:
    settings = worker.settings
    started = time.monotonic()
    ctx = launch_context.load(worker.db, job.instance_id)
    app = image_cache.CacheEnv(settings, worker.db, worker.cumulus)
    node_layout.ensure_pools(drv, settings)
    root_volume = launch_volumes.root_of(worker, job.instance_id)
    base = None
    if root_volume is not None and root_volume.storage == "pool":  # an EBS-backed image: boot from the volume
        info = volume_store.info(drv, root_volume.volume_id)
        if info is None:
            raise launch_context.LaunchError(f"the root volume {root_volume.volume_id} is not on node {job.node.name}")
        root = Volume(volume_store.VOLUMES_POOL, info.name, info.path, "qcow2")
    else:
        if ctx.image is None:
            raise launch_context.LaunchError(f"the image of {job.instance_id} is EBS-backed but it has no root volume")
        base = image_cache.ensure(app, job.node, drv, ctx.image)
        root = overlay(drv, job.instance_id, base, root_volume.size_gib * volume_store.GIB if root_volume else None)
        if root_volume is not None:
            launch_volumes.record_size(worker, root_volume, drv.volumes.volume_info(root.pool, root.name))
    kernel = image_cache.ensure(app, job.node, drv, ctx.kernel) if ctx.kernel else None
    ramdisk = image_cache.ensure(app, job.node, drv, ctx.ramdisk) if ctx.ramdisk and ctx.kernel else None
    seed = upload_seed(drv, ctx)
    log_path = console_log(drv, settings, job.instance_id)
    nics = attach_nics(drv, ctx, filter_sync.ensure_instance_filters(worker, job.node, job.instance_id))
    copied = sum(i.uploaded_bytes for i in (base, kernel, ramdisk) if i is not None)
    log.info("%s: provisioned on node %s in %.2f s (%d image bytes uploaded)", job.instance_id, job.node.name,
             time.monotonic() - started, copied)
    cmdline = settings.xen_kernel_cmdline if job.node.domain_type == "xen" else settings.kernel_cmdline
    return guest_domain_spec(
        job.node, job.instance_id, job.vcpus, job.memory_mib, root=root, seed=seed, seed_bus=settings.seed_cdrom_bus,
        nics=nics, kernel=_vol(kernel), ramdisk=_vol(ramdisk), cmdline=cmdline, console_log=log_path)


def _vol(img: image_cache.CachedImage | None) -> Volume | None:
    return None if img is None else Volume(img.pool, img.volume, img.path, img.format)


def overlay(drv: Driver, instance_id: str, base: image_cache.CachedImage, capacity: int | None = None) -> Volume:
    """The instance's qcow2 overlay on the image volume, of ``capacity`` bytes when that is more
    than the image's (a larger root device asked for at launch); an existing one (a stopped
    instance's disk, or a retried spawn) is kept, never recreated."""
    pool, name = node_layout.INSTANCES_POOL, node_layout.overlay_name(instance_id)
    info = drv.volumes.volume_info(pool, name)
    if info is None:
        # the root volume's size is whole GiB: the overlay grows only past the image's size rounded up
        grown = capacity if capacity is not None and capacity > -(-base.capacity // GIB) * GIB else None
        try:
            info = drv.volumes.create_overlay(pool, name, base.pool, base.volume, grown)
        except AlreadyExists:
            info = drv.volumes.volume_info(pool, name)
    if info is None:
        raise launch_context.LaunchError(f"the overlay {pool}/{name} vanished while it was being created")
    return Volume(pool, name, info.path, "qcow2")


def upload_seed(drv: Driver, ctx: launch_context.LaunchContext) -> Volume:
    """Build the NoCloud seed ISO and upload it as the instance's seed volume (replacing any)."""
    iso = build_seed_iso(ctx.seed())
    pool, name = node_layout.INSTANCES_POOL, node_layout.seed_name(ctx.instance_id)
    drv.volumes.delete_volume(pool, name)
    info = drv.volumes.upload_volume(pool, name, io.BytesIO(iso), len(iso))
    return Volume(pool, name, info.path, "raw")


def console_log(drv: Driver, settings: Settings, instance_id: str) -> str:
    """The path of the console log, created empty as a volume of the console pool."""
    try:
        drv.volumes.create_volume(node_layout.CONSOLE_POOL, node_layout.console_name(instance_id), 0, "raw")
    except AlreadyExists:
        pass
    return node_layout.console_path(settings, instance_id)


def attach_nics(drv: Driver, ctx: launch_context.LaunchContext, filter_name: str | None = None) -> list[NicSpec]:
    """Ensure each NIC's network on the node, add its DHCP entry, and return the NIC specs.

    ``filter_name``: the instance's network filter (security groups and anti-spoofing), which
    each NIC references with its own address; None where the node applies no filters."""
    specs: list[NicSpec] = []
    for pool, addr in ctx.nics:
        network = ctx.networks[pool.name]
        if network.spec is None:  # the embedded default pool: addresses on record only
            continue
        net_nodes.ensure(drv, network)
        net_nodes.add_host(drv, pool, addr)
        params = nic_parameters(addr.ip) if filter_name else {}
        specs.append(NicSpec(mac=addr.mac, network=network.spec.name, filter=filter_name, filter_params=params)
                     if network.spec.mode != "bridge"
                     else NicSpec(mac=addr.mac, bridge=network.spec.bridge, filter=filter_name, filter_params=params))
    return specs


def cleanup(worker: ComputeWorker, job: Job) -> None:
    """Remove what prepare() made for the instance; missing pieces are fine."""
    drv = worker.drivers.get(job.node)
    if drv.domain_type == "test":
        return
    with worker.db.session() as s:
        nics = [(a.pool, a.mac) for a in pools.addresses_of(s, job.instance_id)]
        modes = {p.name: p.network_mode for p in s.query(Pool).filter(Pool.name.in_({n[0] for n in nics}))}
    for pool_name, mac in nics:
        net_nodes.remove_host(drv, pool_name, modes.get(pool_name, "none"), mac)
    iid = job.instance_id
    drv.volumes.delete_volume(node_layout.INSTANCES_POOL, node_layout.overlay_name(iid))
    drv.volumes.delete_volume(node_layout.INSTANCES_POOL, node_layout.seed_name(iid))
    drv.volumes.delete_volume(node_layout.CONSOLE_POOL, node_layout.console_name(iid))
    drv.volumes.delete_volume(node_layout.CONSOLE_POOL, node_layout.console_earlier_name(iid))
