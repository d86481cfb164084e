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
    #: public or private, as Nimbus instance types chose pools
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
    __table_args__ = (
        UniqueConstraint("pool", "ip", name="uq_address_ip"),
        UniqueConstraint("mac", name="uq_address_mac"),
        Index("ix_addresses_free", "pool", "instance_id"),
        Index("ix_addresses_instance", "instance_id"),
    )
