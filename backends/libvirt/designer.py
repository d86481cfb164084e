"""Policy: which libvirt domain a DomainSpec becomes (buses, device names, consoles, features).

Kept apart from config.py (pure XML objects) and driver.py (libvirt calls), as nova's designer.py,
so the choices are in one place and testable without a hypervisor.
"""

from __future__ import annotations

from backends.base import DiskSpec, DomainSpec, InvalidSpec, NicSpec
from backends.libvirt.config import (
    GuestConsole,
    GuestDevice,
    GuestDisk,
    GuestDomain,
    GuestInterface,
    GuestMemballoon,
    GuestOS,
    GuestSerial,
)

_BUS_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd", "ide": "hd", "xen": "xvd"}


def default_bus(domain_type: str, device: str) -> str:
    """virtio disks and sata cdroms (sata works on both the pc and q35 machines); xen uses xen."""
    if domain_type == "xen":
        return "xen"
    return "sata" if device == "cdrom" else "virtio"


def device_name(prefix: str, index: int) -> str:
    """The index-th device name for a bus prefix: vda .. vdz, vdaa, ... (as the kernel names them)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def disk_config(disk: DiskSpec, domain_type: str, target: str) -> GuestDisk:
    """One DiskSpec as a <disk>; ``target`` is the device name chosen by domain_config()."""
    return GuestDisk(source_type="file" if disk.path else "volume", device=disk.device,
                     driver_name=None if domain_type == "xen" else "qemu", driver_type=disk.format,
                     source=disk.path, pool=disk.pool, volume=disk.volume, target_dev=target,
                     target_bus=disk.bus or default_bus(domain_type, disk.device),
                     readonly=disk.readonly or disk.device == "cdrom")


def nic_config(nic: NicSpec) -> GuestInterface:
    """One NicSpec as an <interface>: on a libvirt network, a host bridge, or user-mode."""
    if nic.network:
        return GuestInterface(type="network", mac=nic.mac, source=nic.network, model=nic.model)
    if nic.bridge:
        return GuestInterface(type="bridge", mac=nic.mac, source=nic.bridge, model=nic.model)
    return GuestInterface(type="user", mac=nic.mac, model=nic.model)


def domain_config(spec: DomainSpec, domain_type: str) -> GuestDomain:
    """The complete domain for ``spec`` on a node whose domains are of ``domain_type``.

    The serial console is a pty (reachable with openConsole) that is also logged to
    ``spec.console_log`` when given; ACPI and APIC are on so that the guest sees the power button
    (graceful shutdown and reboot need it).
    """
    kind = spec.domain_type or domain_type
    used: dict[str, int] = {}
    taken = {d.target for d in spec.disks if d.target}
    devices: list[GuestDevice] = []
    for disk in spec.disks:
        bus = disk.bus or default_bus(kind, disk.device)
        target = disk.target
        while target is None:
            prefix = _BUS_PREFIX.get(bus, "sd")
            used[prefix] = used.get(prefix, -1) + 1
            candidate = device_name(prefix, used[prefix])
            target = None if candidate in taken else candidate
        devices.append(disk_config(disk, kind, target))
    if len({d.target_dev for d in devices if isinstance(d, GuestDisk)}) != len(spec.disks):
        raise InvalidSpec("two disks have the same target device")
    devices.extend(nic_config(nic) for nic in spec.nics)
    devices.append(GuestSerial(log_file=spec.console_log))
    devices.append(GuestConsole())
    devices.append(GuestMemballoon())
    os = GuestOS(kernel=spec.kernel, initrd=spec.initrd, cmdline=spec.cmdline,
                 boot_devs=[] if spec.kernel else ["hd"])
    return GuestDomain(type=kind, name=spec.name, uuid=spec.uuid, memory_kib=spec.memory_mib * 1024,
                       vcpus=spec.vcpus, os=os, features=["acpi", "apic"] if spec.acpi else [],
                       devices=devices)
