"""LibvirtDriver: the Driver interface over libvirt-python, for QEMU/KVM, Xen and libvirt's test driver.

Every libvirt call goes through Connection.call(), so it is bounded by the driver's timeout and
a broken connection is re-opened on the next call. libvirtError never escapes: refusals become
the DriverError subclasses of backends.base.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import libvirt
from lxml import etree

from backends.base import (
    DOMAIN_TYPES,
    DetachTimeout,
    DiskSpec,
    DomainExists,
    DomainInfo,
    DomainNotFound,
    DomainSpec,
    DomainStats,
    Driver,
    DriverError,
    InvalidSpec,
    InvalidState,
    MigrationFailed,
    MigrationTarget,
    NicSpec,
    NodeInfo,
    NodeUnavailable,
    NotSupported,
    PowerState,
    SpawnFailed,
)
from backends.filters import FILTERING_DOMAIN_TYPES
from backends.libvirt import backup, console, designer, hotplug, migration
from backends.libvirt.connection import Connection, describe, is_connection_error
from backends.libvirt.filters import LibvirtFilters
from backends.libvirt.network import LibvirtNetworks
from backends.libvirt.storage import LibvirtVolumes
from backends.volumes import VolumeInfo

T = TypeVar("T")
#: seconds a managed save may take: it writes the guest's whole memory (2 s for 256 MiB on a busy
#: 2-core machine, ../shared/virt/PROBES-2026-12.md), so it is not bounded by the per-call timeout
SAVE_TIMEOUT = 300.0

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.UNKNOWN,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN_IN_PROGRESS,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}
_UNDEFINE_FLAGS = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                   | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)


#: the statistics groups domain_stats() asks for (state, cpu, block, interface, balloon)
_STATS_GROUPS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BLOCK
                 | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BALLOON)


def stats_of(name: str, fields: dict[str, int]) -> DomainStats:
    """DomainStats from getAllDomainStats' flat fields ("cpu.time", "block.0.rd.bytes", "net.1.tx.pkts", ...)."""

    def total(group: str, counter: str) -> int:
        return sum(int(fields.get(f"{group}.{i}.{counter}", 0)) for i in range(int(fields.get(f"{group}.count", 0))))

    cpu = fields.get("cpu.time")
    rss = fields.get("balloon.rss")
    return DomainStats(
        name=name, cpu_time_ns=None if cpu is None else int(cpu),
        disk_read_bytes=total("block", "rd.bytes"), disk_write_bytes=total("block", "wr.bytes"),
        disk_read_ops=total("block", "rd.reqs"), disk_write_ops=total("block", "wr.reqs"),
        net_rx_bytes=total("net", "rx.bytes"), net_tx_bytes=total("net", "tx.bytes"),
        net_rx_packets=total("net", "rx.pkts"), net_tx_packets=total("net", "tx.pkts"),
        memory_rss_kib=None if rss is None else int(rss),
    )


def is_test_uri(uri: str) -> bool:
    """True for libvirt's test driver (test:///default, test:///path/node.xml, test+unix://...)."""
    return urlsplit(uri).scheme.split("+")[0] == "test"


def error_code(exc: libvirt.libvirtError) -> int:
    return exc.get_error_code() or 0


def find_domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    """The domain called ``name``, or None."""
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def get_domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    """The domain called ``name``; DomainNotFound otherwise."""
    dom = find_domain(conn, name)
    if dom is None:
        raise DomainNotFound(f"no domain {name!r} on this node")
    return dom


def domain_info(dom: libvirt.virDomain) -> DomainInfo:
    state, max_kib, _cur_kib, vcpus, _cpu_ns = dom.info()
    power = _STATES.get(state, PowerState.UNKNOWN)
    return DomainInfo(name=dom.name(), state=power, memory_mib=max_kib // 1024, vcpus=vcpus, uuid=dom.UUIDString(),
                      persistent=bool(dom.isPersistent()),
                      saved=power is PowerState.SHUTOFF and bool(dom.hasManagedSaveImage(0)))


def _stop_quietly(dom: libvirt.virDomain) -> None:
    """Hard-stop ``dom`` unless it already is stopped (or gone) by the time the call lands."""
    try:
        dom.destroy()
    except libvirt.libvirtError as exc:
        if error_code(exc) not in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN):
            raise


