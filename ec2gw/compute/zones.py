"""Availability zones: the zones of the registered VMM nodes, or the default zone of the implicit node."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

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
