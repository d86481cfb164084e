"""Address pools in Nimbus's file format, atomic allocation, release with a grace period.

A pool file's first non-comment line is the DNS server (or `none`); each further line is
`hostname ip gateway broadcast netmask [MAC]`, where gateway, broadcast and netmask may be
`none`. Missing MACs are generated from a prefix.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from ec2gw.errors import ServiceError
from ec2gw.network.models import Address, Pool

MAC_PREFIX = "52:54:00"
DEFAULT_POOL = "default"
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


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


def parse_pool_file(text: str) -> tuple[str, list[Entry]]:
    dns: str | None = None
    entries: list[Entry] = []
    seen_ips: set[str] = set()
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
        if mac is not None and not _MAC_RE.match(mac):
            raise PoolFileError(f"line {lineno}: {parts[5]!r} is not a MAC address like 52:54:00:12:34:56")
        if ip in seen_ips:
            raise PoolFileError(f"line {lineno}: address {ip} appears twice")
        seen_ips.add(ip)
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


def random_mac(prefix: str = MAC_PREFIX) -> str:
    return prefix + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


def add_pool(s: Session, name: str, dns: str, entries: list[Entry], network_mode: str = "nat", role: str = "private") -> Pool:
    if s.get(Pool, name) is not None:
        raise ValueError(f"pool {name!r} already exists; remove it first or choose another name")
    pool = Pool(name=name, dns=dns, network_mode=network_mode, role=role)
    s.add(pool)
    s.flush()
    used_macs = set(s.scalars(select(Address.mac)))
    for e in entries:
        mac = e.mac or random_mac()
        while mac in used_macs:
            mac = random_mac()
        used_macs.add(mac)
        s.add(Address(pool=name, hostname=e.hostname, ip=e.ip, gateway=e.gateway, broadcast=e.broadcast, netmask=e.netmask, mac=mac))
    return pool


def ensure_default_pool(s: Session, cidr: str = "10.128.0.0/20") -> None:
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
    add_pool(s, DEFAULT_POOL, "none", entries, network_mode="none")


def allocate(s: Session, pool: str, instance_ids: list[str], grace_seconds: float = 0.0) -> list[Address]:
    """Give each instance a free address of `pool`, or raise and allocate nothing.

    Rows are claimed with a conditional UPDATE (and FOR UPDATE SKIP LOCKED where the database has
    it), so concurrent launches in several processes never get the same address.
    """
    if not instance_ids:
        return []
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=grace_seconds)
    free = and_(
        Address.pool == pool,
        Address.instance_id.is_(None),
        or_(Address.released_at.is_(None), Address.released_at <= cutoff),
    )
    q = select(Address).where(free).order_by(Address.id).limit(len(instance_ids))
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    candidates = list(s.scalars(q))
    if len(candidates) < len(instance_ids):
        raise ServiceError(
            "InsufficientFreeAddressesInSubnet",
            f"The network pool '{pool}' has {len(candidates)} free addresses but {len(instance_ids)} were needed; "
            "terminate instances or ask the administrator to add addresses.",
        )
    for addr, iid in zip(candidates, instance_ids):
        res = s.execute(update(Address).where(Address.id == addr.id, Address.instance_id.is_(None)).values(instance_id=iid))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            raise ServiceError("InsufficientFreeAddressesInSubnet", f"Addresses of pool '{pool}' are contended; retry the request.")
        addr.instance_id = iid
    return candidates


def release(s: Session, instance_id: str) -> None:
    s.execute(
        update(Address).where(Address.instance_id == instance_id).values(instance_id=None, released_at=datetime.now(timezone.utc))
    )
