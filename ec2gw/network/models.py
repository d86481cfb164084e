"""Network pools (Nimbus's "network slots") and their address entries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ec2gw.db.models import Base, UTCDateTime


class Pool(Base):
    __tablename__ = "pools"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    dns: Mapped[str] = mapped_column(String(64), default="none")
    #: nat | isolated | bridge:BRIDGE | none (no libvirt network: the embedded default pool)
    network_mode: Mapped[str] = mapped_column(String(80), default="nat")
    #: public (elastic addresses come from it: `ec2gw admin pool add ... --public`, or the pool named
    #: by settings.network_public_pool) or private
    role: Mapped[str] = mapped_column(String(16), default="private")


class Address(Base):
    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool: Mapped[str] = mapped_column(ForeignKey("pools.name", ondelete="CASCADE"))
    hostname: Mapped[str] = mapped_column(String(255))
    ip: Mapped[str] = mapped_column(String(45))
    gateway: Mapped[str] = mapped_column(String(45), default="none")
    broadcast: Mapped[str] = mapped_column(String(45), default="none")
    netmask: Mapped[str] = mapped_column(String(45), default="none")
    mac: Mapped[str] = mapped_column(String(17))
    instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: the NIC's device index on its instance while held (None on rows claimed before it was kept)
    device_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: when the address was released; it is reusable after the grace period
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: an elastic address (AllocateAddress, public pools only): its eipalloc- id, the user holding it
    #: and since when; such a row is never free, whether an instance holds it or not
    allocation_id: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True, index=True)
    owner_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    allocated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: while associated (AssociateAddress): instance_id is the instance, association_id its eipassoc-
    #: id and nic_address_id the address row of the network interface it is associated with
    association_id: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True, index=True)
    nic_address_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: what the node has (the compute worker's record): the instance whose domain holds the
    #: address's NIC and that instance's node; differs from instance_id until the worker caught up
    plugged_into: Mapped[str | None] = mapped_column(String(32), nullable=True)
    plugged_node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    __table_args__ = (
        UniqueConstraint("pool", "ip", name="uq_address_ip"),
        UniqueConstraint("mac", name="uq_address_mac"),
        Index("ix_addresses_free", "pool", "instance_id"),
        Index("ix_addresses_instance", "instance_id"),
    )
