"""The quota table: limits set by `ec2gw admin quota set` for one user or one group.

A column left NULL is "not set here" (the user falls back to their group's value, then to the
service's defaults); -1 is "no limit"; any other value is the limit. Group limits apply to each
member of the group, as Nimbus's group policies did.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ec2gw.db.models import Base, UTCDateTime, utcnow

UNLIMITED = -1


class Quota(Base):
    __tablename__ = "quotas"
    #: "user" or "group"
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    vcpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    memory_mib: Mapped[int | None] = mapped_column(Integer, nullable=True)
    storage_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: elastic addresses (AllocateAddress) held at a time
    addresses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: EBS volumes: how many, and their total size in bytes
    volumes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    volume_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
