"""Which VMM node runs each new instance.

With no node registered at all, the implicit node `local` (libvirt's test driver by default)
serves with unlimited capacity, so the service works out of the box. Otherwise instances go to
the active, reachable nodes of the requested zone (any zone when none is asked for) that serve
every pool the launch needs, capacity-aware on vCPUs and memory:

* a node's capacity is its registered vCPUs and memory times the overcommit ratios
  (settings ``cpu_overcommit`` and ``memory_overcommit``; 1.0, no overcommit, by default);
* every instance that still has a domain on its node counts against it: pending, running,
  stopping, stopped (its domain stays defined and StartInstances brings it back on the same
  node) and shutting-down; only terminated instances free their share;
* an instance moving to a node (`ec2gw admin instance migrate`, compute/migration_models.py)
  counts there too until its move is done or failed;
* instances spread: each goes to the node with the lowest load, the larger of its used vCPU
  and memory fractions (ties: the node's name), so nodes fill evenly whatever their size.

Concurrent launches, in any number of processes, never overcommit a node. On SQLite the caller's
transaction holds the database's write lock (``db.session(write=True)``, BEGIN IMMEDIATE), so
nothing else can place meanwhile. On PostgreSQL the chosen nodes' rows are locked with
SELECT ... FOR UPDATE (in name order, so two launches never deadlock) inside a savepoint, the
usage of those nodes is read again under the lock, and if another launch took the room in
between, the savepoint is rolled back (which releases those locks) and placement starts over.
The locks are held until the caller's transaction, which inserts the instances, commits.

A stopped instance changing type (ModifyInstanceAttribute) may grow only into room its node has,
checked by ``room_to_grow`` under the same locks: the write lock on SQLite, the node's row lock on
PostgreSQL.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ec2gw.compute.migration_models import ACTIVE as MIGRATION_ACTIVE
from ec2gw.compute.migration_models import InstanceMigration
from ec2gw.config import Settings
from ec2gw.db.models import Instance, Node
from ec2gw.network.pools import DEFAULT_POOL

LOCAL_NODE = "local"
#: instance states whose domain still occupies its node
OCCUPYING_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
#: optimistic attempts on PostgreSQL before placement locks every candidate node at once
_ATTEMPTS = 5


@dataclass(frozen=True)
class NodeRef:
    name: str
    uri: str
    domain_type: str
    zone: str
    pools: tuple[str, ...]


def split_pools(text: str) -> tuple[str, ...]:
    return tuple(p for p in (x.strip() for x in text.split(",")) if p)


def ref_of(n: Node) -> NodeRef:
    return NodeRef(n.name, n.uri, n.domain_type, n.zone, split_pools(n.pools))


def implicit_node(settings: Settings) -> NodeRef:
    uri = settings.default_node_uri
    return NodeRef(LOCAL_NODE, uri, "test" if uri.startswith("test") else "qemu", settings.default_zone, ())


def node_ref(s: Session, settings: Settings, name: str | None) -> NodeRef:
    """The node an instance row names; the implicit node for `local` or no name."""
    if name and name != LOCAL_NODE:
        n = s.get(Node, name)
        if n is not None:
            return ref_of(n)
    return implicit_node(settings)


def overcommit_ratios(settings: Settings) -> tuple[float, float]:
    """(vCPU ratio, memory ratio) from the settings; 1.0 each (no overcommit) unless configured."""
    cpu = float(getattr(settings, "cpu_overcommit", 1.0) or 1.0)
    mem = float(getattr(settings, "memory_overcommit", 1.0) or 1.0)
    if cpu <= 0 or mem <= 0:
        raise ValueError(f"overcommit ratios must be positive (cpu_overcommit={cpu}, memory_overcommit={mem}); "
                         "1.0 means no overcommit, 4.0 four virtual CPUs per physical one")
    return cpu, mem


@dataclass
class Room:
    """One node's capacity (after overcommit) and what its instances use."""

    node: Node
    vcpus: int
    memory_mib: int
    used_vcpus: int = 0
    used_memory_mib: int = 0

    def fits(self, vcpus: int, memory_mib: int, times: int = 1) -> bool:
        return (self.used_vcpus + vcpus * times <= self.vcpus
                and self.used_memory_mib + memory_mib * times <= self.memory_mib)

    def load(self) -> float:
        return max(self.used_vcpus / self.vcpus, self.used_memory_mib / self.memory_mib)

    def can_grow(self, vcpus: int, memory_mib: int) -> bool:
        """Room for its instances to use ``vcpus`` and ``memory_mib`` more? Only what grows is
        checked: a dimension that stays or shrinks never refuses, even on a node already over it."""
        return ((vcpus <= 0 or self.used_vcpus + vcpus <= self.vcpus)
                and (memory_mib <= 0 or self.used_memory_mib + memory_mib <= self.memory_mib))


