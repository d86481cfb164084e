"""Everything an instance needs on its node before its domain starts, and the clean-up after.

On libvirt's test driver there is nothing to provision. Real nodes get the image into their
storage pool, a qcow2 overlay, a NoCloud seed and a DHCP host entry (see the QEMU issue).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backends.base import DomainSpec
from ec2gw.compute.specs import test_domain_spec

if TYPE_CHECKING:
    from ec2gw.compute.worker import ComputeWorker, Job


def prepare(worker: ComputeWorker, job: Job) -> DomainSpec:
    return test_domain_spec(job.node, job.instance_id, job.vcpus, job.memory_mib, job.mac)


def cleanup(worker: ComputeWorker, job: Job) -> None:
    """Remove what prepare() made for the instance; missing pieces are fine."""
    return
