"""Reconciliation of the database (the source of truth) with what the VMM nodes report.

The compute worker checks every node in the background, each in a thread of its own, at most one
check per node at a time; its loop never waits for a node, so a node that stops answering never
holds up work on the others, and the API (which only writes rows) never waits for any node.

A check reads the node's instances from the database first, then lists the node's domains, then
applies these rules with compare-and-set updates (an instance that changed since it was read, or
that the worker is busy with, is left for the next check):

1. Instances with a task (launch, start, stop, reboot, terminate) belong to the worker's jobs,
   which retry until their node answers; reconciliation leaves them alone.
2. A node that does not answer (refused, broken connection, no answer within the driver's
   timeout, or a check still running after SLOW_CHECK seconds) is marked unreachable with the
   error: its instances show `impaired` in DescribeInstanceStatus, its zone `impaired` in
   DescribeAvailabilityZones, placement skips it. Nothing else changes: its instances keep their
   state, since they may well still be running.
3. When it answers again it is marked reachable and reconciled by the rules below.
4. A running instance whose domain is shut off or crashed was shut down from inside: it becomes
   `stopped`, or `terminated` when its InstanceInitiatedShutdownBehavior is terminate
   (Client.InstanceInitiatedShutdown), as on EC2.
   A domain shut off with its memory saved on the node (hibernated there, virsh managedsave) is
   no dead one: the instance becomes `stopped` and hibernated; StartInstances restores it.
5. A running instance whose domain vanished:
   - on a node with volatile state (libvirt's in-process test driver, test:///...), which forgets
     every domain when the process ends, the domain is created again;
   - on any other node (the node was reinstalled, the domain undefined by hand, a test+tcp
     daemon restarted), it is handled like an unexpected shutdown: `stopped`, or `terminated` when
     its shutdown behaviour is terminate, with the reason Server.InternalError "the domain
     vanished from node N". StartInstances creates the domain again.
6. A stopped instance whose domain vanished stays stopped (StartInstances creates it again).
7. A running instance whose domain is paused stays running: an operator paused it (`ec2gw admin
   instance pause`), or someone did with virsh, or QEMU did on an I/O error. The instance records
   it (DescribeInstanceStatus reports it `impaired`) until the domain runs again.
8. A domain that is no instance of this service on that node is an unknown domain: logged when
   first seen, listed by `ec2gw admin node list` / `node show`, and never destroyed or changed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from backends.base import DomainInfo, DriverError, NodeUnavailable, PowerState
from ec2gw.compute.jobs import Job
from ec2gw.compute.migration_models import ACTIVE as MIGRATION_ACTIVE
from ec2gw.compute.migration_models import InstanceMigration
from ec2gw.compute.node_models import UnknownDomain
from ec2gw.compute.placement import LOCAL_NODE, NodeRef, implicit_node, ref_of
from ec2gw.compute.states import HIBERNATE_REASON
from ec2gw.db.models import Instance, Node

if TYPE_CHECKING:
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute")

#: seconds a check may run before its node is reported unreachable (the call itself times out later)
SLOW_CHECK = 10.0
#: seconds the worker's first pass waits for all nodes before it gets on with the work
STARTUP_WAIT = 10.0
_OFF = (PowerState.SHUTOFF, PowerState.CRASHED)
#: states in which a domain is known to be running or paused (a pause is recorded or cleared)
_KNOWN_RUN = (PowerState.RUNNING, PowerState.PAUSED)


@dataclass(frozen=True)
class Seen:
    """An instance as the database had it before the node was asked."""

    id: str
    state: str
    task: str | None
    updated_at: datetime
    shutdown_behavior: str
    vcpus: int
    memory_mib: int
    mac: str | None
    paused: bool = False


def is_volatile(node: NodeRef) -> bool:
    """True for libvirt's in-process test driver, whose domains die with the process."""
    parts = urlsplit(node.uri)
    return parts.scheme == "test" and not parts.netloc


class NodeChecks:
    """The worker's background node checks: one thread per check, at most one per node."""

    def __init__(self, worker: ComputeWorker) -> None:
        self.worker = worker
        self._lock = threading.Lock()
        self._running: dict[str, tuple[float, threading.Thread, NodeRef]] = {}

    def start(self, nodes: list[NodeRef]) -> list[threading.Thread]:
        started = []
        with self._lock:
            for node in nodes:
                if node.name in self._running:
                    continue
                t = threading.Thread(target=self._run, args=(node,), name=f"check {node.name}", daemon=True)
                self._running[node.name] = (time.monotonic(), t, node)
                started.append(t)
        for t in started:
            t.start()
        return started

    def _run(self, node: NodeRef) -> None:
        try:
            check_node(self.worker, node)
        except Exception:  # a check must never take the worker down; the next one retries
            log.exception("checking node %s failed", node.name)
        finally:
            with self._lock:
                self._running.pop(node.name, None)

    def flag_slow(self) -> None:
        """Report nodes whose check has not come back within SLOW_CHECK seconds as unreachable."""
        now = time.monotonic()
        with self._lock:
            slow = [(node, now - t0) for t0, _t, node in self._running.values() if now - t0 > SLOW_CHECK]
        for node, age in slow:
            mark_node(self.worker, node, False, f"no answer from {node.uri} for {age:.0f} s")


