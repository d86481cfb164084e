"""libvirt network XML as small objects (see config.py for the pattern)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar

from lxml import etree

from backends.libvirt.config import XmlObject, sub


def _on_off(flag: bool | None) -> str | None:
    return None if flag is None else ("on" if flag else "off")


@dataclass
class NetworkDhcpHost(XmlObject):
    """<host mac= ip= name=/> inside <dhcp>: one static lease."""

    root_name: ClassVar[str] = "host"
    mac: str = ""
    ip: str = ""
    name: str | None = None

    def to_element(self) -> etree._Element:
        return etree.Element("host", {k: v for k, v in
                                      (("mac", self.mac), ("name", self.name), ("ip", self.ip)) if v})

    @classmethod
    def from_element(cls, el: etree._Element) -> NetworkDhcpHost:
        return cls(mac=el.get("mac", "").lower(), ip=el.get("ip", ""), name=el.get("name"))


@dataclass
class Network(XmlObject):
    """<network>: ``forward`` 'nat', 'bridge' or None (isolated); one IPv4 subnet with DHCP.

    ``stp`` is the bridge's spanning tree ('on'/'off'; None leaves libvirt's default, on) and
    ``mac`` the bridge's own MAC (None: libvirt picks a random one).
    """

    root_name: ClassVar[str] = "network"
    name: str = ""
    forward: str | None = "nat"
    bridge: str | None = None
    stp: bool | None = None
    mac: str | None = None
    address: str | None = None
    prefix: int = 24
    dhcp_start: str | None = None
    dhcp_end: str | None = None
    hosts: list[NetworkDhcpHost] = field(default_factory=list)

    def to_element(self) -> etree._Element:
        el = etree.Element("network")
        sub(el, "name", self.name)
        if self.forward:
            sub(el, "forward", mode=self.forward)
        if self.bridge or self.stp is not None:
            sub(el, "bridge", name=self.bridge, stp=_on_off(self.stp))
        if self.mac:
            sub(el, "mac", address=self.mac)
        if self.address:
            ip = sub(el, "ip", address=self.address, prefix=str(self.prefix))
            if self.dhcp_start or self.hosts:
                dhcp = sub(ip, "dhcp")
                if self.dhcp_start:
                    sub(dhcp, "range", start=self.dhcp_start, end=self.dhcp_end)
                for host in self.hosts:
                    dhcp.append(host.to_element())
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> Network:
        fwd, br, mac = el.find("forward"), el.find("bridge"), el.find("mac")
        stp = br.get("stp") if br is not None else None
        net = cls(name=el.findtext("name", ""), forward=fwd.get("mode", "nat") if fwd is not None else None,
                  bridge=br.get("name") if br is not None else None,
                  stp=None if stp is None else stp == "on",
                  mac=(mac.get("address", "").lower() or None) if mac is not None else None)
        for ip in el.findall("ip"):
            if ip.get("family", "ipv4") != "ipv4":
                continue
            net.address = ip.get("address")
            if ip.get("prefix"):
                net.prefix = int(ip.get("prefix", "24"))
            elif ip.get("netmask"):
                net.prefix = ipaddress.ip_network(f"0.0.0.0/{ip.get('netmask')}").prefixlen
            rng = ip.find("dhcp/range")
            if rng is not None:
                net.dhcp_start, net.dhcp_end = rng.get("start"), rng.get("end")
            net.hosts = [NetworkDhcpHost.from_element(h) for h in ip.findall("dhcp/host")]
            break
        return net
