"""Virtual networks and static DHCP entries (backends.libvirt.network) and their XML objects.

The test driver keeps networks in memory (no dnsmasq, no leases); a private libvirtd in its own
network namespace runs the real network driver with dnsmasq (skipped where it cannot start).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lxml import etree

from backends import driver_for
from backends.base import AlreadyExists, InvalidSpec, NotFound
from backends.libvirt.config_network import Network, NetworkDhcpHost
from backends.libvirt.driver import LibvirtDriver
from backends.libvirt.network import bridge_mac, network_config
from backends.libvirt.testing import PrivateLibvirtd, make_test_node_uri
from backends.networks import DhcpHost, NetworkSpec

NAT = NetworkSpec("ec2-private", "nat", bridge="ec2br0", address="10.99.0.1", prefix=24,
                  dhcp_start="10.99.0.100", dhcp_end="10.99.0.200")
H42 = DhcpHost("52:54:00:00:00:42", "10.99.0.42", "i-42")


def test_network_xml_round_trip() -> None:
    net = network_config(NetworkSpec("n", "nat", bridge="br9", address="10.1.0.1", prefix=16,
                                     dhcp_start="10.1.0.10", dhcp_end="10.1.0.20",
                                     hosts=[DhcpHost("52:54:00:00:00:01", "10.1.0.5", "i-1")]))
    assert Network.from_xml(net.to_xml()) == net
    assert net.hosts == [NetworkDhcpHost("52:54:00:00:00:01", "10.1.0.5", "i-1")]


def test_network_xml_per_mode() -> None:
    iso = network_config(NetworkSpec("iso", "isolated", address="10.2.0.1"))
    assert "<forward" not in iso.to_xml() and "<dhcp>" not in iso.to_xml()
    bridged = network_config(NetworkSpec("br", "bridge", bridge="br-ex"))
    assert '<forward mode="bridge"/>' in bridged.to_xml() and "<ip" not in bridged.to_xml()


def test_pool_network_bridges_have_stp_off_and_a_mac_from_the_name() -> None:
    """PROBES-2026-12.md: stp on delays every new tap by ~4 s; a random bridge MAC per node leaves a
    migrated guest without its gateway for 20-40 s. So: stp off, and the same MAC on every node."""
    for spec in (NAT, NetworkSpec("iso", "isolated", address="10.2.0.1")):
        xml = etree.fromstring(network_config(spec).to_xml())
        assert xml.find("bridge").get("stp") == "off"
        mac = xml.find("mac").get("address")
        assert mac == bridge_mac(spec.name) == network_config(spec).mac
        assert re.fullmatch(r"02(:[0-9a-f]{2}){5}", mac)  # locally administered, unicast
        assert Network.from_xml(network_config(spec).to_xml()) == network_config(spec)
    assert xml.find("bridge").get("name") is None  # libvirt names it (virbrN)
    assert etree.fromstring(network_config(NAT).to_xml()).find("bridge").get("name") == "ec2br0"
    assert bridge_mac("ec2gw-a") == bridge_mac("ec2gw-a") != bridge_mac("ec2gw-b")
    bridged = network_config(NetworkSpec("br", "bridge", bridge="br-ex")).to_xml()
    assert "stp" not in bridged and "<mac" not in bridged  # the host bridge is the operator's


def test_netmask_is_read_as_prefix() -> None:
    net = Network.from_xml("<network><name>x</name><ip address='10.0.0.1' netmask='255.255.0.0'/></network>")
    assert (net.address, net.prefix, net.forward) == ("10.0.0.1", 16, None)


@pytest.mark.parametrize("kwargs,error", [
    ({"mode": "routed", "address": "10.0.0.1"}, "mode"),
    ({"mode": "nat"}, "gateway"),
    ({"mode": "bridge"}, "bridge name"),
    ({"mode": "bridge", "bridge": "br0", "address": "10.0.0.1"}, "no addresses"),
    ({"address": "10.0.0.1", "dhcp_start": "10.0.1.5", "dhcp_end": "10.0.0.9"}, "outside"),
    ({"address": "10.0.0.1", "dhcp_start": "10.0.0.5"}, "both"),
    ({"address": "10.0.0.1", "hosts": [DhcpHost("52:54:00:00:00:01", "10.7.0.1")]}, "outside")])
def test_network_spec_validation(kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(InvalidSpec, match=error):
        NetworkSpec("n", **kwargs)  # type: ignore[arg-type]


# --- libvirt's test driver -----------------------------------------------------------------------

@pytest.fixture
def test_driver(tmp_path: Path) -> Iterator[LibvirtDriver]:
    drv = driver_for(make_test_node_uri(tmp_path), timeout=5)
    assert isinstance(drv, LibvirtDriver)
    yield drv
    drv.close()


def test_ensure_and_delete_network(test_driver: LibvirtDriver) -> None:
    nets = test_driver.networks
    nets.ensure_network(NAT)
    nets.ensure_network(NAT)
    nets.ensure_network(NetworkSpec("iso", "isolated", bridge="isobr0", address="10.98.0.1"))
    assert nets.list_networks() == ["ec2-private", "iso"]
    nets.delete_network("iso")
    nets.delete_network("iso")
    assert nets.list_networks() == ["ec2-private"]


def test_ensure_network_called_at_once_by_many_threads(test_driver: LibvirtDriver) -> None:
    """Instances spawned at the same moment each ensure their pool's network: the define or start
    that comes second finds what the first made."""
    nets = test_driver.networks
    for round_ in range(15):
        spec = NetworkSpec(f"raced{round_}", "isolated", bridge=f"racebr{round_}", address=f"10.97.{round_}.1")
        start = threading.Barrier(8)

        def ensure(spec: NetworkSpec = spec, start: threading.Barrier = start) -> None:
            start.wait(10)
            nets.ensure_network(spec)

        with ThreadPoolExecutor(8) as pool:
            for fut in [pool.submit(ensure) for _ in range(8)]:
                fut.result(30)
        assert spec.name in nets.list_networks()
        nets.delete_network(spec.name)


def test_dhcp_hosts_on_the_test_driver(test_driver: LibvirtDriver) -> None:
    nets = test_driver.networks
    nets.ensure_network(NAT)
    nets.add_dhcp_host("ec2-private", H42)
    nets.add_dhcp_host("ec2-private", DhcpHost("52:54:00:00:00:42", "10.99.0.42", "i-42"))  # same: no-op
    nets.add_dhcp_host("ec2-private", DhcpHost("52:54:00:00:00:43", "10.99.0.43"))
    assert nets.dhcp_hosts("ec2-private") == [H42, DhcpHost("52:54:00:00:00:43", "10.99.0.43")]
    moved = DhcpHost("52:54:00:00:00:42", "10.99.0.52", "i-42")
    nets.add_dhcp_host("ec2-private", moved)  # same MAC, new address: replaced
    assert nets.dhcp_hosts("ec2-private") == [DhcpHost("52:54:00:00:00:43", "10.99.0.43"), moved]
    with pytest.raises(AlreadyExists, match="10.99.0.43"):
        nets.add_dhcp_host("ec2-private", DhcpHost("52:54:00:00:00:44", "10.99.0.43"))
    nets.remove_dhcp_host("ec2-private", "52:54:00:00:00:42")
    nets.remove_dhcp_host("ec2-private", "52:54:00:00:00:42")
    assert nets.dhcp_hosts("ec2-private") == [DhcpHost("52:54:00:00:00:43", "10.99.0.43")]
    assert nets.leases("ec2-private") == []  # the test driver has no DHCP server
    with pytest.raises(NotFound):
        nets.add_dhcp_host("no-such-net", H42)


def test_dhcp_host_on_a_stopped_network_changes_the_saved_definition(test_driver: LibvirtDriver) -> None:
    nets = test_driver.networks
    nets.ensure_network(NAT)
    test_driver.connection.call(lambda c: c.networkLookupByName("ec2-private").destroy(), "stop")
    nets.add_dhcp_host("ec2-private", H42)
    assert nets.dhcp_hosts("ec2-private") == [H42]
    nets.ensure_network(NAT)  # started again from the saved definition
    assert nets.dhcp_hosts("ec2-private") == [H42]


# --- the real network driver and dnsmasq, inside a private network namespace ------------------

def test_live_dhcp_hosts_reach_dnsmasq(libvirtd: PrivateLibvirtd) -> None:
    drv = driver_for(libvirtd.uri("qemu"), "qemu", timeout=10)
    nets = drv.networks
    hostsfile = libvirtd.root / "lib" / "dnsmasq" / "ec2-private.hostsfile"
    saved = libvirtd.root / "etc" / "qemu" / "networks" / "ec2-private.xml"
    try:
        nets.ensure_network(NAT)
        assert (libvirtd.root / "run" / "network" / "ec2-private.pid").exists()  # dnsmasq runs
        defined = etree.fromstring(saved.read_bytes())
        assert defined.find("bridge").get("stp") == "off"  # libvirt kept both
        assert defined.find("mac").get("address") == bridge_mac("ec2-private")
        nets.add_dhcp_host("ec2-private", H42)
        assert "52:54:00:00:00:42,10.99.0.42,i-42" in hostsfile.read_text()  # live
        assert "10.99.0.42" in saved.read_text()  # and saved
        assert nets.leases("ec2-private") == []  # supported, nobody asked yet
        nets.remove_dhcp_host("ec2-private", H42.mac)
        assert "10.99.0.42" not in hostsfile.read_text() and "10.99.0.42" not in saved.read_text()
        nets.ensure_network(NetworkSpec("iso", "isolated", bridge="isobr0", address="10.98.0.1",
                                        dhcp_start="10.98.0.10", dhcp_end="10.98.0.20", hosts=[
                                            DhcpHost("52:54:00:00:00:07", "10.98.0.7")]))
        assert "10.98.0.7" in (libvirtd.root / "lib" / "dnsmasq" / "iso.hostsfile").read_text()
    finally:
        nets.delete_network("ec2-private")
        nets.delete_network("iso")
        drv.close()
    assert not saved.exists()
