"""Instance metrics through CloudWatch's API: ListMetrics, GetMetricStatistics, GetMetricData
(namespace AWS/EC2), and EC2's MonitorInstances / UnmonitorInstances.

The compute worker stores one sample per instance per `metrics_interval_seconds`
(compute/metrics.py); these operations aggregate a caller's own instances' samples into periods
of 60 seconds or multiples. Another user's instance has no metrics for the caller: its id simply
matches nothing, as CloudWatch answers a metric that does not exist (no datapoints, no error).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ec2gw.api.context import RequestContext
from ec2gw.api.instance_query import check_instance_ids, load_instances, visible
from ec2gw.aws.dispatch import cloudwatch, operation
from ec2gw.compute.metric_models import InstanceMonitoring, MetricSample
from ec2gw.db.models import Instance
from ec2gw.errors import ServiceError

NAMESPACE = "AWS/EC2"
#: metric -> (sample column, unit)
METRICS: dict[str, tuple[str, str]] = {
    "CPUUtilization": ("cpu_utilization", "Percent"),
    "NetworkIn": ("network_in", "Bytes"),
    "NetworkOut": ("network_out", "Bytes"),
    "NetworkPacketsIn": ("network_packets_in", "Count"),
    "NetworkPacketsOut": ("network_packets_out", "Count"),
    "DiskReadBytes": ("disk_read_bytes", "Bytes"),
    "DiskWriteBytes": ("disk_write_bytes", "Bytes"),
    "DiskReadOps": ("disk_read_ops", "Count"),
    "DiskWriteOps": ("disk_write_ops", "Count"),
}
#: dimension -> the instance column it selects by
DIMENSIONS = {"InstanceId": Instance.id, "InstanceType": Instance.instance_type, "ImageId": Instance.image_id}
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
MAX_DATAPOINTS = 1440
MAX_QUERIES = 500
LIST_PAGE = 500


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _check_window(start_time: datetime, end_time: datetime, period: int, where: str = "") -> tuple[datetime, datetime]:
    start, end = _utc(start_time), _utc(end_time)
    if period < 60 or period % 60:
        raise ServiceError("InvalidParameterValue", f"The parameter {where}Period must be 60 seconds or a multiple of "
                           f"60 (got {period}); samples here are at most one a minute.")
    if start >= end:
        raise ServiceError("InvalidParameterValue", "The parameter StartTime must be less than the parameter EndTime "
                           f"(got {start:%Y-%m-%dT%H:%M:%SZ} and {end:%Y-%m-%dT%H:%M:%SZ}).")
    return start, end


@dataclass(frozen=True)
class _Query:
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    unit: str | None


def _matching(ctx: RequestContext, q: _Query, namespace: str) -> bool:
    """Whether the metric and dimensions name something of AWS/EC2 at all."""
    if namespace != NAMESPACE or q.metric not in METRICS:
        return False
    if q.unit is not None and q.unit != METRICS[q.metric][1]:
        return False
    names = [n for n, _ in q.dimensions]
    return len(names) <= 1 and all(n in DIMENSIONS for n in names)


def _samples(ctx: RequestContext, q: _Query, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
    """(time, value) of the caller's samples of one metric in [start, end)."""
    column = getattr(MetricSample, METRICS[q.metric][0])
    query = (select(MetricSample.sampled_at, column)
             .join(Instance, Instance.id == MetricSample.instance_id)
             .where(visible(ctx), MetricSample.sampled_at >= start, MetricSample.sampled_at < end, column.is_not(None)))
    for name, value in q.dimensions:
        query = query.where(DIMENSIONS[name] == value)
    with ctx.db.session() as s:
        return [(_utc(t), float(v)) for t, v in s.execute(query)]


