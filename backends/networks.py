"""Virtual networks on a node and the static DHCP entries that give each instance its address."""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from backends.base import InvalidSpec

NETWORK_MODES = ("nat", "isolated", "bridge")


@dataclass(frozen=True, slots=True)
class DhcpHost:
    """A static lease: the guest with ``mac`` gets ``ip`` (and ``name`` as its DHCP hostname)."""

    mac: str
    ip: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class DhcpLease:
    """A lease the node's DHCP server handed out."""

    mac: str
    ip: str
    hostname: str | None
    expiry_time: int


@dataclass(slots=True)
class NetworkSpec:
    """A virtual network.

    ``nat``: a bridge ``bridge`` with the gateway ``address``/``prefix``, DHCP over
    ``dhcp_start``..``dhcp_end`` and NAT to the outside; ``isolated``: the same with no forwarding;
    ``bridge``: guests join the existing host bridge ``bridge`` (no DHCP from libvirt, so the
    address fields must be None).
    """

    name: str
    mode: str = "nat"
    bridge: str | None = None
    address: str | None = None
    prefix: int = 24
    dhcp_start: str | None = None
    dhcp_end: str | None = None
    hosts: list[DhcpHost] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in NETWORK_MODES:
            raise InvalidSpec(f"network mode {self.mode!r} is not one of {NETWORK_MODES}")
        if self.mode == "bridge":
            if not self.bridge or self.address or self.dhcp_start or self.hosts:
                raise InvalidSpec("a bridge network needs a bridge name and no addresses")
            return
        if not self.address:
            raise InvalidSpec(f"a {self.mode} network needs the gateway address")
        net = ipaddress.ip_interface(f"{self.address}/{self.prefix}").network
        for ip in (self.dhcp_start, self.dhcp_end, *(h.ip for h in self.hosts)):
            if ip is not None and ipaddress.ip_address(ip) not in net:
                raise InvalidSpec(f"{ip} is outside {net}")
        if (self.dhcp_start is None) != (self.dhcp_end is None):
            raise InvalidSpec("a DHCP range needs both dhcp_start and dhcp_end")


class NetworkDriver(ABC):
    """Networks of one node."""

    @abstractmethod
    def ensure_network(self, spec: NetworkSpec) -> None:
        """Define, start and autostart the network if needed. Idempotent; an existing network of
        that name is started if inactive and otherwise left as it is."""

    @abstractmethod
    def delete_network(self, name: str) -> None:
        """Stop and undefine the network. Missing network: success."""

    @abstractmethod
    def list_networks(self) -> list[str]:
        """Names of the node's networks, sorted."""

    @abstractmethod
    def add_dhcp_host(self, network: str, host: DhcpHost) -> None:
        """Add a static DHCP entry to the running network and its saved definition.

        An identical entry already present is success; an entry for the same MAC with another IP
        or name is replaced.
        """

    @abstractmethod
    def remove_dhcp_host(self, network: str, mac: str) -> None:
        """Remove the static DHCP entry for ``mac``, live and saved. No such entry: success."""

    @abstractmethod
    def dhcp_hosts(self, network: str) -> list[DhcpHost]:
        """The network's static DHCP entries."""

    @abstractmethod
    def leases(self, network: str) -> list[DhcpLease]:
        """Current DHCP leases; [] when the driver cannot report them (libvirt's test driver)."""
