"""NIC hot-plug in the libvirt driver: what libvirt's test driver does, and finding a NIC by MAC.

libvirt 9.0's test driver has no virDomainAttachDeviceFlags / virDomainDetachDeviceFlags (it
answers VIR_ERR_NO_SUPPORT, live or saved): the driver says NotSupported, never pretends. Its
networks do take static DHCP entries (virNetworkUpdate), which the network driver's tests cover.
Real hot-plug on QEMU is in the VM tests.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from backends import driver_for
from backends.base import DomainSpec, NicSpec, NotSupported
from backends.libvirt.driver import _nic_element
from backends.libvirt.testing import make_test_node_uri


def test_the_test_driver_cannot_plug_nics_and_says_so(tmp_path: Path) -> None:
    drv = driver_for(make_test_node_uri(tmp_path, memory_mib=2048, cpus=2), timeout=10)
    try:
        drv.spawn(DomainSpec(name="i-0000000a", uuid=str(uuid.uuid4()), memory_mib=128, vcpus=1))
        with pytest.raises(NotSupported, match="virDomainAttachDeviceFlags"):
            drv.attach_nic("i-0000000a", NicSpec(mac="52:54:00:aa:bb:01", network="default"))
        # nothing of that MAC is on the domain, so detaching has nothing to do: success
        drv.detach_nic("i-0000000a", "52:54:00:aa:bb:01")
        drv.detach_nic("i-missing", "52:54:00:aa:bb:01")
    finally:
        drv.destroy("i-0000000a")
        drv.close()


def test_nic_element_finds_the_interface_by_mac() -> None:
    xml = """<domain><devices>
      <disk type='file'/>
      <interface type='network'><mac address='52:54:00:00:00:01'/><source network='a'/></interface>
      <interface type='network'><mac address='52:54:00:00:00:02'/><source network='b'/><alias name='net1'/></interface>
    </devices></domain>"""
    found = _nic_element(xml, "52:54:00:00:00:02".upper())
    assert found is not None and "network='b'" in found.replace('"', "'") and "net1" in found
    assert _nic_element(xml, "52:54:00:00:00:03") is None
