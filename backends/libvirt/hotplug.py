"""Disks added to and removed from defined domains (EBS volumes), through libvirt calls only.

Recipe and timings: ../shared/virt/PROBES-2026-12.md section 1. A running domain gets the disk
with attachDeviceFlags(LIVE|CONFIG), so the guest sees it within a second and it survives a
restart; a shut-off one with CONFIG only. Removal is confirmed by reading the live definition
again, never taken from the detach call's success: QEMU answers the unplug request at once and
removes the device only when the guest releases it.

Drivers without device hot-plug (libvirt's test driver answers VIR_ERR_NO_SUPPORT to
attachDeviceFlags, detachDeviceFlags and blockResize) get the disk added to or removed from the
persistent definition by defining the domain again (defineXML): the change is real and shows
from the next start, and attach() says the running guest did not get it (returns False).
"""

from __future__ import annotations

import time

import libvirt
from lxml import etree

from backends.base import DetachTimeout, DiskSpec, InvalidSpec, InvalidState, NotSupported
from backends.libvirt import designer

_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


def _disks(xml: str) -> dict[str, tuple[str, etree._Element]]:
    """target -> (source, <disk> element) of a domain definition."""
    out: dict[str, tuple[str, etree._Element]] = {}
    root = etree.fromstring(xml.encode())
    for el in root.findall("./devices/disk"):
        tgt, src = el.find("target"), el.find("source")
        if tgt is None or not tgt.get("dev"):
            continue
        if src is None:
            source = ""
        elif src.get("pool"):
            source = f"{src.get('pool')}/{src.get('volume')}"
        else:
            source = src.get("file") or src.get("dev") or ""
        out[str(tgt.get("dev"))] = (source, el)
    return out


def targets(dom: libvirt.virDomain, live: bool) -> dict[str, str]:
    xml = dom.XMLDesc(0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE)
    return {t: src for t, (src, _) in _disks(xml).items()}


def _source_of(disk: DiskSpec) -> str:
    return f"{disk.pool}/{disk.volume}" if disk.pool else str(disk.path)


def _no_support(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED)


def _redefine(conn: libvirt.virConnect, dom: libvirt.virDomain, change: str, disk_xml: str | None,
              target: str | None) -> None:
    """Define the domain again with a disk added (``disk_xml``) or removed (``target``)."""
    root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    devices = root.find("devices")
    if devices is None:
        raise InvalidSpec(f"domain {dom.name()!r} has no <devices>; cannot {change}")
    if disk_xml is not None:
        devices.append(etree.fromstring(disk_xml.encode()))
    for el in devices.findall("disk"):
        tgt = el.find("target")
        if target is not None and tgt is not None and tgt.get("dev") == target:
            devices.remove(el)
    conn.defineXML(etree.tostring(root, encoding="unicode"))


def attach(conn: libvirt.virConnect, dom: libvirt.virDomain, disk: DiskSpec, domain_type: str) -> bool:
    """See Driver.attach_disk."""
    if not disk.target:
        raise InvalidSpec("attach_disk needs the disk's target device (vdb, ...)")
    xml = designer.disk_config(disk, domain_type, disk.target).to_xml()
    active = bool(dom.isActive())
    have_live = targets(dom, live=True) if active else {}
    have_config = targets(dom, live=False) if dom.isPersistent() else {}
    for have in (have_live, have_config):
        if disk.target in have and have[disk.target] != _source_of(disk):
            raise InvalidSpec(f"domain {dom.name()!r} already has another disk at {disk.target} "
                              f"({have[disk.target]})")
    need_live = active and disk.target not in have_live
    need_config = dom.isPersistent() and disk.target not in have_config
    flags = (_LIVE if need_live else 0) | (_CONFIG if need_config else 0)
    if not flags:
        return active
    try:
        dom.attachDeviceFlags(xml, flags)
        return active
    except libvirt.libvirtError as exc:
        if not _no_support(exc):
            raise
    if need_config:
        _redefine(conn, dom, f"attach {disk.target}", xml, None)
    return False


def detach(conn: libvirt.virConnect, dom: libvirt.virDomain, target: str, timeout: float, force: bool,
           poll: float = 0.1) -> None:
    """See Driver.detach_disk."""
    active = bool(dom.isActive())
    live = _disks(dom.XMLDesc(0)) if active else {}
    config = _disks(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) if dom.isPersistent() else {}
    hotplug = True
    if target in live:
        xml = etree.tostring(live[target][1], encoding="unicode")
        flags = _LIVE | (_CONFIG if target in config else 0)
        try:
            dom.detachDeviceFlags(xml, flags)
            config.pop(target, None)
        except libvirt.libvirtError as exc:
            if not _no_support(exc):
                raise
            hotplug = False
    if target in config:
        xml = etree.tostring(config[target][1], encoding="unicode")
        try:
            dom.detachDeviceFlags(xml, _CONFIG)
        except libvirt.libvirtError as exc:
            if not _no_support(exc):
                raise
            _redefine(conn, dom, f"detach {target}", None, target)
    if not hotplug or target not in live:
        return
    deadline = time.monotonic() + timeout
    while dom.isActive() and target in targets(dom, live=True):
        if time.monotonic() >= deadline:
            if force:
                return
            raise DetachTimeout(f"the guest of {dom.name()!r} did not release {target} within {timeout:.0f} s; "
                                "the unplug request is pending (a paused guest releases it when resumed)")
        time.sleep(poll)


def resize(dom: libvirt.virDomain, target: str, capacity: int) -> None:
    """See Driver.resize_disk."""
    if not dom.isActive():
        raise InvalidState(f"domain {dom.name()!r} is not running; grow the volume through the storage API")
    try:
        dom.blockResize(target, capacity, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    except libvirt.libvirtError as exc:
        if _no_support(exc):
            raise NotSupported(f"this node cannot resize the disks of running domains: {exc}") from exc
        raise
