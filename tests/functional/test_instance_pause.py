"""`ec2gw admin instance pause/resume` against a live server whose node is a private libvirtd.

The node is libvirt's test driver behind a libvirtd of its own (test+unix:///default, whose state
every connection shares), so the test can ask the node itself what state the domain is in. The tests run in order and share one instance.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from backends.libvirt.testing import PrivateLibvirtd
from tests.functional.tools import wait_for
from tests.live import Creds, LiveServer

pytestmark = pytest.mark.timeout(180)


class Env:
    def __init__(self, server: LiveServer, node_uri: str, alice: Creds, image_id: str) -> None:
        self.server, self.node_uri, self.alice, self.image_id = server, node_uri, alice, image_id
        self.ec2 = server.client("ec2", alice)
        self.ids: dict[str, str] = {}

    def cli(self, *args: str) -> Any:
        out = self.server.cli("admin", "instance", *args, "--json", check=False, timeout=90)
        assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    def cli_fails(self, *args: str) -> str:
        out = self.server.cli("admin", "instance", *args, check=False, timeout=90)
        assert out.returncode == 1, f"{args} should fail: {out.stdout}\n{out.stderr}"
        return out.stderr

    def domain_state(self, iid: str) -> int:
        conn = libvirt.open(self.node_uri)
        try:
            return int(conn.lookupByName(iid).info()[0])
        finally:
            conn.close()

    def status(self, iid: str) -> dict[str, Any]:
        got = self.ec2.describe_instance_status(InstanceIds=[iid], IncludeAllInstances=True)["InstanceStatuses"]
        return dict(got[0])

    def state(self, iid: str) -> str:
        return str(self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"])

    def wait_state(self, iid: str, state: str) -> None:
        wait_for(f"{iid} {state}", lambda: self.state(iid) == state, 60)

    def launch(self) -> str:
        iid = str(self.ec2.run_instances(ImageId=self.image_id, MinCount=1, MaxCount=1,
                                         InstanceType="t2.micro")["Instances"][0]["InstanceId"])
        self.wait_state(iid, "running")
        return iid


@pytest.fixture(scope="module")
def env(libvirtd: PrivateLibvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("pause")
    node_uri = libvirtd.uri("test", "/default")  # one node shared by every connection to the daemon
    server = LiveServer(root / "data", env={"EC2GW_WORKER_INTERVAL": "0.1"}).start()
    try:
        server.cli("admin", "node", "add", "tnode", "--uri", node_uri, "--json")
        img = root / "base.img"
        img.write_bytes(b"\0" * (1 << 20))
        image_id = json.loads(server.cli("admin", "image", "import", "pause-image", str(img), "--public",
                                         "--json").stdout)["image_id"]
        yield Env(server, node_uri, server.make_user("alice"), image_id)
    finally:
        server.stop()


def test_pause_keeps_it_running_in_ec2_and_impaired(env: Env) -> None:
    iid = env.ids["a"] = env.launch()
    assert env.status(iid)["InstanceStatus"]["Status"] == "ok"
    out = env.cli("pause", iid)
    assert out == {"instance_id": iid, "paused": True, "changed": True}
    assert env.domain_state(iid) == libvirt.VIR_DOMAIN_PAUSED
    assert env.state(iid) == "running"
    st = env.status(iid)
    assert st["InstanceState"]["Name"] == "running"
    assert st["InstanceStatus"]["Status"] == "impaired"
    assert st["InstanceStatus"]["Details"][0]["Status"] == "failed" and "ImpairedSince" in st["InstanceStatus"]["Details"][0]
    assert st["SystemStatus"]["Status"] == "ok"
    # the aws CLI sees the same, and filters on it
    aws = json.loads(env.server.aws("ec2", "describe-instance-status", "--filters",
                                    "Name=instance-status.status,Values=impaired", creds=env.alice).stdout)
    assert [s["InstanceId"] for s in aws["InstanceStatuses"]] == [iid]
    listed = {r["instance_id"]: r for r in env.cli("list")}
    assert listed[iid]["paused"] is True and listed[iid]["state"] == "running"
    assert "paused" in env.server.cli("admin", "instance", "list").stdout
    again = env.cli("pause", iid)  # already paused: nothing to do
    assert again["changed"] is False and env.domain_state(iid) == libvirt.VIR_DOMAIN_PAUSED


def test_the_reconciler_leaves_a_paused_instance_running_and_paused(env: Env) -> None:
    iid = env.ids["a"]
    time.sleep(6.0)  # the worker checks its nodes every 5 s
    assert env.state(iid) == "running" and env.status(iid)["InstanceStatus"]["Status"] == "impaired"
    assert env.domain_state(iid) == libvirt.VIR_DOMAIN_PAUSED
    assert f"the domain of {iid}" not in env.server.log()


def test_resume_runs_it_again(env: Env) -> None:
    iid = env.ids["a"]
    assert env.cli("resume", iid) == {"instance_id": iid, "paused": False, "changed": True}
    assert env.domain_state(iid) == libvirt.VIR_DOMAIN_RUNNING
    assert env.status(iid)["InstanceStatus"]["Status"] == "ok"
    assert env.cli("resume", iid)["changed"] is False
    assert env.cli("list")[0]["paused"] is False


def test_a_pause_made_on_the_node_is_seen(env: Env) -> None:
    iid = env.ids["a"]
    conn = libvirt.open(env.node_uri)
    try:
        conn.lookupByName(iid).suspend()
    finally:
        conn.close()
    wait_for("the status check impaired", lambda: env.status(iid)["InstanceStatus"]["Status"] == "impaired", 30)
    assert env.state(iid) == "running"
    env.cli("resume", iid)
    assert env.domain_state(iid) == libvirt.VIR_DOMAIN_RUNNING


def test_the_owner_may_stop_or_reboot_a_paused_instance(env: Env) -> None:
    iid = env.ids["a"]
    env.cli("pause", iid)
    env.ec2.reboot_instances(InstanceIds=[iid])
    wait_for("a reboot that ends the pause", lambda: env.status(iid)["InstanceStatus"]["Status"] == "ok", 30)
    assert env.domain_state(iid) == libvirt.VIR_DOMAIN_RUNNING
    env.cli("pause", iid)
    env.ec2.stop_instances(InstanceIds=[iid])
    env.wait_state(iid, "stopped")
    assert env.domain_state(iid) == libvirt.VIR_DOMAIN_SHUTOFF
    assert env.status(iid)["InstanceStatus"]["Status"] == "not-applicable"
    env.ec2.start_instances(InstanceIds=[iid])
    env.wait_state(iid, "running")
    assert env.status(iid)["InstanceStatus"]["Status"] == "ok"
    assert env.cli("list")[0]["paused"] is False


def test_refusals(env: Env) -> None:
    iid = env.ids["a"]
    env.ec2.stop_instances(InstanceIds=[iid])
    env.wait_state(iid, "stopped")
    err = env.cli_fails("pause", iid)
    assert "is stopped; only a running instance can be paused" in err
    assert "only a running instance can be resumed" in env.cli_fails("resume", iid)
    assert "no instance i-0123456789abcdef0" in env.cli_fails("pause", "i-0123456789abcdef0")
    assert "admin instance list" in env.cli_fails("pause", "not-an-id")
    env.ec2.terminate_instances(InstanceIds=[iid])
    env.wait_state(iid, "terminated")
    assert "is terminated" in env.cli_fails("resume", iid)


def test_a_paused_instance_can_be_terminated(env: Env) -> None:
    iid = env.launch()
    env.cli("pause", iid)
    env.ec2.terminate_instances(InstanceIds=[iid])
    env.wait_state(iid, "terminated")
    conn = libvirt.open(env.node_uri)
    try:
        assert iid not in [d.name() for d in conn.listAllDomains(0)]
    finally:
        conn.close()


def test_without_a_worker_the_pause_stays_recorded(env: Env, tmp_path: Path) -> None:
    iid = env.launch()
    keep = libvirt.open(env.node_uri)  # the test driver forgets its node when its last connection closes
    env.server.stop()
    try:
        out = env.server.cli("admin", "instance", "pause", iid, "--timeout", "1", check=False)
        assert out.returncode == 1 and "not carried out within 1 s" in out.stderr and "ec2gw serve" in out.stderr
    finally:
        env.server.start()
    try:
        wait_for("the recorded pause carried out", lambda: env.domain_state(iid) == libvirt.VIR_DOMAIN_PAUSED, 60)
        env.cli("resume", iid)
    finally:
        keep.close()
