"""Hibernation, pause and CPU metrics on a real QEMU guest, driven through boto3, the aws CLI and
the admin CLI against `ec2gw serve`.

Set-up as test_vm_lifecycle.py: the tiny guest (scripts/build-test-guest.sh), a libvirtd in a
namespace of its own (tests/vmhost.py) registered as node `pw1`, an isolated network pool, the
kernel, ramdisk and disk imported with `ec2gw admin image import`; the server samples domain
statistics every 2 s. One guest serves the whole module: a user's t2.micro launched with
hibernation configured and the user-data EC2GW-BUSY, so it keeps its vCPU busy in a niced loop
while printing `EC2GW-COUNTER <n>` every second. The tests run in order:

a busy guest's CPUUtilization is above 50 % through `aws cloudwatch get-metric-statistics`, and
agrees with what /proc says its QEMU process got (the test gives that process nice -10: on a
shared 2-core machine with a load of 4 it had only about 40 % of a core otherwise) ->
`admin instance pause` stops the counter and DescribeInstanceStatus says impaired; resume goes on
counting -> StopInstances Hibernate=true then StartInstances keeps the boot id, the counter goes
on from where it was, and the console log keeps what the guest printed before.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.live import Creds, LiveServer
from tests.vmhost import VmHost, build_guest, wait_for

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]

POOL_FILE = """# power test pool: isolated network
none
pw-a 10.99.8.10 10.99.8.1 10.99.8.255 255.255.255.0
pw-b 10.99.8.11 10.99.8.1 10.99.8.255 255.255.255.0
"""
BOOT = 90.0  # seconds a TCG guest may take to its lease on a loaded 2-core machine
COUNTER = re.compile(r"EC2GW-COUNTER (\d+)")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cloud:
    def __init__(self, server: LiveServer, host: VmHost, user: Creds) -> None:
        self.server, self.host, self.user = server, host, user
        self.ec2 = server.client("ec2", user)
        self.ids: dict[str, str] = {}
        self.cpu_mark = (0.0, 0.0)

    def cli_json(self, *args: str) -> Any:
        out = self.server.cli(*args, "--json", check=False, timeout=120)
        assert out.returncode == 0, f"ec2gw {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    def instance(self, iid: str) -> dict[str, Any]:
        return dict(self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0])

    def wait_state(self, iid: str, state: str, timeout: float = BOOT) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            inst = self.instance(iid)
            assert inst["State"]["Name"] != "terminated", \
                f"{iid} terminated: {inst.get('StateReason')}\nserver log:\n{self.server.log()[-4000:]}"
            return inst if inst["State"]["Name"] == state else None
        return dict(wait_for(f"{iid} {state}", check, timeout))

    def console(self, iid: str) -> str:
        return str(self.ec2.get_console_output(InstanceId=iid, Latest=True).get("Output") or "")

    def wait_console(self, iid: str, pattern: str, timeout: float = BOOT, after: int = 0) -> re.Match[str]:
        rx = re.compile(pattern)
        try:
            return wait_for(f"console of {iid} shows {pattern!r}", lambda: rx.search(self.console(iid), after),
                            timeout, 0.5)
        except TimeoutError:
            raise AssertionError(f"{pattern!r} not on the console of {iid}:\n{self.console(iid)[-3000:]}\n"
                                 f"server log:\n{self.server.log()[-3000:]}") from None

    def counters(self, iid: str) -> list[int]:
        return [int(n) for n in COUNTER.findall(self.console(iid))]

    def domain_state(self, iid: str) -> int:
        conn = libvirt.open(self.host.uri)
        try:
            return int(conn.lookupByName(iid).state()[0])
        finally:
            conn.close()

    def saved(self, iid: str) -> bool:
        conn = libvirt.open(self.host.uri)
        try:
            return bool(conn.lookupByName(iid).hasManagedSaveImage(0))
        finally:
            conn.close()

    def instance_status(self, iid: str) -> str:
        got = self.ec2.describe_instance_status(InstanceIds=[iid], IncludeAllInstances=True)["InstanceStatuses"]
        return str(got[0]["InstanceStatus"]["Status"])


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    guest = build_guest()
    root = Path(tmp_path_factory.mktemp("vmpower"))
    host = VmHost(root / "node")
    server = LiveServer(root / "data", env={"EC2GW_NODE_STORAGE_DIR": str(root / "node-storage"),
                                             "EC2GW_STOP_TIMEOUT": "30", "EC2GW_WORKER_INTERVAL": "0.1",
                                             "EC2GW_METRICS_INTERVAL_SECONDS": "2"})
    try:
        host.start()
        server.start()
        (root / "pool.txt").write_text(POOL_FILE)
        c = Cloud(server, host, server.make_user("power-user"))
        c.cli_json("admin", "pool", "add", "pwnet", str(root / "pool.txt"), "--network-mode", "isolated")
        c.cli_json("admin", "node", "add", "pw1", "--uri", host.uri, "--domain-type", "qemu", "--pools", "pwnet",
                   "--memory", "8192", "--vcpus", "4")
        aki = c.cli_json("admin", "image", "import", "pw-kernel", str(guest.kernel), "--kind", "kernel",
                         "--public")["image_id"]
        ari = c.cli_json("admin", "image", "import", "pw-initrd", str(guest.initrd), "--kind", "ramdisk",
                         "--public")["image_id"]
        c.ids["ami"] = c.cli_json("admin", "image", "import", "pw-disk", str(guest.disk), "--kernel", aki,
                                  "--ramdisk", ari, "--public")["image_id"]
        # the node enforces security groups: let its side of the pool network reach the guest's HTTP
        c.ec2.authorize_security_group_ingress(GroupName="default", IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.99.8.1/32"}]}])
        yield c
    finally:
        server.stop()
        host.stop()


def test_a_hibernation_ready_busy_guest_boots_and_counts(cloud: Cloud) -> None:
    res = cloud.ec2.run_instances(ImageId=cloud.ids["ami"], MinCount=1, MaxCount=1, InstanceType="t2.micro",
                                  HibernationOptions={"Configured": True}, UserData="EC2GW-BUSY\n")
    iid = cloud.ids["busy"] = res["Instances"][0]["InstanceId"]
    inst = cloud.wait_state(iid, "running")
    assert inst["HibernationOptions"] == {"Configured": True}
    cloud.ids["boot"] = cloud.wait_console(iid, r"EC2GW-BOOT-ID (\S+)").group(1)
    cloud.wait_console(iid, r"EC2GW-BUSY-START")
    pid = cloud.host.qemu_pid(iid)
    assert pid is not None, f"no QEMU process runs {iid}"
    # the machine is shared: give this QEMU the priority that lets a busy guest have its core, so
    # the figure below measures the guest and not the machine's load
    os.setpriority(os.PRIO_PROCESS, pid, -10)
    for task in os.listdir(f"/proc/{pid}/task"):
        os.setpriority(os.PRIO_PROCESS, int(task), -10)
    cloud.ids["busy_since"] = datetime.now(UTC).isoformat()
    cloud.cpu_mark = (time.monotonic(), _cpu_seconds(pid))
    cloud.wait_console(iid, r"EC2GW-COUNTER 3\b", 30)


def test_a_busy_guest_shows_cpu_utilization_above_half(cloud: Cloud) -> None:
    """`aws cloudwatch get-metric-statistics` over the minutes after the busy loop began: each
    minute's average (samples every 2 s) agrees with the CPU time /proc gave the guest's QEMU, and
    one of them is above 50 %. Up to three minutes are read: on this shared machine another
    engineer's guests may hold both cores for a minute."""
    iid = cloud.ids["busy"]
    first = datetime.fromisoformat(cloud.ids["busy_since"]) + timedelta(seconds=5)  # the boot is over

    def stats(start: datetime, end: datetime) -> list[dict[str, Any]]:
        out = cloud.server.aws("cloudwatch", "get-metric-statistics", "--namespace", "AWS/EC2",
                               "--metric-name", "CPUUtilization", "--dimensions", f"Name=InstanceId,Value={iid}",
                               "--start-time", start.isoformat(), "--end-time", end.isoformat(), "--period", "60",
                               "--statistics", "Average", "Maximum", "Minimum", "SampleCount", creds=cloud.user)
        return list(json.loads(out.stdout)["Datapoints"])

    pid = cloud.host.qemu_pid(iid)
    assert pid is not None
    mark, seen = cloud.cpu_mark, []
    for minute in range(3):
        start = first + timedelta(seconds=60 * minute)
        end = start + timedelta(seconds=60)
        # the minute fills up: wait until it is over (and its last sample stored)
        over = end + timedelta(seconds=4)
        wait_for(f"minute {minute} of the busy loop", lambda t=over: datetime.now(UTC) > t, 75, 1)
        now = (time.monotonic(), _cpu_seconds(pid))
        host_share = 100.0 * (now[1] - mark[1]) / (now[0] - mark[0])  # what the machine gave its QEMU
        mark = now
        points = stats(start, end)
        assert len(points) == 1, points
        point = points[0]
        assert point["Unit"] == "Percent" and point["SampleCount"] >= 10 and point["Maximum"] <= 100.0, point
        assert abs(point["Average"] - host_share) < 20.0, f"CPUUtilization {point} against {host_share:.1f} % in /proc"
        seen.append(f"{point['Average']:.1f} % (/proc: {host_share:.1f} %)")
        if point["Average"] > 50.0:
            break
    else:
        raise AssertionError(f"a guest kept busy never averaged above 50 % in a minute: {', '.join(seen)}; "
                             f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    other = cloud.server.client("cloudwatch", cloud.server.make_user("power-other"))
    got = other.get_metric_statistics(Namespace="AWS/EC2", MetricName="CPUUtilization", StartTime=first, EndTime=end,
                                      Period=60, Statistics=["Average"], Dimensions=[{"Name": "InstanceId", "Value": iid}])
    assert got["Datapoints"] == []  # another user reads nothing of it


def test_pause_stops_the_counter_and_resume_continues_it(cloud: Cloud) -> None:
    iid = cloud.ids["busy"]
    assert cloud.instance_status(iid) == "ok"
    out = cloud.cli_json("admin", "instance", "pause", iid)
    assert out == {"instance_id": iid, "paused": True, "changed": True}
    assert cloud.domain_state(iid) == libvirt.VIR_DOMAIN_PAUSED
    time.sleep(1.0)  # a line being written as the pause came has landed
    before = cloud.counters(iid)
    time.sleep(6.0)
    assert cloud.counters(iid) == before, "the counter went on while the guest was paused"
    assert cloud.instance(iid)["State"]["Name"] == "running"
    assert cloud.instance_status(iid) == "impaired"
    assert cloud.cli_json("admin", "instance", "resume", iid)["changed"] is True
    last = before[-1]
    cloud.wait_console(iid, rf"EC2GW-COUNTER {last + 3}\b", 30)
    after = cloud.counters(iid)
    assert after[len(before):len(before) + 3] == [last + 1, last + 2, last + 3]  # it went on, no gap, no restart
    assert cloud.instance_status(iid) == "ok"


def test_hibernate_and_start_keep_the_boot_and_the_counter(cloud: Cloud) -> None:
    iid, boot = cloud.ids["busy"], cloud.ids["boot"]
    ip = cloud.instance(iid)["PrivateIpAddress"]
    out = json.loads(cloud.server.aws("ec2", "stop-instances", "--instance-ids", iid, "--hibernate",
                                      creds=cloud.user).stdout)
    assert out["StoppingInstances"][0]["CurrentState"]["Name"] == "stopping"
    inst = cloud.wait_state(iid, "stopped", 120)
    assert inst["StateReason"]["Code"] == "Client.UserInitiatedHibernate"
    assert cloud.domain_state(iid) == libvirt.VIR_DOMAIN_SHUTOFF and cloud.saved(iid)
    node = cloud.cli_json("admin", "node", "show", "pw1")
    assert node["saved_state_mib"] == 1024  # the saved memory counts on the node: a t2.micro's, at most
    saved_at = cloud.counters(iid)[-1]
    mark = len(cloud.console(iid))
    time.sleep(5.0)  # time spent saved does not count for the guest
    cloud.ec2.start_instances(InstanceIds=[iid])
    cloud.wait_state(iid, "running", 120)
    cloud.wait_console(iid, r"EC2GW-COUNTER \d+", 60, after=mark)
    console = cloud.console(iid)
    assert f"EC2GW-BOOT-ID {boot}" in console[:mark]  # the log kept what came before the save
    resumed = [int(n) for n in COUNTER.findall(console[mark:])]
    assert saved_at < resumed[0] <= saved_at + 5, f"saved at {saved_at}, went on at {resumed[0]}"
    assert "EC2GW-GUEST-INIT" not in console[mark:] and "EC2GW-BOOT-ID" not in console[mark:]  # no new boot
    assert not cloud.saved(iid)
    status = wait_for("the guest's status page", lambda: cloud.host.http(ip, "/cgi-bin/status"), 30, 0.5)
    assert f"boot={boot}\n" in status and "StateReason" not in cloud.instance(iid)


def test_terminate_leaves_no_domain(cloud: Cloud) -> None:
    iid = cloud.ids["busy"]
    cloud.ec2.terminate_instances(InstanceIds=[iid])
    wait_for(f"{iid} terminated", lambda: cloud.instance(iid)["State"]["Name"] == "terminated", 60)
    assert iid not in cloud.host.domains()
