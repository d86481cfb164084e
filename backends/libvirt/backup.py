"""Point-in-time copies of a running guest's disk: libvirt's push-mode backup, API calls only.

A disk in use by QEMU cannot be cloned through the storage API (qemu-img cannot take its lock;
../shared/virt/PROBES-2026-12.md, section 7). virDomainBackupBegin in push mode has QEMU itself
write the disk, as it was when the job began, into a new standalone qcow2 file in the disk's
pool while the guest runs on; a pool refresh then shows that file as a volume, which streams out
through the volume download like any other. Every disk of the domain is listed in the backup
document (the others with backup='no'); the target must be an explicit file path, which is the
pool's directory (read from the pool's XML) plus the new volume's name.

Completion is read from the domain's job info (polled; the job of a backup ends with its type
back at VIR_DOMAIN_JOB_NONE, and the completed job's statistics say whether it succeeded), each
poll bounded by the connection timeout and the whole wait by the caller's timeout, after which
the job is aborted and the partial file deleted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import libvirt
from lxml import etree

from backends.base import AlreadyExists, DriverError, InvalidState, NodeUnavailable, NotFound, NotSupported
from backends.libvirt.config import GuestDisk, GuestDomain, XmlObject, sub
from backends.libvirt.config_storage import StoragePool
from backends.libvirt.connection import Connection, describe
from backends.libvirt.storage import find_volume, get_pool, get_volume, refresh_pool, volume_info
from backends.volumes import VolumeInfo

#: seconds between two looks at the backup job
POLL_INTERVAL = 0.1


@dataclass
class DomainBackup(XmlObject):
    """<domainbackup mode='push'>: which disks are copied, each to an explicit qcow2 file."""

    root_name: ClassVar[str] = "domainbackup"
    #: target dev -> path of the copy; every other listed disk gets backup='no'
    copies: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_element(self) -> etree._Element:
        el = etree.Element("domainbackup", mode="push")
        disks = sub(el, "disks")
        for dev in self.skipped:
            sub(disks, "disk", name=dev, backup="no")
        for dev, path in self.copies.items():
            disk = sub(disks, "disk", name=dev, backup="yes", type="file")
            sub(disk, "target", file=path)
            sub(disk, "driver", type="qcow2")
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> DomainBackup:
        copies: dict[str, str] = {}
        skipped: list[str] = []
        for disk in el.findall("disks/disk"):
            if disk.get("backup") == "no":
                skipped.append(disk.get("name", ""))
            else:
                copies[disk.get("name", "")] = disk.find("target").get("file", "")  # type: ignore[union-attr]
        return cls(copies=copies, skipped=skipped)


def disk_of(domain_xml: str, pool: str, volume: str, volume_path: str) -> tuple[str, list[str]]:
    """The target dev of the disk whose source is ``pool/volume`` (or its file), and every other
    disk's target dev. NotFound when the domain has no such disk."""
    disks = [d for d in GuestDomain.from_xml(domain_xml).find(GuestDisk) if isinstance(d, GuestDisk)]
    found = [d.target_dev for d in disks
             if (d.source_type == "volume" and d.pool == pool and d.volume == volume)
             or (d.source is not None and os.path.normpath(d.source) == os.path.normpath(volume_path))]
    if not found:
        raise NotFound(f"volume {pool}/{volume} is not a disk of this domain")
    return found[0], [d.target_dev for d in disks if d.target_dev != found[0] and d.device == "disk"]


def _job_active(dom: libvirt.virDomain) -> tuple[bool, int, int]:
    """(whether a job runs, bytes processed, bytes total) from the domain's job info."""
    info = dom.jobInfo()
    return info[0] != libvirt.VIR_DOMAIN_JOB_NONE, int(info[4]), int(info[3])


def _completed(dom: libvirt.virDomain) -> dict[str, object]:
    try:
        return dict(dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
    except libvirt.libvirtError:
        return {}


def backup_disk(connection: Connection, name: str, pool: str, volume: str, copy_name: str, timeout: float,
                progress: Callable[[int, int], None] | None = None) -> VolumeInfo:
    """See Driver.backup_disk."""
    bounded = connection.bounded

    def op(conn: libvirt.virConnect) -> VolumeInfo:
        def lookup() -> tuple[libvirt.virDomain, libvirt.virStoragePool, str, str, list[str]]:
            try:
                dom = conn.lookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    raise NotFound(f"no domain {name!r} on {connection.uri}") from exc
                raise
            if not dom.isActive():
                raise InvalidState(f"domain {name!r} is not running; copy its volumes with the storage API")
            p = get_pool(conn, pool)
            if find_volume(p, copy_name) is not None:
                raise AlreadyExists(f"volume {copy_name!r} already exists in pool {pool!r}")
            source_path = get_volume(p, volume).path()
            dev, others = disk_of(dom.XMLDesc(0), pool, volume, source_path)
            target = os.path.join(StoragePool.from_xml(p.XMLDesc(0)).path, copy_name)
            return dom, p, dev, target, others

        dom, p, dev, target, others = bounded(lookup, "finding the disk")
        xml = DomainBackup(copies={dev: target}, skipped=others).to_xml()
        bounded(lambda: dom.backupBegin(xml, None, 0), "starting the backup")
        deadline = time.monotonic() + timeout
        try:
            while True:
                active, done, total = bounded(lambda: _job_active(dom), "reading the backup job")
                if not active:
                    break
                if progress is not None:
                    progress(done, total)
                if time.monotonic() > deadline:
                    raise DriverError(f"the backup of {dev} of {name} did not end within {timeout:g} s; it was aborted")
                time.sleep(POLL_INTERVAL)
            stats = bounded(lambda: _completed(dom), "reading the finished job")
            if stats.get("type") == libvirt.VIR_DOMAIN_JOB_FAILED:
                raise DriverError(f"the backup of {dev} of {name} failed: {stats.get('errmsg', 'no reason given')}")
            refresh_pool(p, bounded, connection.timeout)
            return bounded(lambda: volume_info(p, get_volume(p, copy_name)), "reading the copy")
        except NodeUnavailable:
            raise
        except BaseException:
            def clean() -> None:
                try:
                    if _job_active(dom)[0]:
                        dom.abortJob()
                except libvirt.libvirtError:
                    pass
                try:
                    refresh_pool(p, lambda fn, _what: fn(), connection.timeout)
                    vol = find_volume(p, copy_name)
                    if vol is not None:
                        vol.delete(0)
                except libvirt.libvirtError:
                    pass
            try:
                bounded(clean, "removing the partial copy")
            except (NodeUnavailable, DriverError):
                pass
            raise

    try:
        return connection.call(op, f"backing up {pool}/{volume} of {name}", stepwise=True)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            raise NotSupported(f"{connection.uri} cannot copy the disk of a running domain: {describe(exc)}") from exc
        raise DriverError(f"backing up {pool}/{volume} of {name} failed on {connection.uri}: {describe(exc)}") from exc
