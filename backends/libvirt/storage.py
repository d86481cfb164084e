"""LibvirtVolumes: directory pools and volumes through libvirt's storage API.

The service needs no file access to a node: images are uploaded with virStorageVolUpload,
instance disks are qcow2 overlays created with a <backingStore>, and images are saved with
virStorageVolDownload. Transfers run stepwise (each chunk within the connection timeout).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import libvirt

from backends.base import (
    DISK_FORMATS,
    AlreadyExists,
    DriverError,
    InvalidSpec,
    NodeUnavailable,
    NotFound,
    NotSupported,
)
from backends.libvirt.config_storage import StoragePool, StorageVolume
from backends.libvirt.connection import Connection, describe
from backends.libvirt.streams import abort_quietly, recv_into, send_from
from backends.volumes import CHUNK_SIZE, Readable, VolumeDriver, VolumeInfo, Writable

T = TypeVar("T")


def find_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool | None:
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None
        raise


def get_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool:
    pool = find_pool(conn, name)
    if pool is None:
        raise NotFound(f"no storage pool {name!r}; create it with ensure_pool()")
    return pool


def find_volume(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def get_volume(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol:
    vol = find_volume(pool, name)
    if vol is None:
        raise NotFound(f"no volume {name!r} in pool {pool.name()!r}")
    return vol


def volume_info(pool: libvirt.virStoragePool, vol: libvirt.virStorageVol) -> VolumeInfo:
    cfg = StorageVolume.from_xml(vol.XMLDesc(0))
    try:  # the file's length: what a download streams (the test driver does not say)
        physical: int | None = int(vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])
    except libvirt.libvirtError:
        physical = None
    return VolumeInfo(pool=pool.name(), name=cfg.name, path=cfg.path or vol.path(), format=cfg.format,
                      capacity=cfg.capacity, allocation=cfg.allocation or 0,
                      backing_path=cfg.backing_path, physical=physical)


def refresh_pool(pool: libvirt.virStoragePool, bounded: Callable[[Callable[[], T], str], T],
                 timeout: float) -> None:
    """Re-read the pool's volumes now, so that a just uploaded volume shows its real format.

    libvirt refreshes after an upload too, but in a thread of its own and later; until that
    thread ran, refresh() fails with "asynchronous jobs running" and is retried.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            bounded(lambda: pool.refresh(0), "refreshing the pool")
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def check_uploaded(info: VolumeInfo, expect_format: str | None, backing_path: str | None = None) -> None:
    """Refuse content that is not what the caller said, or that points at another file.

    libvirt detects the format from the bytes; a "raw" upload that looks like qcow2 with a backing
    file would otherwise make the guest read a file of the node's choosing. Only ``backing_path``
    (when given) may be named.
    """
    if info.backing_path and (backing_path is None
                              or os.path.normpath(info.backing_path) != os.path.normpath(backing_path)):
        raise InvalidSpec(f"the uploaded image refers to a backing file ({info.backing_path}); "
                          "upload a self-contained image (qemu-img convert)")
    if expect_format is not None and info.format != expect_format:
        raise InvalidSpec(f"the uploaded content is {info.format}, not {expect_format}")


def _unsupported(exc: libvirt.libvirtError, what: str) -> Exception:
    if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
        return NotSupported(f"{what}: {describe(exc)}")
    return DriverError(f"{what}: {describe(exc)}")


