"""Domain XML objects (backends.libvirt.config) and the policy that builds them (designer)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from backends.base import DiskSpec, DomainSpec, InvalidSpec, NicSpec
from backends.libvirt import designer
from backends.libvirt.config import (
    GuestConsole,
    GuestDisk,
    GuestDomain,
    GuestInterface,
    GuestMemballoon,
    GuestOS,
    GuestSerial,
    XmlObject,
    parse_size,
)
from backends.libvirt.testing import make_test_node_uri
from ec2gw.compute.placement import NodeRef
from ec2gw.compute.specs import Volume, guest_domain_spec

#: libvirt's RELAX NG schema of domain XML (what virt-xml-validate checks against)
DOMAIN_SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")
UUID = "6f1c0a52-3c1e-4b8e-9a55-1d2f3e4a5b6c"


def full_spec(**overrides: object) -> DomainSpec:
    fields: dict[str, object] = {
        "name": "i-0123456789abcdef0", "uuid": UUID, "memory_mib": 256, "vcpus": 2, "domain_type": "qemu",
        "disks": [DiskSpec(pool="instances", volume="i-0123456789abcdef0.qcow2", format="qcow2"),
               DiskSpec(path="/var/lib/ec2gw/seed/i-0123456789abcdef0.iso", device="cdrom")],
        "nics": [NicSpec(mac="52:54:00:AA:00:01", network="ec2-private"),
              NicSpec(mac="52:54:00:aa:00:02", bridge="br-public")],
        "kernel": "/var/lib/ec2gw/kernels/vmlinuz", "initrd": "/var/lib/ec2gw/kernels/initrd.img",
        "cmdline": "console=ttyS0 root=/dev/vda", "console_log": "/var/log/libvirt/qemu/i-0123.log"}
    fields.update(overrides)
    return DomainSpec(**fields)  # type: ignore[arg-type]


def xml_of(spec: DomainSpec, domain_type: str = "kvm") -> etree._Element:
    return etree.fromstring(designer.domain_config(spec, domain_type).to_xml().encode())


@pytest.mark.parametrize("obj", [
    GuestOS(kernel="/k", initrd="/i", cmdline="console=ttyS0"),
    GuestOS(arch="x86_64", machine="q35", boot_devs=["cdrom", "hd"]),
    GuestDisk(source="/images/a.qcow2", driver_type="qcow2", target_dev="vdb"),
    GuestDisk(source_type="volume", pool="p", volume="v", target_dev="vda"),
    GuestDisk(source_type="block", source="/dev/sdz", driver_type="raw", target_dev="vdc"),
    GuestDisk(device="cdrom", source="/seed.iso", target_dev="sda", target_bus="sata", readonly=True),
    GuestInterface(type="network", mac="52:54:00:00:00:01", source="default"),
    GuestInterface(type="bridge", mac="52:54:00:00:00:02", source="br0", model="e1000"),
    GuestInterface(type="user", mac="52:54:00:00:00:03"),
    GuestSerial(log_file="/var/log/c.log"),
    GuestSerial(log_file="/var/log/c.log", log_append=True, target_port=1),
    GuestConsole(),
    GuestMemballoon(),
    GuestDomain(type="test", name="d", uuid=UUID, memory_kib=65536, vcpus=3, features=["acpi"],
                devices=[GuestDisk(source="/x"), GuestSerial(), GuestConsole()]),
], ids=lambda o: type(o).__name__)
def test_round_trip(obj: XmlObject) -> None:
    again = type(obj).from_xml(obj.to_xml())
    assert again == obj
    assert again.to_xml() == obj.to_xml()


def test_round_trip_of_the_full_spec() -> None:
    dom = designer.domain_config(full_spec(), "kvm")
    assert GuestDomain.from_xml(dom.to_xml()) == dom


def test_full_spec_xml() -> None:
    root = xml_of(full_spec())
    assert root.get("type") == "qemu"  # the spec's own type wins over the node default
    assert root.findtext("name") == "i-0123456789abcdef0"
    assert root.findtext("uuid") == UUID
    assert root.findtext("memory") == str(256 * 1024) and root.find("memory").get("unit") == "KiB"
    assert root.findtext("vcpu") == "2"
    assert root.findtext("os/type") == "hvm"
    assert root.findtext("os/kernel") == "/var/lib/ec2gw/kernels/vmlinuz"
    assert root.findtext("os/initrd") == "/var/lib/ec2gw/kernels/initrd.img"
    assert root.findtext("os/cmdline") == "console=ttyS0 root=/dev/vda"
    assert root.find("os/boot") is None  # direct kernel boot: no BIOS boot order
    assert [f.tag for f in root.find("features")] == ["acpi", "apic"]

    disk, cdrom = root.findall("devices/disk")
    assert (disk.get("type"), disk.get("device")) == ("volume", "disk")
    assert disk.find("driver").attrib == {"name": "qemu", "type": "qcow2"}
    assert disk.find("source").attrib == {"pool": "instances", "volume": "i-0123456789abcdef0.qcow2"}
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert disk.find("readonly") is None
    assert (cdrom.get("type"), cdrom.get("device")) == ("file", "cdrom")
    assert cdrom.find("driver").get("type") == "raw"
    assert cdrom.find("source").get("file") == "/var/lib/ec2gw/seed/i-0123456789abcdef0.iso"
    assert cdrom.find("target").attrib == {"dev": "sda", "bus": "sata"}
    assert cdrom.find("readonly") is not None

    private, public = root.findall("devices/interface")
    assert private.get("type") == "network"
    assert private.find("mac").get("address") == "52:54:00:aa:00:01"  # normalised to lower case
    assert private.find("source").attrib == {"network": "ec2-private"}
    assert private.find("model").get("type") == "virtio"
    assert public.get("type") == "bridge" and public.find("source").attrib == {"bridge": "br-public"}

    serial = root.find("devices/serial")
    assert serial.get("type") == "pty"
    assert serial.find("log").attrib == {"file": "/var/log/libvirt/qemu/i-0123.log", "append": "on"}
    assert serial.find("target").get("port") == "0"
    console = root.find("devices/console")
    assert console.get("type") == "pty" and console.find("target").get("type") == "serial"
    assert root.find("devices/memballoon").get("model") == "virtio"
    assert root.findtext("on_poweroff") == "destroy" and root.findtext("on_reboot") == "restart"


def test_bios_boot_without_acpi_and_node_type() -> None:
    root = xml_of(full_spec(kernel=None, initrd=None, cmdline=None, acpi=False, domain_type=None, console_log=None,
                            nics=[NicSpec(mac="52:54:00:00:00:09")]), "kvm")
    assert root.get("type") == "kvm"
    assert root.find("os/kernel") is None and root.find("os/boot").get("dev") == "hd"
    assert root.find("features") is None
    nic = root.find("devices/interface")
    assert nic.get("type") == "user" and nic.find("source") is None
    assert root.find("devices/serial/log") is None


def test_device_names_per_bus() -> None:
    disks = [DiskSpec(path=f"/d{i}") for i in range(28)] + [
        DiskSpec(path="/c1", device="cdrom"), DiskSpec(path="/c2", device="cdrom", bus="ide"),
        DiskSpec(path="/s1", bus="scsi")]
    root = xml_of(full_spec(disks=disks))
    targets = [t.get("dev") for t in root.findall("devices/disk/target")]
    assert targets[:3] == ["vda", "vdb", "vdc"]
    assert targets[25:28] == ["vdz", "vdaa", "vdab"]
    assert targets[28:] == ["sda", "hda", "sdb"]


def test_explicit_targets_are_kept_and_clashes_rejected() -> None:
    disks = [DiskSpec(path="/a"), DiskSpec(path="/b", target="vda")]
    targets = [t.get("dev") for t in xml_of(full_spec(disks=disks)).findall("devices/disk/target")]
    assert targets == ["vdb", "vda"]
    with pytest.raises(InvalidSpec):
        designer.domain_config(full_spec(disks=[DiskSpec(path="/a", target="vdx"),
                                                DiskSpec(path="/b", target="vdx")]), "kvm")


def test_xen_policy() -> None:
    root = xml_of(full_spec(domain_type="xen"))
    disk = root.find("devices/disk")
    assert disk.find("target").attrib == {"dev": "xvda", "bus": "xen"}
    assert disk.find("driver").get("name") is None


XEN_NODE = NodeRef("x1", "xen+ssh://root@xenhost/system", "xen", "us-east-1a", ())


def xen_guest(kernel: bool, **nic: str) -> DomainSpec:
    """A Xen guest as the compute worker builds it (root overlay on virtio and the seed on the
    configured cdrom bus, as for every node; the designer makes them Xen's)."""
    return guest_domain_spec(
        XEN_NODE, "i-0123456789abcdef0", 2, 512,
        root=Volume("ec2gw-instances", "i-0123456789abcdef0.qcow2", "/var/lib/ec2gw/instances/i-0123456789abcdef0.qcow2",
                    "qcow2"),
        seed=Volume("ec2gw-instances", "i-0123456789abcdef0-seed.iso", "/var/lib/ec2gw/instances/seed.iso"),
        seed_bus="ide", nics=[NicSpec(mac="52:54:00:aa:00:01", network="ec2gw-private", **nic)],
        kernel=Volume("ec2gw-images", "aki-1", "/var/lib/ec2gw/images/aki-1") if kernel else None,
        ramdisk=Volume("ec2gw-images", "ari-1", "/var/lib/ec2gw/images/ari-1") if kernel else None,
        cmdline="console=hvc0 root=/dev/xvda", console_log="/var/lib/ec2gw/console/i-0123456789abcdef0.log")


def test_xen_pv_guest_with_a_kernel() -> None:
    root = xml_of(xen_guest(kernel=True), "kvm")
    assert root.get("type") == "xen"
    assert root.findtext("os/type") == "xen"  # paravirtualized
    assert root.findtext("os/kernel") == "/var/lib/ec2gw/images/aki-1"
    assert root.findtext("os/initrd") == "/var/lib/ec2gw/images/ari-1"
    assert root.findtext("os/cmdline") == "console=hvc0 root=/dev/xvda"
    assert root.find("os/boot") is None and root.find("features") is None  # no firmware, no ACPI
    disk, cdrom = root.findall("devices/disk")
    assert disk.find("target").attrib == {"dev": "xvda", "bus": "xen"}
    assert cdrom.find("target").attrib == {"dev": "xvdb", "bus": "xen"} and cdrom.find("readonly") is not None
    assert root.find("devices/interface/model") is None  # netfront
    assert root.find("devices/serial") is None
    assert root.find("devices/console").get("type") == "pty"
    assert root.find("devices/console/target").attrib == {"type": "xen", "port": "0"}
    assert root.find("devices/memballoon").get("model") == "xen"


def test_xen_hvm_guest_without_a_kernel() -> None:
    root = xml_of(xen_guest(kernel=False), "xen")
    assert root.get("type") == "xen"
    assert root.findtext("os/type") == "hvm" and root.find("os/boot").get("dev") == "hd"
    assert root.find("os/kernel") is None
    assert [f.tag for f in root.find("features")] == ["acpi", "apic"]
    disk, cdrom = root.findall("devices/disk")
    assert disk.find("target").attrib == {"dev": "xvda", "bus": "xen"}
    assert cdrom.find("target").attrib == {"dev": "hdc", "bus": "ide"}  # hda is xvda's emulated twin
    assert root.find("devices/interface/model") is None  # virtio does not exist in Xen guests
    assert xml_of(xen_guest(kernel=False, model="e1000")).find("devices/interface/model").get("type") == "e1000"
    serial = root.find("devices/serial")
    assert serial.get("type") == "pty" and serial.find("log") is None  # no virtlogd on Xen
    assert root.find("devices/console/target").get("type") == "serial"
    assert root.find("devices/memballoon").get("model") == "xen"
    dom = designer.domain_config(xen_guest(kernel=False), "xen")
    assert GuestDomain.from_xml(dom.to_xml()) == dom


def _valid(xml: str) -> tuple[bool, str]:
    """Check against libvirt's RELAX NG schema of domains, as virt-xml-validate does."""
    schema = etree.RelaxNG(etree.parse(str(DOMAIN_SCHEMA)))
    ok = schema.validate(etree.fromstring(xml.encode()))
    return ok, str(schema.error_log.last_error)


@pytest.mark.skipif(not DOMAIN_SCHEMA.is_file(), reason=f"libvirt's schema {DOMAIN_SCHEMA} is not installed (libvirt0)")
@pytest.mark.parametrize("kernel", [True, False], ids=["pv", "hvm"])
def test_xen_domains_follow_libvirts_schema(kernel: bool) -> None:
    xml = designer.domain_config(xen_guest(kernel), "xen").to_xml()
    ok, error = _valid(xml)
    assert ok, error
    broken = xml.replace('<target type="xen" port="0"/>', '<target type="hypervisor" port="0"/>') if kernel \
        else xml.replace('<boot dev="hd"/>', '<boot dev="nowhere"/>')
    assert broken != xml and not _valid(broken)[0]  # the check can fail


@pytest.mark.parametrize("kernel", [True, False], ids=["pv", "hvm"])
def test_xen_domains_parse_in_libvirt(kernel: bool) -> None:
    """libvirt's own parser (its test driver knows the os types hvm and xen) keeps every part of
    both kinds of Xen guest; only the domain type is the test driver's."""
    ours = designer.domain_config(xen_guest(kernel), "xen")
    as_test = dataclasses.replace(ours, type="test")
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(as_test.to_xml())
        back = GuestDomain.from_xml(dom.XMLDesc(0))
        dom.undefine()
    finally:
        conn.close()
    assert back.os.type == ("xen" if kernel else "hvm")
    assert (back.os.kernel, back.os.initrd, back.os.cmdline) == (ours.os.kernel, ours.os.initrd, ours.os.cmdline)
    assert back.find(GuestDisk) == ours.find(GuestDisk)
    assert back.find(GuestSerial) == ours.find(GuestSerial)
    assert back.find(GuestConsole) == ours.find(GuestConsole)
    assert back.find(GuestMemballoon) == ours.find(GuestMemballoon)
    assert [(i.mac, i.source, i.model) for i in back.find(GuestInterface)] == [  # type: ignore[union-attr]
        (i.mac, i.source, i.model) for i in ours.find(GuestInterface)]  # type: ignore[union-attr]
    assert back.features == ours.features


def test_from_xml_reads_what_libvirt_returns(tmp_path) -> None:
    """libvirt adds addresses, controllers and ids: from_xml keeps what ec2gw modelled."""
    conn = libvirt.open(make_test_node_uri(tmp_path))
    try:
        dom = conn.defineXML(designer.domain_config(full_spec(), "test").to_xml())
        dom.create()
        back = GuestDomain.from_xml(dom.XMLDesc(0))
    finally:
        conn.close()
    ours = designer.domain_config(full_spec(), "test")
    assert back.name == ours.name and back.uuid == ours.uuid and back.type == "qemu"
    assert back.memory_kib == ours.memory_kib and back.vcpus == 2
    assert back.os.kernel == ours.os.kernel and back.os.cmdline == ours.os.cmdline
    assert back.find(GuestDisk) == ours.find(GuestDisk)
    assert back.find(GuestInterface) == ours.find(GuestInterface)
    assert back.find(GuestSerial) == ours.find(GuestSerial)
    assert back.features == ["acpi", "apic"]


def test_from_xml_checks_the_root() -> None:
    with pytest.raises(ValueError, match="expected <disk>"):
        GuestDisk.from_xml("<interface type='user'/>")


@pytest.mark.parametrize("xml,expected", [
    ("<memory unit='KiB'>1024</memory>", 1 << 20), ("<memory unit='MiB'>2</memory>", 2 << 20),
    ("<memory unit='GiB'>1</memory>", 1 << 30), ("<memory>5</memory>", 5)])
def test_parse_size(xml: str, expected: int) -> None:
    assert parse_size(etree.fromstring(xml)) == expected
