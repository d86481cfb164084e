"""Instance rows -> DomainSpec for the node that runs them.

On libvirt's test driver the disk is a name only (the driver opens no files). On QEMU/KVM nodes
the disks are volumes prepared by compute/provision.py: the instance's qcow2 overlay (vda) and
its NoCloud seed (a cdrom), with direct kernel boot when the image has a kernel.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from backends.base import DiskSpec, DomainSpec, NicSpec
from ec2gw.compute.placement import NodeRef

_NS = uuid.UUID("6f1c1f0e-4a55-4e53-9c1f-ec2c0ffee000")


def domain_uuid(instance_id: str) -> str:
    return str(uuid.uuid5(_NS, instance_id))


def test_domain_spec(node: NodeRef, instance_id: str, vcpus: int, memory_mib: int, mac: str | None) -> DomainSpec:
    return DomainSpec(
        name=instance_id,
        uuid=domain_uuid(instance_id),
        memory_mib=memory_mib,
        vcpus=vcpus,
        domain_type=node.domain_type,
        disks=[DiskSpec(path=f"/var/lib/ec2gw/instances/{instance_id}.qcow2", format="qcow2")],
        nics=[NicSpec(mac=mac)] if mac else [],
    )


@dataclass(frozen=True)
class Volume:
    """A volume on the node: pool, name, path and format."""

    pool: str
    name: str
    path: str
    format: str = "raw"


def guest_domain_spec(node: NodeRef, instance_id: str, vcpus: int, memory_mib: int, *, root: Volume,
                      seed: Volume | None, seed_bus: str, nics: list[NicSpec], kernel: Volume | None = None,
                      ramdisk: Volume | None = None, cmdline: str | None = None,
                      console_log: str | None = None) -> DomainSpec:
    """A real guest: root disk vda from its overlay, the seed as a read-only cdrom, its NICs.

    With a kernel the guest boots directly (kernel, initrd, cmdline from the volumes' paths);
    without one it boots from its disk. The domain type is the node's configured one.
    """
    disks = [DiskSpec(pool=root.pool, volume=root.name, format="qcow2", bus="virtio")]
    if seed is not None:
        disks.append(DiskSpec(pool=seed.pool, volume=seed.name, format="raw", device="cdrom", bus=seed_bus))
    return DomainSpec(
        name=instance_id,
        uuid=domain_uuid(instance_id),
        memory_mib=memory_mib,
        vcpus=vcpus,
        domain_type=node.domain_type,
        disks=disks,
        nics=nics,
        kernel=kernel.path if kernel else None,
        initrd=ramdisk.path if (kernel and ramdisk) else None,
        cmdline=cmdline if kernel else None,
        console_log=console_log,
    )
