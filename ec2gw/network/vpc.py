"""EC2's network view over the pools: one default VPC per installation, every pool a subnet of it.

What: the ids (vpc-, subnet-, eni- with 17 hex digits, derived from names so that they are stable
without being stored), the subnets as EC2 shows them and the NICs (address rows held by instances)
as network interfaces.
Why: clients read the default VPC, its subnets and the instances' interfaces before they launch
anything (Ansible's ec2_instance does); the pools are made by the operator, so the view is read
from them rather than kept beside them.

A pool's CIDR is its netmask applied to its first address (or, for pool files without netmasks,
the smallest network holding all its addresses); its zones are those of the active nodes serving
it (a node serving no pool serves the embedded default pool, as does the implicit node when no
node is registered). The embedded default pool is a subnet only while a node serves it. A subnet's
AvailabilityZone is the first of its zones; each zone has one default subnet: the private pool if
the zone serves it, else the default pool, else its first pool.
Subnets other than the public pool map public addresses on launch when a node serves them together
with the public pool: their instances also get a NIC in it (as Nimbus's rules gave them).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select

from ec2gw.compute.placement import split_pools
from ec2gw.db.models import Node
from ec2gw.errors import ServiceError
from ec2gw.network.models import Address, Pool
from ec2gw.network.pools import DEFAULT_POOL

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ec2gw.config import Settings

#: the embedded default pool's network (pools.ensure_default_pool's default), before it is stored
DEFAULT_POOL_CIDR = "10.128.0.0/20"


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:17]


def vpc_id(settings: Settings) -> str:
    """The installation's default VPC (one per region name)."""
    return f"vpc-{digest('vpc', settings.region)}"


def subnet_id(pool: str) -> str:
    return f"subnet-{digest('subnet', pool)}"


def eni_id(instance_id: str, address_id: int) -> str:
    """The network interface of one address held by one instance (a new one for every holder)."""
    return f"eni-{digest('eni', instance_id, str(address_id))}"


def attachment_id(instance_id: str, address_id: int) -> str:
    return f"eni-attach-{digest('eni-attach', instance_id, str(address_id))}"


@dataclass(frozen=True)
class Subnet:
    pool: str
    id: str
    cidr: str
    zones: tuple[str, ...]
    zone: str
    available: int
    default_for_az: bool
    map_public: bool


def _served(s: Session, settings: Settings) -> list[tuple[str, tuple[str, ...]]]:
    """(zone, pools) of every active node; the implicit node's when none is registered."""
    nodes = [(zone, split_pools(served) or (DEFAULT_POOL,))
             for zone, served in s.execute(select(Node.zone, Node.pools).where(Node.active.is_(True)))]
    return nodes or [(settings.default_zone, (DEFAULT_POOL,))]


def pool_zones(s: Session, settings: Settings) -> dict[str, list[str]]:
    """pool -> the zones (sorted) of the active nodes serving it."""
    out: dict[str, set[str]] = {}
    for zone, served in _served(s, settings):
        for pool in served:
            out.setdefault(pool, set()).add(zone)
    return {pool: sorted(zones) for pool, zones in out.items()}


def _cidr(s: Session, pool: str) -> str:
    first = s.scalar(select(Address).where(Address.pool == pool).order_by(Address.id).limit(1))
    if first is None:
        return DEFAULT_POOL_CIDR if pool == DEFAULT_POOL else "0.0.0.0/32"
    if first.netmask != "none":
        try:
            return str(ipaddress.ip_interface(f"{first.ip}/{first.netmask}").network)
        except ValueError:
            pass
    ips = [ipaddress.ip_address(ip) for ip in s.scalars(select(Address.ip).where(Address.pool == pool))]
    low, high = min(ips), max(ips)
    net = ipaddress.ip_network(f"{low}/{low.max_prefixlen}")
    while high not in net:
        net = net.supernet()
    return str(net)


def list_subnets(s: Session, settings: Settings) -> list[Subnet]:
    """Every pool as a subnet, ordered by subnet id (the key of DescribeSubnets' pages)."""
    zones = pool_zones(s, settings)
    names = set(s.scalars(select(Pool.name))) - {DEFAULT_POOL}
    if DEFAULT_POOL in zones:  # the embedded pool is a subnet only where a node falls back on it
        names.add(DEFAULT_POOL)
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.address_grace_seconds)
    free = dict(s.execute(
        select(Address.pool, func.count()).where(
            Address.instance_id.is_(None), Address.allocation_id.is_(None),
            or_(Address.released_at.is_(None), Address.released_at <= cutoff))
        .group_by(Address.pool)).all())
    stored = names & set(s.scalars(select(Pool.name)))
    defaults: dict[str, str] = {}
    for zone in sorted({z for zs in zones.values() for z in zs}):
        here = sorted(p for p in names if zone in zones.get(p, []))
        for choice in (settings.network_private_pool, DEFAULT_POOL, *here):
            if choice in here:
                defaults[zone] = choice
                break
    public = settings.network_public_pool
    # a launch into the subnet also gets a public NIC where a node serves the pool and the public one
    with_public = {p for _, served in _served(s, settings) if public in served for p in served}
    out = []
    for pool in names:
        pz = tuple(zones.get(pool, []))
        zone = pz[0] if pz else settings.default_zone
        available = int(free.get(pool, 0)) if pool in stored else _default_pool_size()
        out.append(Subnet(pool, subnet_id(pool), _cidr(s, pool), pz, zone, available,
                          defaults.get(zone) == pool, pool in with_public and pool != public))
    return sorted(out, key=lambda sn: sn.id)


def _default_pool_size() -> int:
    return ipaddress.ip_network(DEFAULT_POOL_CIDR).num_addresses - 3  # network, gateway, broadcast


def vpc_cidrs(subnets: list[Subnet]) -> list[str]:
    """The VPC's CIDR blocks: its subnets' networks, collapsed; the first is the primary."""
    nets = [ipaddress.ip_network(sn.cidr) for sn in subnets if sn.cidr != "0.0.0.0/32"]
    collapsed = [str(n) for n in ipaddress.collapse_addresses(n for n in nets if n.version == 4)]
    return collapsed or [DEFAULT_POOL_CIDR]


def subnet_of(subnets: list[Subnet], wanted: str) -> Subnet | None:
    return next((sn for sn in subnets if sn.id == wanted), None)


def by_pool(subnets: list[Subnet]) -> dict[str, Subnet]:
    return {sn.pool: sn for sn in subnets}


def unknown_subnet(subnet: str) -> ServiceError:
    return ServiceError("InvalidSubnetID.NotFound",
                        f"The subnet ID '{subnet}' does not exist; DescribeSubnets lists the subnets (one per network pool).")
