"""SQLAlchemy 2 models of the service's state. The database is the source of truth.

The hypervisor is the authority on power state; these rows hold the API's state machine and
everything the API reports. Cumulus keeps its metadata in storage/models.py on the same Base.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(String(12), unique=True)
    access_key: Mapped[str] = mapped_column(String(32), unique=True)
    secret_key: Mapped[str] = mapped_column(String(64))
    group: Mapped[str] = mapped_column(String(64), default="users")
    dn: Mapped[str] = mapped_column(String(255), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reservation(Base):
    __tablename__ = "reservations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: fingerprint of the request parameters, so a reused token with other parameters is refused
    request_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("owner_id", "client_token", name="uq_reservation_token"),)


class Instance(Base):
    __tablename__ = "instances"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), index=True)
    launch_index: Mapped[int] = mapped_column(Integer, default=0)
    image_id: Mapped[str] = mapped_column(String(32))
    kernel_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ramdisk_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    instance_type: Mapped[str] = mapped_column(String(32))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    key_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    #: what the compute worker still has to do: spawn, start, stop, terminate, reboot, pause, resume,
    #: hibernate
    task: Mapped[str | None] = mapped_column(String(16), nullable=True)
    force_stop: Mapped[bool] = mapped_column(Boolean, default=False)
    reboot_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    state_reason_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state_reason_message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state_transition_reason: Mapped[str] = mapped_column(String(255), default="")
    shutdown_behavior: Mapped[str] = mapped_column(String(16), default="stop")
    disable_api_termination: Mapped[bool] = mapped_column(Boolean, default=False)
    availability_zone: Mapped[str] = mapped_column(String(64))
    node_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_data: Mapped[str | None] = mapped_column(Text, nullable=True)
    private_ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    public_ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    mac: Mapped[str | None] = mapped_column(String(17), nullable=True)
    private_dns: Mapped[str | None] = mapped_column(String(255), nullable=True)
    launch_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    terminated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: when an operator paused the running instance (`ec2gw admin instance pause`); None when not paused
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: launched with HibernationOptions.Configured=true: StopInstances may hibernate it
    hibernation_configured: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: stopped by hibernation: its memory is saved on its node and StartInstances restores it
    hibernated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    __table_args__ = (
        Index("ix_instances_owner_id", "owner_id", "id"),
        Index("ix_instances_task", "task"),
    )


class Tag(Base):
    __tablename__ = "tags"
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), default="")
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    resource_type: Mapped[str] = mapped_column(String(32))


class KeyPair(Base):
    __tablename__ = "key_pairs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    key_type: Mapped[str] = mapped_column(String(16), default="rsa")
    fingerprint: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_keypair_name"),)


class Image(Base):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(255), default="")
    #: "bucket/key" of the Cumulus object holding the image
    location: Mapped[str] = mapped_column(String(1024), default="")
    kind: Mapped[str] = mapped_column(String(16), default="machine")
    state: Mapped[str] = mapped_column(String(16), default="available")
    state_reason: Mapped[str] = mapped_column(String(255), default="")
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    architecture: Mapped[str] = mapped_column(String(16), default="x86_64")
    disk_format: Mapped[str] = mapped_column(String(16), default="raw")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    kernel_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ramdisk_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    root_device_name: Mapped[str] = mapped_column(String(32), default="/dev/vda")
    source_instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_image_name"),)


class SecurityGroup(Base):
    __tablename__ = "security_groups"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255), default="")
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_group_name"),)


class Node(Base):
    """A VMM node: a libvirt URI with capacity, a zone and the pools it serves."""

    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    uri: Mapped[str] = mapped_column(String(512))
    memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    zone: Mapped[str] = mapped_column(String(64))
    pools: Mapped[str] = mapped_column(String(512), default="")
    domain_type: Mapped[str] = mapped_column(String(16), default="qemu")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    last_error: Mapped[str] = mapped_column(String(512), default="")
    #: GiB of EBS volumes its storage may hold (None: no fixed limit)
    volume_gb: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ServiceLock(Base):
    """Leases on singleton jobs (compute worker, reaper) so only one process runs each at a time."""

    __tablename__ = "service_locks"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat: Mapped[float] = mapped_column(Float, default=0.0)


class SecurityGroupRule(Base):
    """One rule of a security group: a protocol and port range (ICMP: type and code) to or from an
    IPv4 CIDR or the members of a group (referenced_group_id)."""

    __tablename__ = "security_group_rules"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("security_groups.id", ondelete="CASCADE"), index=True)
    egress: Mapped[bool] = mapped_column(Boolean, default=False)
    #: -1 (all), tcp, udp, icmp or another IP protocol number
    protocol: Mapped[str] = mapped_column(String(8))
    from_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cidr_ipv4: Mapped[str | None] = mapped_column(String(18), nullable=True)
    referenced_group_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InstanceGroup(Base):
    """An instance's membership of a security group (instances without rows are in the default group)."""

    __tablename__ = "instance_security_groups"
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("security_groups.id", ondelete="CASCADE"), primary_key=True,
                                          index=True)
