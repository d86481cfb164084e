"""The hypervisor driver interface: plain dataclasses in, plain dataclasses out.

The compute layer talks to VMM nodes only through :class:`Driver`. A driver never sees HTTP
requests or database rows; it takes a :class:`DomainSpec` and answers with :class:`DomainInfo`.
The hypervisor is the authority on power state; the database holds the API state machine and
reconciles against :meth:`Driver.info` / :meth:`Driver.list_domains`.

Every method may raise :class:`NodeUnavailable` when the node does not answer within the
driver's timeout or its connection broke; callers treat that as "state unknown, retry later",
never as "the domain is gone".
"""

from __future__ import annotations

import enum
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from backends.filters import FilterDriver
    from backends.networks import NetworkDriver
    from backends.volumes import VolumeDriver, VolumeInfo

DOMAIN_TYPES = ("test", "qemu", "kvm", "xen")
DISK_FORMATS = ("raw", "qcow2")
DISK_DEVICES = ("disk", "cdrom")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class DriverError(Exception):
    """Base class of every error a driver raises on purpose."""


class NodeUnavailable(DriverError):
    """The node did not answer within the timeout, refused the connection, or the connection broke.

    The state of the domain on that node is unknown; the driver re-opens its connection on the
    next call, so retrying later is the right reaction.
    """


class NotFound(DriverError):
    """The named domain, pool, volume or network does not exist on the node."""


class AlreadyExists(DriverError):
    """Something of that name already exists on the node; it was left untouched."""


class DomainNotFound(NotFound):
    """The named domain does not exist on the node."""


class DomainExists(AlreadyExists):
    """spawn() was asked for a name that is already defined on the node (left untouched)."""


class InvalidSpec(DriverError, ValueError):
    """The spec is malformed or the hypervisor rejected the definition built from it."""


class SpawnFailed(DriverError):
    """The domain was defined but could not be started; the definition was removed again."""


class NotSupported(DriverError):
    """The driver (for example libvirt's test driver) cannot perform this operation."""


class InvalidState(DriverError):
    """The domain is not in a state that admits the operation (pausing a stopped domain, say)."""


class MigrationFailed(DriverError):
    """A live migration did not complete: the hypervisor refused or aborted it. The domain still
    runs on its source node; what the migration had started on the destination was removed."""


class DetachTimeout(DriverError):
    """The guest did not release a disk or NIC within the timeout; the unplug request stays pending on
    the node (the device goes when the guest lets it go). Calling detach_disk() or detach_nic()
    again is safe."""


class PowerState(enum.Enum):
    """Power state of a domain as the hypervisor reports it."""

    RUNNING = "running"
    PAUSED = "paused"
    SHUTDOWN_IN_PROGRESS = "shutdown-in-progress"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    SUSPENDED = "suspended"
    UNKNOWN = "unknown"
    MISSING = "missing"


@dataclass(slots=True)
class DiskSpec:
    """One block device: a file path on the node, or a volume of a libvirt storage pool.

    ``bus`` None lets the policy choose (virtio for disks, sata for cdroms). ``target`` None lets
    the policy number devices per bus (vda, vdb, ..., sda, ...). A cdrom is always read-only.
    """

    path: str | None = None
    pool: str | None = None
    volume: str | None = None
    format: str = "raw"
    device: str = "disk"
    bus: str | None = None
    target: str | None = None
    readonly: bool = False

    def __post_init__(self) -> None:
        by_path = self.path is not None
        by_volume = self.pool is not None or self.volume is not None
        if by_path == by_volume or (by_volume and not (self.pool and self.volume)):
            raise InvalidSpec("a disk needs either path, or both pool and volume")
        if self.format not in DISK_FORMATS:
            raise InvalidSpec(f"disk format {self.format!r} is not one of {DISK_FORMATS}")
        if self.device not in DISK_DEVICES:
            raise InvalidSpec(f"disk device {self.device!r} is not one of {DISK_DEVICES}")


