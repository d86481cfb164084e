"""Policy: which libvirt domain a DomainSpec becomes (buses, device names, consoles, features).

Kept apart from config.py (pure XML objects) and driver.py (libvirt calls), as nova's designer.py,
so the choices are in one place and testable without a hypervisor.

Xen nodes (libvirt's libxl driver, domain type ``xen``): a spec with a kernel (an image with an
aki-/ari-) becomes a paravirtualized guest, ``<os><type>xen</type>`` with the kernel, initrd and
command line, every disk and cdrom on the xen bus (xvda, xvdb, ...), NICs without a model
(netfront), the console ``<console><target type='xen'/>`` (hvc0) and no ACPI; a spec without one
becomes an HVM guest, ``<type>hvm</type>`` booting from its disk, disks on the xen bus (each also
emulated for the firmware), cdroms on ide from hdc on (hda, hdb are the emulated twins of xvda,
xvdb), a serial console, ACPI and APIC. Buses other than these (virtio, sata, scsi) do not exist
in Xen guests and are replaced. The serial console is not logged to a file (virtlogd serves QEMU
only), so GetConsoleOutput reads the live console of a Xen guest.
"""

from __future__ import annotations

from backends.base import DiskSpec, DomainSpec, InvalidSpec, NicSpec
from backends.filters import FILTERING_DOMAIN_TYPES
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
#: NIC models of Xen HVM guests (emulated, or netfront); PV guests have netfront only (no model)
_XEN_HVM_NIC_MODELS = ("e1000", "rtl8139", "netfront")


def default_bus(domain_type: str, device: str, pv: bool = False) -> str:
    """virtio disks and sata cdroms (sata works on both the pc and q35 machines); Xen: the xen bus,
    but ide for the cdroms of HVM guests."""
    if domain_type == "xen":
        return "ide" if device == "cdrom" and not pv else "xen"
    return "sata" if device == "cdrom" else "virtio"


def is_xen_pv(spec: DomainSpec, domain_type: str) -> bool:
    """A Xen guest with a kernel boots paravirtualized; without one, as HVM."""
    return (spec.domain_type or domain_type) == "xen" and spec.kernel is not None


def disk_bus(disk: DiskSpec, domain_type: str, pv: bool = False) -> str:
    """The spec's bus where the guest has it, else the default (Xen has only xen, and ide for HVM cdroms)."""
    if domain_type == "xen":
        allowed = ("xen", "ide") if disk.device == "cdrom" and not pv else ("xen",)
        return disk.bus if disk.bus is not None and disk.bus in allowed else default_bus(domain_type, disk.device, pv)
    return disk.bus or default_bus(domain_type, disk.device, pv)


def device_name(prefix: str, index: int) -> str:
    """The index-th device name for a bus prefix: vda .. vdz, vdaa, ... (as the kernel names them)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def disk_config(disk: DiskSpec, domain_type: str, target: str, pv: bool = False) -> GuestDisk:
    """One DiskSpec as a <disk>; ``target`` is the device name chosen by domain_config()."""
    return GuestDisk(source_type="file" if disk.path else "volume", device=disk.device,
                     driver_name=None if domain_type == "xen" else "qemu", driver_type=disk.format,
                     source=disk.path, pool=disk.pool, volume=disk.volume, target_dev=target,
                     target_bus=disk_bus(disk, domain_type, pv),
                     readonly=disk.readonly or disk.device == "cdrom")


def nic_config(nic: NicSpec, domain_type: str = "kvm", pv: bool = False) -> GuestInterface:
    """One NicSpec as an <interface>: on a libvirt network, a host bridge, or user-mode.

    Its network filter is referenced on QEMU/KVM domains only (test and Xen domains apply none)."""
    model: str | None = nic.model
    if domain_type == "xen" and (pv or model not in _XEN_HVM_NIC_MODELS):
        model = None  # netfront (PV), or libxl's default emulated NIC with netfront beside it (HVM)
    ref = nic.filter if domain_type in FILTERING_DOMAIN_TYPES else None
    params = dict(nic.filter_params) if ref else {}
    if nic.network:
        return GuestInterface(type="network", mac=nic.mac, source=nic.network, model=model, filterref=ref,
                              filter_params=params)
    if nic.bridge:
        return GuestInterface(type="bridge", mac=nic.mac, source=nic.bridge, model=model, filterref=ref,
                              filter_params=params)
    return GuestInterface(type="user", mac=nic.mac, model=model)


def domain_config(spec: DomainSpec, domain_type: str) -> GuestDomain:
    """The complete domain for ``spec`` on a node whose domains are of ``domain_type``.

    The serial console is a pty (reachable with openConsole) that is also logged to
    ``spec.console_log`` when given, appending: QEMU reopens the log at every start, and a restore
    from a managed save (hibernation) would otherwise truncate what the guest printed before; ACPI and APIC are on so that the guest sees the power button
    (graceful shutdown and reboot need it).
    """
    kind = spec.domain_type or domain_type
    xen, pv = kind == "xen", is_xen_pv(spec, domain_type)
    # Xen HVM: xvda, xvdb are also emulated as hda, hdb for the firmware, so ide cdroms start at hdc
    used: dict[str, int] = {"hd": 1} if xen and not pv else {}
    taken = {d.target for d in spec.disks if d.target}
    devices: list[GuestDevice] = []
    for disk in spec.disks:
        bus = disk_bus(disk, kind, pv)
        target = disk.target
        while target is None:
            prefix = _BUS_PREFIX.get(bus, "sd")
            used[prefix] = used.get(prefix, -1) + 1
            candidate = device_name(prefix, used[prefix])
            target = None if candidate in taken else candidate
        devices.append(disk_config(disk, kind, target, pv))
    if len({d.target_dev for d in devices if isinstance(d, GuestDisk)}) != len(spec.disks):
        raise InvalidSpec("two disks have the same target device")
    devices.extend(nic_config(nic, kind, pv) for nic in spec.nics)
    if pv:
        devices.append(GuestConsole(target_type="xen"))  # hvc0
    else:
        log = None if xen else spec.console_log
        devices.append(GuestSerial(log_file=log, log_append=log is not None))
        devices.append(GuestConsole())
    devices.append(GuestMemballoon(model="xen" if xen else "virtio"))
    os = GuestOS(type="xen" if pv else "hvm", kernel=spec.kernel, initrd=spec.initrd, cmdline=spec.cmdline,
                 boot_devs=[] if spec.kernel else ["hd"])
    return GuestDomain(type=kind, name=spec.name, uuid=spec.uuid, memory_kib=spec.memory_mib * 1024,
                       vcpus=spec.vcpus, os=os, features=["acpi", "apic"] if spec.acpi and not pv else [],
                       devices=devices)