class LibvirtVolumes(VolumeDriver):
    """VolumeDriver on a libvirt Connection (shared with the LibvirtDriver that created it)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _call(self, fn: Callable[[libvirt.virConnect], T], what: str, stepwise: bool = False) -> T:
        try:
            return self.connection.call(fn, what, stepwise=stepwise)
        except libvirt.libvirtError as exc:
            raise _unsupported(exc, f"{what} failed on {self.connection.uri}") from exc

    def ensure_pool(self, name: str, path: str) -> None:
        """As VolumeDriver.ensure_pool; a pool of that name at another path: AlreadyExists."""
        def op(conn: libvirt.virConnect) -> None:
            pool = find_pool(conn, name)
            if pool is None:
                try:
                    pool = conn.storagePoolDefineXML(StoragePool(name=name, path=path).to_xml(), 0)
                    pool.build(0)
                except libvirt.libvirtError:
                    # another caller (a second volume made at the same moment) defined it first
                    pool = find_pool(conn, name)
                    if pool is None:
                        raise
            have = StoragePool.from_xml(pool.XMLDesc(0)).path
            if os.path.normpath(have) != os.path.normpath(path):
                raise AlreadyExists(f"pool {name!r} exists at {have}, not at {path}")
            if not pool.isActive():
                try:
                    pool.create(0)
                except libvirt.libvirtError:
                    if not pool.isActive():  # else started by another caller meanwhile
                        raise
            if pool.isPersistent() and not pool.autostart():
                pool.setAutostart(1)
        self._call(op, f"ensuring pool {name}")

    def delete_pool(self, name: str) -> None:
        def op(conn: libvirt.virConnect) -> None:
            pool = find_pool(conn, name)
            if pool is None:
                return
            if pool.isActive():
                pool.destroy()
            if pool.isPersistent():
                pool.undefine()
        self._call(op, f"deleting pool {name}")

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        def op(conn: libvirt.virConnect) -> list[VolumeInfo]:
            p = get_pool(conn, pool)
            return sorted((volume_info(p, v) for v in p.listAllVolumes(0)), key=lambda v: v.name)
        return self._call(op, f"listing volumes of {pool}")

    def volume_info(self, pool: str, name: str) -> VolumeInfo | None:
        def op(conn: libvirt.virConnect) -> VolumeInfo | None:
            p = get_pool(conn, pool)
            vol = find_volume(p, name)
            return volume_info(p, vol) if vol is not None else None
        return self._call(op, f"volume {pool}/{name}")

    def create_volume(self, pool: str, name: str, capacity: int, format: str = "qcow2") -> VolumeInfo:
        if format not in DISK_FORMATS:
            raise InvalidSpec(f"volume format {format!r} is not one of {DISK_FORMATS}")
        xml = StorageVolume(name=name, capacity=capacity, allocation=0, format=format).to_xml()

        def op(conn: libvirt.virConnect) -> VolumeInfo:
            p = get_pool(conn, pool)
            if find_volume(p, name) is not None:
                raise AlreadyExists(f"volume {name!r} already exists in pool {pool!r}")
            return volume_info(p, p.createXML(xml, 0))
        return self._call(op, f"creating {pool}/{name}")

    def upload_volume(self, pool: str, name: str, source: Readable, size: int,
                      chunk_size: int = CHUNK_SIZE, expect_format: str | None = None,
                      backing_path: str | None = None) -> VolumeInfo:
        """See VolumeDriver.upload_volume."""
        bounded = self.connection.bounded
        xml = StorageVolume(name=name, capacity=size, allocation=0, format="raw").to_xml()

        def op(conn: libvirt.virConnect) -> VolumeInfo:
            p = bounded(lambda: get_pool(conn, pool), "finding the pool")
            if bounded(lambda: find_volume(p, name), "finding the volume") is not None:
                raise AlreadyExists(f"volume {name!r} already exists in pool {pool!r}")
            vol = bounded(lambda: p.createXML(xml, 0), "creating the volume")
            stream = bounded(lambda: conn.newStream(0), "opening a stream")
            try:
                bounded(lambda: vol.upload(stream, 0, size, 0), "starting the upload")
                send_from(stream, source, size, chunk_size, bounded)
                refresh_pool(p, bounded, self.connection.timeout)
                info = bounded(lambda: volume_info(p, get_volume(p, name)), "reading the volume")
                check_uploaded(info, expect_format, backing_path)
                return info
            except NodeUnavailable:
                raise  # nothing can be cleaned up on a node that does not answer
            except BaseException:
                try:
                    bounded(lambda: abort_quietly(stream), "aborting the upload")
                    bounded(lambda: vol.delete(0), "deleting the partial volume")
                except (libvirt.libvirtError, DriverError):
                    pass
                raise
        return self._call(op, f"uploading {pool}/{name}", stepwise=True)

    def create_overlay(self, pool: str, name: str, backing_pool: str, backing_name: str,
                       capacity: int | None = None) -> VolumeInfo:
        def op(conn: libvirt.virConnect) -> VolumeInfo:
            backing = StorageVolume.from_xml(get_volume(get_pool(conn, backing_pool), backing_name).XMLDesc(0))
            size = backing.capacity if capacity is None else capacity
            if size < backing.capacity:
                raise InvalidSpec(f"overlay capacity {size} is smaller than its backing volume"
                                  f" ({backing.capacity} bytes)")
            p = get_pool(conn, pool)
            if find_volume(p, name) is not None:
                raise AlreadyExists(f"volume {name!r} already exists in pool {pool!r}")
            xml = StorageVolume(name=name, capacity=size, format="qcow2", backing_path=backing.path,
                                backing_format=backing.format).to_xml()
            return volume_info(p, p.createXML(xml, 0))
        return self._call(op, f"creating overlay {pool}/{name}")

    def delete_volume(self, pool: str, name: str) -> None:
        def op(conn: libvirt.virConnect) -> None:
            p = find_pool(conn, pool)
            vol = find_volume(p, name) if p is not None else None
            if vol is None:
                return
            try:
                vol.delete(0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise
        self._call(op, f"deleting {pool}/{name}")

    def download_volume(self, pool: str, name: str, sink: Writable, chunk_size: int = CHUNK_SIZE) -> int:
        bounded = self.connection.bounded

        def op(conn: libvirt.virConnect) -> int:
            vol = bounded(lambda: get_volume(get_pool(conn, pool), name), "finding the volume")
            stream = bounded(lambda: conn.newStream(0), "opening a stream")
            try:
                bounded(lambda: vol.download(stream, 0, 0, 0), "starting the download")
                return recv_into(stream, sink, chunk_size, bounded)
            except NodeUnavailable:
                raise
            except BaseException:
                try:
                    bounded(lambda: abort_quietly(stream), "aborting the download")
                except NodeUnavailable:
                    pass
                raise
        return self._call(op, f"downloading {pool}/{name}", stepwise=True)

    def resize_volume(self, pool: str, name: str, capacity: int) -> VolumeInfo:
        """As VolumeDriver.resize_volume: virStorageVolResize (qemu-img resize on the node for qcow2)."""
        def op(conn: libvirt.virConnect) -> VolumeInfo:
            p = get_pool(conn, pool)
            vol = get_volume(p, name)
            have = StorageVolume.from_xml(vol.XMLDesc(0)).capacity
            if capacity < have:
                raise InvalidSpec(f"volume {pool}/{name} has {have} bytes; it can grow, not shrink to {capacity}")
            if capacity > have:
                vol.resize(capacity, 0)
            return volume_info(p, get_volume(p, name))
        return self._call(op, f"resizing {pool}/{name}")

    def copy_volume(self, pool: str, name: str, source_pool: str, source_name: str, format: str = "qcow2",
                    timeout: float = 3600.0) -> VolumeInfo:
        """As VolumeDriver.copy_volume: virStorageVolCreateXMLFrom, which runs ``qemu-img convert``
        on the node for qcow2 sources and targets (that merges the backing chain)."""
        if format not in DISK_FORMATS:
            raise InvalidSpec(f"volume format {format!r} is not one of {DISK_FORMATS}")

        def op(conn: libvirt.virConnect) -> VolumeInfo:
            src = get_volume(get_pool(conn, source_pool), source_name)
            capacity = StorageVolume.from_xml(src.XMLDesc(0)).capacity
            p = get_pool(conn, pool)
            if find_volume(p, name) is not None:
                raise AlreadyExists(f"volume {name!r} already exists in pool {pool!r}")
            xml = StorageVolume(name=name, capacity=capacity, format=format).to_xml()
            return volume_info(p, p.createXMLFrom(xml, src, 0))
        try:
            return self.connection.call(op, f"copying {source_pool}/{source_name} to {pool}/{name}", timeout)
        except libvirt.libvirtError as exc:
            raise _unsupported(exc, f"copying {source_pool}/{source_name} failed on {self.connection.uri}") from exc