def _remove(dom: libvirt.virDomain) -> None:
    """Hard-stop and undefine ``dom``; it vanishing meanwhile is fine."""
    try:
        if dom.isActive():
            _stop_quietly(dom)
        if dom.isPersistent():
            try:
                dom.undefineFlags(_UNDEFINE_FLAGS)
            except libvirt.libvirtError as exc:
                if error_code(exc) not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                    raise
                if dom.hasManagedSaveImage(0):  # plain undefine refuses while a saved state exists
                    dom.managedSaveRemove(0)
                dom.undefine()  # a driver (test, Xen) that rejects some of the flags
    except libvirt.libvirtError as exc:
        if error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
            raise


def _nic_element(domain_xml: str, mac: str) -> str | None:
    """The <interface> with ``mac`` in a domain's XML, as XML text; None when it has none."""
    root = etree.fromstring(domain_xml.encode())
    for el in root.iterfind("devices/interface"):
        found = el.find("mac")
        if found is not None and (found.get("address") or "").lower() == mac.lower():
            return str(etree.tostring(el, encoding="unicode"))
    return None


def _device_call(fn: Callable[[str, int], int], xml: str, flags: int, what: str) -> None:
    """A device change; a driver without device changes (the test driver) raises NotSupported."""
    try:
        fn(xml, flags)
    except libvirt.libvirtError as exc:
        if error_code(exc) == libvirt.VIR_ERR_NO_SUPPORT:
            raise NotSupported(f"{what}: {describe(exc)}") from exc
        raise


