"""Instance metrics: the compute worker samples every node's domain counters.

Every `metrics_interval_seconds` one pass (on the worker's thread pool) asks each node for the
counters of all its running domains in one call (Driver.domain_stats, libvirt's
getAllDomainStats), and stores per instance what changed since that instance's previous sample
(metric_models.MetricSample). The first sample of a domain only seeds its counters. Counters
restart from zero with the domain's process (a stop and start); a counter that went down counts
from zero. Samples older than `metrics_retention_hours` are removed on each pass.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from backends.base import DomainStats, DriverError
from ec2gw.compute import reconcile
from ec2gw.compute.metric_models import InstanceMonitoring, MetricSample
from ec2gw.compute.placement import LOCAL_NODE, NodeRef
from ec2gw.db.models import Instance

if TYPE_CHECKING:
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute.metrics")


@dataclass(frozen=True)
class _Seen:
    at: float  # monotonic time of the sample
    stats: DomainStats


def _delta(before: int, after: int) -> int:
    """How much a cumulative counter grew; one that went down restarted from zero."""
    return after - before if after >= before else after


def sample_row(node: str, instance_id: str, vcpus: int, before: _Seen, after: _Seen, when: datetime) -> MetricSample | None:
    """The row for the interval between two samples of one domain (None for an empty interval)."""
    seconds = after.at - before.at
    if seconds <= 0:
        return None
    a, b = before.stats, after.stats
    cpu = None
    if a.cpu_time_ns is not None and b.cpu_time_ns is not None:
        used = _delta(a.cpu_time_ns, b.cpu_time_ns) / 1e9
        cpu = max(0.0, min(100.0, 100.0 * used / (seconds * max(1, vcpus))))
    return MetricSample(
        instance_id=instance_id, node_name=node, sampled_at=when, interval_seconds=seconds, cpu_utilization=cpu,
        network_in=_delta(a.net_rx_bytes, b.net_rx_bytes), network_out=_delta(a.net_tx_bytes, b.net_tx_bytes),
        network_packets_in=_delta(a.net_rx_packets, b.net_rx_packets),
        network_packets_out=_delta(a.net_tx_packets, b.net_tx_packets),
        disk_read_bytes=_delta(a.disk_read_bytes, b.disk_read_bytes),
        disk_write_bytes=_delta(a.disk_write_bytes, b.disk_write_bytes),
        disk_read_ops=_delta(a.disk_read_ops, b.disk_read_ops), disk_write_ops=_delta(a.disk_write_ops, b.disk_write_ops),
        memory_used_mib=None if b.memory_rss_kib is None else b.memory_rss_kib / 1024.0, vcpus=max(1, vcpus),
    )


class Sampler:
    """The worker's metrics pass: maybe_run() from each worker loop, the sampling on the pool."""

    def __init__(self, worker: ComputeWorker) -> None:
        self.worker = worker
        #: node name -> domain name -> its last sample
        self._seen: dict[str, dict[str, _Seen]] = {}
        self._next = 0.0
        self._running: Future[None] | None = None

    def maybe_run(self, now: float) -> None:
        interval = self.worker.settings.metrics_interval_seconds
        if interval <= 0 or now < self._next or (self._running is not None and not self._running.done()):
            return
        self._next = now + interval
        self._running = self.worker.pool.submit(self.run)

    def run(self) -> None:
        """One pass over every node; logs, never raises."""
        try:
            for node in reconcile.nodes_to_check(self.worker):
                try:
                    self.sample_node(node)
                except DriverError as exc:  # the node does not answer, or keeps no statistics
                    log.warning("no domain statistics from node %s: %s", node.name, exc)
                    self._seen.pop(node.name, None)
            self.prune()
        except Exception:
            log.exception("metrics pass failed")

    def sample_node(self, node: NodeRef) -> int:
        """Sample one node; returns the number of rows stored."""
        stats = self.worker.drivers.get(node).domain_stats()
        now, when = time.monotonic(), datetime.now(UTC)
        previous = self._seen.get(node.name, {})
        current = {st.name: _Seen(now, st) for st in stats}
        self._seen[node.name] = current
        names = [n for n in current if n in previous]
        if not names:
            return 0
        with self.worker.db.session(write=True) as s:
            query = select(Instance.id, Instance.vcpus).where(Instance.id.in_(names))
            if node.name == LOCAL_NODE:
                query = query.where((Instance.node_name == LOCAL_NODE) | Instance.node_name.is_(None))
            else:
                query = query.where(Instance.node_name == node.name)
            rows = []
            for iid, vcpus in s.execute(query):
                row = sample_row(node.name, iid, vcpus, previous[iid], current[iid], when)
                if row is not None:
                    rows.append(row)
            s.add_all(rows)
        return len(rows)

    def prune(self) -> None:
        """Drop samples past the retention, and monitoring flags of instances that are gone."""
        cutoff = datetime.now(UTC) - timedelta(hours=self.worker.settings.metrics_retention_hours)
        with self.worker.db.session(write=True) as s:
            s.execute(delete(MetricSample).where(MetricSample.sampled_at < cutoff))
            s.execute(delete(InstanceMonitoring).where(InstanceMonitoring.instance_id.not_in(select(Instance.id))))


def node_utilisation(s: Session, node_name: str, since: datetime) -> dict[str, Any]:
    """What the instances of one node used at their latest samples taken since ``since``: vCPUs
    busy (CPUUtilization x vCPUs) and resident memory (MiB); None where no sample says (the test
    driver keeps no cpu time or memory counters). `sampled` counts the instances with a sample."""
    latest = (select(MetricSample.instance_id, func.max(MetricSample.sampled_at).label("at"))
              .where(MetricSample.node_name == node_name, MetricSample.sampled_at >= since)
              .group_by(MetricSample.instance_id).subquery())
    rows = list(s.execute(
        select(MetricSample.cpu_utilization, MetricSample.vcpus, MetricSample.memory_used_mib, MetricSample.sampled_at)
        .join(latest, (MetricSample.instance_id == latest.c.instance_id) & (MetricSample.sampled_at == latest.c.at))
        .join(Instance, Instance.id == MetricSample.instance_id)
        .where(Instance.node_name == node_name, Instance.state != "terminated")))
    cpus = [cpu * vcpus / 100.0 for cpu, vcpus, _, _ in rows if cpu is not None]
    memory = [mib for _, _, mib, _ in rows if mib is not None]
    return {
        "sampled": len(rows),
        "vcpus_used": round(sum(cpus), 2) if cpus else None,
        "memory_used_mib": round(sum(memory)) if memory else None,
        "as_of": max((r[3] for r in rows), default=None),
    }
