"""One Settings object for the whole service, read from a file, the environment and flags.

Precedence: command-line flags > environment (EC2GW_*) > settings file (TOML or INI) > defaults.
The object is passed to whatever needs it; nothing reads settings from a global.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ec2gw import config_load

#: name -> (vCPUs, memory MiB). Nimbus mapped types to memory and CPUs; EC2 names are what clients send.
DEFAULT_INSTANCE_TYPES: dict[str, tuple[int, int]] = {
    "t2.micro": (1, 1024),
    "t2.small": (1, 2048),
    "t2.medium": (2, 4096),
    "m1.small": (1, 1740),
    "m1.large": (2, 7680),
    "m1.xlarge": (4, 15360),
}


@dataclass
class Settings:
    data_dir: Path = Path("./data")
    database_url: str = ""
    host: str = "127.0.0.1"
    ec2_port: int = 8444
    s3_port: int = 8888
    tls: bool = False
    workers: int = 2
    region: str = "us-east-1"
    #: other names the one region answers to (comma-separated): clients that name a fixed region of
    #: their own, as libcloud's NimbusNodeDriver names "nimbus", find it under that name too
    region_aliases: str = "nimbus"
    #: the Eucalyptus release named in the namespace of Eucalyptus-form answers (DescribeInstanceTypes
    #: on /services/Eucalyptus); libcloud's EucNodeDriver expects its api_version there (default 3.3.0)
    eucalyptus_version: str = "3.3.0"
    #: host names / addresses written into client bundles and server certificates
    public_host: str = ""
    #: how clients reach the service, as written into client bundles: "http" or "https" ("" follows
    #: the running service, else `tls`), and the ports (0 follows the running service's listeners)
    public_scheme: str = ""
    public_ec2_port: int = 0
    public_s3_port: int = 0
    #: the types RunInstances knows. Settings files add to (and override) DEFAULT_INSTANCE_TYPES in
    #: [instance_types], "none" drops one; builtin_instance_types = false starts from no type at all
    instance_types: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_INSTANCE_TYPES))
    builtin_instance_types: bool = True
    default_instance_type: str = "m1.small"
    #: how long terminated instances stay visible (EC2: about an hour)
    terminated_visible_seconds: int = 3600
    #: seconds a graceful stop waits for the guest before a hard power-off
    stop_timeout: float = 60.0
    #: seconds between compute worker passes over pending work
    worker_interval: float = 0.2
    #: Cumulus image repository (Nimbus defaults)
    image_bucket: str = "Repo"
    image_prefix: str = "VMS"
    #: lease defaults (hours) as Nimbus had them
    lease_default_hours: float = 24.0
    lease_max_hours: float = 24.0 * 14
    #: seconds between the compute worker's samples of every node's domain statistics (instance
    #: metrics, one libvirt call per node); 0 turns sampling off
    metrics_interval_seconds: float = 60.0
    #: hours instance metrics are kept (older samples are removed)
    metrics_retention_hours: float = 24.0 * 15
    #: seconds between passes of the lease reaper (in the compute worker)
    lease_check_seconds: float = 5.0
    #: libvirt URI of the implicit node used when none is registered
    default_node_uri: str = "test:///default"
    max_user_data_bytes: int = 16384
    #: instances a user may have when no quota says otherwise
    max_instances_per_user: int = 20000
    #: per-user defaults when neither a user nor a group quota says otherwise (-1: no limit)
    quota_vcpus: int = -1
    quota_memory_mb: int = -1
    quota_storage_gb: float = -1.0
    #: elastic addresses (AllocateAddress) per user, as EC2's default of 5 per region (-1: no limit)
    quota_addresses: int = 5
    #: EBS volumes per user (count) and their total size in GiB; -1: no limit
    quota_volumes: int = -1
    quota_volume_gb: int = -1
    #: how far placement may overcommit a node's vCPUs and memory (1.0 = not at all)
    cpu_overcommit: float = 1.0
    memory_overcommit: float = 1.0
    #: seconds a released address waits before it is handed out again
    address_grace_seconds: float = 0.0
    #: Nimbus network pools: the pool EC2 calls public and the one it calls private. Instance types
    #: get a NIC in both (one per distinct pool) unless instance_type_networks says otherwise, e.g.
    #: "t2.micro=private, m1.large=public+private"
    network_public_pool: str = "public"
    network_private_pool: str = "private"
    instance_type_networks: str = ""
    #: prefix of the MACs generated for pool entries that give none
    mac_prefix: str = "52:54:00"
    #: on every VMM node: the directory under which libvirt dir pools keep cached images, instance
    #: disks and seeds, and console logs
    node_storage_dir: str = "/var/lib/ec2gw"
    #: kernel command line for machine images booted with a kernel (aki-) and ramdisk (ari-)
    kernel_cmdline: str = "console=ttyS0 root=/dev/vda"
    #: the same on Xen nodes, where such guests run paravirtualized (console hvc0, disks xvd*)
    xen_kernel_cmdline: str = "console=hvc0 root=/dev/xvda"
    #: bus of the NoCloud seed cdrom: ide works with every x86 guest kernel (Debian's cloud kernel
    #: has no AHCI driver, so a sata cdrom stays invisible to it)
    seed_cdrom_bus: str = "ide"
    #: after caching an image on a node, read it back and compare its SHA-256 (doubles first use)
    image_cache_readback: bool = False
    #: Cumulus writes and reads large bodies (over 1 MiB written, 4 MiB read) with O_DIRECT, past
    #: the page cache, where the file system allows it; false sends them through the page cache
    #: (storage/blobstore.py says when each is better)
    cumulus_direct_io: bool = True
    #: hours between sweeps of Cumulus blobs no row references (left by a crash; older than an
    #: hour), run by the compute worker, the first about a minute after it starts; 0 turns it off
    cumulus_sweep_hours: float = 6.0
    #: seconds a request body (EC2 or Cumulus) may stay silent before the request is refused with
    #: 400 RequestTimeout and the connection closed (S3 waits about 20 s); 0 waits for ever
    body_timeout: float = 20.0
    #: seconds past the server time that the Expires of an EC2 Signature Version 2 request may lie;
    #: a later Expires is refused with 400 RequestExpired, so that a captured request cannot be
    #: replayed for longer (a Timestamp-signed one is good for 15 minutes either side)
    sigv2_max_expires: int = 1800
    #: seconds a client has to send a request's headers and the first 64 KiB of its body (all of a
    #: smaller one) before it is refused with 400 RequestTimeout; until then it holds no server thread
    header_timeout: float = 10.0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ec2gw.sqlite').resolve()}"

    @property
    def region_names(self) -> tuple[str, ...]:
        """The region's name, then its aliases."""
        aliases = (a.strip() for a in self.region_aliases.split(","))
        return tuple(dict.fromkeys([self.region, *(a for a in aliases if a)]))

    @property
    def default_zone(self) -> str:
        return f"{self.region}a"

    @property
    def advertised_host(self) -> str:
        return self.public_host or self.host

    @classmethod
    def load(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings from a file, the environment and explicit overrides (None values ignored).

        Raises config_load.SettingsError (a ValueError) naming the source, the key, what was found
        and what is expected for the first invalid value.
        """
        return config_load.load(cls, DEFAULT_INSTANCE_TYPES, config_file, overrides,
                                os.environ if environ is None else environ)
