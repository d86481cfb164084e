"""LibvirtDriver with real QEMU (TCG) guests in a private libvirtd: what the test driver cannot show.

The guest is tiny_kernel(): a few bytes QEMU boots directly that print on the serial port. It
needs no image, yet QEMU really opens every disk, cdrom, tap device and console of the domain.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from backends import driver_for
from backends.base import CONSOLE_EARLIER_SUFFIX, DiskSpec, DomainSpec, NicSpec, PowerState
from backends.libvirt import console
from backends.libvirt.driver import LibvirtDriver
from backends.libvirt.testing import PrivateLibvirtd, qemu_unavailable_reason, tiny_kernel
from backends.networks import DhcpHost, NetworkSpec
from backends.seed import SeedData, build_seed_iso

pytestmark = [pytest.mark.vm, pytest.mark.slow]
MESSAGE = b"ec2gw-console-test\r\n"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LibvirtDriver, Path]]:
    reason = qemu_unavailable_reason()
    if reason:
        pytest.skip(f"QEMU in a private libvirtd: {reason}")
    root = tmp_path_factory.mktemp("qemu")
    (root / "kernel-once").write_bytes(tiny_kernel(MESSAGE))
    (root / "kernel-loop").write_bytes(tiny_kernel(MESSAGE, repeat=True))
    with PrivateLibvirtd(root / "libvirtd", virtlogd=True) as daemon:
        drv = driver_for(daemon.uri("qemu"), "qemu", timeout=30, )
        assert isinstance(drv, LibvirtDriver)
        drv.console_wait = 1.5
        drv.volumes.ensure_pool("ec2gw", str(root / "pool"))
        yield drv, root
        for dom in drv.list_domains():
            drv.destroy(dom.name)
        drv.close()


def spec(root: Path, name: str, kernel: str = "kernel-loop", **overrides: object) -> DomainSpec:
    fields: dict[str, object] = {"name": name, "uuid": str(uuid.uuid4()), "memory_mib": 32, "vcpus": 1,
                                     "kernel": str(root / kernel)}
    fields.update(overrides)
    return DomainSpec(**fields)  # type: ignore[arg-type]


def wait_for(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout} s")


def test_console_output_from_the_serial_log(node: tuple[LibvirtDriver, Path]) -> None:
    drv, root = node
    drv.spawn(spec(root, "i-log", console_log=str(root / "pool" / "i-log.console")))
    out = wait_for(lambda: drv.console_output("i-log").count(MESSAGE) >= 3 and drv.console_output("i-log"))
    assert MESSAGE in out
    assert len(drv.console_output("i-log", max_bytes=7)) == 7
    drv.power_off("i-log")
    assert MESSAGE in drv.console_output("i-log")  # the log outlives the guest
    drv.destroy("i-log")


def test_console_output_from_the_live_console(node: tuple[LibvirtDriver, Path]) -> None:
    drv, root = node
    drv.spawn(spec(root, "i-live"))  # no log file: openConsole(FORCE), read without blocking
    started = time.monotonic()
    out = drv.console_output("i-live")
    assert 1.4 < time.monotonic() - started < 10
    assert MESSAGE in out
    assert drv.console_output("i-live", max_bytes=5) in (b"", *(MESSAGE[i:i + 5] for i in range(len(MESSAGE))))
    drv.destroy("i-live")


def test_console_log_of_a_remote_node_through_its_pool(node: tuple[LibvirtDriver, Path]) -> None:
    drv, root = node
    drv.spawn(spec(root, "i-remote", console_log=str(root / "pool" / "i-remote.console")))
    conn = libvirt.open(drv.uri)
    try:
        dom = conn.lookupByName("i-remote")
        out = wait_for(lambda: MESSAGE in (data := console.read_console(conn, dom, 4096, local=False,
                                                                         wait=0.1)) and data)
        assert out.endswith(MESSAGE) or MESSAGE in out
    finally:
        conn.close()
    drv.destroy("i-remote")
    drv.volumes.delete_volume("ec2gw", "i-remote.console")


def test_the_console_earlier_output_comes_first(node: tuple[LibvirtDriver, Path]) -> None:
    """A file beside the log named as the log plus CONSOLE_EARLIER_SUFFIX (what the console printed
    on another node) is shown before the log, on this node and through the pool as from a remote
    one; a read of fewer bytes than the log holds takes them from the log's end."""
    drv, root = node
    log = root / "pool" / "i-earlier.console"
    earlier = Path(str(log) + CONSOLE_EARLIER_SUFFIX)
    earlier.write_bytes(b"printed on the node before\n")
    drv.spawn(spec(root, "i-earlier", console_log=str(log)))
    out = wait_for(lambda: MESSAGE in (data := drv.console_output("i-earlier")) and data)
    assert out.startswith(b"printed on the node before\n" + MESSAGE), out[:100]
    conn = libvirt.open(drv.uri)
    try:
        remote = console.read_console(conn, conn.lookupByName("i-earlier"), 1 << 20, local=False, wait=0.1)
    finally:
        conn.close()
    assert remote.startswith(b"printed on the node before\n" + MESSAGE), remote[:100]
    tail = drv.console_output("i-earlier", max_bytes=len(MESSAGE))
    assert tail in {MESSAGE[i:] + MESSAGE[:i] for i in range(len(MESSAGE))}, tail
    drv.destroy("i-earlier")
    for name in (log.name, earlier.name):
        drv.volumes.delete_volume("ec2gw", name)


def test_guest_with_overlay_disk_seed_cdrom_and_network(node: tuple[LibvirtDriver, Path]) -> None:
    """The XML the designer makes for a full instance is accepted and opened by real QEMU."""
    drv, root = node
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    base = root / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    with open(base, "rb") as f:
        drv.volumes.upload_volume("ec2gw", "image.qcow2", f, base.stat().st_size)
    drv.volumes.create_overlay("ec2gw", "i-full.qcow2", "ec2gw", "image.qcow2")
    seed = build_seed_iso(SeedData("i-full", "i-full", ["ssh-ed25519 AAAA x"]))
    drv.volumes.upload_volume("ec2gw", "i-full.iso", io.BytesIO(seed), len(seed))
    drv.networks.ensure_network(NetworkSpec("ec2-private", "nat", bridge="ec2br0", address="10.99.0.1",
                                            dhcp_start="10.99.0.100", dhcp_end="10.99.0.200"))
    drv.networks.add_dhcp_host("ec2-private", DhcpHost("52:54:00:00:00:42", "10.99.0.42", "i-full"))
    info = drv.spawn(spec(root, "i-full", kernel="kernel-once", memory_mib=64, disks=[
        DiskSpec(pool="ec2gw", volume="i-full.qcow2", format="qcow2"),
        DiskSpec(pool="ec2gw", volume="i-full.iso", format="raw", device="cdrom")],
        nics=[NicSpec(mac="52:54:00:00:00:42", network="ec2-private")]))
    assert info.state is PowerState.RUNNING
    drv.reboot("i-full", hard=True)
    assert drv.info("i-full").state is PowerState.RUNNING
    drv.destroy("i-full")
    for vol in ("i-full.qcow2", "i-full.iso", "image.qcow2"):
        drv.volumes.delete_volume("ec2gw", vol)
    drv.networks.delete_network("ec2-private")
