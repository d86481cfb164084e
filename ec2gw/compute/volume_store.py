"""Where EBS volumes' bytes live, behind the driver's storage interface (backends.volumes).

Today a volume is one qcow2 volume, ``<vol-id>.qcow2``, in the ``ec2gw-volumes`` dir pool of one
node of its zone (under settings.node_storage_dir, like the other pools of compute/node_layout.py),
made, grown, moved and deleted only through libvirt's storage API, so a remote node needs no
shell. Every function here takes a driver and a volume id; nothing else in the service names
pools or files of volumes. A shared backend (Ceph RBD, which libvirt attaches natively as a
network disk) would replace this module and ``disk_spec`` and drop ``move`` and ``copy``; the API, the database
model (ec2gw/db/volume_models.py) and the worker's tasks (compute/volume_tasks.py) stay.

Seams for snapshots: ``create`` takes an optional ``fill`` (a readable of the snapshot's bytes
with its size) to make the volume from a snapshot instead of empty; ``download`` streams a volume
out (a detached volume's point-in-time copy needs nothing more).
"""

from __future__ import annotations

import logging
import posixpath
import tempfile
import threading
import time
from typing import TYPE_CHECKING

from backends.base import AlreadyExists, DiskSpec, DriverError
from backends.volumes import Readable, VolumeInfo, Writable
from ec2gw.compute.byte_pipe import BytePipe

if TYPE_CHECKING:
    from backends.base import Driver
    from ec2gw.config import Settings

log = logging.getLogger("ec2gw.compute")

VOLUMES_POOL = "ec2gw-volumes"
GIB = 1 << 30
#: seconds the move waits for its download thread after the upload ended (its calls are bounded too)
PUMP_JOIN = 60.0


def volume_name(volume_id: str) -> str:
    return f"{volume_id}.qcow2"


def ensure_pool(drv: Driver, settings: Settings) -> None:
    drv.volumes.ensure_pool(VOLUMES_POOL, posixpath.join(settings.node_storage_dir, "volumes"))


def create(drv: Driver, settings: Settings, volume_id: str, size_gib: int,
           fill: tuple[Readable, int] | None = None) -> VolumeInfo:
    """Make the volume on the node: empty (qcow2, ``size_gib``), or from ``fill`` (bytes and their
    count, e.g. a snapshot's), grown to ``size_gib`` when that is larger. An existing volume of
    that name (a retried task) is kept."""
    ensure_pool(drv, settings)
    name = volume_name(volume_id)
    have = drv.volumes.volume_info(VOLUMES_POOL, name)
    if have is not None:
        return have
    try:
        if fill is None:
            return drv.volumes.create_volume(VOLUMES_POOL, name, size_gib * GIB, "qcow2")
        source, size = fill
        info = drv.volumes.upload_volume(VOLUMES_POOL, name, source, size)
        if info.capacity < size_gib * GIB:
            info = drv.volumes.resize_volume(VOLUMES_POOL, name, size_gib * GIB)
        return info
    except AlreadyExists:
        again = drv.volumes.volume_info(VOLUMES_POOL, name)
        if again is None:
            raise
        return again


def delete(drv: Driver, volume_id: str) -> None:
    """Remove the volume from the node; a missing one is fine."""
    drv.volumes.delete_volume(VOLUMES_POOL, volume_name(volume_id))


def grow(drv: Driver, volume_id: str, size_gib: int) -> None:
    """Grow a volume that no running guest uses (the storage API resizes the image)."""
    drv.volumes.resize_volume(VOLUMES_POOL, volume_name(volume_id), size_gib * GIB)


def info(drv: Driver, volume_id: str) -> VolumeInfo | None:
    return drv.volumes.volume_info(VOLUMES_POOL, volume_name(volume_id))


def download(drv: Driver, volume_id: str, sink: Writable) -> int:
    """Stream the volume's bytes (qcow2) into ``sink``; the volume must not be attached to a running guest."""
    return drv.volumes.download_volume(VOLUMES_POOL, volume_name(volume_id), sink)


def disk_spec(volume_id: str, target: str, test_node: bool) -> DiskSpec:
    """The guest disk of an attached volume: virtio at ``target`` (vdb ...), the pool's volume.

    On a test-driver node the disk is a path only, like the instance's own (that driver opens
    no files and resolves no pools in domain definitions)."""
    if test_node:
        return DiskSpec(path=f"/var/lib/ec2gw/volumes/{volume_name(volume_id)}", format="qcow2", bus="virtio",
                        target=target)
    return DiskSpec(pool=VOLUMES_POOL, volume=volume_name(volume_id), format="qcow2", bus="virtio", target=target)


