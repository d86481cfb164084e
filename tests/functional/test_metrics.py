"""Instance metrics through CloudWatch's API on the EC2 port, against a live server sampling every second.

The server runs on libvirt's test driver, whose getAllDomainStats reports a domain's state only (no
cpu time, block or interface counters): the samples the worker stores come from that real call, so
the byte and packet metrics are sums over no device (0) and CPUUtilization has no value. The tests
check the API against the rows the worker stored (read from the server's SQLite file), the clients
(boto3 with botocore's JSON protocol, the aws CLI, a hand-signed Query-protocol request), CloudWatch's
errors, MonitorInstances/UnmonitorInstances, and that another user reads none of alice's metrics.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.functional.tools import wait_for
from tests.live import Creds, LiveServer

NS = "{http://monitoring.amazonaws.com/doc/2010-08-01/}"
METRICS = {"CPUUtilization", "NetworkIn", "NetworkOut", "NetworkPacketsIn", "NetworkPacketsOut", "DiskReadBytes",
           "DiskWriteBytes", "DiskReadOps", "DiskWriteOps"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(Path(tmp_path_factory.mktemp("metrics-server")),
                     env={"EC2GW_METRICS_INTERVAL_SECONDS": "1"}).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def alice(server: LiveServer) -> Creds:
    return server.make_user("alice")


@pytest.fixture(scope="module")
def bob(server: LiveServer) -> Creds:
    return server.make_user("bob")


@pytest.fixture(scope="module")
def instance(server: LiveServer, alice: Creds, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("img") / "base.img"
    path.write_bytes(b"\0" * (1 << 20))
    image = json.loads(server.cli("admin", "image", "import", "base-image", str(path), "--public", "--json").stdout)
    ec2 = server.client("ec2", alice)
    iid = str(ec2.run_instances(ImageId=image["image_id"], MinCount=1, MaxCount=1,
                                InstanceType="t2.micro")["Instances"][0]["InstanceId"])
    wait_for("alice's instance running", lambda: _instance(ec2, iid)["State"]["Name"] == "running", timeout=60)
    wait_for("three samples of alice's instance", lambda: len(_rows(server, iid)) >= 3, timeout=60)
    return iid


def _instance(ec2: Any, iid: str) -> dict[str, Any]:
    return dict(ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0])


def _rows(server: LiveServer, iid: str) -> list[sqlite3.Row]:
    """The samples the worker stored for the instance, read from the server's database."""
    conn = sqlite3.connect(f"file:{server.data_dir / 'ec2gw.sqlite'}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute("SELECT * FROM metric_samples WHERE instance_id = ? ORDER BY sampled_at", (iid,)))
    finally:
        conn.close()


def _window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=10), now + timedelta(minutes=2)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def test_samples_come_from_the_nodes_call(server: LiveServer, instance: str) -> None:
    rows = _rows(server, instance)
    assert len(rows) >= 3
    for row in rows:
        assert row["node_name"] == "local" and row["vcpus"] == 1 and 0.2 < row["interval_seconds"] < 30
        # the test driver keeps no counters: nothing moved, and there is no cpu time to divide
        assert row["cpu_utilization"] is None
        assert row["network_in"] == row["disk_read_bytes"] == row["disk_write_ops"] == 0


def test_get_metric_statistics_over_the_samples(server: LiveServer, alice: Creds, instance: str) -> None:
    cw = server.client("cloudwatch", alice)
    start, end = _window()
    got = cw.get_metric_statistics(Namespace="AWS/EC2", MetricName="DiskReadBytes",
                                   Dimensions=[{"Name": "InstanceId", "Value": instance}], StartTime=start,
                                   EndTime=end, Period=600, Statistics=["SampleCount", "Sum", "Average", "Maximum"])
    rows = [r for r in _rows(server, instance)]
    assert got["Label"] == "DiskReadBytes"
    points = got["Datapoints"]
    assert len(points) >= 1 and all(p["Unit"] == "Bytes" and p["Sum"] == 0 and p["Maximum"] == 0 for p in points)
    total = sum(p["SampleCount"] for p in points)
    assert len(rows) <= total <= len(_rows(server, instance))  # the worker keeps sampling meanwhile
    # 60-second periods: each datapoint starts on a multiple of 60 s from StartTime
    per_minute = cw.get_metric_statistics(Namespace="AWS/EC2", MetricName="NetworkPacketsIn",
                                          Dimensions=[{"Name": "InstanceId", "Value": instance}], StartTime=start,
                                          EndTime=end, Period=60, Statistics=["SampleCount"], Unit="Count")
    assert per_minute["Datapoints"] and all(
        (p["Timestamp"] - start).total_seconds() % 60 == 0 for p in per_minute["Datapoints"])
    # CPUUtilization: the test driver reports no cpu time, so no sample has a value
    cpu = cw.get_metric_statistics(Namespace="AWS/EC2", MetricName="CPUUtilization",
                                   Dimensions=[{"Name": "InstanceId", "Value": instance}], StartTime=start,
                                   EndTime=end, Period=60, Statistics=["Average"])
    assert cpu["Datapoints"] == []
    # another unit, another namespace, an unknown metric: nothing, as CloudWatch answers
    for kw in ({"MetricName": "DiskReadBytes", "Unit": "Percent"}, {"MetricName": "NoSuchMetric"},
               {"MetricName": "DiskReadBytes", "Namespace": "AWS/EBS"}):
        args = {"Namespace": "AWS/EC2", "Dimensions": [{"Name": "InstanceId", "Value": instance}], "StartTime": start,
                "EndTime": end, "Period": 60, "Statistics": ["Sum"], **kw}
        assert cw.get_metric_statistics(**args)["Datapoints"] == []


