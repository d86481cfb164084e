"""The metrics sampler: interval deltas from libvirt's cumulative counters, and the retention.

The sampler runs against libvirt's test driver through the real LibvirtDriver (which reports a
domain's state only) and a real SQLite database; the arithmetic over counters the test driver does
not keep is checked on DomainStats values.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backends.base import DomainStats
from backends.libvirt.driver import stats_of
from ec2gw.compute.metric_models import InstanceMonitoring, MetricSample
from ec2gw.compute.metrics import _Seen, sample_row
from ec2gw.compute.worker import ComputeWorker
from ec2gw.config import Settings
from ec2gw.db.session import Database

WHEN = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)


def test_stats_of_sums_every_disk_and_nic() -> None:
    st = stats_of("i-1", {"cpu.time": 5_000_000_000, "block.count": 2, "block.0.rd.bytes": 100, "block.1.rd.bytes": 20,
                          "block.0.wr.reqs": 3, "net.count": 2, "net.0.rx.bytes": 7, "net.1.rx.bytes": 8,
                          "net.1.tx.pkts": 4, "balloon.rss": 2048})
    assert (st.cpu_time_ns, st.disk_read_bytes, st.disk_write_ops, st.net_rx_bytes, st.net_tx_packets,
            st.memory_rss_kib) == (5_000_000_000, 120, 3, 15, 4, 2048)
    assert stats_of("i-2", {"state.state": 1}) == DomainStats("i-2")  # the test driver's answer


def test_interval_values() -> None:
    before = _Seen(100.0, DomainStats("i-1", cpu_time_ns=10 * 10**9, net_rx_bytes=1000, disk_write_ops=5))
    after = _Seen(160.0, DomainStats("i-1", cpu_time_ns=70 * 10**9, net_rx_bytes=4000, disk_write_ops=9,
                                     memory_rss_kib=512 * 1024))
    row = sample_row("n1", "i-1", 2, before, after, WHEN)
    assert row is not None
    # 60 s of cpu time over 60 s on 2 vCPUs: 50 %
    assert (row.cpu_utilization, row.network_in, row.disk_write_ops, row.interval_seconds, row.memory_used_mib) == (
        50.0, 3000, 4, 60.0, 512.0)
    # the guest restarted (counters back near 0): what it counted since then
    restarted = _Seen(220.0, DomainStats("i-1", cpu_time_ns=6 * 10**9, net_rx_bytes=300, disk_write_ops=1))
    row = sample_row("n1", "i-1", 2, after, restarted, WHEN)
    assert row is not None and (row.cpu_utilization, row.network_in, row.disk_write_ops) == (5.0, 300, 1)
    # no cpu time reported: no CPUUtilization; an empty interval: no row
    assert sample_row("n1", "i-1", 1, _Seen(1.0, DomainStats("i-1")), _Seen(2.0, DomainStats("i-1")),
                      WHEN).cpu_utilization is None  # type: ignore[union-attr]
    assert sample_row("n1", "i-1", 1, before, before, WHEN) is None


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[ComputeWorker]:
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    db.create_schema()
    w = ComputeWorker(Settings(data_dir=tmp_path, metrics_retention_hours=1.0), db)
    yield w
    w.pool.shutdown()
    w.drivers.close()
    db.dispose()


def _sample(iid: str, when: datetime) -> MetricSample:
    return MetricSample(instance_id=iid, node_name="local", sampled_at=when, interval_seconds=60.0, network_in=1,
                        network_out=0, network_packets_in=0, network_packets_out=0, disk_read_bytes=0,
                        disk_write_bytes=0, disk_read_ops=0, disk_write_ops=0, vcpus=1)


def test_retention_drops_old_samples_and_flags_of_gone_instances(worker: ComputeWorker) -> None:
    now = datetime.now(UTC)
    with worker.db.session(write=True) as s:
        s.add_all([_sample("i-old", now - timedelta(hours=2)), _sample("i-new", now - timedelta(minutes=5))])
        s.add(InstanceMonitoring(instance_id="i-gone", enabled=True))
    worker.metrics.prune()
    with worker.db.session() as s:
        assert list(s.scalars(select(MetricSample.instance_id))) == ["i-new"]
        assert s.scalar(select(func.count()).select_from(InstanceMonitoring)) == 0


def test_a_pass_over_the_test_driver_stores_nothing_without_instances(worker: ComputeWorker) -> None:
    """The implicit node (test:///default) answers getAllDomainStats; its domains are no instances."""
    from ec2gw.compute.placement import implicit_node

    assert worker.metrics.sample_node(implicit_node(worker.settings)) == 0
    assert worker.metrics.sample_node(implicit_node(worker.settings)) == 0
    with worker.db.session() as s:
        assert s.scalar(select(func.count()).select_from(MetricSample)) == 0