def move(src: Driver, dst: Driver, settings: Settings, volume_id: str) -> VolumeInfo:
    """Copy the volume from node ``src`` to node ``dst`` (``copy``), then delete it on ``src``.

    The source is deleted only once the copy is complete, so a failure leaves the volume where it was.
    """
    name = volume_name(volume_id)
    if src.volumes.volume_info(VOLUMES_POOL, name) is None:
        have = dst.volumes.volume_info(VOLUMES_POOL, name)
        if have is not None:  # moved before, the record did not follow: nothing to copy
            return have
        raise FileNotFoundError(f"volume {volume_id} is on neither node")
    moved = copy(src, dst, settings, volume_id)
    src.volumes.delete_volume(VOLUMES_POOL, name)
    return moved


def copy(src: Driver, dst: Driver, settings: Settings, volume_id: str) -> VolumeInfo:
    """Copy the volume from node ``src`` to node ``dst`` (one there is replaced) through libvirt's
    volume download and upload streams in bounded chunks; ``src`` keeps its own. The upload must
    announce its length: when the source node reports the file's length, the download streams
    straight into the upload (one pass, a few MiB in memory); otherwise it is staged in a temporary
    file of the data directory first. A copy half-made on ``dst`` is removed by upload_volume itself.
    """
    name, source = _replaceable(src, dst, settings, volume_id)
    started = time.monotonic()
    length = source.physical
    if length:  # the download's length is known: stream it straight into the upload
        moved, size = _piped(src, dst, name, length), length
    else:
        with tempfile.TemporaryFile(dir=settings.data_dir, prefix=f"move-{volume_id}-") as staged:
            size = src.volumes.download_volume(VOLUMES_POOL, name, staged)
            staged.seek(0)
            moved = dst.volumes.upload_volume(VOLUMES_POOL, name, staged, size, expect_format="qcow2")
    log.info("volume %s copied between nodes (%d bytes in %.1f s, %s)", volume_id, size, time.monotonic() - started,
             "streamed" if length else "staged")
    return moved


def blank_copy(src: Driver, dst: Driver, settings: Settings, volume_id: str) -> tuple[str, str, str]:
    """For a live migration, which copies a disk's blocks into a volume that exists beforehand:
    the volume made on ``dst`` empty, with the capacity of the one on ``src`` (one there is
    replaced). Returns (pool, volume name, path on ``dst``), as MigrationTarget.copy_disks takes it."""
    name, source = _replaceable(src, dst, settings, volume_id)
    made = dst.volumes.create_volume(VOLUMES_POOL, name, source.capacity, "qcow2")
    return VOLUMES_POOL, name, made.path


def _replaceable(src: Driver, dst: Driver, settings: Settings, volume_id: str) -> tuple[str, VolumeInfo]:
    """The volume's name and its copy on ``src``, with ``dst``'s pool ready and any volume of that name there gone."""
    ensure_pool(dst, settings)
    name = volume_name(volume_id)
    source = src.volumes.volume_info(VOLUMES_POOL, name)
    if source is None:
        raise FileNotFoundError(f"volume {volume_id} is not on its node; it cannot be copied")
    dst.volumes.delete_volume(VOLUMES_POOL, name)
    return name, source


def _piped(src: Driver, dst: Driver, name: str, length: int) -> VolumeInfo:
    """Download from ``src`` (a thread) into the upload to ``dst`` through a bounded pipe; the
    upload announces ``length``. A download that fails or streams another length fails the move and
    removes the copy on ``dst``."""
    pipe = BytePipe()
    got: list[int] = []
    failed: list[BaseException] = []

    def pump() -> None:
        try:
            got.append(src.volumes.download_volume(VOLUMES_POOL, name, pipe))
        except BaseException as exc:  # noqa: BLE001 - handed to the uploading thread
            failed.append(exc)
        finally:
            pipe.end()

    thread = threading.Thread(target=pump, name=f"download-{name}", daemon=True)
    thread.start()
    try:
        moved = dst.volumes.upload_volume(VOLUMES_POOL, name, pipe, length, expect_format="qcow2")
    except BaseException:
        pipe.close()
        thread.join(PUMP_JOIN)
        if failed and not isinstance(failed[0], BrokenPipeError):  # the download failed first
            raise failed[0] from None
        raise
    pipe.close()
    thread.join(PUMP_JOIN)
    if (failed and not isinstance(failed[0], BrokenPipeError)) or got != [length]:
        dst.volumes.delete_volume(VOLUMES_POOL, name)
        if failed and not isinstance(failed[0], BrokenPipeError):
            raise failed[0]
        raise DriverError(f"the download of {name} streamed {got[0] if got else 'more'} bytes where its node "
                          f"announced {length}; the volume stays on its node")
    return moved
