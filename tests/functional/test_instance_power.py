"""Pause (`ec2gw admin instance pause/resume`) and hibernation (StopInstances Hibernate=true) against
a live server whose node is a private libvirtd, through boto3, the aws CLI and the admin CLI.

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
from botocore.exceptions import ClientError

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

    def saved(self, iid: str) -> bool:
        conn = libvirt.open(self.node_uri)
        try:
            return bool(conn.lookupByName(iid).hasManagedSaveImage(0))
        finally:
            conn.close()

    def instance(self, iid: str) -> dict[str, Any]:
        return dict(self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0])

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

    def launch(self, **kw: Any) -> str:
        iid = str(self.ec2.run_instances(ImageId=self.image_id, MinCount=1, MaxCount=1,
                                         InstanceType="t2.micro", **kw)["Instances"][0]["InstanceId"])
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


# --------------------------------------------------------------------------- hibernation

def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_hibernation_is_configured_at_launch_and_shown(env: Env) -> None:
    out = env.server.aws("ec2", "run-instances", "--image-id", env.image_id, "--instance-type", "t2.micro",
                         "--hibernation-options", "Configured=true", creds=env.alice)
    iid = env.ids["h"] = json.loads(out.stdout)["Instances"][0]["InstanceId"]
    env.wait_state(iid, "running")
    assert env.instance(iid)["HibernationOptions"] == {"Configured": True}
    plain = env.ids["plain"] = env.launch()
    assert env.instance(plain)["HibernationOptions"] == {"Configured": False}
    types = {t["InstanceType"]: t["HibernationSupported"]
             for t in env.ec2.describe_instance_types(InstanceTypes=["t2.micro", "m1.xlarge"])["InstanceTypes"]}
    assert types == {"t2.micro": True, "m1.xlarge": False}


def test_hibernation_refusals(env: Env) -> None:
    with pytest.raises(ClientError) as exc:
        env.ec2.run_instances(ImageId=env.image_id, MinCount=1, MaxCount=1, InstanceType="m1.xlarge",
                              HibernationOptions={"Configured": True})
    assert _code(exc) == "UnsupportedHibernationConfiguration" and "m1.xlarge" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        env.ec2.stop_instances(InstanceIds=[env.ids["plain"]], Hibernate=True)
    assert _code(exc) == "UnsupportedHibernationConfiguration" and "without Hibernate" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        env.ec2.stop_instances(InstanceIds=[env.ids["h"]], Hibernate=True, Force=True)
    assert _code(exc) == "InvalidParameterCombination"
    # one instance that cannot hibernate refuses the whole request
    with pytest.raises(ClientError) as exc:
        env.ec2.stop_instances(InstanceIds=[env.ids["h"], env.ids["plain"]], Hibernate=True)
    assert _code(exc) == "UnsupportedHibernationConfiguration"
    assert env.state(env.ids["h"]) == "running" and env.state(env.ids["plain"]) == "running"
    env.ec2.terminate_instances(InstanceIds=[env.ids["plain"]])


def test_hibernate_saves_the_memory_and_start_restores_it(env: Env) -> None:
    iid = env.ids["h"]
    out = json.loads(env.server.aws("ec2", "stop-instances", "--instance-ids", iid, "--hibernate", creds=env.alice).stdout)
    assert out["StoppingInstances"][0]["CurrentState"]["Name"] == "stopping"
    env.wait_state(iid, "stopped")
    inst = env.instance(iid)
    assert inst["StateReason"]["Code"] == "Client.UserInitiatedHibernate"
    assert inst["HibernationOptions"] == {"Configured": True}
    assert env.domain_state(iid) == libvirt.VIR_DOMAIN_SHUTOFF and env.saved(iid)
    shown = json.loads(env.server.cli("admin", "node", "show", "tnode", "--json").stdout)
    assert shown["saved_state_mib"] == 1024  # a t2.micro's memory, at most, on the node's storage
    with pytest.raises(ClientError) as exc:
        env.ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t2.small"})
    assert _code(exc) == "IncorrectInstanceState" and "hibernated" in str(exc.value)
    time.sleep(6.0)  # a node check or two: a saved domain is no dead one
    assert env.state(iid) == "stopped" and env.saved(iid)
    env.ec2.start_instances(InstanceIds=[iid])
    env.wait_state(iid, "running")
    assert env.domain_state(iid) == libvirt.VIR_DOMAIN_RUNNING and not env.saved(iid)
    assert "StateReason" not in env.instance(iid)
    env.ec2.stop_instances(InstanceIds=[iid])  # an ordinary stop saves nothing
    env.wait_state(iid, "stopped")
    assert env.instance(iid)["StateReason"]["Code"] == "Client.UserInitiatedShutdown" and not env.saved(iid)
    env.ec2.start_instances(InstanceIds=[iid])
    env.wait_state(iid, "running")


def test_a_paused_instance_hibernates_and_comes_back_running(env: Env) -> None:
    iid = env.ids["h"]
    env.cli("pause", iid)
    env.ec2.stop_instances(InstanceIds=[iid], Hibernate=True)
    env.wait_state(iid, "stopped")
    assert env.saved(iid) and {r["instance_id"]: r for r in env.cli("list")}[iid]["paused"] is False
    env.ec2.start_instances(InstanceIds=[iid])
    env.wait_state(iid, "running")
    assert env.domain_state(iid) == libvirt.VIR_DOMAIN_RUNNING
    assert env.status(iid)["InstanceStatus"]["Status"] == "ok"


def test_a_domain_saved_on_the_node_is_a_hibernated_instance(env: Env) -> None:
    iid = env.ids["h"]
    conn = libvirt.open(env.node_uri)
    try:
        conn.lookupByName(iid).managedSave(0)
    finally:
        conn.close()
    env.wait_state(iid, "stopped")
    assert env.instance(iid)["StateReason"]["Code"] == "Client.UserInitiatedHibernate"
    env.ec2.start_instances(InstanceIds=[iid])
    env.wait_state(iid, "running")
    assert not env.saved(iid)


def test_terminating_a_hibernated_instance_removes_the_saved_state(env: Env) -> None:
    iid = env.ids["h"]
    env.ec2.stop_instances(InstanceIds=[iid], Hibernate=True)
    env.wait_state(iid, "stopped")
    assert env.saved(iid)
    env.ec2.terminate_instances(InstanceIds=[iid])
    env.wait_state(iid, "terminated")
    conn = libvirt.open(env.node_uri)
    try:
        assert iid not in [d.name() for d in conn.listAllDomains(0)]
    finally:
        conn.close()
