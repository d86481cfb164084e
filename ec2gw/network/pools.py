"""Address pools in Nimbus's file format, atomic allocation, release with a grace period.

A pool file's first non-comment line is the DNS server (or `none`); each further line is
`hostname ip gateway broadcast netmask [MAC]`, where gateway, broadcast and netmask may be
`none`. Missing MACs are generated from a prefix (settings.mac_prefix). Every address row is one
possible NIC: allocating it to an instance gives that instance a NIC with the row's MAC on the
pool's network, so the rows held by an instance are its NICs.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ec2gw.errors import ServiceError
from ec2gw.network.models import Address, Pool

MAC_PREFIX = "52:54:00"
DEFAULT_POOL = "default"
NETWORK_MODES = ("nat", "isolated", "bridge:BRIDGE")
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_PREFIX_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){0,4}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_CLAIM_BATCH = 150  # addresses claimed per UPDATE: 5 bound parameters each, under 999 (old SQLite's limit)


@dataclass(frozen=True)
class Entry:
    hostname: str
    ip: str
    gateway: str
    broadcast: str
    netmask: str
    mac: str | None


class PoolFileError(ValueError):
    """A pool file that cannot be read; the message names the line and what is wrong."""


class PoolError(ValueError):
    """A pool operation that was refused; the message says why and what to do."""


def parse_pool_file(text: str) -> tuple[str, list[Entry]]:
    """(DNS server or 'none', entries) of a Nimbus pool file; PoolFileError names the bad line."""
    dns: str | None = None
    entries: list[Entry] = []
    seen_ips: set[str] = set()
    seen_macs: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if dns is None:
            dns = line
            if dns != "none":
                _check_ip(dns, lineno, "DNS server")
            continue
        parts = line.split()
        if len(parts) not in (5, 6):
            raise PoolFileError(
                f"line {lineno}: expected 'hostname ip gateway broadcast netmask [MAC]', got {len(parts)} fields"
            )
        host, ip, gw, bc, mask = parts[:5]
        _check_ip(ip, lineno, "address")
        for value, what in ((gw, "gateway"), (bc, "broadcast"), (mask, "netmask")):
            if value != "none":
                _check_ip(value, lineno, what)
        mac = parts[5].lower() if len(parts) == 6 else None
        if mac is not None and (not _MAC_RE.match(mac) or int(mac[:2], 16) & 1):
            raise PoolFileError(f"line {lineno}: {parts[5]!r} is not a unicast MAC address like 52:54:00:12:34:56")
        if ip in seen_ips:
            raise PoolFileError(f"line {lineno}: address {ip} appears twice")
        if mac is not None and mac in seen_macs:
            raise PoolFileError(f"line {lineno}: MAC {mac} appears twice")
        seen_ips.add(ip)
        if mac:
            seen_macs.add(mac)
        entries.append(Entry(host, ip, gw, bc, mask, mac))
    if dns is None:
        raise PoolFileError("the pool file is empty: its first line must be the DNS server or 'none'")
    if not entries:
        raise PoolFileError("the pool file lists no addresses: add lines 'hostname ip gateway broadcast netmask [MAC]'")
    return dns, entries


def _check_ip(value: str, lineno: int, what: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise PoolFileError(f"line {lineno}: {what} {value!r} is not an IP address") from None


def check_mac_prefix(prefix: str) -> str:
    """A MAC prefix of 1 to 5 octets whose first octet is unicast (e.g. 52:54:00)."""
    p = prefix.lower().strip()
    if not _PREFIX_RE.match(p) or int(p[:2], 16) & 1:
        raise PoolError(f"MAC prefix {prefix!r} is not 1 to 5 hex octets with a unicast first octet, like 52:54:00")
    return p


def random_mac(prefix: str = MAC_PREFIX) -> str:
    p = check_mac_prefix(prefix)
    missing = 6 - len(p.split(":"))
    return p + "".join(f":{b:02x}" for b in secrets.token_bytes(missing))


def check_network_mode(mode: str) -> str:
    """nat, isolated or bridge:BRIDGE (an existing host bridge); 'none' is the embedded default's."""
    if mode in ("nat", "isolated", "none"):
        return mode
    if mode.startswith("bridge:") and _BRIDGE_RE.match(mode[7:]):
        return mode
    raise PoolError(f"network mode {mode!r} is not one of nat, isolated, bridge:BRIDGE (BRIDGE: an existing host bridge)")