class LibvirtDriver(Driver):
    """The Driver interface on one libvirt node.

    ``domain_type`` comes from configuration and is never auto-detected (libvirt advertises kvm
    on machines where KVM crawls): 'kvm' on real hosts, 'qemu' for TCG. A test-driver URI always
    uses 'test'. ``timeout`` bounds every libvirt call; ``poll_interval`` paces power_off's wait;
    ``console_wait`` is how long console_output listens on a live console without a log file.
    """

    def __init__(self, uri: str, *, domain_type: str | None = None, timeout: float = 30.0,
                 keepalive: tuple[int, int] = (5, 3), poll_interval: float = 0.25,
                 console_wait: float = 1.0) -> None:
        self.uri = uri
        if is_test_uri(uri):
            domain_type = "test"
        if domain_type not in DOMAIN_TYPES:
            raise ValueError(f"domain_type must be one of {DOMAIN_TYPES} for {uri} (kvm on real hosts,"
                             f" qemu where KVM is unavailable), got {domain_type!r}")
        self.domain_type = domain_type
        self.poll_interval = poll_interval
        self.console_wait = console_wait
        self.connection = Connection(uri, timeout=timeout, keepalive=keepalive)
        self._volumes = LibvirtVolumes(self.connection)
        self._networks = LibvirtNetworks(self.connection)
        self._filters = LibvirtFilters(self.connection)

    def __repr__(self) -> str:
        return f"LibvirtDriver({self.uri!r}, domain_type={self.domain_type!r})"

    def _call(self, fn: Callable[[libvirt.virConnect], T], what: str, timeout: float | None = None) -> T:
        try:
            return self.connection.call(fn, what, timeout)
        except libvirt.libvirtError as exc:
            raise DriverError(f"{what} failed on {self.uri}: {describe(exc)}") from exc

    def _define(self, spec: DomainSpec) -> DomainSpec:
        """Define ``spec`` (of type 'test' on a test-driver node, whatever the spec); the spec used."""
        if self.domain_type == "test" and spec.domain_type not in (None, "test"):
            spec = dataclasses.replace(spec, domain_type="test")
        xml = designer.domain_config(spec, self.domain_type).to_xml()

        def define(conn: libvirt.virConnect) -> None:
            if find_domain(conn, spec.name) is not None:
                raise DomainExists(f"domain {spec.name!r} already exists on {self.uri}")
            try:
                conn.defineXML(xml)
            except libvirt.libvirtError as exc:
                if find_domain(conn, spec.name) is not None and error_code(exc) == libvirt.VIR_ERR_OPERATION_FAILED:
                    raise DomainExists(f"domain {spec.name!r} already exists on {self.uri}") from exc
                raise InvalidSpec(f"{self.uri} rejected domain {spec.name!r}: {describe(exc)}") from exc

        self._call(define, f"defining {spec.name}")
        return spec

    def define(self, spec: DomainSpec) -> DomainInfo:
        """See Driver.define."""
        self._define(spec)
        return self.info(spec.name)

    def spawn(self, spec: DomainSpec) -> DomainInfo:
        """See Driver.spawn. On a test-driver node every domain is of type 'test', whatever the spec."""
        spec = self._define(spec)

        def boot(conn: libvirt.virConnect) -> DomainInfo:
            dom = get_domain(conn, spec.name)
            try:
                dom.create()
            except libvirt.libvirtError as exc:
                self._cleanup(conn, spec)
                raise SpawnFailed(f"domain {spec.name!r} did not start on {self.uri}: "
                                  f"{describe(exc)}") from exc
            return domain_info(dom)

        try:
            return self._call(boot, f"starting {spec.name}")
        except (NodeUnavailable, DomainNotFound):
            try:
                self._call(lambda conn: self._cleanup(conn, spec), f"cleaning up {spec.name}")
            except NodeUnavailable:
                pass
            raise

    @staticmethod
    def _cleanup(conn: libvirt.virConnect, spec: DomainSpec) -> None:
        """Remove what spawn() defined, and only that (matched by UUID)."""
        dom = find_domain(conn, spec.name)
        if dom is not None and dom.UUIDString() == spec.uuid:
            _remove(dom)

    def migrate(self, name: str, target: MigrationTarget) -> None:
        """See Driver.migrate: peer-to-peer migrateToURI3, the recipe of backends/libvirt/migration.py."""
        dest = target.driver
        for drv in (self, dest):
            if drv.domain_type == "test":
                raise NotSupported(f"{getattr(drv, 'uri', drv)} is libvirt's test driver, which cannot migrate a "
                                   "running domain between nodes; stop the instance to move it cold")
        if not isinstance(dest, LibvirtDriver):
            raise NotSupported(f"cannot migrate from a libvirt node to {dest!r}")
        if dest.domain_type != self.domain_type:
            raise InvalidSpec(f"{self.uri} runs {self.domain_type} domains and {dest.uri} {dest.domain_type} ones; "
                              "a running guest moves only between nodes of the same domain type")

        def op(conn: libvirt.virConnect) -> None:
            dom = get_domain(conn, name)
            if not dom.isActive():
                raise InvalidState(f"domain {name!r} on {self.uri} is not running; only a running (or paused) "
                                   "domain migrates live")
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE)
            persistent = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE
                                     | libvirt.VIR_DOMAIN_XML_INACTIVE)
            here = {(pool, vol): conn.storagePoolLookupByName(pool).storageVolLookupByName(vol).path()
                    for pool, vol, _path in target.copy_disks}
            disks = migration.disks_to_copy(migration.disks_of(etree.fromstring(xml.encode())), target.copy_disks,
                                            name, here)
            params = migration.params(
                migration.destination_xml(xml, target.kernel, target.initrd, target.copy_disks, here),
                migration.destination_xml(persistent, target.kernel, target.initrd, target.copy_disks, here),
                target.address, disks)
            try:
                dom.migrateToURI3(dest.uri, params, migration.flags(disks))
            except libvirt.libvirtError as exc:
                if is_connection_error(exc) and not conn.isAlive():
                    raise  # this node stopped answering: the outcome is unknown (NodeUnavailable)
                raise MigrationFailed(f"migrating {name} from {self.uri} to {dest.uri} failed: {describe(exc)}") from exc

        try:
            self._call(op, f"migrating {name} to {dest.uri}", target.timeout)
        except NodeUnavailable:
            self._abort_job(name)
            raise

    def _abort_job(self, name: str) -> None:
        """Ask the node to abort the domain's running job (a migration that outlived its timeout)."""
        try:
            self._call(lambda conn: get_domain(conn, name).abortJob(), f"aborting the job of {name}")
        except DriverError:
            pass

    def start(self, name: str) -> None:
        def op(conn: libvirt.virConnect) -> None:
            dom = get_domain(conn, name)
            if dom.isActive():
                return
            try:
                dom.create()
            except libvirt.libvirtError:
                if not dom.isActive():
                    raise
        self._call(op, f"starting {name}")

    def destroy(self, name: str) -> None:
        def op(conn: libvirt.virConnect) -> None:
            dom = find_domain(conn, name)
            if dom is not None:
                _remove(dom)
        self._call(op, f"destroying {name}")

    def _hard_stop(self, name: str) -> None:
        def op(conn: libvirt.virConnect) -> None:
            dom = get_domain(conn, name)
            if dom.isActive():
                _stop_quietly(dom)
        self._call(op, f"stopping {name}")

    def power_off(self, name: str, timeout: float | None = None) -> bool:
        state = self._call(lambda conn: domain_info(get_domain(conn, name)).state, f"state of {name}")
        if state is PowerState.SHUTOFF:
            return True
        if not timeout or state is not PowerState.RUNNING:
            self._hard_stop(name)
            return False

        def request(conn: libvirt.virConnect) -> None:
            dom = get_domain(conn, name)
            try:
                dom.shutdown()
            except libvirt.libvirtError:
                if dom.isActive():
                    raise
        self._call(request, f"shutting down {name}")
        deadline = time.monotonic() + timeout
        while True:
            if self.info(name).state in (PowerState.SHUTOFF, PowerState.MISSING):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(self.poll_interval, remaining))
        self._hard_stop(name)
        return False

    def reboot(self, name: str, hard: bool = False) -> None:
        def op(conn: libvirt.virConnect) -> None:
            dom = get_domain(conn, name)
            if not dom.isActive():
                dom.create()
            elif hard:
                dom.reset(0)
            else:
                dom.reboot(0)
        self._call(op, f"rebooting {name}")

    def suspend(self, name: str) -> None:
        def op(conn: libvirt.virConnect) -> None:
            dom = get_domain(conn, name)
            state = domain_info(dom).state
            if state is PowerState.PAUSED:
                return
            if not dom.isActive():
                raise InvalidState(f"domain {name!r} on {self.uri} is not running ({state.value}); "
                                   "only a running domain can be paused")
            dom.suspend()
        self._call(op, f"pausing {name}")

    def resume(self, name: str) -> None:
        def op(conn: libvirt.virConnect) -> None:
            dom = get_domain(conn, name)
            state = domain_info(dom).state
            if not dom.isActive():
                raise InvalidState(f"domain {name!r} on {self.uri} is not running ({state.value}); "
                                   "start it instead of resuming it")
            if state is PowerState.PAUSED:
                dom.resume()
        self._call(op, f"resuming {name}")

    def save(self, name: str) -> None:
        def op(conn: libvirt.virConnect) -> None:
            dom = get_domain(conn, name)
            if not dom.isActive():
                raise InvalidState(f"domain {name!r} on {self.uri} is not running; only a running (or paused) "
                                   "domain can be hibernated")
            dom.managedSave(libvirt.VIR_DOMAIN_SAVE_RUNNING)
        self._call(op, f"hibernating {name}", max(self.connection.timeout, SAVE_TIMEOUT))

    def info(self, name: str) -> DomainInfo:
        def op(conn: libvirt.virConnect) -> DomainInfo:
            dom = find_domain(conn, name)
            try:
                return domain_info(dom) if dom is not None else DomainInfo(name, PowerState.MISSING)
            except libvirt.libvirtError as exc:
                if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                    return DomainInfo(name, PowerState.MISSING)
                raise
        return self._call(op, f"state of {name}")

    def list_domains(self) -> list[DomainInfo]:
        def op(conn: libvirt.virConnect) -> list[DomainInfo]:
            found = []
            for dom in conn.listAllDomains(0):
                try:
                    found.append(domain_info(dom))
                except libvirt.libvirtError as exc:
                    if error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
            return sorted(found, key=lambda d: d.name)
        return self._call(op, "listing domains")

    def console_output(self, name: str, max_bytes: int = 65536) -> bytes:
        if self.domain_type == "test":
            self._call(lambda conn: get_domain(conn, name), f"console of {name}")
            return b""
        timeout = self.connection.timeout + self.console_wait
        local = urlsplit(self.uri).netloc == ""
        return self._call(lambda conn: console.read_console(conn, get_domain(conn, name), max_bytes,
                                                            local=local, wait=self.console_wait),
                          f"console of {name}", timeout)

    def node_info(self) -> NodeInfo:
        def op(conn: libvirt.virConnect) -> NodeInfo:
            _model, memory_mib, cpus, *_ = conn.getInfo()
            return NodeInfo(hostname=conn.getHostname(), memory_mib=memory_mib, vcpus=cpus)
        return self._call(op, "node info")

    def attach_disk(self, name: str, disk: DiskSpec) -> bool:
        """See Driver.attach_disk (backends/libvirt/hotplug.py: hot-plug, or the persistent
        definition only on drivers without it)."""
        return self._call(lambda conn: hotplug.attach(conn, get_domain(conn, name), disk, self.domain_type),
                          f"attaching {disk.target} to {name}")

    def detach_disk(self, name: str, target: str, timeout: float = 30.0, force: bool = False) -> None:
        self._call(lambda conn: hotplug.detach(conn, get_domain(conn, name), target, timeout, force),
                   f"detaching {target} from {name}", self.connection.timeout + timeout)

    def resize_disk(self, name: str, target: str, capacity: int) -> None:
        self._call(lambda conn: hotplug.resize(get_domain(conn, name), target, capacity), f"resizing {target} of {name}")

    def disk_targets(self, name: str, live: bool = True) -> dict[str, str]:
        return self._call(lambda conn: hotplug.targets(get_domain(conn, name), live), f"disks of {name}")

    def domain_stats(self) -> list[DomainStats]:
        def op(conn: libvirt.virConnect) -> list[tuple[str, dict[str, int]]]:
            found = conn.getAllDomainStats(_STATS_GROUPS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
            return [(dom.name(), dict(fields)) for dom, fields in found]

        return [stats_of(name, fields) for name, fields in self._call(op, "domain statistics")]

    def backup_disk(self, name: str, pool: str, volume: str, copy_name: str, timeout: float = 3600.0,
                    progress: Callable[[int, int], None] | None = None) -> VolumeInfo:
        """See Driver.backup_disk: libvirt's push-mode backup (backends/libvirt/backup.py)."""
        if self.domain_type == "test":
            raise NotSupported(f"{self.uri}: libvirt's test driver has no virDomainBackupBegin; a running "
                               "test domain's disks cannot be copied")
        return backup.backup_disk(self.connection, name, pool, volume, copy_name, timeout, progress)

    def attach_nic(self, name: str, nic: NicSpec) -> None:
        """See Driver.attach_nic: virDomainAttachDeviceFlags with AFFECT_LIVE where the guest runs
        and lacks the NIC, AFFECT_CONFIG where the saved definition lacks it."""
        xml = designer.nic_config(nic, self.domain_type).to_xml()

        def op(conn: libvirt.virConnect) -> None:
            dom = get_domain(conn, name)
            flags = 0
            if dom.isActive() and _nic_element(dom.XMLDesc(0), nic.mac) is None:
                flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
            if dom.isPersistent() and _nic_element(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), nic.mac) is None:
                flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
            if flags:
                _device_call(dom.attachDeviceFlags, xml, flags, f"plugging NIC {nic.mac} into {name}")
        self._call(op, f"plugging NIC {nic.mac} into {name}")

    def detach_nic(self, name: str, mac: str, timeout: float = 10.0, poll: float = 0.1) -> None:
        """See Driver.detach_nic: virDomainDetachDeviceFlags with the <interface> as the domain has it,
        live and saved separately (the live one carries its target and alias); then waits up to
        ``timeout`` seconds for the running guest to release it (libvirt's call may return while the
        unplug is still pending: a paused guest, say), DetachTimeout otherwise."""
        mac = mac.lower()

        def op(conn: libvirt.virConnect) -> None:
            dom = find_domain(conn, name)
            if dom is None:
                return
            pending = False
            if dom.isActive():
                live = _nic_element(dom.XMLDesc(0), mac)
                if live is not None:
                    _device_call(dom.detachDeviceFlags, live, libvirt.VIR_DOMAIN_AFFECT_LIVE, f"unplugging NIC {mac} from {name}")
                    pending = True
            if dom.isPersistent():
                saved = _nic_element(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), mac)
                if saved is not None:
                    _device_call(dom.detachDeviceFlags, saved, libvirt.VIR_DOMAIN_AFFECT_CONFIG,
                                 f"unplugging NIC {mac} from {name}")
            deadline = time.monotonic() + timeout
            while pending and dom.isActive() and _nic_element(dom.XMLDesc(0), mac) is not None:
                if time.monotonic() >= deadline:
                    raise DetachTimeout(f"the guest of {name!r} did not release NIC {mac} within {timeout:.0f} s; "
                                        "the unplug request is pending (a paused guest releases it when resumed)")
                time.sleep(poll)
        self._call(op, f"unplugging NIC {mac} from {name}", self.connection.timeout + timeout)

    def close(self) -> None:
        self.connection.close()

    @property
    def volumes(self) -> LibvirtVolumes:
        """Storage pools and volumes on this node."""
        return self._volumes

    @property
    def filters(self) -> LibvirtFilters:
        """Network filters of this node: QEMU/KVM nodes only. libvirt's test driver has no nwfilter
        (and its domains would ignore one), and libvirt's libxl driver applies none to Xen guests."""
        if self.domain_type not in FILTERING_DOMAIN_TYPES:
            raise NotSupported(f"{self.uri} runs {self.domain_type} domains, which libvirt's network filters do not "
                               "apply to; security groups are enforced on qemu and kvm nodes only")
        return self._filters

    @property
    def networks(self) -> LibvirtNetworks:
        """Virtual networks of this node."""
        return self._networks
