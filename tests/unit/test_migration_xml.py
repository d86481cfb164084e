"""backends/libvirt/migration.py: the disks a live migration copies and the destination's XML."""

from __future__ import annotations

import pytest
from lxml import etree

from backends.base import InvalidSpec
from backends.libvirt import migration

XML = """<domain type='qemu'><name>i-1</name><os><type>hvm</type><kernel>/src/aki</kernel><initrd>/src/ari</initrd></os>
<devices>
  <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='ec2gw-instances' volume='i-1.qcow2'/>
    <target dev='vda' bus='virtio'/></disk>
  <disk type='volume' device='cdrom'><source pool='ec2gw-instances' volume='i-1-seed.iso'/><target dev='sda' bus='sata'/>
    <readonly/></disk>
  <serial type='pty'><log file='/n/console/i-1.log' append='off'/><target port='0'/></serial>
</devices></domain>"""
COPY = (("ec2gw-instances", "i-1.qcow2", "/dst/instances/i-1.qcow2"),)


def test_only_the_overlay_is_copied_and_writable_disks_must_be() -> None:
    disks = migration.disks_of(etree.fromstring(XML.encode()))
    assert migration.disks_to_copy(disks, COPY, "i-1") == ["vda"]
    with pytest.raises(InvalidSpec, match="disk vda .* is writable and not among the disks to copy"):
        migration.disks_to_copy(disks, (), "i-1")
    with pytest.raises(InvalidSpec, match="has no disk on p/v"):
        migration.disks_to_copy(disks, (*COPY, ("p", "v", "/x")), "i-1")


def test_destination_xml() -> None:
    root = etree.fromstring(migration.destination_xml(XML, "/dst/aki", None, COPY).encode())
    assert root.findtext("os/kernel") == "/dst/aki" and root.findtext("os/initrd") == "/src/ari"
    vda, seed = root.findall("devices/disk")
    assert vda.get("type") == "file" and dict(vda.find("source").attrib) == {"file": "/dst/instances/i-1.qcow2"}
    assert seed.get("type") == "volume" and seed.find("source").get("volume") == "i-1-seed.iso"
    assert root.find("devices/serial/log").get("append") == "on"
    p = migration.params("<d/>", "<p/>", "10.77.0.2", ["vda"])
    assert p["migrate_uri"] == "tcp://10.77.0.2" and p["migrate_disks"] == ["vda"]
    assert migration.flags(["vda"]) & migration.COPY_FLAG and not migration.flags([]) & migration.COPY_FLAG


def test_a_domain_that_arrived_by_migration_names_its_overlay_by_file() -> None:
    arrived = migration.destination_xml(XML, None, None, COPY)
    disks = migration.disks_of(etree.fromstring(arrived.encode()))
    here = {("ec2gw-instances", "i-1.qcow2"): "/dst/instances/i-1.qcow2"}
    back = (("ec2gw-instances", "i-1.qcow2", "/src/instances/i-1.qcow2"),)
    assert migration.disks_to_copy(disks, back, "i-1", here) == ["vda"]
    root = etree.fromstring(migration.destination_xml(arrived, None, None, back, here).encode())
    assert root.find("devices/disk/source").get("file") == "/src/instances/i-1.qcow2"
