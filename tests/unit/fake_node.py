"""An in-memory QEMU node (storage pools, volumes, networks) for provisioning tests without libvirt.

It follows the contracts of backends.volumes.VolumeDriver and backends.networks.NetworkDriver
closely enough for the callers under test; the real drivers have their own tests.
"""

from __future__ import annotations

import time
from typing import Any

from backends.base import AlreadyExists, NotFound
from backends.filters import FilterDriver, FilterSpec
from backends.networks import DhcpHost, DhcpLease, NetworkDriver, NetworkSpec
from backends.volumes import VolumeDriver, VolumeInfo
from ec2gw.compute.image_cache import virtual_size


class FakeVolumes(VolumeDriver):
    """``lie_capacity`` makes uploads report a wrong size, ``backing`` a backing file."""

    def __init__(self) -> None:
        self.pools: dict[str, str] = {}
        self.vols: dict[tuple[str, str], VolumeInfo] = {}
        self.data: dict[tuple[str, str], bytes] = {}
        self.uploaded = 0
        self.lie_capacity = 0
        self.backing: str | None = None
        self.slow = 0.0

    def ensure_pool(self, name: str, path: str) -> None:
        self.pools.setdefault(name, path)

    def delete_pool(self, name: str) -> None:
        self.pools.pop(name, None)

    def _path(self, pool: str, name: str) -> str:
        return f"{self.pools.get(pool, '/pools/' + pool)}/{name}"

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        return sorted((v for (p, _), v in self.vols.items() if p == pool), key=lambda v: v.name)

    def volume_info(self, pool: str, name: str) -> VolumeInfo | None:
        return self.vols.get((pool, name))

    def _add(self, info: VolumeInfo, data: bytes = b"") -> VolumeInfo:
        if (info.pool, info.name) in self.vols:
            raise AlreadyExists(info.name)
        self.vols[(info.pool, info.name)], self.data[(info.pool, info.name)] = info, data
        return info

    def create_volume(self, pool: str, name: str, capacity: int, format: str = "qcow2") -> VolumeInfo:
        return self._add(VolumeInfo(pool, name, self._path(pool, name), format, capacity, 0))

    def upload_volume(self, pool: str, name: str, source: Any, size: int, chunk_size: int = 1 << 20) -> VolumeInfo:
        if (pool, name) in self.vols:
            raise AlreadyExists(name)
        buf = bytearray()
        while len(buf) < size:
            chunk = source.read(min(chunk_size, size - len(buf)))
            assert chunk and len(chunk) <= chunk_size
            buf += chunk
            time.sleep(self.slow)
        self.uploaded += len(buf)
        fmt = "qcow2" if buf[:4] == b"QFI\xfb" else "raw"
        cap = virtual_size(bytes(buf[:64]), size) + self.lie_capacity
        return self._add(VolumeInfo(pool, name, self._path(pool, name), fmt, cap, size, self.backing), bytes(buf))

    def create_overlay(self, pool: str, name: str, backing_pool: str, backing_name: str,
                       capacity: int | None = None) -> VolumeInfo:
        base = self.vols.get((backing_pool, backing_name))
        if base is None:
            raise NotFound(backing_name)
        return self._add(VolumeInfo(pool, name, self._path(pool, name), "qcow2", capacity or base.capacity, 196608,
                                    base.path))

    def delete_volume(self, pool: str, name: str) -> None:
        self.vols.pop((pool, name), None)
        self.data.pop((pool, name), None)

    def download_volume(self, pool: str, name: str, sink: Any, chunk_size: int = 1 << 20) -> int:
        sink.write(self.data[(pool, name)])
        return len(self.data[(pool, name)])


class FakeNetworks(NetworkDriver):
    def __init__(self) -> None:
        self.nets: dict[str, NetworkSpec] = {}
        self.hosts: dict[str, dict[str, DhcpHost]] = {}

    def ensure_network(self, spec: NetworkSpec) -> None:
        self.nets.setdefault(spec.name, spec)
        self.hosts.setdefault(spec.name, {})

    def delete_network(self, name: str) -> None:
        self.nets.pop(name, None)
        self.hosts.pop(name, None)

    def list_networks(self) -> list[str]:
        return sorted(self.nets)

    def add_dhcp_host(self, network: str, host: DhcpHost) -> None:
        if network not in self.nets:
            raise NotFound(network)
        self.hosts[network][host.mac] = host

    def remove_dhcp_host(self, network: str, mac: str) -> None:
        if network not in self.nets:
            raise NotFound(network)
        self.hosts[network].pop(mac, None)

    def dhcp_hosts(self, network: str) -> list[DhcpHost]:
        return list(self.hosts.get(network, {}).values())

    def leases(self, network: str) -> list[DhcpLease]:
        return []


class FakeFilters(FilterDriver):
    """Filters by name; ``used`` names those a guest uses (undefine refuses them); ``writes`` counts defines."""

    def __init__(self) -> None:
        self.filters: dict[str, FilterSpec] = {}
        self.used: set[str] = set()
        self.writes = 0

    def define(self, spec: FilterSpec) -> bool:
        have = self.filters.get(spec.name)
        if have is not None and have.same_as(spec):
            return False
        self.filters[spec.name] = spec
        self.writes += 1
        return True

    def get(self, name: str) -> FilterSpec | None:
        return self.filters.get(name)

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.filters if n.startswith(prefix))

    def undefine(self, name: str) -> bool:
        if name in self.used:
            return False
        self.filters.pop(name, None)
        return True


class FakeNode:
    """Enough of backends.base.Driver for provisioning: a domain type, volumes, networks and filters."""

    domain_type = "qemu"

    def __init__(self) -> None:
        self.volumes = FakeVolumes()
        self.networks = FakeNetworks()
        self.filters = FakeFilters()
