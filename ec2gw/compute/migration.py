"""Moving instances between nodes: the rules of `ec2gw admin instance migrate` and `node drain`.

What: request() checks a move and records it (an InstanceMigration row and the instance's task
``migrate``) for the compute worker, which carries it out (compute/moves.py). A running
instance moves live (its guest keeps running), a stopped one cold. The destination is the
``--to`` node, or else the least loaded other node of the instance's zone that serves its pools
and has room for it, chosen as placement chooses for a launch; the room is reserved until the
move is done or failed.
Why recorded rather than done here: the worker is the one process that acts on nodes (the test
driver's domains live in its process), and the instance's other tasks wait while its move runs.

An instance's EBS volumes move with it (its data volumes, and the root volume of an EBS-backed
image): the destination needs room for them in its volume storage too (`--volume-gb`).

Refused, with what to do instead: unknown instances; instances that are neither running nor
stopped, or busy with another task, or with a volume being attached, detached or modified;
hibernated ones (their memory is saved on their node); instances of the implicit node `local`;
a destination that is the instance's own node, of another zone, inactive, unreachable, not
serving its pools, without room (for its vCPUs and memory, or its volumes), or of another domain type; and live moves from or to libvirt's
test driver, which cannot migrate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ec2gw.compute import volume_placement
from ec2gw.compute.migration_models import ACTIVE, InstanceMigration
from ec2gw.compute.placement import LOCAL_NODE, Room, candidates, move_rooms, split_pools, spread
from ec2gw.config import Settings
from ec2gw.db.models import Instance, Node
from ec2gw.db.volume_models import LIVE_STATES, Volume, holds_volume_storage
from ec2gw.network import pools as address_pools
from ec2gw.network.pools import DEFAULT_POOL

TASK = "migrate"


class MigrationError(ValueError):
    """A move that cannot be made; the message says why and what to do instead."""


@dataclass(frozen=True)
class MoveRequest:
    migration_id: int
    instance_id: str
    source: str
    destination: str
    kind: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _instance(s: Session, instance_id: str) -> Instance:
    q = select(Instance).where(Instance.id == instance_id)
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    inst = s.scalar(q)
    if inst is None or inst.state == "terminated":
        raise MigrationError(f"no instance {instance_id} (or it is terminated); `ec2gw admin instance list` shows "
                             "the instances")
    return inst


def kind_of(inst: Instance) -> str:
    """live or cold, or MigrationError for an instance that cannot move now."""
    if inst.task is not None:
        raise MigrationError(f"{inst.id} is busy ({inst.task}); try again once that is done")
    if inst.state == "running":
        return "live"
    if inst.state == "stopped":
        if inst.hibernated:
            raise MigrationError(f"{inst.id} is hibernated: its memory is saved on node {inst.node_name}; start it, "
                                 "then migrate it while it runs")
        return "cold"
    raise MigrationError(f"{inst.id} is {inst.state}; only a running (live) or stopped (cold) instance moves; "
                         "try again once it has settled")


def instance_pools(s: Session, instance_id: str) -> list[str]:
    return sorted({a.pool for a in address_pools.addresses_of(s, instance_id)})


def _why_not(s: Session, dest: Node, inst: Instance, pools: list[str]) -> str | None:
    """Why ``dest`` cannot take ``inst`` (None: it can, room aside)."""
    if dest.name == inst.node_name:
        return f"{inst.id} already runs on node {dest.name}; name another node with --to, or leave --to out"
    if dest.zone != inst.availability_zone:
        return (f"node {dest.name} is in zone {dest.zone}, {inst.id} in {inst.availability_zone}; an instance moves "
                "only within its zone")
    if not dest.active:
        return f"node {dest.name} is inactive; `ec2gw admin node update {dest.name} --active` first"
    if not dest.reachable:
        return f"node {dest.name} does not answer ({dest.last_error or 'unreachable'}); `ec2gw admin node show {dest.name}`"
    missing = set(pools) - set(split_pools(dest.pools) or (DEFAULT_POOL,))
    if missing:
        return (f"node {dest.name} does not serve pool(s) {', '.join(sorted(missing))} of {inst.id}'s addresses; "
                "the instance keeps its addresses, so its destination must serve its pools")
    return None


def _check_kinds(src: Node, dest: Node, kind: str, instance_id: str) -> None:
    if src.domain_type != dest.domain_type:
        raise MigrationError(f"node {src.name} runs {src.domain_type} domains and {dest.name} {dest.domain_type} "
                             f"ones; {instance_id} moves only between nodes of the same domain type")
    if kind == "live" and "test" in (src.domain_type, dest.domain_type):
        raise MigrationError(f"{instance_id} runs and node {src.name if src.domain_type == 'test' else dest.name} is "
                             "libvirt's test driver, which cannot migrate a running guest; stop the instance to move "
                             "it cold")


def _check_volumes(s: Session, instance_id: str) -> int:
    """The GiB of volume storage the instance's volumes take on the destination; MigrationError
    while one of them is being attached, detached or modified (its task runs on the source)."""
    busy = s.execute(select(Volume.id, Volume.task).where(Volume.instance_id == instance_id,
                                                          Volume.task.is_not(None)).limit(1)).first()
    if busy is not None:
        raise MigrationError(f"{instance_id}'s volume {busy[0]} is busy ({busy[1]}); try again once that is done "
                             "(DescribeVolumes shows its state)")
    total = s.scalar(select(func.coalesce(func.sum(Volume.size_gib), 0)).where(
        Volume.instance_id == instance_id, Volume.state.in_(LIVE_STATES), holds_volume_storage()))
    return int(total or 0)


def _room_text(room: Room) -> str:
    return (f"{room.used_vcpus}/{room.vcpus} vCPUs and {room.used_memory_mib}/{room.memory_mib} MiB in use or "
            "reserved")


def request(s: Session, settings: Settings, instance_id: str, to: str | None = None) -> MoveRequest:
    """Check the move of ``instance_id`` (to node ``to``, or the best other node) and record it.

    Call inside ``db.session(write=True)``: the destination's room is checked and reserved under
    the same locks as a launch's (compute/placement.py).
    """
    inst = _instance(s, instance_id)
    source_name = inst.node_name or LOCAL_NODE
    src = s.get(Node, source_name) if source_name != LOCAL_NODE else None
    if src is None:
        raise MigrationError(f"{instance_id} runs on the implicit node '{LOCAL_NODE}', which has no other node to move "
                             "to; instances of registered nodes move (`ec2gw admin node add`)")
    kind = kind_of(inst)
    volume_gib = _check_volumes(s, instance_id)
    pools = instance_pools(s, instance_id)
    rooms = move_rooms(s, settings, inst.availability_zone, pools, source_name)
    if to is not None:
        dest = s.get(Node, to)
        if dest is None:
            known = ", ".join(s.scalars(select(Node.name).order_by(Node.name))) or "none"
            raise MigrationError(f"there is no node {to!r}; registered nodes: {known}")
        why = _why_not(s, dest, inst, pools)
        if why:
            raise MigrationError(why)
        _check_kinds(src, dest, kind, instance_id)
        room = next((r for r in rooms if r.node.name == to), None)
        if room is None:  # changed meanwhile (locked re-read on PostgreSQL)
            raise MigrationError(f"node {to} cannot take instances right now; `ec2gw admin node show {to}`")
        if not room.fits(inst.vcpus, inst.memory_mib):
            raise MigrationError(f"node {to} has no room for {instance_id} ({inst.vcpus} vCPUs, {inst.memory_mib} MiB): "
                                 f"{_room_text(room)}; pick another node, or raise its capacity with "
                                 f"`ec2gw admin node update {to}`")
        if not volume_placement.room_to_grow(s, to, volume_gib):
            raise MigrationError(f"node {to} has no room for the {volume_gib} GiB of {instance_id}'s volumes in its "
                                 f"volume storage; pick another node, or raise it with `ec2gw admin node update {to} "
                                 "--volume-gb`")
    else:
        same_type = [r for r in rooms if r.node.domain_type == src.domain_type
                     and volume_placement.room_to_grow(s, r.node.name, volume_gib)]
        chosen = spread(same_type, 1, inst.vcpus, inst.memory_mib)
        if not chosen:
            others = [n.name for n in candidates(s, inst.availability_zone, pools) if n.name != source_name]
            raise MigrationError(
                f"no other node can take {instance_id} ({inst.vcpus} vCPUs, {inst.memory_mib} MiB, zone "
                f"{inst.availability_zone}, pools {', '.join(pools) or DEFAULT_POOL}): "
                + (f"{', '.join(others)} lack room (vCPUs, memory or {volume_gib} GiB of volume storage) or run other "
                   "domain types" if others
                   else "no other active, reachable node of its zone serves its pools")
                + "; add or activate a node, or free room")
        dest = chosen[0].node
        _check_kinds(src, dest, kind, instance_id)
    res = s.execute(update(Instance).where(Instance.id == instance_id, Instance.task.is_(None),
                                           Instance.state == inst.state).values(task=TASK))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise MigrationError(f"{instance_id} changed meanwhile; look at `ec2gw admin instance list` and retry")
    row = InstanceMigration(instance_id=instance_id, source=source_name, destination=dest.name, kind=kind,
                            state="pending", requested_at=datetime.now(UTC))
    s.add(row)
    s.flush()
    return MoveRequest(row.id, instance_id, source_name, dest.name, kind)


def outcome(s: Session, migration_id: int) -> dict[str, Any]:
    """The move's row as the CLI reports it."""
    row = s.get(InstanceMigration, migration_id)
    if row is None:
        raise MigrationError(f"no migration {migration_id}")
    return {"migration_id": row.id, "instance_id": row.instance_id, "source": row.source,
            "destination": row.destination, "kind": row.kind, "state": row.state, "error": row.error,
            "seconds": row.seconds}


def active_moves(s: Session, instance_ids: list[str]) -> dict[str, str]:
    """instance id -> destination, for instances whose move is pending or running."""
    if not instance_ids:
        return {}
    q = select(InstanceMigration.instance_id, InstanceMigration.destination).where(
        InstanceMigration.instance_id.in_(instance_ids), InstanceMigration.state.in_(ACTIVE))
    return {iid: dest for iid, dest in s.execute(q)}


def deactivate(s: Session, node_name: str) -> list[tuple[str, str]]:
    """Mark the node inactive (no new launches or moves to it) and list its instances: (id, state)."""
    node = s.get(Node, node_name)
    if node is None:
        known = ", ".join(s.scalars(select(Node.name).order_by(Node.name))) or "none"
        raise MigrationError(f"there is no node {node_name!r}; registered nodes: {known}")
    s.execute(update(Node).where(Node.name == node_name).values(active=False))
    q = select(Instance.id, Instance.state).where(Instance.node_name == node_name, Instance.state != "terminated")
    return [(iid, st) for iid, st in s.execute(q.order_by(Instance.id))]
