"""Pools on VMM nodes: create a pool's libvirt network where it is served, and per-NIC DHCP entries.

What: the calls the admin CLI (pool add/remove), node registration and the compute worker make to
put networks on nodes and take them off again, through backends' NetworkDriver only (so remote
nodes need no shell).
Why: a pool must exist as a network on every node serving it before an instance's NIC can join
it; making that idempotent here lets each caller just "ensure" it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from backends.base import DriverError, NodeUnavailable, NotFound
from ec2gw.network import layout
from ec2gw.network.models import Address, Pool

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from backends.base import Driver

log = logging.getLogger("ec2gw.network")


@dataclass
class PoolNetwork:
    """What ensuring one pool's network on a node needs, detached from the session."""

    pool: Pool
    spec: layout.NetworkSpec | None


def pool_network(s: Session, name: str) -> PoolNetwork:
    """The pool's row and libvirt network spec (spec None for the embedded default pool)."""
    pool = s.get(Pool, name)
    if pool is None:
        raise layout.NetworkLayoutError(f"there is no pool {name!r}; add it with `ec2gw admin pool add {name} FILE`")
    addrs = list(s.scalars(select(Address).where(Address.pool == name)))
    return PoolNetwork(pool, layout.network_spec(pool, addrs))


def ensure(driver: Driver, net: PoolNetwork) -> None:
    """Define and start the pool's network on the node (idempotent). Test-driver nodes skip it."""
    if net.spec is None or driver.domain_type == "test":
        return
    driver.networks.ensure_network(net.spec)


def pool_networks(s: Session, pool_names: list[str]) -> tuple[list[PoolNetwork], dict[str, str]]:
    """The named pools' networks, read in one go (so no session is held while a node answers);
    pool -> error for pools that do not exist or form no network."""
    nets: list[PoolNetwork] = []
    errors: dict[str, str] = {}
    for name in pool_names:
        try:
            nets.append(pool_network(s, name))
        except layout.NetworkLayoutError as exc:
            errors[name] = str(exc)
    return nets, errors


def ensure_networks(driver: Driver, nets: list[PoolNetwork]) -> dict[str, str]:
    """Ensure each network on one node; pool -> error for those that failed.

    NodeUnavailable is raised, not collected: a node that does not answer is not asked again
    for every pool."""
    errors: dict[str, str] = {}
    for net in nets:
        try:
            ensure(driver, net)
        except NodeUnavailable:
            raise
        except DriverError as exc:
            errors[net.pool.name] = str(exc)
    return errors


def remove(driver: Driver, pool: str) -> None:
    """Stop and undefine the pool's network on the node (missing: fine)."""
    if driver.domain_type == "test":
        return
    driver.networks.delete_network(layout.network_name(pool))


def add_host(driver: Driver, pool: Pool, address: Address) -> None:
    """The NIC's static DHCP entry on the running network (nat/isolated pools only)."""
    if driver.domain_type == "test" or not layout.has_dhcp(pool):
        return
    driver.networks.add_dhcp_host(layout.network_name(pool.name), layout.dhcp_host(address))


def remove_host(driver: Driver, pool_name: str, network_mode: str, mac: str) -> None:
    """Remove the NIC's DHCP entry; a network that is gone already is fine."""
    if driver.domain_type == "test" or network_mode not in ("nat", "isolated"):
        return
    try:
        driver.networks.remove_dhcp_host(layout.network_name(pool_name), mac)
    except NotFound:
        pass
