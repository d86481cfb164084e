"""Which node of a zone holds a new EBS volume, and how much volume storage each node has left.

A node's volume storage is ``nodes.volume_gb`` GiB (`ec2gw admin node add|update --volume-gb`;
unset: no fixed limit); every volume that is not deleted counts its whole size against the node
holding it (volumes are thin qcow2 files, but a guest may fill them). A new volume goes to the
active, reachable node of its zone with the most free room (ties: the node's name); with no node
registered the implicit node ``local`` holds every volume of the default zone. Runs in the
request's write transaction, so concurrent CreateVolumes cannot both take the last room.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ec2gw.compute.placement import LOCAL_NODE
from ec2gw.config import Settings
from ec2gw.db.models import Node
from ec2gw.db.volume_models import LIVE_STATES, Volume, holds_volume_storage
from ec2gw.errors import ServiceError


def used_gib(s: Session, names: list[str] | None = None) -> dict[str, int]:
    """node name -> GiB of the volumes it holds."""
    q = select(Volume.node_name, func.coalesce(func.sum(Volume.size_gib), 0)).where(Volume.state.in_(LIVE_STATES),
                                                                                   holds_volume_storage())
    if names is not None:
        q = q.where(Volume.node_name.in_(names))
    return {name: int(total) for name, total in s.execute(q.group_by(Volume.node_name))}


def zones(s: Session, settings: Settings) -> list[str]:
    """The zones volumes can be made in: those of the active nodes, or the default zone without nodes."""
    found = sorted(set(s.scalars(select(Node.zone).where(Node.active.is_(True)))))
    if found:
        return found
    registered = s.scalar(select(func.count(Node.name)))
    return [] if registered else [settings.default_zone]


def check_zone(s: Session, settings: Settings, zone: str | None) -> str:
    """The zone asked for, if volumes can be made there; InvalidParameterValue otherwise."""
    if not zone:
        raise ServiceError("MissingParameter", "The request must contain the parameter AvailabilityZone "
                                               "(DescribeAvailabilityZones lists them).")
    known = zones(s, settings)
    if zone not in known:
        raise ServiceError("InvalidParameterValue",
                           f"Invalid availability zone: [{zone}]. Choose one of: {', '.join(known) or '(none)'}.")
    return zone


def choose_node(s: Session, settings: Settings, zone: str, size_gib: int) -> str:
    """The node of ``zone`` that takes a volume of ``size_gib``; InsufficientVolumeCapacity when none can."""
    nodes = list(s.scalars(select(Node).where(Node.zone == zone, Node.active.is_(True)).order_by(Node.name)))
    if not nodes:
        return LOCAL_NODE
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(Node.name).where(Node.name.in_([n.name for n in nodes])).order_by(Node.name).with_for_update())
    used = used_gib(s, [n.name for n in nodes])
    best: tuple[float, str] | None = None
    for n in nodes:
        if not n.reachable:
            continue
        free = float("inf") if n.volume_gb is None else n.volume_gb - used.get(n.name, 0)
        if free < size_gib:
            continue
        if best is None or free > best[0]:
            best = (free, n.name)
    if best is None:
        raise ServiceError(
            "InsufficientVolumeCapacity",
            f"There is not enough volume storage in {zone} for a volume of {size_gib} GiB. Try a smaller volume "
            "or another zone, or ask the administrator to add storage (ec2gw admin node update --volume-gb).",
        )
    return best[1]


def room_to_grow(s: Session, node_name: str, grow_gib: int) -> bool:
    """Whether the node holding a volume has ``grow_gib`` more GiB of volume storage."""
    node = s.get(Node, node_name)
    if node is None or node.volume_gb is None:
        return True
    return used_gib(s, [node_name]).get(node_name, 0) + grow_gib <= node.volume_gb


def set_capacity(s: Session, node_name: str, volume_gb: int | None) -> None:
    """Set the GiB of volumes node ``node_name`` may hold (None: no fixed limit). Lowering it below
    what the node holds is allowed: it only stops new volumes there."""
    if volume_gb is not None and volume_gb < 0:
        raise ValueError(f"--volume-gb must be 0 or more, got {volume_gb}")
    node = s.get(Node, node_name)
    if node is None:
        raise ValueError(f"no node named {node_name!r}; `ec2gw admin node list` shows the nodes")
    node.volume_gb = volume_gb


def storage_report(s: Session, node_name: str) -> dict[str, int | None]:
    """Volume storage of a node for `admin node show`: capacity (None: no fixed limit), used and free GiB."""
    node = s.get(Node, node_name)
    capacity = node.volume_gb if node is not None else None
    used = used_gib(s, [node_name]).get(node_name, 0)
    volumes = s.scalar(select(func.count(Volume.id)).where(Volume.node_name == node_name,
                                                           Volume.state.in_(LIVE_STATES),
                                                           holds_volume_storage())) or 0
    return {"capacity_gib": capacity, "used_gib": used, "free_gib": None if capacity is None else capacity - used,
            "volumes": int(volumes)}