def _aggregate(samples: Iterable[tuple[datetime, float]], start: datetime, period: int) -> dict[datetime, list[float]]:
    buckets: dict[datetime, list[float]] = {}
    for when, value in samples:
        k = int((when - start).total_seconds() // period)
        buckets.setdefault(start + timedelta(seconds=k * period), []).append(value)
    return buckets


def _stat(values: list[float], name: str) -> float:
    if name == "SampleCount":
        return float(len(values))
    if name == "Sum":
        return float(math.fsum(values))
    if name == "Average":
        return float(math.fsum(values) / len(values))
    if name == "Minimum":
        return min(values)
    return max(values)


def _check_statistic(name: str, where: str) -> None:
    if name not in STATISTICS:
        raise ServiceError("InvalidParameterValue", f"The parameter {where} must be one of {', '.join(STATISTICS)} "
                           f"(got {name[:40]!r}); percentiles are not kept here.")


def _dimensions(dims: list[dict[str, str]] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((d.get("Name", ""), d.get("Value", "")) for d in dims or []))


@cloudwatch.operation("GetMetricStatistics")
def get_metric_statistics(ctx: RequestContext, namespace: str, metric_name: str, start_time: datetime,
                          end_time: datetime, period: int, dimensions: list[dict[str, str]] | None = None,
                          statistics: list[str] | None = None, extended_statistics: list[str] | None = None,
                          unit: str | None = None) -> dict[str, Any]:
    if extended_statistics:
        raise ServiceError("InvalidParameterValue", "ExtendedStatistics (percentiles) are not kept here; ask for "
                           f"Statistics among {', '.join(STATISTICS)}.")
    if not statistics:
        raise ServiceError("InvalidParameterCombination", "Must specify either Statistics or ExtendedStatistics: "
                           f"name one or more of {', '.join(STATISTICS)}.")
    for i, name in enumerate(statistics):
        _check_statistic(name, f"Statistics.member.{i + 1}")
    start, end = _check_window(start_time, end_time, period)
    wanted = math.ceil((end - start).total_seconds() / period)
    if wanted > MAX_DATAPOINTS:
        raise ServiceError("InvalidParameterCombination", f"You have requested up to {wanted} datapoints, which exceeds "
                           f"the limit of {MAX_DATAPOINTS}. You may reduce the datapoints requested by increasing "
                           "Period, or decreasing the time range.")
    q = _Query(metric_name, _dimensions(dimensions), unit)
    if not _matching(ctx, q, namespace):
        return {"Label": metric_name, "Datapoints": []}
    metric_unit = METRICS[metric_name][1]
    points = []
    for when, values in sorted(_aggregate(_samples(ctx, q, start, end), start, period).items()):
        point: dict[str, Any] = {"Timestamp": when, "Unit": metric_unit}
        for name in statistics:
            point[name] = _stat(values, name)
        points.append(point)
    return {"Label": metric_name, "Datapoints": points}


@cloudwatch.operation("GetMetricData")
def get_metric_data(ctx: RequestContext, metric_data_queries: list[dict[str, Any]], start_time: datetime,
                    end_time: datetime, next_token: str | None = None, scan_by: str | None = None,
                    max_datapoints: int | None = None, label_options: dict[str, Any] | None = None) -> dict[str, Any]:
    if not metric_data_queries or len(metric_data_queries) > MAX_QUERIES:
        raise ServiceError("InvalidParameterValue", f"MetricDataQueries must hold 1 to {MAX_QUERIES} queries "
                           f"(got {len(metric_data_queries)}).")
    if scan_by not in (None, "TimestampDescending", "TimestampAscending"):
        raise ServiceError("InvalidParameterValue", f"The parameter ScanBy must be TimestampDescending or "
                           f"TimestampAscending (got {scan_by[:40]!r}).")
    results = []
    seen: set[str] = set()
    for i, query in enumerate(metric_data_queries):
        where = f"MetricDataQueries.member.{i + 1}."
        qid = query["Id"]
        if not qid[:1].islower() or not all(c.isalnum() or c == "_" for c in qid):
            raise ServiceError("InvalidParameterValue", f"The parameter {where}Id must start with a lowercase letter "
                               f"and hold only letters, digits and underscores (got {qid[:40]!r}).")
        if qid in seen:
            raise ServiceError("InvalidParameterValue", f"The Id {qid!r} is used by more than one query; give each its own.")
        seen.add(qid)
        stat = query.get("MetricStat")
        if stat is None:
            raise ServiceError("InvalidParameterValue", f"{where}Expression (metric math) is not supported here; "
                               f"give {where}MetricStat with a Metric, Period and Stat.")
        _check_statistic(stat["Stat"], f"{where}MetricStat.Stat")
        start, end = _check_window(start_time, end_time, stat["Period"], f"{where}MetricStat.")
        metric = stat["Metric"]
        q = _Query(metric.get("MetricName", ""), _dimensions(metric.get("Dimensions")), stat.get("Unit"))
        points: list[tuple[datetime, float]] = []
        if _matching(ctx, q, metric.get("Namespace", "")):
            buckets = _aggregate(_samples(ctx, q, start, end), start, stat["Period"])
            points = sorted(((t, _stat(v, stat["Stat"])) for t, v in buckets.items()),
                            reverse=scan_by != "TimestampAscending")
        if query.get("ReturnData", True) is False:
            continue
        if max_datapoints is not None:
            points = points[:max(0, max_datapoints)]
        results.append({"Id": qid, "Label": query.get("Label") or q.metric, "StatusCode": "Complete",
                        "Timestamps": [t for t, _ in points], "Values": [v for _, v in points]})
    return {"MetricDataResults": results, "Messages": []}


@cloudwatch.operation("ListMetrics")
def list_metrics(ctx: RequestContext, namespace: str | None = None, metric_name: str | None = None,
                 dimensions: list[dict[str, str]] | None = None, next_token: str | None = None,
                 recently_active: str | None = None, **_: Any) -> dict[str, Any]:
    """The AWS/EC2 metrics of the caller's instances that have samples, per InstanceId (and per
    InstanceType and ImageId among them)."""
    if namespace not in (None, NAMESPACE) or (metric_name is not None and metric_name not in METRICS):
        return {"Metrics": []}
    offset = 0
    if next_token:
        try:
            offset = int(next_token)
        except ValueError:
            raise ServiceError("InvalidNextToken", "The NextToken is not one this service gave out; send the "
                               "request again without it.") from None
    since = datetime.now(UTC) - timedelta(hours=3) if recently_active == "PT3H" else None
    query = select(Instance.id, Instance.instance_type, Instance.image_id).where(
        visible(ctx), Instance.id.in_(select(MetricSample.instance_id).where(
            *([MetricSample.sampled_at >= since] if since else [])).distinct()))
    with ctx.db.session() as s:
        rows = list(s.execute(query.order_by(Instance.id)))
    pairs: list[tuple[str, str]] = []
    for iid, itype, image in rows:
        pairs.append(("InstanceId", iid))
        pairs.extend([("InstanceType", itype), ("ImageId", image)])
    pairs = sorted(dict.fromkeys(pairs), key=lambda p: (p[0] != "InstanceId", p))
    wanted = [(d.get("Name", ""), d.get("Value")) for d in dimensions or []]
    metrics = []
    for name in sorted(METRICS) if metric_name is None else [metric_name]:
        for dim in pairs:
            if all(dim[0] == n and (v is None or dim[1] == v) for n, v in wanted):
                metrics.append({"Namespace": NAMESPACE, "MetricName": name,
                                "Dimensions": [{"Name": dim[0], "Value": dim[1]}]})
    page = metrics[offset:offset + LIST_PAGE]
    out: dict[str, Any] = {"Metrics": page}
    if offset + LIST_PAGE < len(metrics):
        out["NextToken"] = str(offset + LIST_PAGE)
    return out


# --------------------------------------------------------------------------- EC2: detailed monitoring


def monitored(s: Session, instance_ids: Iterable[str]) -> set[str]:
    """Those of ``instance_ids`` with detailed monitoring on."""
    ids = list(instance_ids)
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        found.update(s.scalars(select(InstanceMonitoring.instance_id).where(
            InstanceMonitoring.instance_id.in_(ids[i:i + 500]), InstanceMonitoring.enabled.is_(True))))
    return found


def enable_monitoring(s: Session, instance_ids: list[str], enabled: bool = True) -> None:
    """Switch detailed monitoring of the instances (RunInstances' Monitoring.Enabled, MonitorInstances)."""
    for iid in instance_ids:
        row = s.get(InstanceMonitoring, iid)
        if row is None:
            s.add(InstanceMonitoring(instance_id=iid, enabled=enabled))
        else:
            row.enabled = enabled
    s.flush()


def _set_monitoring(ctx: RequestContext, instance_ids: list[str], enabled: bool, dry_run: bool | None) -> dict[str, Any]:
    wanted = check_instance_ids(instance_ids)
    with ctx.db.session(write=True) as s:
        rows = load_instances(s, ctx, wanted, columns=(Instance.id, Instance.state))
        for inst in rows:
            if inst.state == "terminated":
                raise ServiceError("IncorrectState", f"The instance '{inst.id}' is terminated; its monitoring cannot "
                                   "change.")
        ctx.check_dry_run(dry_run)
        enable_monitoring(s, [inst.id for inst in rows], enabled)
    state = "pending" if enabled else "disabling"
    return {"InstanceMonitorings": [{"InstanceId": i.id, "Monitoring": {"State": state}} for i in rows]}


@operation("MonitorInstances")
def monitor_instances(ctx: RequestContext, instance_ids: list[str], dry_run: bool | None = None) -> dict[str, Any]:
    return _set_monitoring(ctx, instance_ids, True, dry_run)


@operation("UnmonitorInstances")
def unmonitor_instances(ctx: RequestContext, instance_ids: list[str], dry_run: bool | None = None) -> dict[str, Any]:
    return _set_monitoring(ctx, instance_ids, False, dry_run)
