"""The Driver contract: one test class, run against every driver that can run here.

Parameters: libvirt's test driver in-process on a private node (test:///PATH/node.xml), and the
same driver behind a real, private libvirtd (test+unix://...) which exercises the daemon path
(event loop, keepalive, a node that stops answering, reconnecting). QEMU guests are covered by
the vm-marked tests elsewhere.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from backends import driver_for
from backends.base import (
    DiskSpec,
    DomainExists,
    DomainInfo,
    DomainNotFound,
    DomainSpec,
    Driver,
    InvalidSpec,
    InvalidState,
    NicSpec,
    NodeUnavailable,
    PowerState,
    SpawnFailed,
)
from backends.libvirt.driver import LibvirtDriver
from backends.libvirt.testing import (
    PrivateLibvirtd,
    make_test_node_uri,
    qemu_unavailable_reason,
    tiny_kernel,
)

TIMEOUT = 2.0


def make_spec(name: str = "i-00000001", **overrides: object) -> DomainSpec:
    """A spec with disks and a NIC, for drivers that do not run guests (the test driver)."""
    fields: dict[str, object] = {
        "name": name, "uuid": str(uuid.uuid4()), "memory_mib": 128, "vcpus": 1,
        "disks": [DiskSpec(path=f"/var/lib/ec2gw/{name}.qcow2", format="qcow2"),
               DiskSpec(path=f"/var/lib/ec2gw/{name}.iso", device="cdrom")],
        "nics": [NicSpec(mac="52:54:00:12:34:56", network="default")]}
    fields.update(overrides)
    return DomainSpec(**fields)  # type: ignore[arg-type]


@dataclass
class Harness:
    """One driver under test plus the driver-specific ways to build specs and provoke failures."""

    driver: Driver
    spec: Callable[..., DomainSpec]
    break_start: Callable[[], contextlib.AbstractContextManager[None]]
    timeout: float = TIMEOUT
    hang_node: Callable[[], contextlib.AbstractContextManager[None]] | None = None
    node_memory_mib: int | None = None
    #: False for test:///PATH/node.xml nodes: each new connection starts from a fresh node.
    state_survives_reconnect: bool = True
    #: False for a guest without ACPI support: power_off() then always ends in a hard stop.
    guest_obeys_acpi: bool = True
    concurrency: int = 12


@contextlib.contextmanager
def _libvirt_start_fails() -> Iterator[None]:
    """Make every virDomainCreate fail, as a node out of memory or missing a disk would."""
    original = libvirt.virDomain.create

    def fail(self: libvirt.virDomain) -> int:
        raise libvirt.libvirtError("injected: cannot start")
    libvirt.virDomain.create = fail  # type: ignore[method-assign]
    try:
        yield
    finally:
        libvirt.virDomain.create = original  # type: ignore[method-assign]


def _pausing(daemon: PrivateLibvirtd) -> Callable[[], contextlib.AbstractContextManager[None]]:
    @contextlib.contextmanager
    def hang() -> Iterator[None]:
        daemon.pause()
        try:
            yield
        finally:
            daemon.resume()
    return hang


@pytest.fixture(scope="module")
def qemu_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivateLibvirtd, Path]]:
    reason = qemu_unavailable_reason()
    if reason:
        pytest.skip(f"QEMU in a private libvirtd: {reason}")
    root = tmp_path_factory.mktemp("qemu-node")
    kernel = root / "kernel"
    kernel.write_bytes(tiny_kernel(b"ec2gw contract guest\r\n"))
    with PrivateLibvirtd(root / "libvirtd", virtlogd=True) as daemon:
        conn = libvirt.open(daemon.uri("qemu"))
        try:  # the first QEMU capabilities probe takes seconds; do it before timing anything
            conn.getDomainCapabilities(None, "x86_64", None, "qemu", 0)
        finally:
            conn.close()
        yield daemon, kernel


@pytest.fixture(params=["test", "test+unix", pytest.param("qemu", marks=[pytest.mark.vm, pytest.mark.slow])])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "test":
        drv = driver_for(make_test_node_uri(tmp_path, memory_mib=6144, cpus=3), timeout=TIMEOUT)
        h = Harness(drv, make_spec, _libvirt_start_fails, node_memory_mib=6144,
                    state_survives_reconnect=False)
    elif request.param == "test+unix":
        daemon: PrivateLibvirtd = request.getfixturevalue("libvirtd")
        node = make_test_node_uri(tmp_path, memory_mib=4096, cpus=2)
        drv = driver_for(daemon.uri("test", node.removeprefix("test://")), timeout=TIMEOUT)
        h = Harness(drv, make_spec, _libvirt_start_fails, hang_node=_pausing(daemon),
                    node_memory_mib=4096, state_survives_reconnect=False)
    else:
        daemon, kernel = request.getfixturevalue("qemu_node")

        def qemu_spec(name: str = "i-00000001", **overrides: object) -> DomainSpec:
            fields: dict[str, object] = {"name": name, "uuid": str(uuid.uuid4()), "memory_mib": 32, "vcpus": 1,
                                             "kernel": str(kernel)}
            fields.update(overrides)
            return DomainSpec(**fields)  # type: ignore[arg-type]
        drv = driver_for(daemon.uri("qemu"), "qemu", timeout=10)
        h = Harness(drv, qemu_spec, _libvirt_start_fails, timeout=10, hang_node=_pausing(daemon),
                    guest_obeys_acpi=False, concurrency=4)
    try:
        yield h
    finally:
        try:
            for dom in h.driver.list_domains():
                h.driver.destroy(dom.name)
        finally:
            h.driver.close()


def names(driver: Driver) -> list[str]:
    return [d.name for d in driver.list_domains()]


class TestDriverContract:
    """Every guarantee of backends.base.Driver's docstrings, against a real driver."""

    def test_spawn_gives_a_running_persistent_domain(self, harness: Harness) -> None:
        drv, spec = harness.driver, harness.spec(memory_mib=192, vcpus=2)
        got = drv.spawn(spec)
        assert got == DomainInfo(spec.name, PowerState.RUNNING, 192, 2, spec.uuid, persistent=True)
        assert drv.info(spec.name) == got
        assert names(drv) == [spec.name]

    def test_power_off_with_timeout_stops_gracefully_and_keeps_the_definition(self, harness: Harness) -> None:
        drv, spec = harness.driver, harness.spec()
        drv.spawn(spec)
        started = time.monotonic()
        assert drv.power_off(spec.name, timeout=1.5) is harness.guest_obeys_acpi
        if not harness.guest_obeys_acpi:  # waited for the guest, then pulled the plug
            assert time.monotonic() - started >= 1.5
        info = drv.info(spec.name)
        assert info.state is PowerState.SHUTOFF and info.persistent and info.uuid == spec.uuid
        assert names(drv) == [spec.name]
        assert drv.power_off(spec.name, timeout=5) is True  # already off: success at once

    @pytest.mark.parametrize("timeout", [None, 0])
    def test_power_off_without_timeout_is_a_hard_stop(self, harness: Harness, timeout: float | None) -> None:
        drv, spec = harness.driver, harness.spec()
        drv.spawn(spec)
        started = time.monotonic()
        assert drv.power_off(spec.name, timeout) is False
        assert time.monotonic() - started < harness.timeout
        assert drv.info(spec.name).state is PowerState.SHUTOFF
        assert names(drv) == [spec.name]

    def test_start_a_stopped_domain_and_start_is_idempotent(self, harness: Harness) -> None:
        drv, spec = harness.driver, harness.spec()
        drv.spawn(spec)
        drv.power_off(spec.name)
        drv.start(spec.name)
        assert drv.info(spec.name).state is PowerState.RUNNING
        drv.start(spec.name)
        assert drv.info(spec.name).state is PowerState.RUNNING

    def test_reboot(self, harness: Harness) -> None:
        drv, spec = harness.driver, harness.spec()
        drv.spawn(spec)
        drv.reboot(spec.name)
        assert drv.info(spec.name).state is PowerState.RUNNING
        drv.reboot(spec.name, hard=True)
        assert drv.info(spec.name).state is PowerState.RUNNING
        drv.power_off(spec.name)
        drv.reboot(spec.name)  # a stopped domain is started
        assert drv.info(spec.name).state is PowerState.RUNNING

    def test_suspend_and_resume(self, harness: Harness) -> None:
        drv, spec = harness.driver, harness.spec()
        drv.spawn(spec)
        drv.suspend(spec.name)
        assert drv.info(spec.name).state is PowerState.PAUSED
        assert [d.state for d in drv.list_domains()] == [PowerState.PAUSED]
        drv.suspend(spec.name)  # already paused: no-op
        assert drv.info(spec.name).state is PowerState.PAUSED
        drv.resume(spec.name)
        assert drv.info(spec.name).state is PowerState.RUNNING
        drv.resume(spec.name)  # already running: no-op
        assert drv.info(spec.name).state is PowerState.RUNNING
        drv.suspend(spec.name)
        assert drv.power_off(spec.name, timeout=1) is False  # a paused guest cannot hear ACPI: hard stop
        assert drv.info(spec.name).state is PowerState.SHUTOFF
        for call in (drv.suspend, drv.resume):
            with pytest.raises(InvalidState, match="not running"):
                call(spec.name)
        drv.start(spec.name)
        drv.suspend(spec.name)
        drv.destroy(spec.name)  # a paused domain can be removed
        assert names(drv) == []

    def test_save_hibernates_and_start_restores(self, harness: Harness) -> None:
        drv, spec = harness.driver, harness.spec()
        drv.spawn(spec)
        drv.save(spec.name)
        info = drv.info(spec.name)
        assert (info.state, info.saved, info.persistent) == (PowerState.SHUTOFF, True, True)
        assert [d.saved for d in drv.list_domains()] == [True]
        with pytest.raises(InvalidState, match="not running"):
            drv.save(spec.name)
        drv.start(spec.name)  # restores
        assert (drv.info(spec.name).state, drv.info(spec.name).saved) == (PowerState.RUNNING, False)
        drv.suspend(spec.name)
        drv.save(spec.name)  # a paused domain is saved to run when restored
        drv.start(spec.name)
        assert drv.info(spec.name).state is PowerState.RUNNING
        drv.power_off(spec.name)
        assert drv.info(spec.name).saved is False, "an ordinary stop saves nothing"
        drv.start(spec.name)
        drv.save(spec.name)
        drv.destroy(spec.name)  # removes the saved state with the domain
        assert names(drv) == []

    def test_destroy_removes_the_domain(self, harness: Harness) -> None:
        drv, keep, spec = harness.driver, harness.spec("i-keep"), harness.spec()
        drv.spawn(keep)
        drv.spawn(spec)
        drv.destroy(spec.name)
        assert drv.info(spec.name) == DomainInfo(spec.name, PowerState.MISSING)
        assert names(drv) == ["i-keep"]
        drv.spawn(harness.spec(spec.name))  # the name is free again
        drv.power_off(spec.name)
        drv.destroy(spec.name)  # a stopped domain too
        assert names(drv) == ["i-keep"]

    def test_destroy_of_a_missing_domain_succeeds(self, harness: Harness) -> None:
        harness.driver.destroy("i-never-existed")
        spec = harness.spec()
        harness.driver.spawn(spec)
        harness.driver.destroy(spec.name)
        harness.driver.destroy(spec.name)
        assert names(harness.driver) == []

    def test_operations_on_a_missing_domain(self, harness: Harness) -> None:
        drv = harness.driver
        assert drv.info("i-nope") == DomainInfo("i-nope", PowerState.MISSING, 0, 0)
        for call in (lambda: drv.start("i-nope"), lambda: drv.power_off("i-nope", 1),
                     lambda: drv.reboot("i-nope"), lambda: drv.console_output("i-nope"),
                     lambda: drv.suspend("i-nope"), lambda: drv.resume("i-nope"), lambda: drv.save("i-nope")):
            with pytest.raises(DomainNotFound):
                call()

    def test_spawn_of_a_taken_name_leaves_the_existing_domain_alone(self, harness: Harness) -> None:
        drv, spec = harness.driver, harness.spec(memory_mib=128)
        before = drv.spawn(spec)
        with pytest.raises(DomainExists):
            drv.spawn(harness.spec(spec.name, memory_mib=512))
        with pytest.raises(DomainExists):  # same UUID too: libvirt would silently redefine it
            drv.spawn(harness.spec(spec.name, uuid=spec.uuid, memory_mib=512))
        assert drv.info(spec.name) == before
        drv.power_off(spec.name)
        with pytest.raises(DomainExists):
            drv.spawn(harness.spec(spec.name, uuid=spec.uuid, memory_mib=512))
        assert drv.info(spec.name).memory_mib == 128
        assert names(drv) == [spec.name]

    def test_spawn_rejected_by_the_hypervisor_leaves_nothing(self, harness: Harness) -> None:
        drv = harness.driver
        bad = harness.spec(disks=[DiskSpec(path="/x.img", bus="no-such-bus")])
        with pytest.raises(InvalidSpec, match="no-such-bus"):
            drv.spawn(bad)
        assert drv.info(bad.name).state is PowerState.MISSING
        assert names(drv) == []
        drv.spawn(harness.spec(bad.name))  # and the name is usable

    def test_spawn_that_fails_to_start_leaves_nothing(self, harness: Harness) -> None:
        drv, spec = harness.driver, harness.spec()
        with harness.break_start(), pytest.raises(SpawnFailed, match="injected"):
            drv.spawn(spec)
        assert drv.info(spec.name).state is PowerState.MISSING
        assert names(drv) == []

    def test_list_domains_sorted_with_states(self, harness: Harness) -> None:
        drv = harness.driver
        for n in ("i-c", "i-a", "i-b"):
            drv.spawn(harness.spec(n))
        drv.power_off("i-b")
        assert [(d.name, d.state) for d in drv.list_domains()] == [
            ("i-a", PowerState.RUNNING), ("i-b", PowerState.SHUTOFF), ("i-c", PowerState.RUNNING)]

    def test_node_info(self, harness: Harness) -> None:
        node = harness.driver.node_info()
        assert node.hostname and node.vcpus > 0 and node.memory_mib > 0
        if harness.node_memory_mib is not None:
            assert node.memory_mib == harness.node_memory_mib

    def test_console_output_is_bytes_and_bounded(self, harness: Harness) -> None:
        drv, spec = harness.driver, harness.spec()
        drv.spawn(spec)
        out = drv.console_output(spec.name, max_bytes=10)
        assert isinstance(out, bytes) and len(out) <= 10
        if isinstance(drv, LibvirtDriver) and drv.domain_type == "test":
            assert out == b""
        drv.power_off(spec.name)
        assert len(drv.console_output(spec.name, max_bytes=10)) <= 10

    def test_close_then_use_again(self, harness: Harness) -> None:
        drv, spec = harness.driver, harness.spec()
        drv.spawn(spec)
        drv.close()
        drv.close()
        expected = PowerState.RUNNING if harness.state_survives_reconnect else PowerState.MISSING
        assert drv.info(spec.name).state is expected
        drv.spawn(harness.spec("i-after-close"))
        assert "i-after-close" in names(drv)

    def test_concurrent_spawns(self, harness: Harness) -> None:
        drv, errors = harness.driver, []

        def spawn(i: int) -> None:
            try:
                drv.spawn(harness.spec(f"i-{i:02d}"))
            except Exception as exc:  # noqa: BLE001 (collected for the assertion below)
                errors.append(exc)
        threads = [threading.Thread(target=spawn, args=(i,)) for i in range(harness.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert names(drv) == [f"i-{i:02d}" for i in range(harness.concurrency)]

    def test_a_node_that_stops_answering(self, harness: Harness) -> None:
        if harness.hang_node is None:
            pytest.skip("this driver's node cannot be made to hang")
        assert isinstance(harness.driver, LibvirtDriver)
        spec = harness.spec()
        harness.driver.spawn(spec)
        drv = driver_for(harness.driver.uri, harness.driver.domain_type, timeout=1.0)  # short deadline
        drv.list_domains()  # connected before the node hangs
        with harness.hang_node():
            started = time.monotonic()
            with pytest.raises(NodeUnavailable, match="no answer within 1 s"):
                drv.info(spec.name)
            assert time.monotonic() - started < 3  # 1 s deadline plus scheduling slack on a loaded machine
        # the next call reconnects by itself (a new connection to a test:///PATH node is a new node)
        expected = PowerState.RUNNING if harness.state_survives_reconnect else PowerState.MISSING
        assert drv.info(spec.name).state is expected
        drv.close()
        assert harness.driver.info(spec.name).state is PowerState.RUNNING  # idle connection survived


@pytest.mark.parametrize("uri", ["test+tcp://127.0.0.1:1/default", "qemu+tcp://127.0.0.1:1/system",
                                 "test:///nonexistent/dir/node.xml"])
def test_unreachable_node_raises_node_unavailable(uri: str) -> None:
    drv = driver_for(uri, "qemu", timeout=TIMEOUT)
    calls: list[Callable[[], object]] = [
        lambda: drv.spawn(make_spec()), lambda: drv.start("i-1"), lambda: drv.destroy("i-1"),
        lambda: drv.power_off("i-1", 1), lambda: drv.reboot("i-1"), lambda: drv.info("i-1"),
        drv.list_domains, lambda: drv.console_output("i-1"), drv.node_info]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(NodeUnavailable, match="cannot connect"):
            call()
        assert time.monotonic() - started < TIMEOUT
    drv.close()


def test_a_silent_node_times_out() -> None:
    """A peer that accepts the TCP connection but never speaks: open() would block forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass
    acceptor = threading.Thread(target=accept)
    acceptor.start()
    drv = driver_for(f"test+tcp://127.0.0.1:{port}/default", timeout=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(NodeUnavailable, match="no answer within 1 s"):
            drv.info("i-1")
        assert 0.9 < time.monotonic() - started < 3.0
    finally:
        stop.set()
        acceptor.join()
        for conn in accepted:
            conn.close()
        server.close()
        drv.close()


def test_domain_type_comes_from_configuration() -> None:
    assert LibvirtDriver("test:///default").domain_type == "test"
    assert LibvirtDriver("test:///default", domain_type="kvm").domain_type == "test"
    assert LibvirtDriver("qemu:///system", domain_type="qemu").domain_type == "qemu"
    with pytest.raises(ValueError, match="kvm on real hosts"):
        LibvirtDriver("qemu:///system")
    with pytest.raises(ValueError):
        LibvirtDriver("qemu:///system", domain_type="lxc")


def test_test_driver_domains_are_of_type_test(tmp_path: Path) -> None:
    drv = driver_for(make_test_node_uri(tmp_path), "kvm")
    spec = make_spec(domain_type="kvm")
    drv.spawn(spec)
    assert isinstance(drv, LibvirtDriver)
    xml = drv.connection.call(lambda conn: conn.lookupByName(spec.name).XMLDesc(0), "xml")
    assert xml.startswith("<domain type='test'")
    drv.close()