def test_get_metric_data_and_list_metrics(server: LiveServer, alice: Creds, instance: str) -> None:
    cw = server.client("cloudwatch", alice)
    start, end = _window()
    dims = [{"Name": "InstanceId", "Value": instance}]
    got = cw.get_metric_data(StartTime=start, EndTime=end, ScanBy="TimestampAscending", MetricDataQueries=[
        {"Id": "reads", "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": "DiskReadOps", "Dimensions": dims},
                                       "Period": 600, "Stat": "SampleCount"}},
        {"Id": "net", "Label": "bytes in", "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": "NetworkIn",
                                                                      "Dimensions": dims}, "Period": 60, "Stat": "Sum"}},
    ])
    results = {r["Id"]: r for r in got["MetricDataResults"]}
    assert results["reads"]["StatusCode"] == "Complete" and sum(results["reads"]["Values"]) >= 3
    assert results["net"]["Label"] == "bytes in" and set(results["net"]["Values"]) == {0.0}
    assert results["net"]["Timestamps"] == sorted(results["net"]["Timestamps"])
    listed = cw.list_metrics(Namespace="AWS/EC2", Dimensions=[{"Name": "InstanceId", "Value": instance}])["Metrics"]
    assert {m["MetricName"] for m in listed} == METRICS
    assert all(m["Dimensions"] == dims for m in listed)
    by_type = cw.list_metrics(MetricName="CPUUtilization", Dimensions=[{"Name": "InstanceType"}])["Metrics"]
    assert by_type == [{"Namespace": "AWS/EC2", "MetricName": "CPUUtilization",
                        "Dimensions": [{"Name": "InstanceType", "Value": "t2.micro"}]}]
    by_type_stats = cw.get_metric_statistics(Namespace="AWS/EC2", MetricName="DiskWriteBytes",
                                             Dimensions=[{"Name": "InstanceType", "Value": "t2.micro"}],
                                             StartTime=start, EndTime=end, Period=720, Statistics=["SampleCount"])
    assert by_type_stats["Datapoints"][0]["SampleCount"] >= 3


def test_aws_cli_get_metric_statistics(server: LiveServer, alice: Creds, instance: str) -> None:
    start, end = _window()
    out = server.aws("cloudwatch", "get-metric-statistics", "--namespace", "AWS/EC2", "--metric-name", "DiskWriteOps",
                     "--dimensions", f"Name=InstanceId,Value={instance}", "--start-time", start.isoformat(),
                     "--end-time", end.isoformat(), "--period", "60", "--statistics", "SampleCount", "Sum", creds=alice)
    doc = json.loads(out.stdout)
    assert doc["Label"] == "DiskWriteOps" and doc["Datapoints"]
    assert all(p["Unit"] == "Count" and p["Sum"] == 0.0 and p["SampleCount"] >= 1 for p in doc["Datapoints"])
    bad = server.aws("cloudwatch", "get-metric-statistics", "--namespace", "AWS/EC2", "--metric-name", "DiskWriteOps",
                     "--start-time", start.isoformat(), "--end-time", end.isoformat(), "--period", "90",
                     "--statistics", "Sum", creds=alice, check=False)
    assert bad.returncode != 0
    assert "(InvalidParameterValue)" in bad.stderr and "multiple of 60" in bad.stderr