@dataclass(slots=True)
class NicSpec:
    """One network interface: a MAC on a libvirt network, or on a host bridge.

    With neither ``network`` nor ``bridge`` the interface uses user-mode networking (every guest
    gets 10.0.2.15; only useful for tests). ``filter`` names the network filter (backends.filters)
    the NIC's traffic goes through, with ``filter_params`` (its ``IP``); the filter must exist on
    the node before the domain starts.
    """

    mac: str
    network: str | None = None
    bridge: str | None = None
    model: str = "virtio"
    filter: str | None = None
    filter_params: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mac = self.mac.lower()
        if not _MAC_RE.match(self.mac) or int(self.mac[:2], 16) & 1:
            raise InvalidSpec(f"{self.mac!r} is not a unicast MAC address like 52:54:00:12:34:56")
        if self.network is not None and self.bridge is not None:
            raise InvalidSpec("a NIC is on a network or on a bridge, not both")


@dataclass(slots=True)
class DomainSpec:
    """Everything a driver needs to create one guest. ``name`` is the instance id.

    ``domain_type`` None means the driver's own type (``Driver.domain_type``), which comes from
    configuration and is never auto-detected. ``kernel`` (with optional ``initrd``/``cmdline``)
    selects direct kernel boot. ``console_log`` is a path on the node where the serial console is
    also written (its directory must exist there).
    """

    name: str
    uuid: str
    memory_mib: int
    vcpus: int
    domain_type: str | None = None
    disks: list[DiskSpec] = field(default_factory=list)
    nics: list[NicSpec] = field(default_factory=list)
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    console_log: str | None = None
    acpi: bool = True

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise InvalidSpec(f"invalid domain name {self.name!r}")
        self.uuid = self.uuid.lower()
        if not _UUID_RE.match(self.uuid):
            raise InvalidSpec(f"{self.uuid!r} is not a UUID")
        if self.memory_mib <= 0 or self.vcpus <= 0:
            raise InvalidSpec("memory_mib and vcpus must be positive")
        if self.domain_type is not None and self.domain_type not in DOMAIN_TYPES:
            raise InvalidSpec(f"domain type {self.domain_type!r} is not one of {DOMAIN_TYPES}")
        if (self.initrd or self.cmdline) and not self.kernel:
            raise InvalidSpec("initrd and cmdline need a kernel (direct kernel boot)")


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """What the hypervisor says about one domain. A MISSING domain has zero memory and vcpus."""

    name: str
    state: PowerState
    memory_mib: int = 0
    vcpus: int = 0
    uuid: str | None = None
    persistent: bool = False
    #: a shut-off domain whose memory :meth:`Driver.save` kept on the node (start restores it)
    saved: bool = False


@dataclass(frozen=True, slots=True)
class DomainStats:
    """Cumulative counters of one running domain, as the hypervisor counts them since its process
    started (they restart from 0 when the domain restarts). None: the driver does not report it.

    Block and interface counters are summed over the domain's disks and NICs.
    """

    name: str
    cpu_time_ns: int | None = None
    disk_read_bytes: int = 0
    disk_write_bytes: int = 0
    disk_read_ops: int = 0
    disk_write_ops: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
    net_rx_packets: int = 0
    net_tx_packets: int = 0
    #: memory the guest's process uses on the node (resident set), KiB
    memory_rss_kib: int | None = None


#: the console's earlier output lies beside its log file under the log's name plus this (see console_output)
CONSOLE_EARLIER_SUFFIX = ".earlier"