def usage(s: Session, names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """node name -> (vCPUs, memory MiB) its occupying instances use, and those moving to it reserve."""
    wanted = list(names)
    if not wanted:
        return {}
    rows = s.execute(
        select(Instance.node_name, func.sum(Instance.vcpus), func.sum(Instance.memory_mib))
        .where(Instance.node_name.in_(wanted), Instance.state.in_(OCCUPYING_STATES))
        .group_by(Instance.node_name)
    )
    out = {str(name): (int(cpu or 0), int(mem or 0)) for name, cpu, mem in rows}
    moving = s.execute(
        select(InstanceMigration.destination, func.sum(Instance.vcpus), func.sum(Instance.memory_mib))
        .join(Instance, Instance.id == InstanceMigration.instance_id)
        .where(InstanceMigration.state.in_(MIGRATION_ACTIVE), InstanceMigration.destination.in_(wanted))
        .group_by(InstanceMigration.destination)
    )
    for name, cpu, mem in moving:
        have = out.get(str(name), (0, 0))
        out[str(name)] = (have[0] + int(cpu or 0), have[1] + int(mem or 0))
    return out


def candidates(s: Session, zone: str | None, pools: Sequence[str] | None) -> list[Node]:
    """Active, reachable nodes of ``zone`` (any when None) serving every pool in ``pools``."""
    q = select(Node).where(Node.active.is_(True), Node.reachable.is_(True))
    if zone is not None:
        q = q.where(Node.zone == zone)
    need = set(pools or ())
    # a node serving no pool serves the embedded default pool
    return [n for n in s.scalars(q.order_by(Node.name)) if need <= set(split_pools(n.pools) or (DEFAULT_POOL,))]


def spread(rooms: list[Room], count: int, vcpus: int, memory_mib: int) -> list[Room]:
    """Up to ``count`` slots, each on the least loaded node that still fits one more instance."""
    heap = [(r.load(), r.node.name, i) for i, r in enumerate(rooms) if r.vcpus > 0 and r.memory_mib > 0
            and r.fits(vcpus, memory_mib)]
    heapq.heapify(heap)
    chosen: list[Room] = []
    while heap and len(chosen) < count:
        _, name, i = heapq.heappop(heap)
        room = rooms[i]
        room.used_vcpus += vcpus
        room.used_memory_mib += memory_mib
        chosen.append(room)
        if room.fits(vcpus, memory_mib):
            heapq.heappush(heap, (room.load(), name, i))
    return chosen


def _rooms(s: Session, nodes: list[Node], ratios: tuple[float, float]) -> list[Room]:
    used = usage(s, (n.name for n in nodes))
    return [Room(n, int(n.vcpus * ratios[0]), int(n.memory_mib * ratios[1]), *used.get(n.name, (0, 0))) for n in nodes]


def _lock(s: Session, names: Iterable[str]) -> list[Node]:
    """Row locks on the nodes, in name order (every locker uses that order: no deadlocks).

    The rows are read again under the lock, so a capacity or state changed meanwhile counts.
    """
    q = (select(Node).where(Node.name.in_(sorted(set(names)))).order_by(Node.name).with_for_update()
         .execution_options(populate_existing=True))
    return list(s.scalars(q))


def _check_write_lock(s: Session) -> None:
    conn: Any = s.connection()
    if conn.dialect.name == "sqlite" and not conn.get_execution_options().get("ec2gw_immediate"):
        raise RuntimeError("placement needs the database's write lock on SQLite: call it inside db.session(write=True)")


def place(s: Session, settings: Settings, zone: str | None, count: int, vcpus: int, memory_mib: int,
          pools: Sequence[str] | None = None) -> list[NodeRef]:
    """Up to ``count`` node slots for instances of ``vcpus`` and ``memory_mib`` (see the module doc).

    Fewer slots than asked (possibly none) means that is all the capacity there is; the caller
    decides whether that meets its MinCount. The capacity stays reserved for the caller as long
    as its transaction inserts the instances before it commits.
    """
    if count <= 0:
        return []
    _check_write_lock(s)
    if s.scalar(select(Node.name).limit(1)) is None:
        node = implicit_node(settings)
        return [node] * count if zone in (None, node.zone) and set(pools or ()) <= {DEFAULT_POOL} else []
    ratios = overcommit_ratios(settings)
    nodes = candidates(s, zone, pools)
    if s.get_bind().dialect.name != "postgresql":
        return [ref_of(r.node) for r in spread(_rooms(s, nodes, ratios), count, vcpus, memory_mib)]
    for _ in range(_ATTEMPTS):
        plan = spread(_rooms(s, nodes, ratios), count, vcpus, memory_mib)
        if not plan:
            return []
        savepoint = s.begin_nested()
        if _still_fits(s, plan, ratios, vcpus, memory_mib):
            savepoint.commit()  # releases the savepoint, keeps the locks
            return [ref_of(r.node) for r in plan]
        savepoint.rollback()  # another launch took the room: let go of these nodes and plan again
    nodes = [n for n in _lock(s, (n.name for n in nodes)) if n.active and n.reachable]
    return [ref_of(r.node) for r in spread(_rooms(s, nodes, ratios), count, vcpus, memory_mib)]


def move_rooms(s: Session, settings: Settings, zone: str, pools: Sequence[str], source: str) -> list[Room]:
    """The rooms of the nodes an instance of ``zone`` using ``pools`` may move to from ``source``:
    active, reachable, not ``source``. Call it inside the transaction that records the move, as for
    place(): on PostgreSQL these nodes' rows are locked here until it commits."""
    _check_write_lock(s)
    nodes = [n for n in candidates(s, zone, pools) if n.name != source]
    if nodes and s.get_bind().dialect.name == "postgresql":
        nodes = [n for n in _lock(s, (n.name for n in nodes)) if n.active and n.reachable]
    return _rooms(s, nodes, overcommit_ratios(settings))


def room_to_grow(s: Session, settings: Settings, node_name: str | None, vcpus: int, memory_mib: int) -> bool:
    """Can an instance on ``node_name`` grow by ``vcpus`` and ``memory_mib`` (a stopped instance
    changing type; negative values shrink it)?

    A resize that grows nothing is always allowed, and so is any on the implicit node (unlimited)
    or on a node no longer registered. Otherwise the node's capacity (overcommit included) must hold
    its usage plus what grows. Call it before changing the instance (its current size counts in the
    usage), inside the transaction that changes it: as for place(), the database's write lock on
    SQLite, and on PostgreSQL the node's row lock taken here and held until that transaction
    commits, so a resize and a launch, or two resizes, never both take the node's last room.
    """
    if vcpus <= 0 and memory_mib <= 0:
        return True
    _check_write_lock(s)
    if not node_name or node_name == LOCAL_NODE:
        return True
    locked = _lock(s, [node_name])
    if not locked:
        return True
    return _rooms(s, locked, overcommit_ratios(settings))[0].can_grow(vcpus, memory_mib)


def _still_fits(s: Session, plan: list[Room], ratios: tuple[float, float], vcpus: int, memory_mib: int) -> bool:
    """Re-read the locked nodes' usage: does the plan still fit on each of them?"""
    per_node: dict[str, int] = {}
    for r in plan:
        per_node[r.node.name] = per_node.get(r.node.name, 0) + 1
    locked = _lock(s, per_node)
    if not all(n.active and n.reachable for n in locked):
        return False
    fresh = {r.node.name: r for r in _rooms(s, locked, ratios)}
    return all(name in fresh and fresh[name].fits(vcpus, memory_mib, times) for name, times in per_node.items())
