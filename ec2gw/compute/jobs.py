"""A task of the compute worker on one instance, as the worker, provisioning and reconciliation pass it."""

from __future__ import annotations

from dataclasses import dataclass

from ec2gw.compute.placement import NodeRef


@dataclass(frozen=True)
class Job:
    instance_id: str
    task: str  # spawn | start | stop | terminate | reboot | pause | resume | hibernate | migrate
    node: NodeRef
    vcpus: int
    memory_mib: int
    mac: str | None
    force: bool