def check_pool_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise PoolError(f"pool name {name!r} must be 1-40 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return name


def add_pool(s: Session, name: str, dns: str, entries: list[Entry], network_mode: str = "nat", role: str = "private",
             mac_prefix: str = MAC_PREFIX) -> Pool:
    """Store a pool and its addresses; MACs missing from the file are generated from ``mac_prefix``."""
    check_pool_name(name)
    check_network_mode(network_mode)
    if s.get(Pool, name) is not None:
        raise PoolError(f"pool {name!r} already exists; remove it first (`ec2gw admin pool remove {name}`) or choose another name")
    given = [e.mac for e in entries if e.mac]
    taken = set(s.scalars(select(Address.mac).where(Address.mac.in_(given)))) if given else set()
    if taken:
        raise PoolError(f"MAC {min(taken)} is already used by another pool; give this entry another MAC or none")
    pool = Pool(name=name, dns=dns, network_mode=network_mode, role=role)
    s.add(pool)
    s.flush()
    used_macs = set(given)
    if any(e.mac is None for e in entries):
        used_macs.update(s.scalars(select(Address.mac)))  # every stored MAC, read once
    rows = []
    for e in entries:
        mac = e.mac or _new_mac(used_macs, mac_prefix)
        used_macs.add(mac)
        rows.append({"pool": name, "hostname": e.hostname, "ip": e.ip, "gateway": e.gateway, "broadcast": e.broadcast,
                     "netmask": e.netmask, "mac": mac})
    s.execute(cast(Table, Address.__table__).insert(), rows)  # one executemany: the default pool has 4,093 rows
    return pool


def _new_mac(used: set[str], prefix: str) -> str:
    """A generated MAC that neither this pool file nor any stored pool (``used``) has."""
    for _ in range(1000):
        mac = random_mac(prefix)
        if mac not in used:
            return mac
    raise PoolError(f"no unused MAC is left under the prefix {prefix}; configure a shorter mac_prefix")


def remove_pool(s: Session, name: str) -> None:
    """Delete the pool and its addresses; refused while instances hold addresses."""
    pool = s.get(Pool, name)
    if pool is None:
        raise PoolError(f"there is no pool {name!r}; `ec2gw admin pool list` shows the pools")
    holders = [str(i) for i in s.scalars(select(Address.instance_id)
                                         .where(Address.pool == name, Address.instance_id.is_not(None)).limit(5))]
    if holders:
        raise PoolError(f"pool {name!r} still gives addresses to instances ({', '.join(holders)}); terminate them first")
    s.execute(delete(Address).where(Address.pool == name))
    s.delete(pool)


def ensure_default_pool(s: Session, cidr: str = "10.128.0.0/20", mac_prefix: str = MAC_PREFIX) -> None:
    """The embedded default: addresses for instances on nodes that serve no configured pool."""
    if s.get(Pool, DEFAULT_POOL) is not None:
        return
    net = ipaddress.ip_network(cidr)
    hosts = list(net.hosts())
    gateway = str(hosts[0])
    entries = [
        Entry(f"ip-{str(ip).replace('.', '-')}", str(ip), gateway, str(net.broadcast_address), str(net.netmask), None)
        for ip in hosts[1:]
    ]
    add_pool(s, DEFAULT_POOL, "none", entries, network_mode="none", mac_prefix=mac_prefix)


def allocate(s: Session, pool: str, instance_ids: list[str], grace_seconds: float = 0.0) -> list[Address]:
    """Give each instance a free address of `pool`, or raise and allocate nothing.

    Rows are claimed with a conditional UPDATE (and FOR UPDATE SKIP LOCKED where the database has
    it), so concurrent launches in several processes never get the same address. A released
    address is free again only after ``grace_seconds``.
    """
    if not instance_ids:
        return []
    candidates = free_addresses(s, pool, len(instance_ids), grace_seconds)
    if len(candidates) < len(instance_ids):
        raise short_of_addresses(pool, len(candidates), len(instance_ids))
    claim(s, pool, candidates, instance_ids)
    return candidates


def free_addresses(s: Session, pool: str, limit: int, grace_seconds: float = 0.0, ip: str | None = None) -> list[Address]:
    """Up to ``limit`` free addresses of ``pool`` in file order (locked on PostgreSQL), to ``claim``."""
    if s.get(Pool, pool) is None:
        raise ServiceError("InvalidSubnetID.NotFound",
                           f"The network pool '{pool}' does not exist; ask the administrator to add it (`ec2gw admin pool add`).")
    if limit <= 0:
        return []
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
    free = and_(
        Address.pool == pool,
        Address.instance_id.is_(None),
        Address.allocation_id.is_(None),
        Address.plugged_into.is_(None),  # a released elastic address still on a domain until the worker unplugs it
        or_(Address.released_at.is_(None), Address.released_at <= cutoff),
    )
    if ip is not None:
        free = and_(free, Address.ip == ip)
    q = select(Address).where(free).order_by(Address.id).limit(limit)
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return list(s.scalars(q))


def short_of_addresses(pool: str, free: int, needed: int) -> ServiceError:
    return ServiceError(
        "InsufficientFreeAddressesInSubnet",
        f"The network pool '{pool}' has {free} free addresses but {needed} were needed; "
        "ask for fewer instances (MinCount), terminate instances or ask the administrator to add addresses.",
    )


def claim(s: Session, pool: str, addresses: list[Address], instance_ids: list[str],
          device_indexes: list[int] | None = None) -> None:
    """Hand ``addresses[i]`` to ``instance_ids[i]`` (as its NIC number ``device_indexes[i]``) with
    one conditional UPDATE per batch.

    Raises InsufficientFreeAddressesInSubnet if another launch took one of them first.
    """
    pairs = list(zip(addresses, instance_ids, strict=False))
    indexes = dict(zip((a.id for a in addresses), device_indexes or [], strict=False))
    table = cast(Table, Address.__table__)
    for start in range(0, len(pairs), _CLAIM_BATCH):
        batch = pairs[start:start + _CLAIM_BATCH]
        claimed = {a.id: iid for a, iid in batch}
        values: dict[str, Any] = {"instance_id": case(claimed, value=table.c.id)}
        if indexes:
            values["device_index"] = case({a.id: indexes[a.id] for a, _ in batch}, value=table.c.id)
        res = s.execute(
            update(table)
            .where(table.c.id.in_(list(claimed)), table.c.instance_id.is_(None))
            .values(**values),
            execution_options={"synchronize_session": False},
        )
        if res.rowcount != len(batch):  # type: ignore[attr-defined]
            raise ServiceError("InsufficientFreeAddressesInSubnet", f"Addresses of pool '{pool}' are contended; retry the request.")
    for addr, iid in pairs:
        set_committed_value(addr, "instance_id", iid)
        if indexes:
            set_committed_value(addr, "device_index", indexes[addr.id])


def release(s: Session, instance_id: str) -> None:
    """Return the instance's addresses; they are reusable after the grace period. Elastic addresses
    associated with it are disassociated and stay allocated to their owner (as on EC2)."""
    s.execute(
        update(Address).where(Address.instance_id == instance_id, Address.allocation_id.is_(None))
        .values(instance_id=None, device_index=None, released_at=datetime.now(UTC))
    )
    s.execute(
        update(Address).where(Address.instance_id == instance_id, Address.allocation_id.is_not(None))
        .values(instance_id=None, device_index=None, association_id=None, nic_address_id=None)
    )


def is_public(pool: Pool, public_pool_name: str) -> bool:
    """A public pool: marked so (`ec2gw admin pool add ... --public`) or named by network_public_pool."""
    return pool.role == "public" or pool.name == public_pool_name


def addresses_of(s: Session, instance_id: str) -> list[Address]:
    """The instance's addresses (its NICs), in pool-name order."""
    return list(s.scalars(select(Address).where(Address.instance_id == instance_id).order_by(Address.pool, Address.id)))


# built once: every DescribeInstances runs it
_NICS_OF = select(Address.instance_id, Address.id, Address.pool, Address.mac, Address.ip, Address.hostname,
                  Address.device_index, Address.allocation_id, Address.association_id, Address.nic_address_id).where(
    Address.instance_id.in_(bindparam("ids", expanding=True)))


def nics_of(s: Session, instance_ids: list[str]) -> dict[str, list[Any]]:
    """Every NIC (address row: id, pool, mac, ip, hostname, device_index, and for an elastic address
    allocation_id, association_id, nic_address_id) of each instance, for listings."""
    out: dict[str, list[Any]] = {}
    for start in range(0, len(instance_ids), 500):
        for row in s.execute(_NICS_OF, {"ids": instance_ids[start:start + 500]}):
            out.setdefault(row.instance_id, []).append(row)
    return out


def summary(s: Session, pool: Pool, grace_seconds: float = 0.0) -> dict[str, Any]:
    """What `pool list/show` print: mode, role, DNS, subnet and how many addresses are free, in use
    (held by an instance or allocated as elastic addresses), elastic, or held after release."""
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
    total = s.scalar(select(func.count()).where(Address.pool == pool.name)) or 0
    used = s.scalar(select(func.count()).where(
        Address.pool == pool.name, or_(Address.instance_id.is_not(None), Address.allocation_id.is_not(None)))) or 0
    allocated = s.scalar(select(func.count()).where(Address.pool == pool.name, Address.allocation_id.is_not(None))) or 0
    held = s.scalar(select(func.count()).where(Address.pool == pool.name, Address.instance_id.is_(None),
                                               Address.allocation_id.is_(None), Address.released_at > cutoff)) or 0
    first = s.scalar(select(Address).where(Address.pool == pool.name).order_by(Address.id).limit(1))
    return {"name": pool.name, "network_mode": pool.network_mode, "role": pool.role, "dns": pool.dns,
            "subnet": subnet_text(first), "addresses": total, "in_use": used, "elastic": allocated, "held": held,
            "free": total - used - held}


def subnet_text(addr: Address | None) -> str:
    if addr is None or addr.netmask == "none":
        return ""
    return str(ipaddress.ip_interface(f"{addr.ip}/{addr.netmask}").network)
