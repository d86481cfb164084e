"""Live migration between libvirt nodes: which disks are copied and the destination's domain XML.

The recipe measured in ../shared/virt/PROBES-2026-12.md section 5: peer-to-peer migrateToURI3
with VIR_MIGRATE_LIVE | PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE | NON_SHARED_INC, the copied
disks named in VIR_MIGRATE_PARAM_MIGRATE_DISKS (each pre-created, empty and of the same size, on
the destination: libvirt cannot pre-create targets for incremental copies) and an explicit
migration URI with the destination's address (nodes that share a hostname would otherwise send
the streams to themselves).

The destination's XML is the source's migratable XML with changes that do not touch the guest's
ABI: the kernel and initrd paths of the destination's copies, the copied volumes named by their
files there, and the serial log opened with append='on' (the log copied there beforehand keeps
what the guest printed so far; with append='off' it would be truncated at the switch-over).
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


def _key(disk: DomainDisk, by_path: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """The (pool, volume) of a disk named by volume, or by the file of a volume (as a domain that
    arrived by migration names it)."""
    if disk.pool and disk.volume:
        return disk.pool, disk.volume
    return by_path.get(disk.path or "")


def disks_to_copy(disks: list[DomainDisk], copy: tuple[tuple[str, str, str], ...], name: str,
                  source_paths: dict[tuple[str, str], str] | None = None) -> list[str]:
    """Target devices of the volumes in ``copy`` (``source_paths``: their files on the source);
    every other disk must be read-only."""
    wanted = {(pool, volume) for pool, volume, _path in copy}
    by_path = {path: key for key, path in (source_paths or {}).items()}
    targets = []
    for disk in disks:
        key = _key(disk, by_path)
        if key is not None and key in wanted:
            targets.append(disk.target)
            wanted.discard(key)
        elif not disk.readonly:
            raise InvalidSpec(f"disk {disk.target} ({disk.describe()}) of {name} is writable and not among the disks "
                              "to copy: its content would not reach the destination; detach it first")
    if wanted:
        missing = ", ".join(f"{p}/{v}" for p, v in sorted(wanted))
        raise InvalidSpec(f"{name} has no disk on {missing}, which was to be copied")
    return targets


def destination_xml(xml: str, kernel: str | None, initrd: str | None,
                    copy: tuple[tuple[str, str, str], ...] = (),
                    source_paths: dict[tuple[str, str], str] | None = None) -> str:
    """The source's XML with the destination's kernel and initrd, the serial log appended to, and
    each copied volume named by its file on the destination: libvirt 9.0 looks for the target of
    an incremental copy by path, and a volume disk has none until the domain starts there."""
    root = etree.fromstring(xml.encode())
    paths = {(pool, volume): path for pool, volume, path in copy}
    by_path = {path: key for key, path in (source_paths or {}).items()}
    for disk in root.findall("devices/disk"):
        src = disk.find("source")
        key = None
        if src is not None:
            key = (src.get("pool", ""), src.get("volume", "")) if src.get("pool") else by_path.get(src.get("file", ""))
        path = paths.get(key) if key is not None else None
        if src is not None and path is not None:
            disk.set("type", "file")
            for attr in ("pool", "volume", "mode"):
                src.attrib.pop(attr, None)
            src.set("file", path)
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