@pytest.mark.parametrize("kwargs, code, words", [
    ({"Period": 61}, "InvalidParameterValue", "multiple of 60"),
    ({"Period": 30}, "InvalidParameterValue", "multiple of 60"),
    ({"Statistics": ["p99"]}, "InvalidParameterValue", "must be one of"),
    ({"Statistics": []}, "InvalidParameterCombination", "Statistics"),
    ({"ExtendedStatistics": ["p99"]}, "InvalidParameterValue", "percentiles"),
    ({"StartTime": datetime(2026, 1, 2, tzinfo=UTC), "EndTime": datetime(2026, 1, 1, tzinfo=UTC)},
     "InvalidParameterValue", "StartTime must be less"),
    ({"StartTime": datetime(2026, 1, 1, tzinfo=UTC), "EndTime": datetime(2026, 3, 1, tzinfo=UTC)},
     "InvalidParameterCombination", "exceeds the limit of 1440"),
])
def test_errors_as_cloudwatch_answers_them(server: LiveServer, alice: Creds, instance: str, kwargs: dict[str, Any],
                                          code: str, words: str) -> None:
    cw = server.client("cloudwatch", alice)
    start, end = _window()
    args = {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization", "StartTime": start, "EndTime": end, "Period": 60,
            "Statistics": ["Average"], **kwargs}
    if not args["Statistics"]:
        del args["Statistics"]
    with pytest.raises(ClientError) as exc:
        cw.get_metric_statistics(**args)
    got_code, status, message = _code(exc)
    assert (got_code, status) == (code, 400) and words in message
    assert exc.value.response["Error"]["Type"] == "Sender"


def test_metric_data_errors(server: LiveServer, alice: Creds) -> None:
    cw = server.client("cloudwatch", alice)
    start, end = _window()
    stat = {"Metric": {"Namespace": "AWS/EC2", "MetricName": "NetworkIn"}, "Period": 60, "Stat": "Sum"}
    for queries, words in (([{"Id": "Upper", "MetricStat": stat}], "lowercase letter"),
                           ([{"Id": "a", "MetricStat": stat}, {"Id": "a", "MetricStat": stat}], "more than one query"),
                           ([{"Id": "m", "Expression": "SUM(METRICS())"}], "metric math"),
                           ([{"Id": "m", "MetricStat": {**stat, "Period": 45}}], "multiple of 60")):
        with pytest.raises(ClientError) as exc:
            cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
        got_code, status, message = _code(exc)
        assert (got_code, status) == ("InvalidParameterValue", 400) and words in message, message


