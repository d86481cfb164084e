"""Instance rows -> DomainSpec for the node that runs them.

On libvirt's test driver the disk is a name only (the driver opens no files). Real nodes get
their disks from the image cache (see compute/images_on_nodes when present).
"""

from __future__ import annotations

import uuid

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
