"""Moves of instances between nodes (`ec2gw admin instance migrate`, `ec2gw admin node drain`).

One row per requested move. While it is ``pending`` or ``running`` the instance's vCPUs and
memory count against the destination as well as its current node (compute/placement.usage), so
the room checked when the move was requested stays reserved until it is done; the instance's
task is ``migrate`` meanwhile. ``done`` rows record the node change (the instance's node_name
moves in the same transaction); ``failed`` ones say why, and the instance stayed where it was.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ec2gw.db.models import Base, UTCDateTime, utcnow

#: states of a move that still reserves room on its destination
ACTIVE = ("pending", "running")


class InstanceMigration(Base):
    __tablename__ = "instance_migrations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(64))
    #: live (a running guest, memory and disk copied while it runs) or cold (a stopped instance)
    kind: Mapped[str] = mapped_column(String(8))
    #: pending, running, done or failed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: seconds the move itself took on the nodes (preparing the destination included)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (
        Index("ix_instance_migrations_instance", "instance_id", "id"),
        Index("ix_instance_migrations_active", "state", "destination"),
    )
