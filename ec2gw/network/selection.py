"""Which pools an instance gets addresses from, and the allocation at launch (Nimbus's rules).

Nimbus gave every VM a NIC in the public and in the private network unless its type said
otherwise, one NIC per distinct pool. Here: settings.network_public_pool and
settings.network_private_pool name the two pools; settings.instance_type_networks narrows the
roles per type ("t2.micro=private, m1.large=public+private"). Roles whose pool the node does not
serve are skipped; a node serving neither gets its first pool; a node serving no pool at all
(libvirt's test driver, the implicit node) gets the embedded default pool.

The instance row keeps its primary NIC: PrivateIpAddress/PrivateDnsName/MAC from the private NIC
(or the only one), PublicIpAddress from the public NIC. Every NIC is an Address row holding the
instance id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ec2gw.errors import ServiceError
from ec2gw.network import pools
from ec2gw.network.models import Address

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ec2gw.compute.placement import NodeRef
    from ec2gw.config import Settings
    from ec2gw.db.models import Instance

ROLES = ("public", "private")


def type_roles(settings: Settings, instance_type: str) -> tuple[str, ...]:
    """The roles (public, private) instances of ``instance_type`` want, in NIC order."""
    for item in settings.instance_type_networks.split(","):
        name, sep, roles = item.strip().partition("=")
        if sep and name.strip() == instance_type:
            wanted = tuple(r.strip() for r in roles.replace("+", " ").split() if r.strip())
            bad = [r for r in wanted if r not in ROLES]
            if bad or not wanted:
                raise ValueError(f"instance_type_networks: {item.strip()!r} must name public and/or private")
            return wanted
    return ROLES


def is_public(settings: Settings, pool: str) -> bool:
    return pool == settings.network_public_pool


def pools_for(settings: Settings, instance_type: str, node_pools: Sequence[str]) -> list[str]:
    """The distinct pools, in NIC order, an instance of ``instance_type`` on a node gets NICs in."""
    if not node_pools:
        return [pools.DEFAULT_POOL]
    names = {"public": settings.network_public_pool, "private": settings.network_private_pool}
    chosen: list[str] = []
    for role in type_roles(settings, instance_type):
        name = names[role]
        if name in node_pools and name not in chosen:
            chosen.append(name)
    return chosen or [node_pools[0]]


@dataclass(frozen=True)
class NicRequest:
    """One NIC asked for at launch (RunInstances' SubnetId or NetworkInterfaces), in device order."""

    pool: str
    private_ip: str | None = None


def plan_for(settings: Settings, instance_type: str, node_pools: Sequence[str],
             requested: Sequence[NicRequest] | None = None, map_public: bool = True) -> list[str]:
    """The pools of an instance's NICs in device order (index 0 is the primary NIC).

    Without ``requested``: Nimbus's rules (pools_for), the private NIC first. With it: the
    requested pools, plus a NIC in the public pool when a single NIC was asked for, ``map_public``
    holds, the node serves the public pool and the type's roles include public (the subnet maps
    public addresses on launch)."""
    if not requested:
        plan = pools_for(settings, instance_type, node_pools)
        return sorted(plan, key=lambda p: is_public(settings, p) and p != settings.network_private_pool)
    plan = [r.pool for r in requested]
    public = settings.network_public_pool
    if (map_public and len(plan) == 1 and public not in plan and public in node_pools
            and "public" in type_roles(settings, instance_type)):
        plan.append(public)
    return plan


def assign(s: Session, settings: Settings, instances: list[Instance], slots: list[NodeRef],
           min_count: int | None = None, requested: Sequence[NicRequest] | None = None,
           map_public: bool = True) -> list[Instance]:
    """Allocate addresses (atomic with the caller's transaction) to as many instances as the pools
    allow, in order, and fill their rows; returns the instances that got every NIC they need.

    EC2's rule: if fewer than ``min_count`` (default: all of them) can have their addresses,
    InsufficientFreeAddressesInSubnet aborts the launch and the caller's transaction rolls back,
    so no address stays taken and no instance is created.
    """
    minimum = len(instances) if min_count is None else min_count
    plans: dict[str, list[str]] = {}
    wanted: dict[str, int] = {}
    for inst, node in zip(instances, slots, strict=False):
        plan = plan_for(settings, inst.instance_type, node.pools, requested, map_public)
        plans[inst.id] = plan
        for pool in plan:
            wanted[pool] = wanted.get(pool, 0) + 1
    order = sorted(wanted)  # one order for every launch: no lock-order deadlocks on PostgreSQL
    if pools.DEFAULT_POOL in wanted:
        pools.ensure_default_pool(s, mac_prefix=settings.mac_prefix)
    # On PostgreSQL the free rows are locked (SKIP LOCKED) as they are read: inside a savepoint,
    # so that a launch keeping fewer instances than it looked for can let go of the rest at once.
    savepoint = s.begin_nested() if s.get_bind().dialect.name == "postgresql" else None
    fixed = {r.pool: r.private_ip for r in requested or [] if r.private_ip}
    free = {pool: _free(s, settings, pool, wanted[pool], fixed.get(pool)) for pool in order}
    kept = _fitting(instances, plans, {pool: len(rows) for pool, rows in free.items()})
    if len(kept) < minimum:
        raise _short(free, wanted, len(kept), minimum)
    need = {pool: sum(1 for inst in kept if pool in plans[inst.id]) for pool in order}
    if savepoint is not None:
        if all(need[p] == len(free[p]) for p in order):
            savepoint.commit()
        else:
            savepoint.rollback()  # releases every row lock taken above; take only what is used
            free = {pool: _free(s, settings, pool, need[pool], fixed.get(pool)) for pool in order}
            if any(len(free[p]) < need[p] for p in order):
                raise ServiceError("InsufficientFreeAddressesInSubnet",
                                   "Addresses were taken by a concurrent launch; retry the request.")
    got: dict[tuple[str, str], Address] = {}
    for pool in order:
        holders = [inst.id for inst in kept if pool in plans[inst.id]]
        pools.claim(s, pool, free[pool][: len(holders)], holders, [plans[iid].index(pool) for iid in holders])
        for iid, addr in zip(holders, free[pool], strict=False):
            got[(iid, pool)] = addr
    for inst in kept:
        fill(settings, inst, [got[(inst.id, p)] for p in plans[inst.id]])
    return kept


def _free(s: Session, settings: Settings, pool: str, limit: int, fixed_ip: str | None) -> list[Address]:
    """Free addresses of ``pool`` to claim: ``fixed_ip`` alone when a NIC asked for it."""
    if fixed_ip is None:
        return pools.free_addresses(s, pool, limit, settings.address_grace_seconds)
    found = pools.free_addresses(s, pool, 1, settings.address_grace_seconds, ip=fixed_ip)
    if not found:
        raise ServiceError("InvalidIPAddress.InUse",
                           f"The address {fixed_ip} of subnet {pool!r} is in use (or was released moments ago); "
                           "choose another PrivateIpAddress or leave it out to get any free one.")
    return found


def _fitting(instances: list[Instance], plans: dict[str, list[str]], free: dict[str, int]) -> list[Instance]:
    """The instances (in their order) that get every NIC their plan needs from ``free`` addresses.

    Instances needing fewer pools are served first, so a NIC-hungry instance does not take the
    addresses two others could have had (EC2 launches as many as it can)."""
    left = dict(free)
    chosen: set[str] = set()
    for inst in sorted(instances, key=lambda i: len(plans[i.id])):
        plan = plans[inst.id]
        if all(left[p] > 0 for p in plan):
            for p in plan:
                left[p] -= 1
            chosen.add(inst.id)
    return [inst for inst in instances if inst.id in chosen]


def _short(free: dict[str, list[Address]], wanted: dict[str, int], fitting: int, minimum: int) -> ServiceError:
    pools_short = ", ".join(f"pool '{p}' has {len(free[p])} free addresses for {wanted[p]} NICs"
                            for p in sorted(wanted) if len(free[p]) < wanted[p])
    return ServiceError(
        "InsufficientFreeAddressesInSubnet",
        f"Only {fitting} of the at least {minimum} instances asked for can get their addresses ({pools_short}); "
        "ask for fewer (MinCount), terminate instances or ask the administrator to add addresses.",
    )


def fill(settings: Settings, inst: Instance, nics: list[Address]) -> None:
    """Set the instance's address fields from its NICs in device order (see the module docstring)."""
    public = [a for a in nics if is_public(settings, a.pool)]
    primary = nics[0]
    inst.private_ip = primary.ip
    inst.mac = primary.mac
    inst.private_dns = primary.hostname
    inst.public_ip = public[0].ip if public else None


def ordered_nics(inst: Instance, nics: list[Address]) -> list[Address]:
    """The instance's NICs with the primary one (its MAC on the row) first."""
    return sorted(nics, key=lambda a: (a.device_index is None, a.device_index or 0, a.mac != inst.mac, a.pool, a.id))
