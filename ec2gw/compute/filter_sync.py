"""Security groups on the nodes: the compute worker keeps every QEMU/KVM node's network filters
equal to what the database says (ec2gw/network/group_filters.py, backends/filters.py).

Nothing is pushed from the request path: AuthorizeSecurityGroupIngress, a Revoke, a change of an
instance's groups, or a launch or termination that changes who is in a group referenced by a
rule only change rows. Each pass (every FILTER_SYNC_SECONDS, on the worker's thread pool) works
out the filters each node needs and redefines those that differ (libvirt re-instantiates them on
the running guests: about 2 s per filter on a busy node, no restart); filters of ec2gw's that a
node no longer needs are removed (an instance moving to a node counts there from the start of the move:
compute/migration.py). A node that fails is logged and tried again on the next pass.

:func:`ensure_instance_filters` defines what one instance needs on a given node at once: the
launch calls it before the domain starts (a NIC referencing a missing filter cannot start), and
a live migration must call it for the destination node before migrating (libvirt refuses to
migrate a domain whose filter the destination lacks).

libvirt's test driver and Xen nodes apply no filters (backends.filters.FILTERING_DOMAIN_TYPES):
they are skipped, and `ec2gw admin node show` says so.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

from sqlalchemy import select

from backends.base import Driver, DriverError, NodeUnavailable
from backends.filters import FILTERING_DOMAIN_TYPES, GROUP_PREFIX, INSTANCE_PREFIX, FilterSpec
from ec2gw.compute.migration_models import ACTIVE as MIGRATION_ACTIVE
from ec2gw.compute.migration_models import InstanceMigration
from ec2gw.compute.placement import NodeRef, ref_of
from ec2gw.db.models import Node
from ec2gw.network import group_filters

if TYPE_CHECKING:
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute.filters")

#: seconds between two passes (a pass that takes longer delays the next)
FILTER_SYNC_SECONDS = 1.0
#: seconds after which a pass compares every filter with the node again, not with what it wrote
#: last (a node whose libvirtd lost or changed them gets them back)
RECHECK_SECONDS = 60.0


def enforces(domain_type: str) -> bool:
    """True when a node of this domain type filters its guests' traffic by security group."""
    return domain_type in FILTERING_DOMAIN_TYPES


class FilterSync:
    """The worker's filter pass: maybe_run() from each worker loop, the work on the pool."""

    def __init__(self, worker: ComputeWorker) -> None:
        self.worker = worker
        #: (node name, filter name) -> the spec last written to (or found on) that node
        self._applied: dict[tuple[str, str], FilterSpec] = {}
        self._lock = threading.Lock()
        self._node_locks: dict[str, threading.Lock] = {}
        self._next = 0.0
        self._recheck = time.monotonic() + RECHECK_SECONDS
        self._running: Future[None] | None = None
        #: node name -> the last error logged for it (logged again only when it changes)
        self._failing: dict[str, str] = {}

    def maybe_run(self, now: float) -> None:
        if now < self._next or (self._running is not None and not self._running.done()):
            return
        self._next = now + FILTER_SYNC_SECONDS
        if now >= self._recheck:
            self._recheck = now + RECHECK_SECONDS
            with self._lock:
                self._applied.clear()
        self._running = self.worker.pool.submit(self.run)

    def run(self) -> None:
        """One pass over every enforcing node; logs, never raises."""
        try:
            with self.worker.db.session() as s:
                nodes = [ref_of(n) for n in s.scalars(select(Node).where(Node.domain_type.in_(FILTERING_DOMAIN_TYPES))
                                                      .order_by(Node.name))]
        except Exception:
            log.exception("reading the nodes for the filter pass failed")
            return
        for node in nodes:
            if self.worker.node_waits(node.name):
                continue
            try:
                self.sync_node(node)
            except NodeUnavailable as exc:
                self._fail(node.name, f"node {node.name} does not answer ({exc}); its filters are updated when it does")
            except Exception as exc:
                self._fail(node.name, f"updating the filters of node {node.name} failed: {exc}; will retry")
            else:
                if self._failing.pop(node.name, None) is not None:
                    log.info("filters of node %s are up to date again", node.name)

    def _fail(self, node: str, message: str) -> None:
        if self._failing.get(node) != message:
            log.warning("%s", message)
        self._failing[node] = message
        with self._lock:  # the node may have been changed meanwhile: compare with it afresh
            for key in [k for k in self._applied if k[0] == node]:
                del self._applied[key]

    def sync_node(self, node: NodeRef) -> int:
        """Bring one node's filters to what the database says; returns how many were written."""
        with self.worker.db.session() as s:
            arriving = s.scalars(select(InstanceMigration.instance_id).where(
                InstanceMigration.destination == node.name, InstanceMigration.state.in_(MIGRATION_ACTIVE)))
            wanted = group_filters.node_filters(s, node.name, list(arriving))
        for line in wanted.skipped:
            log.debug("%s", line)
        drv = self.worker.drivers.get(node)
        written = self.apply(node.name, drv, wanted.specs)
        self._remove_unused(node.name, drv, wanted.names())
        return written

    def apply(self, node_name: str, drv: Driver, specs: list[FilterSpec]) -> int:
        """Define the specs the node does not have as they are (in order); returns how many were written."""
        with self._node_lock(node_name):  # the pass and a launch define the same filters
            return self._apply(node_name, drv, specs)

    def _node_lock(self, node_name: str) -> threading.Lock:
        with self._lock:
            return self._node_locks.setdefault(node_name, threading.Lock())

    def _apply(self, node_name: str, drv: Driver, specs: list[FilterSpec]) -> int:
        written = 0
        for spec in specs:
            key = (node_name, spec.name)
            with self._lock:
                known = self._applied.get(key)
            if known is not None and known.same_as(spec):
                continue
            started = time.monotonic()
            if drv.filters.define(spec):
                written += 1
                log.info("filter %s defined on node %s in %.2f s", spec.name, node_name, time.monotonic() - started)
            with self._lock:
                self._applied[key] = spec
        return written

    def _remove_unused(self, node_name: str, drv: Driver, wanted: set[str]) -> None:
        names = drv.filters.names("ec2gw-")
        # instance filters first: a group filter is in use while an instance filter includes it
        ours = [n for n in names if n.startswith(INSTANCE_PREFIX)] + [n for n in names if n.startswith(GROUP_PREFIX)]
        for name in ours:
            if name in wanted:
                continue
            if drv.filters.undefine(name):
                log.info("filter %s removed from node %s", name, node_name)
                with self._lock:
                    self._applied.pop((node_name, name), None)


def ensure_instance_filters(worker: ComputeWorker, node: NodeRef, instance_id: str) -> str | None:
    """Define on ``node`` the filters ``instance_id`` needs (its groups', then its own) and return
    the name its NICs reference; None on nodes that apply no filters.

    Call it before a domain for the instance starts on the node: at launch (compute/provision.py),
    and before a live migration to the node (libvirt refuses to migrate a domain whose filter the
    destination lacks). Raises DriverError (NodeUnavailable) when the node refuses (does not answer).
    """
    if not enforces(node.domain_type):
        return None
    drv = worker.drivers.get(node)
    with worker.db.session() as s:
        wanted = group_filters.instance_filters(s, instance_id)
    if not wanted.specs:
        raise DriverError(f"instance {instance_id} is not in the database; no filters to define")
    for line in wanted.skipped:
        log.warning("%s", line)
    worker.filters.apply(node.name, drv, wanted.specs)
    return wanted.specs[-1].name
