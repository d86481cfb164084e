"""LibvirtNetworks: libvirt virtual networks and their static DHCP entries.

Static entries are changed on the running network (dnsmasq is told at once) and in its saved
definition together, with virNetworkUpdate (section IP_DHCP_HOST, flags LIVE|CONFIG), so an
instance's address holds across network restarts without redefining the network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

import libvirt

from backends.base import AlreadyExists, DriverError, NotFound
from backends.libvirt.config_network import Network, NetworkDhcpHost
from backends.libvirt.connection import Connection, describe
from backends.networks import DhcpHost, DhcpLease, NetworkDriver, NetworkSpec

T = TypeVar("T")
_FORWARD = {"nat": "nat", "isolated": None, "bridge": "bridge"}


def bridge_mac(name: str) -> str:
    """The bridge MAC of the network ``name``: the same on every node (a locally administered
    unicast address, 02:..., from a hash of the name).

    A guest live-migrated to another node keeps its gateway's MAC in its ARP cache; with a random
    bridge MAC per node it loses its gateway for 20-40 s (PROBES-2026-12.md section 5).
    """
    digest = hashlib.sha256(f"ec2gw-network:{name}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def network_config(spec: NetworkSpec) -> Network:
    """The libvirt <network> for a NetworkSpec.

    The bridge of a nat or isolated network has spanning tree off (with libvirt's default, on,
    every new tap, hot-plugged or restored, waits about 4 s before traffic passes) and the MAC of
    bridge_mac(); a ``bridge`` network joins a host bridge that is the operator's.
    """
    own_bridge = spec.mode != "bridge"
    return Network(name=spec.name, forward=_FORWARD[spec.mode], bridge=spec.bridge,
                   stp=False if own_bridge else None, mac=bridge_mac(spec.name) if own_bridge else None,
                   address=spec.address, prefix=spec.prefix, dhcp_start=spec.dhcp_start,
                   dhcp_end=spec.dhcp_end,
                   hosts=[NetworkDhcpHost(mac=h.mac.lower(), ip=h.ip, name=h.name) for h in spec.hosts])


def find_network(conn: libvirt.virConnect, name: str) -> libvirt.virNetwork | None:
    try:
        return conn.networkLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            return None
        raise


def get_network(conn: libvirt.virConnect, name: str) -> libvirt.virNetwork:
    net = find_network(conn, name)
    if net is None:
        raise NotFound(f"no network {name!r}; create it with ensure_network()")
    return net


def _update_flags(net: libvirt.virNetwork) -> int:
    flags = 0
    if net.isActive():
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
    if net.isPersistent():
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    return flags


def _hosts(net: libvirt.virNetwork) -> list[NetworkDhcpHost]:
    return Network.from_xml(net.XMLDesc(0)).hosts


class LibvirtNetworks(NetworkDriver):
    """NetworkDriver on a libvirt Connection (shared with the LibvirtDriver that created it)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _call(self, fn: Callable[[libvirt.virConnect], T], what: str) -> T:
        try:
            return self.connection.call(fn, what)
        except libvirt.libvirtError as exc:
            raise DriverError(f"{what} failed on {self.connection.uri}: {describe(exc)}") from exc

    def ensure_network(self, spec: NetworkSpec) -> None:
        xml = network_config(spec).to_xml()

        def op(conn: libvirt.virConnect) -> None:
            net = find_network(conn, spec.name)
            if net is None:
                try:
                    net = conn.networkDefineXML(xml)
                except libvirt.libvirtError:
                    net = find_network(conn, spec.name)  # defined by another caller at the same moment
                    if net is None:
                        raise
            if not net.isActive():
                try:
                    net.create()
                except libvirt.libvirtError:
                    if not net.isActive():  # else started by another caller meanwhile
                        raise
            if net.isPersistent() and not net.autostart():
                net.setAutostart(1)
        self._call(op, f"ensuring network {spec.name}")

    def delete_network(self, name: str) -> None:
        def op(conn: libvirt.virConnect) -> None:
            net = find_network(conn, name)
            if net is None:
                return
            if net.isActive():
                net.destroy()
            if net.isPersistent():
                net.undefine()
        self._call(op, f"deleting network {name}")

    def list_networks(self) -> list[str]:
        return self._call(lambda conn: sorted(n.name() for n in conn.listAllNetworks(0)), "listing networks")

    def add_dhcp_host(self, network: str, host: DhcpHost) -> None:
        """As NetworkDriver.add_dhcp_host; an entry of another MAC with that IP: AlreadyExists."""
        entry = NetworkDhcpHost(mac=host.mac.lower(), ip=host.ip, name=host.name)

        def op(conn: libvirt.virConnect) -> None:
            net = get_network(conn, network)
            current = _hosts(net)
            if entry in current:
                return
            clash = [h for h in current if h.mac != entry.mac and (h.ip == entry.ip or
                                                                   (entry.name and h.name == entry.name))]
            if clash:
                raise AlreadyExists(f"network {network!r} already gives {clash[0].ip}"
                                    f" ({clash[0].name}) to {clash[0].mac}")
            flags = _update_flags(net)
            for old in (h for h in current if h.mac == entry.mac):
                net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                           -1, old.to_xml(), flags)
            net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                       -1, entry.to_xml(), flags)
        self._call(op, f"adding DHCP host {host.mac} to {network}")

    def remove_dhcp_host(self, network: str, mac: str) -> None:
        def op(conn: libvirt.virConnect) -> None:
            net = get_network(conn, network)
            flags = _update_flags(net)
            for old in (h for h in _hosts(net) if h.mac == mac.lower()):
                net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                           -1, old.to_xml(), flags)
        self._call(op, f"removing DHCP host {mac} from {network}")

    def dhcp_hosts(self, network: str) -> list[DhcpHost]:
        def op(conn: libvirt.virConnect) -> list[DhcpHost]:
            return [DhcpHost(mac=h.mac, ip=h.ip, name=h.name) for h in _hosts(get_network(conn, network))]
        return self._call(op, f"DHCP hosts of {network}")

    def leases(self, network: str) -> list[DhcpLease]:
        def op(conn: libvirt.virConnect) -> list[DhcpLease]:
            net = get_network(conn, network)
            try:
                raw = net.DHCPLeases(None, 0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                    return []
                raise
            return sorted((DhcpLease(mac=lease["mac"].lower(), ip=lease["ipaddr"],
                                     hostname=lease.get("hostname") or None,
                                     expiry_time=int(lease.get("expirytime", 0))) for lease in raw),
                          key=lambda lease: lease.ip)
        return self._call(op, f"DHCP leases of {network}")
