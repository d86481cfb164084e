"""How a pool appears on a VMM node: its libvirt network, the NIC of each address, its DHCP entry.

What: pure functions from Pool/Address rows to backends' NetworkSpec, NicSpec and DhcpHost, plus
the cloud-init network-config a guest gets for its addresses.
Why here: the naming (network `ec2gw-<pool>`, bridge `ec2br-<hash>`) and the subnet rules must be
the same wherever a pool is turned into a network (pool add, node add, instance launch), and are
testable without a hypervisor.

Modes: ``nat`` and ``isolated`` become a libvirt network whose bridge holds the pool's gateway
address and whose dnsmasq answers only the static DHCP entries added per instance (no dynamic
range: an unknown MAC gets nothing). ``bridge:BR`` puts NICs on the existing host bridge BR; the
site's own DHCP server (or the seed's static network-config) gives the address. ``none`` (the
embedded default pool) has no network at all: instances get addresses on record only.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from backends.base import NicSpec
from backends.networks import DhcpHost, NetworkSpec
from ec2gw.network.models import Address, Pool


class NetworkLayoutError(ValueError):
    """The pool's addresses cannot form one libvirt network; the message says how to fix the file."""


def network_name(pool: str) -> str:
    return f"ec2gw-{pool}"


def bridge_name(pool: str) -> str:
    """A Linux bridge name (at most 15 characters) unique per pool name."""
    return "ec2br-" + hashlib.sha1(pool.encode()).hexdigest()[:8]


def host_bridge(pool: Pool) -> str | None:
    return pool.network_mode[7:] if pool.network_mode.startswith("bridge:") else None


def has_network(pool: Pool) -> bool:
    """Whether instances of this pool get a NIC on a libvirt network or bridge."""
    return pool.network_mode != "none"


def has_dhcp(pool: Pool) -> bool:
    """Whether the node's libvirt network hands the pool's addresses out by DHCP."""
    return pool.network_mode in ("nat", "isolated")


@dataclass(frozen=True)
class Subnet:
    gateway: str
    prefix: int


def subnet_of(pool: Pool, addresses: Iterable[Address]) -> Subnet:
    """The one subnet every address of a nat/isolated pool lies in, with its gateway."""
    rows = list(addresses)
    if not rows:
        raise NetworkLayoutError(f"pool {pool.name!r} has no addresses")
    gateways = {a.gateway for a in rows}
    masks = {a.netmask for a in rows}
    if len(gateways) != 1 or "none" in gateways:
        raise NetworkLayoutError(
            f"pool {pool.name!r} needs one gateway shared by all its entries for a {pool.network_mode} network "
            f"(found {', '.join(sorted(gateways))}); give it in the pool file, or use --network-mode bridge:BRIDGE")
    if len(masks) != 1 or "none" in masks:
        raise NetworkLayoutError(
            f"pool {pool.name!r} needs one netmask shared by all its entries (found {', '.join(sorted(masks))})")
    gateway, mask = gateways.pop(), masks.pop()
    net = ipaddress.ip_interface(f"{gateway}/{mask}").network
    for a in rows:
        if ipaddress.ip_address(a.ip) not in net:
            raise NetworkLayoutError(f"pool {pool.name!r}: address {a.ip} is outside {net} (gateway {gateway})")
        if a.ip == gateway:
            raise NetworkLayoutError(f"pool {pool.name!r}: the gateway {gateway} is also listed as an address")
    if net.version != 4:
        raise NetworkLayoutError(f"pool {pool.name!r}: only IPv4 subnets become libvirt networks")
    return Subnet(gateway, net.prefixlen)


def network_spec(pool: Pool, addresses: Iterable[Address]) -> NetworkSpec | None:
    """The libvirt network of the pool (None for the embedded default pool, which has none)."""
    if not has_network(pool):
        return None
    bridge = host_bridge(pool)
    if bridge is not None:
        return NetworkSpec(name=network_name(pool.name), mode="bridge", bridge=bridge)
    sub = subnet_of(pool, addresses)
    return NetworkSpec(name=network_name(pool.name), mode=pool.network_mode, bridge=bridge_name(pool.name),
                       address=sub.gateway, prefix=sub.prefix)


def nic_spec(pool: Pool, address: Address) -> NicSpec | None:
    """The instance's NIC for one allocated address (None for the default pool)."""
    if not has_network(pool):
        return None
    return NicSpec(mac=address.mac, network=network_name(pool.name))


def dhcp_host(address: Address) -> DhcpHost:
    return DhcpHost(mac=address.mac, ip=address.ip, name=address.hostname)


def network_config(nics: list[tuple[Pool, Address]]) -> dict[str, Any]:
    """cloud-init network-config (version 1) with each NIC's static address from its pool entry.

    The entries match the NICs by MAC, so the guest's interface names do not matter; the first
    NIC carries the default route when its entry has a gateway.
    """
    config: list[dict[str, Any]] = []
    nameservers: list[str] = []
    for index, (pool, addr) in enumerate(nics):
        subnet: dict[str, Any] = {"type": "static", "address": addr.ip}
        if addr.netmask != "none":
            subnet["netmask"] = addr.netmask
        if addr.gateway != "none" and index == 0:
            subnet["gateway"] = addr.gateway
        if pool.dns != "none":
            subnet["dns_nameservers"] = [pool.dns]
            nameservers.append(pool.dns)
        config.append({"type": "physical", "name": f"eth{index}", "mac_address": addr.mac, "subnets": [subnet]})
    if nameservers:
        config.append({"type": "nameserver", "address": sorted(set(nameservers))})
    return {"version": 1, "config": config}