def _checks(worker: ComputeWorker) -> NodeChecks:
    checks: NodeChecks | None = getattr(worker, "_node_checks", None)
    if checks is None:
        checks = NodeChecks(worker)
        worker._node_checks = checks  # type: ignore[attr-defined]
    return checks


def nodes_to_check(worker: ComputeWorker) -> list[NodeRef]:
    """Every registered node (inactive ones still run instances), and `local` while it has instances."""
    with worker.db.session() as s:
        nodes = [ref_of(n) for n in s.scalars(select(Node).order_by(Node.name))]
        on_local = s.scalar(select(Instance.id).where(_on_node(LOCAL_NODE), Instance.state != "terminated").limit(1))
    if on_local is not None:
        nodes.append(implicit_node(worker.settings))
    return nodes


def check_nodes(worker: ComputeWorker, wait: float = 0.0) -> None:
    """Start a check of every node; wait up to ``wait`` seconds for them to finish."""
    checks = _checks(worker)
    checks.flag_slow()
    deadline = time.monotonic() + wait
    for t in checks.start(nodes_to_check(worker)):
        t.join(max(0.0, deadline - time.monotonic()))


def reconcile(worker: ComputeWorker) -> None:
    """The first pass after the worker takes its lease: check every node, waiting a little for them."""
    check_nodes(worker, wait=STARTUP_WAIT)
    worker._reconciled = True


def sync_power_states(worker: ComputeWorker) -> None:
    """The periodic pass: checks run in the background; this returns at once."""
    check_nodes(worker, wait=0.0)


def _on_node(name: str) -> Any:
    if name == LOCAL_NODE:
        return or_(Instance.node_name == LOCAL_NODE, Instance.node_name.is_(None))
    return Instance.node_name == name


def mark_node(worker: ComputeWorker, node: NodeRef, reachable: bool, error: str = "") -> None:
    """Record the node's health; log when it changes."""
    if node.name == LOCAL_NODE:
        if not reachable:
            log.warning("the implicit node %s does not answer: %s", node.uri, error)
        return
    with worker.db.session(write=True) as s:
        res: Any = s.execute(update(Node).where(Node.name == node.name, Node.reachable.is_(not reachable))
                             .values(reachable=reachable, last_error=error[:500]))
        if res.rowcount == 0 and not reachable:
            s.execute(update(Node).where(Node.name == node.name).values(last_error=error[:500]))
    if res.rowcount:
        if reachable:
            log.warning("node %s answers again; reconciling its instances", node.name)
        else:
            log.warning("node %s does not answer (%s); its instances show impaired", node.name, error)


def check_node(worker: ComputeWorker, node: NodeRef) -> None:
    """One node: read its instances, list its domains, apply the rules of the module docstring."""
    started = datetime.now(UTC)
    with worker.db.session() as s:
        seen = [Seen(r.id, r.state, r.task, r.updated_at, r.shutdown_behavior, r.vcpus, r.memory_mib, r.mac,
                     r.paused_at is not None)
                for r in s.scalars(select(Instance).where(_on_node(node.name), Instance.state != "terminated"))]
    try:
        domains = {d.name: d for d in worker.drivers.get(node).list_domains()}
    except NodeUnavailable as exc:
        mark_node(worker, node, False, str(exc))
        return
    mark_node(worker, node, True)
    with worker._lock:
        busy = set(worker.in_flight)
    for inst in seen:
        if inst.task is None and inst.id not in busy:
            _reconcile_instance(worker, node, inst, domains.get(inst.id))
    if node.name != LOCAL_NODE:
        _record_unknown(worker, node, domains, {i.id for i in seen}, started)


