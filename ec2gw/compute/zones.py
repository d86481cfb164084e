"""Availability zones: the zones of the registered VMM nodes, or the default zone of the implicit node."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ec2gw.compute.placement import overcommit_ratios, usage
from ec2gw.config import Settings
from ec2gw.db.models import Node


@dataclass(frozen=True)
class Zone:
    name: str
    state: str  # available | impaired | unavailable


def list_zones(s: Session, settings: Settings) -> list[Zone]:
    nodes = list(s.scalars(select(Node).where(Node.active.is_(True))))
    if not nodes:
        return [Zone(settings.default_zone, "available")]
    zones: dict[str, list[Node]] = {}
    for n in nodes:
        zones.setdefault(n.zone, []).append(n)
    out = []
    for name, members in sorted(zones.items()):
        up = sum(1 for n in members if n.reachable)
        out.append(Zone(name, "available" if up == len(members) else "impaired" if up else "unavailable"))
    return out


def type_capacity(
    s: Session, settings: Settings, types: dict[str, tuple[int, int]]
) -> dict[str, dict[str, tuple[int, int]]]:
    """instance type -> zone -> (max, available): how many instances of the type (vCPUs, memory MiB)
    the zone's active registered nodes hold when empty, and how many its reachable ones can take now,
    overcommit included, as placement counts. Empty with no node registered: the implicit node has
    no fixed capacity."""
    nodes = list(s.scalars(select(Node).where(Node.active.is_(True)).order_by(Node.name)))
    cpu_ratio, mem_ratio = overcommit_ratios(settings)
    used = usage(s, [n.name for n in nodes])
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for name, (vcpus, memory) in types.items():
        zones = out.setdefault(name, {})
        for n in nodes:
            cap_cpu, cap_mem = int(n.vcpus * cpu_ratio), int(n.memory_mib * mem_ratio)
            used_cpu, used_mem = used.get(n.name, (0, 0))
            full = min(cap_cpu // vcpus, cap_mem // memory)
            free = max(0, min((cap_cpu - used_cpu) // vcpus, (cap_mem - used_mem) // memory)) if n.reachable else 0
            total, available = zones.get(n.zone, (0, 0))
            zones[n.zone] = (total + full, available + free)
    return out
