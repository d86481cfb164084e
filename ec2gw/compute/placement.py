"""Which VMM node runs each new instance.

With no node registered, the implicit node `local` (libvirt's test driver by default) serves with
unlimited capacity. Registered nodes are filled capacity-aware, spreading over the active nodes
of the requested zone.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ec2gw.config import Settings
from ec2gw.db.models import Instance, Node

LOCAL_NODE = "local"


@dataclass(frozen=True)
class NodeRef:
    name: str
    uri: str
    domain_type: str
    zone: str
    pools: tuple[str, ...]


def implicit_node(settings: Settings) -> NodeRef:
    uri = settings.default_node_uri
    return NodeRef(LOCAL_NODE, uri, "test" if uri.startswith("test") else "qemu", settings.default_zone, ())


def node_ref(s: Session, settings: Settings, name: str | None) -> NodeRef:
    if name and name != LOCAL_NODE:
        n = s.get(Node, name)
        if n is not None:
            return NodeRef(n.name, n.uri, n.domain_type, n.zone, tuple(p for p in n.pools.split(",") if p))
    return implicit_node(settings)


def place(s: Session, settings: Settings, zone: str | None, count: int, vcpus: int, memory_mib: int) -> list[NodeRef]:
    """Up to `count` node slots in `zone` (any zone when None), most free memory first."""
    nodes = list(s.scalars(select(Node).where(Node.active.is_(True), Node.reachable.is_(True))))
    if not list(s.scalars(select(Node.name).limit(1))):
        node = implicit_node(settings)
        return [node] * count if zone in (None, node.zone) else []
    if zone is not None:
        nodes = [n for n in nodes if n.zone == zone]
    used = {
        name: (cpu or 0, mem or 0)
        for name, cpu, mem in s.execute(
            select(Instance.node_name, func.sum(Instance.vcpus), func.sum(Instance.memory_mib))
            .where(Instance.state.in_(("pending", "running", "stopping", "shutting-down")))
            .group_by(Instance.node_name)
        )
    }
    free = {n.name: [n.vcpus - used.get(n.name, (0, 0))[0], n.memory_mib - used.get(n.name, (0, 0))[1]] for n in nodes}
    by_name = {n.name: n for n in nodes}
    chosen: list[NodeRef] = []
    for _ in range(count):
        fits = [name for name, (c, m) in free.items() if c >= vcpus and m >= memory_mib]
        if not fits:
            break
        best = max(fits, key=lambda nm: (free[nm][1], free[nm][0], nm))
        free[best][0] -= vcpus
        free[best][1] -= memory_mib
        n = by_name[best]
        chosen.append(NodeRef(n.name, n.uri, n.domain_type, n.zone, tuple(p for p in n.pools.split(",") if p)))
    return chosen
