"""What reconciliation found on VMM nodes that the database does not know about.

A domain on a node that is no instance of this service (or an instance the database placed on
another node, or one that is gone) is never destroyed: it may be an administrator's own guest.
The compute worker records it here so that `ec2gw admin node list` and `node show` report it;
each pass over a node replaces that node's rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ec2gw.db.models import Base, Instance, UTCDateTime, utcnow

#: placement sums the vCPUs and memory of each node's instances (compute/placement.usage) from this
#: index alone, so the cost of a launch does not grow with the number of instances' rows
Index("ix_instances_node_usage", Instance.__table__.c.node_name, Instance.__table__.c.state,
      Instance.__table__.c.vcpus, Instance.__table__.c.memory_mib)


class UnknownDomain(Base):
    __tablename__ = "node_unknown_domains"
    node_name: Mapped[str] = mapped_column(ForeignKey("nodes.name", ondelete="CASCADE"), primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: the power state the node reported (running, shutoff, ...)
    state: Mapped[str] = mapped_column(String(32), default="unknown")
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