@dataclass(frozen=True, slots=True)
class MigrationTarget:
    """Where :meth:`Driver.migrate` moves a running domain.

    ``driver`` is the destination node's driver (the same hypervisor and domain type).
    ``address`` is the destination's address as the source node reaches it, for the memory and
    disk streams (None: what the destination advertises, its hostname, which on nodes sharing a
    hostname resolves to the source itself). ``copy_disks`` are the volumes (pool, name, path on
    the destination) whose content is copied while the guest runs; each must exist on the
    destination beforehand, empty, with the same capacity (an overlay on the same image for a
    qcow2 overlay), and the destination's domain names it by that path. Every other disk
    of the domain must be read-only (a cdrom) and present on the destination under the same pool
    and volume name. ``kernel`` and ``initrd`` are the paths of the domain's kernel and initrd on
    the destination (None: the same as on the source). ``timeout`` bounds the whole migration.
    """

    driver: Driver
    address: str | None = None
    copy_disks: tuple[tuple[str, str, str], ...] = ()
    kernel: str | None = None
    initrd: str | None = None
    timeout: float = 600.0


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Capacity of a node, for placement."""

    hostname: str
    memory_mib: int
    vcpus: int


class Driver(ABC):
    """A connection to one VMM node.

    Guarantees common to all methods: they are safe to call from several threads; no request to
    the node blocks longer than the driver's timeout (then :class:`NodeUnavailable`), so a method
    returns within a small multiple of it (power_off() also waits its own ``timeout``; volume
    transfers are bounded per chunk); after a broken connection the next call reconnects by
    itself. libvirt's own exceptions never escape: every failure is a :class:`DriverError`.
    """

    #: The domain type this node runs ('test', 'qemu', 'kvm' or 'xen'), from configuration.
    domain_type: str

    @abstractmethod
    def spawn(self, spec: DomainSpec) -> DomainInfo:
        """Define ``spec`` as a persistent domain and start it.

        Raises :class:`DomainExists` if the name is taken (the existing domain is not touched),
        :class:`InvalidSpec` if the definition is rejected, :class:`SpawnFailed` if it was defined
        but did not start. In every failure case the driver removes what it defined, so a failed
        spawn leaves nothing behind (if the node stops answering midway, destroy(name) finishes
        the clean-up). Disks are not created or deleted here.
        """

    def define(self, spec: DomainSpec) -> DomainInfo:
        """Define ``spec`` as a persistent domain without starting it (a stopped instance moved to
        this node). :class:`DomainExists` if the name is taken (left untouched), :class:`InvalidSpec`
        if the definition is rejected. Disks are not created here.
        """
        raise NotSupported(f"{type(self).__name__} cannot define a domain without starting it")

    def migrate(self, name: str, target: MigrationTarget) -> None:
        """Move the running (or paused) domain to ``target``'s node while it runs: its memory and
        the content of ``target.copy_disks`` are copied, then it is defined persistently there and
        undefined here. The guest keeps running throughout (a pause of a fraction of a second at
        the switch-over), with its memory, devices and MAC addresses.

        :class:`NotSupported` when either node cannot migrate (libvirt's test driver), before
        anything happens; :class:`InvalidState` if the domain does not run; :class:`InvalidSpec`
        when a disk is neither copied nor read-only; :class:`MigrationFailed` when the hypervisor
        refused or aborted it: the domain still runs here. :class:`NodeUnavailable` (a node stopped
        answering, or ``target.timeout`` passed; the migration is then asked to abort) leaves the
        outcome unknown: look at :meth:`info` on both nodes.
        """
        raise NotSupported(f"{type(self).__name__} cannot migrate domains")

    @abstractmethod
    def start(self, name: str) -> None:
        """Start an existing, defined domain (restoring it when :meth:`save` hibernated it).

        Already running: no-op. Missing: DomainNotFound.
        """

    @abstractmethod
    def destroy(self, name: str) -> None:
        """Hard-stop the domain if it runs and undefine it. A missing domain is success.

        Disks and volumes referenced by the domain stay; deleting them is the caller's job.
        """

    @abstractmethod
    def power_off(self, name: str, timeout: float | None = None) -> bool:
        """Stop the domain, keeping it defined. Returns True if the guest shut down by itself.

        Sends an ACPI power-button request and waits up to ``timeout`` seconds for the guest to
        stop, then hard-stops it. ``timeout`` None or 0 hard-stops at once. An already stopped
        domain is success (True). Missing: DomainNotFound.
        """

    @abstractmethod
    def reboot(self, name: str, hard: bool = False) -> None:
        """Ask the guest to reboot (ACPI), or reset it at once when ``hard``.

        A domain that is not running is started instead. Missing: DomainNotFound.
        """

    @abstractmethod
    def suspend(self, name: str) -> None:
        """Pause a running domain: it keeps its memory and devices but gets no more CPU time.

        Already paused: no-op. Not running (shut off): :class:`InvalidState`. Missing:
        DomainNotFound. The domain reports ``PowerState.PAUSED`` until :meth:`resume`.
        """

    @abstractmethod
    def resume(self, name: str) -> None:
        """Let a paused domain run on from where it was paused.

        Already running: no-op. Not running (shut off): :class:`InvalidState`. Missing:
        DomainNotFound.
        """

    @abstractmethod
    def save(self, name: str) -> None:
        """Hibernate the domain: write its memory and device state to a file on the node (libvirt's
        managed save) and stop it, keeping it defined.

        The next :meth:`start` restores it from that file (same boot, processes and memory) and
        removes the file; :meth:`destroy` removes the file too. A paused domain is saved so that
        it runs when restored. Not running (shut off): :class:`InvalidState`. Missing:
        DomainNotFound.
        """

    @abstractmethod
    def info(self, name: str) -> DomainInfo:
        """State of one domain; ``PowerState.MISSING`` (never an error) if it does not exist."""

    @abstractmethod
    def list_domains(self) -> list[DomainInfo]:
        """Every domain on the node, defined or running, sorted by name."""

    @abstractmethod
    def console_output(self, name: str, max_bytes: int = 65536) -> bytes:
        """The latest ``max_bytes`` bytes of the domain's serial console.

        When the domain logs its console to a file and a file of the same name plus
        CONSOLE_EARLIER_SUFFIX lies beside it (what the console printed before the domain came to
        this node, written there by whoever moved it), that comes first.
        b"" when the driver has no console (libvirt's test driver) or nothing was written yet.
        Missing domain: DomainNotFound.
        """

    @abstractmethod
    def node_info(self) -> NodeInfo:
        """Hostname, memory and logical CPUs of the node."""

    # -- block devices of a defined domain (EBS volumes) -----------------------------------------
    def attach_disk(self, name: str, disk: DiskSpec) -> bool:
        """Add ``disk`` (its ``target`` set, e.g. vdb) to the domain: hot-plugged into the running
        guest and written into its persistent definition; a domain that is not running gets it in
        its definition only, so it is there from the next start.

        Returns True when the running guest has the disk now. A driver that cannot hot-plug
        (libvirt's test driver) changes the persistent definition only and returns False: the
        disk is there from the next start. The same source already at that target: no-op (True
        when it is live). Another disk at the target: InvalidSpec. Missing domain: DomainNotFound.
        """
        raise NotSupported(f"{type(self).__name__} cannot attach disks")

    def detach_disk(self, name: str, target: str, timeout: float = 30.0, force: bool = False) -> None:
        """Remove the disk at ``target`` from the running guest and from the persistent definition,
        returning only once it is gone from both.

        An unplug request can succeed while the guest keeps the device (a paused guest, one that
        ignores the eject: ../shared/virt/PROBES-2026-12.md section 1), so the live definition is
        read again until the target is absent; past ``timeout`` :class:`DetachTimeout`. With
        ``force`` the persistent definition loses the disk even then (the running guest may keep
        it until it stops). No disk at the target: success. Missing domain: DomainNotFound.
        """
        raise NotSupported(f"{type(self).__name__} cannot detach disks")

    def resize_disk(self, name: str, target: str, capacity: int) -> None:
        """Grow the disk at ``target`` of a running domain to ``capacity`` bytes, so that the guest
        sees the new size at once (the image on the node grows with it). Not running:
        :class:`InvalidState` (grow the volume through the storage API instead). Missing domain:
        DomainNotFound; a driver without it: NotSupported.
        """
        raise NotSupported(f"{type(self).__name__} cannot resize disks")

    def disk_targets(self, name: str, live: bool = True) -> dict[str, str]:
        """target -> source (volume ``pool/name`` or file path) of the domain's disks, from its live
        definition (``live``) or its persistent one. Missing domain: DomainNotFound."""
        raise NotSupported(f"{type(self).__name__} does not list disks")

    def domain_stats(self) -> list[DomainStats]:
        """Counters of every running domain of the node, read in one request to the node (libvirt's
        getAllDomainStats): cpu time, block and interface counters, resident memory.

        Counters the hypervisor does not keep are left at their defaults (libvirt's test driver
        reports none). Raises NotSupported for drivers without statistics.
        """
        raise NotSupported(f"{type(self).__name__} reports no domain statistics")

    def backup_disk(self, name: str, pool: str, volume: str, copy_name: str, timeout: float = 3600.0,
                    progress: Callable[[int, int], None] | None = None) -> VolumeInfo:
        """A point-in-time copy of a running domain's disk, taken while the guest runs on.

        The disk of domain ``name`` whose source is volume ``pool/volume`` is copied, as it was when
        this was called, into a new standalone qcow2 volume ``copy_name`` of the same pool (the
        rest of the backing chain merged in). Waits up to ``timeout`` seconds for the copy, calling
        ``progress(bytes_done, bytes_total)`` now and then; a copy that fails or takes longer is
        aborted and its partial volume deleted. A domain that is not running: InvalidState (its
        volumes are not in use: copy them with volumes.copy_volume). No such domain or no such disk
        of it: NotFound. An existing ``copy_name``: AlreadyExists. Drivers that cannot
        (libvirt's test driver has no virDomainBackupBegin): NotSupported.
        """
        raise NotSupported(f"{type(self).__name__} cannot copy the disk of a running domain")

    def attach_nic(self, name: str, nic: NicSpec) -> None:
        """Plug ``nic`` into the domain: into the running guest at once (hot-plug) when it runs, and
        into its saved definition, so that it stays across stop and start (a stopped domain gets it
        at its next start).

        A NIC with that MAC already there is success (each half is done only where it is missing).
        Missing domain: DomainNotFound. A driver that cannot change a domain's devices (libvirt's
        test driver): NotSupported.
        """
        raise NotSupported(f"{type(self).__name__} cannot plug network interfaces")

    def detach_nic(self, name: str, mac: str) -> None:
        """Unplug the NIC with ``mac`` from the running guest and from the domain's saved definition.

        Returns once the running guest has released it; DetachTimeout when it has not within the
        driver's wait (the request stays pending; call again). No such NIC, or no such domain:
        success. NotSupported as for attach_nic.
        """
        raise NotSupported(f"{type(self).__name__} cannot unplug network interfaces")

    @abstractmethod
    def close(self) -> None:
        """Release the connection. The driver may be used again afterwards (it reconnects)."""

    @property
    def volumes(self) -> VolumeDriver:
        """Storage pools and volumes on this node (see backends.volumes)."""
        raise NotSupported(f"{type(self).__name__} has no storage API")

    @property
    def filters(self) -> FilterDriver:
        """Network filters on this node (see backends.filters); NotSupported where the node's
        domains do not apply them (libvirt's test driver, Xen)."""
        raise NotSupported(f"{type(self).__name__} has no network filters")

    @property
    def networks(self) -> NetworkDriver:
        """Virtual networks and their DHCP host entries on this node (see backends.networks)."""
        raise NotSupported(f"{type(self).__name__} has no network API")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