def _reconcile_instance(worker: ComputeWorker, node: NodeRef, inst: Seen, dom: DomainInfo | None) -> None:
    if inst.state != "running":
        return
    if dom is not None and dom.state in _OFF and dom.saved:
        _hibernated(worker, node, inst)
    elif dom is not None and dom.state in _OFF:
        reason = ("Client.InstanceInitiatedShutdown", "Client.InstanceInitiatedShutdown: Instance initiated shutdown")
        _shut_down(worker, inst, *reason)
    elif dom is not None and (dom.state is PowerState.PAUSED) != inst.paused and dom.state in _KNOWN_RUN:
        _record_pause(worker, inst, dom.state is PowerState.PAUSED)
    elif dom is None and is_volatile(node):
        job = Job(inst.id, "spawn", node, inst.vcpus, inst.memory_mib, inst.mac, False)
        try:
            worker.drivers.get(node).spawn(worker.domain_spec(job))
        except DriverError as exc:  # created meanwhile, or the node went away: the next check sees
            log.warning("reconcile: could not recreate domain %s on node %s: %s", inst.id, node.name, exc)
            return
        log.info("reconcile: recreated domain %s on node %s (its test driver forgot it)", inst.id, node.name)
    elif dom is None:
        log.warning("reconcile: the domain of %s vanished from node %s; the instance is %s", inst.id, node.name,
                    "terminated" if inst.shutdown_behavior == "terminate" else "stopped")
        _shut_down(worker, inst, "Server.InternalError",
                   f"Server.InternalError: the domain vanished from node {node.name}")


def _hibernated(worker: ComputeWorker, node: NodeRef, inst: Seen) -> None:
    """running -> stopped and hibernated, if unchanged: its domain was saved on the node (virsh managedsave)."""
    unchanged = and_(Instance.id == inst.id, Instance.state == "running", Instance.task.is_(None),
                     Instance.updated_at == inst.updated_at)
    with worker.db.session(write=True) as s:
        s.execute(update(Instance).where(unchanged).values(
            state="stopped", hibernated=True, paused_at=None, state_reason_code=HIBERNATE_REASON[0],
            state_reason_message=f"{HIBERNATE_REASON[0]}: the domain was saved on node {node.name}"))
    log.warning("reconcile: the domain of %s was saved on node %s; the instance is stopped (hibernated)", inst.id, node.name)


def _record_pause(worker: ComputeWorker, inst: Seen, paused: bool) -> None:
    """Record that the running instance's domain is paused (or runs again), if the row is unchanged."""
    unchanged = and_(Instance.id == inst.id, Instance.state == "running", Instance.task.is_(None),
                     Instance.updated_at == inst.updated_at)
    with worker.db.session(write=True) as s:
        s.execute(update(Instance).where(unchanged).values(paused_at=datetime.now(UTC) if paused else None))
    log.warning("reconcile: the domain of %s %s", inst.id, "is paused" if paused else "runs again")


def _shut_down(worker: ComputeWorker, inst: Seen, code: str, message: str) -> None:
    """running -> stopped, or -> shutting-down + terminate task (the worker finishes it), if unchanged."""
    unchanged = and_(Instance.id == inst.id, Instance.state == "running", Instance.task.is_(None),
                     Instance.updated_at == inst.updated_at)
    values: dict[str, Any] = {"state_reason_code": code, "state_reason_message": message, "paused_at": None}
    if inst.shutdown_behavior == "terminate":
        values.update(state="shutting-down", task="terminate")
    else:
        values.update(state="stopped")
    with worker.db.session(write=True) as s:
        s.execute(update(Instance).where(unchanged).values(**values))


def _record_unknown(worker: ComputeWorker, node: NodeRef, domains: dict[str, DomainInfo], known: set[str],
                    started: datetime) -> None:
    """Replace the node's unknown-domain rows with what this check found (never touching the domains)."""
    strangers = set(domains) - known
    with worker.db.session(write=True) as s:
        if strangers:  # launched (or moving here) since the instances were read: known after all
            strangers -= _ids_on(s, node.name, strangers)
        rows = {u.domain: u for u in s.scalars(select(UnknownDomain).where(UnknownDomain.node_name == node.name))}
        gone = set(rows) - strangers
        if gone:
            s.execute(delete(UnknownDomain).where(UnknownDomain.node_name == node.name, UnknownDomain.domain.in_(gone)))
        for name in sorted(strangers):
            state = domains[name].state.value
            if name in rows:
                rows[name].state, rows[name].last_seen = state, started
            else:
                s.add(UnknownDomain(node_name=node.name, domain=name, state=state, first_seen=started, last_seen=started))
                log.warning("node %s has a domain %s (%s) that is no instance of this service; it is left alone "
                            "(`ec2gw admin node show %s` lists such domains)", node.name, name, state, node.name)


def _ids_on(s: Session, node_name: str, names: set[str]) -> set[str]:
    """Those of ``names`` that are instances on the node, or moving to it (their domain arrives)."""
    q = select(Instance.id).where(Instance.id.in_(sorted(names)), _on_node(node_name), Instance.state != "terminated")
    moving = select(InstanceMigration.instance_id).where(InstanceMigration.instance_id.in_(sorted(names)),
                                                         InstanceMigration.destination == node_name,
                                                         InstanceMigration.state.in_(MIGRATION_ACTIVE))
    return set(s.scalars(q)) | set(s.scalars(moving))
