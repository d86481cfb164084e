"""Instance metrics: one row per instance per sampling interval, and the detailed-monitoring flag.

The compute worker reads every node's domain counters in one libvirt call per interval
(compute/metrics.py) and stores, per running instance, what happened during the interval since
its previous sample: CPU utilisation and the bytes, packets and operations of its NICs and disks.
Rows older than `metrics_retention_hours` are removed. The CloudWatch-compatible API
(api/metrics.py) aggregates these rows into periods.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ec2gw.db.models import Base, UTCDateTime, utcnow


class MetricSample(Base):
    __tablename__ = "metric_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(32))
    node_name: Mapped[str] = mapped_column(String(64))
    #: the end of the interval this row covers
    sampled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: the interval's length (seconds since the instance's previous sample)
    interval_seconds: Mapped[float] = mapped_column(Float)
    #: percent of the instance's vCPUs used during the interval; None when the node keeps no cpu time
    cpu_utilization: Mapped[float | None] = mapped_column(Float, nullable=True)
    network_in: Mapped[int] = mapped_column(BigInteger, default=0)
    network_out: Mapped[int] = mapped_column(BigInteger, default=0)
    network_packets_in: Mapped[int] = mapped_column(BigInteger, default=0)
    network_packets_out: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_read_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_write_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_read_ops: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_write_ops: Mapped[int] = mapped_column(BigInteger, default=0)
    #: memory the instance's process used on the node at the end of the interval (MiB), if known
    memory_used_mib: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: vCPUs of the instance (utilisation of the node = cpu_utilization * vcpus / 100)
    vcpus: Mapped[int] = mapped_column(Integer, default=1)


Index("ix_metric_samples_instance_time", MetricSample.__table__.c.instance_id, MetricSample.__table__.c.sampled_at)
Index("ix_metric_samples_time", MetricSample.__table__.c.sampled_at)


class InstanceMonitoring(Base):
    """Instances with detailed monitoring on (MonitorInstances); the others show `disabled`."""

    __tablename__ = "instance_monitoring"
    instance_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
