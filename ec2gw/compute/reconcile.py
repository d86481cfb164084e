"""Reconciliation of the database (the source of truth) with what the VMM nodes report."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from backends.base import NodeUnavailable, PowerState
from ec2gw.compute.placement import NodeRef, node_ref
from ec2gw.compute.specs import test_domain_spec
from ec2gw.db.models import Instance

if TYPE_CHECKING:
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute")


def reconcile(self: ComputeWorker) -> None:
    """Make the nodes match the database after a start: recreate what a node forgot.

    Running (and pending) instances whose domain is missing are spawned again on the test
    driver, whose state dies with the process; on real nodes a vanished domain means the
    instance stopped, and it is shown stopped. Domains the database does not know are
    reported in the log and never destroyed.
    """
    with self.db.session() as s:
        rows = list(s.scalars(select(Instance).where(Instance.state.in_(("running", "stopped", "stopping", "pending")))))
        refs = {r.id: node_ref(s, self.settings, r.node_name) for r in rows}
    by_node: dict[NodeRef, list[Instance]] = {}
    for r in rows:
        by_node.setdefault(refs[r.id], []).append(r)
    for node, insts in by_node.items():
        try:
            drv = self.drivers.get(node)
            present = {d.name: d for d in drv.list_domains()}
        except NodeUnavailable as exc:
            log.warning("reconcile: node %s does not answer: %s", node.name, exc)
            continue
        known = {i.id for i in insts}
        for name in sorted(set(present) - known):
            if name.startswith("i-"):
                log.warning("reconcile: node %s has domain %s that the database does not know; left alone", node.name, name)
        for inst in insts:
            if inst.id in present or inst.task is not None:
                continue
            if inst.state == "running":
                if node.domain_type == "test":
                    drv.spawn(test_domain_spec(node, inst.id, inst.vcpus, inst.memory_mib, inst.mac))
                    log.info("reconcile: recreated domain %s on node %s", inst.id, node.name)
                else:
                    self._set_state(inst.id, "running", "stopped", "Server.InternalError",
                                    "Server.InternalError: the domain vanished from its node")
    self._reconciled = True

def sync_power_states(self: ComputeWorker) -> None:
    """A guest that powered itself off shows stopped (or terminated, per its shutdown behaviour)."""
    with self.db.session() as s:
        rows = list(s.scalars(select(Instance).where(Instance.state == "running", Instance.task.is_(None))))
        refs = {r.id: node_ref(s, self.settings, r.node_name) for r in rows}
    by_node: dict[NodeRef, list[Instance]] = {}
    for r in rows:
        by_node.setdefault(refs[r.id], []).append(r)
    for node, insts in by_node.items():
        try:
            present = {d.name: d for d in self.drivers.get(node).list_domains()}
            self._mark_node(node.name, True)
        except NodeUnavailable as exc:
            self._mark_node(node.name, False, str(exc))
            continue
        for inst in insts:
            with self._lock:
                if inst.id in self.in_flight:
                    continue
            info = present.get(inst.id)
            if info is None or info.state not in (PowerState.SHUTOFF, PowerState.CRASHED):
                continue
            if inst.shutdown_behavior == "terminate":
                with self.db.session(write=True) as s:
                    s.execute(
                        update(Instance)
                        .where(Instance.id == inst.id, Instance.state == "running", Instance.task.is_(None))
                        .values(state="shutting-down", task="terminate", state_reason_code="Client.InstanceInitiatedShutdown",
                                state_reason_message="Client.InstanceInitiatedShutdown: Instance initiated shutdown")
                    )
            else:
                self._set_state(inst.id, "running", "stopped", "Client.InstanceInitiatedShutdown",
                                "Client.InstanceInitiatedShutdown: Instance initiated shutdown")

