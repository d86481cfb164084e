"""Live migration between libvirt nodes: which disks are copied and the destination's domain XML.

The recipe measured in ../shared/virt/PROBES-2026-12.md section 5: peer-to-peer migrateToURI3
with VIR_MIGRATE_LIVE | PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE | NON_SHARED_INC, the copied
disks named in VIR_MIGRATE_PARAM_MIGRATE_DISKS (each pre-created, empty and of the same size, on
the destination: libvirt cannot pre-create targets for incremental copies) and an explicit
migration URI with the destination's address (nodes that share a hostname would otherwise send
the streams to themselves).

The destination's XML is the source's migratable XML with two changes that do not touch the
guest's ABI: the kernel and initrd paths of the destination's copies, and the serial log opened
with append='on' (the log copied there beforehand keeps what the guest printed so far; with
append='off' it would be truncated at the switch-over).
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt
from lxml import etree

from backends.base import InvalidSpec

FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
         | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
#: added when disks are copied: only the overlay's own blocks travel, the image is on both nodes
COPY_FLAG = libvirt.VIR_MIGRATE_NON_SHARED_INC


@dataclass(frozen=True)
class DomainDisk:
    """One <disk> of a domain as migration sees it."""

    target: str
    device: str
    readonly: bool
    pool: str | None
    volume: str | None
    path: str | None

    def describe(self) -> str:
        return f"{self.pool}/{self.volume}" if self.pool else str(self.path)


def disks_of(root: etree._Element) -> list[DomainDisk]:
    out = []
    for disk in root.findall("devices/disk"):
        src, tgt = disk.find("source"), disk.find("target")
        out.append(DomainDisk(target=tgt.get("dev", "") if tgt is not None else "", device=disk.get("device", "disk"),
                              readonly=disk.find("readonly") is not None or disk.get("device") == "cdrom",
                              pool=src.get("pool") if src is not None else None,
                              volume=src.get("volume") if src is not None else None,
                              path=(src.get("file") or src.get("dev")) if src is not None else None))
    return out


def disks_to_copy(disks: list[DomainDisk], copy: tuple[tuple[str, str], ...], name: str) -> list[str]:
    """Target devices of the volumes in ``copy``; every other disk must be read-only."""
    wanted = set(copy)
    targets = []
    for disk in disks:
        if disk.pool and disk.volume and (disk.pool, disk.volume) in wanted:
            targets.append(disk.target)
            wanted.discard((disk.pool, disk.volume))
        elif not disk.readonly:
            raise InvalidSpec(f"disk {disk.target} ({disk.describe()}) of {name} is writable and not among the disks "
                              "to copy: its content would not reach the destination; detach it first")
    if wanted:
        missing = ", ".join(f"{p}/{v}" for p, v in sorted(wanted))
        raise InvalidSpec(f"{name} has no disk on {missing}, which was to be copied")
    return targets


def destination_xml(xml: str, kernel: str | None, initrd: str | None) -> str:
    """The source's XML with the destination's kernel and initrd, and the serial log appended to."""
    root = etree.fromstring(xml.encode())
    for tag, path in (("kernel", kernel), ("initrd", initrd)):
        el = root.find(f"os/{tag}")
        if path is not None and el is not None:
            el.text = path
    for log in root.findall("devices/serial/log") + root.findall("devices/console/log"):
        log.set("append", "on")
    return etree.tostring(root, encoding="unicode")


def params(dest_xml: str, persist_xml: str, address: str | None, disks: list[str]) -> dict[str, object]:
    """migrateToURI3's typed parameters."""
    out: dict[str, object] = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: dest_xml,
                              libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: persist_xml}
    if address:
        host = f"[{address}]" if ":" in address else address
        out[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{host}"
    if disks:
        out[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = disks
    return out


def flags(disks: list[str]) -> int:
    return FLAGS | (COPY_FLAG if disks else 0)