def _signed_query(server: LiveServer, creds: Creds, params: dict[str, str]) -> tuple[int, ET.Element]:
    """A Query-protocol request (form POST, Action + Version) signed with SigV4 for service monitoring."""
    body = "&".join(f"{k}={urllib.request.quote(v, safe='')}" for k, v in params.items())
    req = AWSRequest(method="POST", url=server.ec2_url + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(creds.access_key, creds.secret_key), "monitoring", "us-east-1").add_auth(req)
    prepared = req.prepare()
    http = urllib.request.Request(prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(http, timeout=30) as resp:
            return resp.status, ET.fromstring(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, ET.fromstring(err.read())


def test_query_protocol(server: LiveServer, alice: Creds, instance: str) -> None:
    start, end = _window()
    params = {"Action": "GetMetricStatistics", "Version": "2010-08-01", "Namespace": "AWS/EC2",
              "MetricName": "DiskReadOps", "Dimensions.member.1.Name": "InstanceId",
              "Dimensions.member.1.Value": instance, "StartTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "EndTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"), "Period": "720", "Statistics.member.1": "SampleCount"}
    status, doc = _signed_query(server, alice, params)
    assert status == 200 and doc.tag == f"{NS}GetMetricStatisticsResponse"
    counts = [float(e.text or "") for e in doc.iter(f"{NS}SampleCount")]
    assert counts and sum(counts) >= 3
    assert doc.find(f"{NS}ResponseMetadata/{NS}RequestId") is not None
    status, doc = _signed_query(server, alice, {**params, "Period": "100"})
    assert status == 400 and doc.tag == f"{NS}ErrorResponse"
    assert [doc.findtext(f"{NS}Error/{NS}{k}") for k in ("Type", "Code")] == ["Sender", "InvalidParameterValue"]
    assert "multiple of 60" in (doc.findtext(f"{NS}Error/{NS}Message") or "")
    status, doc = _signed_query(server, alice, {"Action": "GetMetricStatistics", "Version": "2010-08-01"})
    assert status == 400 and doc.findtext(f"{NS}Error/{NS}Code") == "MissingParameter"


def test_monitor_and_unmonitor_instances(server: LiveServer, alice: Creds, instance: str) -> None:
    ec2 = server.client("ec2", alice)
    assert _instance(ec2, instance)["Monitoring"] == {"State": "disabled"}
    got = ec2.monitor_instances(InstanceIds=[instance])["InstanceMonitorings"]
    assert got == [{"InstanceId": instance, "Monitoring": {"State": "pending"}}]
    assert _instance(ec2, instance)["Monitoring"] == {"State": "enabled"}
    got = ec2.unmonitor_instances(InstanceIds=[instance])["InstanceMonitorings"]
    assert got == [{"InstanceId": instance, "Monitoring": {"State": "disabling"}}]
    assert _instance(ec2, instance)["Monitoring"] == {"State": "disabled"}
    with pytest.raises(ClientError) as exc:
        ec2.monitor_instances(InstanceIds=["i-0123456789abcdef0"])
    assert _code(exc)[0] == "InvalidInstanceID.NotFound"
    with pytest.raises(ClientError) as exc:
        ec2.monitor_instances(InstanceIds=[instance], DryRun=True)
    assert _code(exc)[0] == "DryRunOperation"
    assert _instance(ec2, instance)["Monitoring"] == {"State": "disabled"}
    # RunInstances with Monitoring.Enabled: detailed monitoring from the start
    image = _instance(ec2, instance)["ImageId"]
    launched = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.micro",
                                 Monitoring={"Enabled": True})["Instances"][0]
    try:
        assert launched["Monitoring"] == {"State": "enabled"}
        assert _instance(ec2, launched["InstanceId"])["Monitoring"] == {"State": "enabled"}
    finally:
        ec2.terminate_instances(InstanceIds=[launched["InstanceId"]])


def test_another_user_gets_nothing_of_alices(server: LiveServer, bob: Creds, instance: str) -> None:
    cw = server.client("cloudwatch", bob)
    start, end = _window()
    dims = [{"Name": "InstanceId", "Value": instance}]
    for metric in ("DiskReadOps", "NetworkIn"):
        assert cw.get_metric_statistics(Namespace="AWS/EC2", MetricName=metric, Dimensions=dims, StartTime=start,
                                        EndTime=end, Period=60, Statistics=["SampleCount"])["Datapoints"] == []
    # nor aggregated over her instance's type, nor over every instance
    assert cw.get_metric_statistics(Namespace="AWS/EC2", MetricName="DiskReadOps", StartTime=start, EndTime=end,
                                    Period=60, Statistics=["SampleCount"],
                                    Dimensions=[{"Name": "InstanceType", "Value": "t2.micro"}])["Datapoints"] == []
    assert cw.get_metric_statistics(Namespace="AWS/EC2", MetricName="DiskReadOps", StartTime=start, EndTime=end,
                                    Period=60, Statistics=["SampleCount"])["Datapoints"] == []
    data = cw.get_metric_data(StartTime=start, EndTime=end, MetricDataQueries=[
        {"Id": "m", "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": "DiskReadOps", "Dimensions": dims},
                                   "Period": 60, "Stat": "SampleCount"}}])
    assert data["MetricDataResults"][0]["Values"] == []
    assert cw.list_metrics()["Metrics"] == []
    out = server.aws("cloudwatch", "get-metric-statistics", "--namespace", "AWS/EC2", "--metric-name", "DiskReadOps",
                     "--dimensions", f"Name=InstanceId,Value={instance}", "--start-time", start.isoformat(),
                     "--end-time", end.isoformat(), "--period", "60", "--statistics", "SampleCount", creds=bob)
    assert json.loads(out.stdout)["Datapoints"] == []


def test_unsigned_and_wrongly_signed_requests(server: LiveServer, alice: Creds) -> None:
    wrong = Creds("alice", alice.access_key, "x" * 40)
    cw = server.client("cloudwatch", wrong)
    with pytest.raises(ClientError) as exc:
        cw.list_metrics()
    assert _code(exc)[:2] == ("SignatureDoesNotMatch", 403)
    cw = server.client("cloudwatch", Creds("nobody", "AKIDNOSUCHKEY0000000", "x" * 40))
    with pytest.raises(ClientError) as exc:
        cw.list_metrics()
    assert _code(exc)[:2] == ("InvalidClientTokenId", 403)
