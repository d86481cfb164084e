"""`ec2gw admin instance migrate` and `ec2gw admin node drain` on libvirt's test driver.

Set-up (module scope): three simulated nodes running libvirt's test driver behind libvirtd over
TCP (tests/netns.py), so the test reads each node's domains as the service left them; a live
server of its own (registering nodes would take the shared server's implicit node away). n1 and
n2 are in us-east-1a, n3 in us-east-1b. Instances are launched through boto3 by user `mover`.

The test driver cannot migrate a running guest between connections (libvirt answers "p2p
migration is not supported by the source host", and virDomainMigrate3 is not implemented): the
service says so and leaves the guest where it was. Stopped instances move cold: their domain is
defined on the destination and undefined on the source, and their attached volumes move along. The live path runs on real QEMU nodes in
test_vm_migrate.py. Tests run in file order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import pytest
from click.testing import CliRunner

from ec2gw.cli import admin as _admin  # noqa: F401  (registers the commands)
from ec2gw.cli.main import cli
from ec2gw.compute import volume_store
from tests import netns
from tests.live import Creds, LiveServer
from tests.vmhost import wait_for

pytestmark = [pytest.mark.timeout(300)]

TEST_DRIVER_REFUSAL = "libvirt's test driver, which cannot migrate a running guest"


@dataclass
class Env:
    sim: netns.SimulatedNodes
    server: LiveServer
    ec2: Any
    image_id: str
    ids: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str) -> Any:
        return CliRunner().invoke(cli, ["--data-dir", str(self.server.data_dir), "admin", *args], catch_exceptions=False)

    def ok(self, *args: str) -> Any:
        res = self.run(*args, "--json")
        assert res.exit_code == 0, f"{args}: {res.output}"
        return json.loads(res.stdout)

    def error(self, *args: str) -> str:
        res = self.run(*args)
        assert res.exit_code != 0, f"{args} should have failed: {res.output}"
        return str(res.stderr)

    def domains(self, node: str) -> dict[str, int]:
        """The node's domains but the test driver's own `test`."""
        conn = libvirt.open(self.sim.nodes[int(node[-1]) - 1].uri)
        try:
            return {d.name(): d.state()[0] for d in conn.listAllDomains(0) if d.name() != "test"}
        finally:
            conn.close()

    def volumes(self, node: str) -> list[str]:
        """The volumes in the node's EBS volume pool ([] before it has one)."""
        conn = libvirt.open(self.sim.nodes[int(node[-1]) - 1].uri)
        try:
            try:
                pool = conn.storagePoolLookupByName(volume_store.VOLUMES_POOL)
            except libvirt.libvirtError:
                return []
            return sorted(v.name() for v in pool.listAllVolumes(0))
        finally:
            conn.close()

    def domain_xml(self, node: str, name: str) -> str:
        conn = libvirt.open(self.sim.nodes[int(node[-1]) - 1].uri)
        try:
            return str(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        finally:
            conn.close()

    def attachment(self, vid: str) -> tuple[str, str] | None:
        atts = self.ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0].get("Attachments") or []
        return (atts[0]["InstanceId"], atts[0]["State"]) if atts else None

    def listed(self, iid: str) -> dict[str, Any]:
        return next(r for r in self.ok("instance", "list") if r["instance_id"] == iid)

    def state(self, iid: str) -> str:
        return str(self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"])

    def launch(self) -> str:
        iid = str(self.ec2.run_instances(ImageId=self.image_id, MinCount=1, MaxCount=1,
                                         InstanceType="t2.micro")["Instances"][0]["InstanceId"])
        wait_for(f"{iid} running", lambda: self.state(iid) == "running", 60)
        return iid

    def stop(self, iid: str) -> None:
        self.ec2.stop_instances(InstanceIds=[iid])
        wait_for(f"{iid} stopped", lambda: self.state(iid) == "stopped", 60)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    reason = netns.unavailable_reason()
    if reason:
        pytest.fail(reason)
    root = Path(tmp_path_factory.mktemp("migrate"))
    sim = netns.SimulatedNodes(3, root / "nodes")
    server = LiveServer(root / "data", env={"EC2GW_WORKER_INTERVAL": "0.1"})
    try:
        sim.start()
        server.start()
        e = Env(sim, server, None, "")
        for node, zone in (("n1", "us-east-1a"), ("n2", "us-east-1a"), ("n3", "us-east-1b")):
            e.ok("node", "add", node, "--uri", sim.nodes[int(node[-1]) - 1].uri, "--zone", zone, "--vcpus", "4",
                 "--memory", "4096")
        img = root / "img.raw"
        img.write_bytes(b"\0" * 65536)
        e.image_id = e.ok("image", "import", "mig-base", str(img), "--public")["image_id"]
        mover = e.ok("user", "add", "mover")
        e.ec2 = server.client("ec2", Creds("mover", mover["access_key_id"], mover["secret_access_key"]))
        # everything starts on n1: n2 and n3 take nothing until the moves
        e.ok("node", "update", "n2", "--inactive")
        e.ok("node", "update", "n3", "--inactive")
        e.ids["run"], e.ids["cold"] = e.launch(), e.launch()
        e.ok("node", "update", "n2", "--active")
        e.ok("node", "update", "n3", "--active")
        yield e
    finally:
        server.stop()
        sim.stop()


def test_instances_start_on_n1(env: Env) -> None:
    assert {env.listed(i)["node"] for i in env.ids.values()} == {"n1"}
    assert set(env.domains("n1")) == set(env.ids.values()) and env.domains("n2") == {}


def test_a_running_guest_on_the_test_driver_is_not_faked_away(env: Env) -> None:
    iid = env.ids["run"]
    err = env.error("instance", "migrate", iid, "--to", "n2")
    assert TEST_DRIVER_REFUSAL in err and "stop the instance to move it cold" in err
    assert env.listed(iid)["node"] == "n1" and env.state(iid) == "running"
    assert env.domains("n1")[iid] == libvirt.VIR_DOMAIN_RUNNING and iid not in env.domains("n2")


def test_refusals_say_what_to_do(env: Env) -> None:
    iid = env.ids["cold"]
    assert 'Invalid id: "i-zzz"' in env.error("instance", "migrate", "i-zzz")
    assert "no instance i-0123456789abcdef0" in env.error("instance", "migrate", "i-0123456789abcdef0")
    assert "already runs on node n1" in env.error("instance", "migrate", iid, "--to", "n1")
    assert "zone us-east-1b" in env.error("instance", "migrate", iid, "--to", "n3")
    assert "there is no node 'nope'; registered nodes: n1, n2, n3" in env.error("instance", "migrate", iid, "--to", "nope")
    err = env.error("instance", "migrate", iid, "--to", "n2")  # running: the test driver cannot
    assert TEST_DRIVER_REFUSAL in err
    assert env.listed(iid)["node"] == "n1" and env.listed(iid)["migrating_to"] is None


def test_no_room_on_the_destination(env: Env) -> None:
    iid = env.ids["cold"]
    env.stop(iid)
    env.ok("node", "update", "n2", "--memory", "512")
    err = env.error("instance", "migrate", iid, "--to", "n2")
    assert "node n2 has no room for" in err and "1024 MiB" in err and "0/512 MiB" in err
    err = env.error("instance", "migrate", iid)  # no --to: n2 is the only other node of the zone
    assert "no other node can take" in err and "n2 lack room" in err
    env.ok("node", "update", "n2", "--memory", "4096")
    env.ok("node", "update", "n2", "--inactive")
    assert "node n2 is inactive" in env.error("instance", "migrate", iid, "--to", "n2")
    env.ok("node", "update", "n2", "--active")


def test_a_stopped_instance_moves_cold_and_starts_on_its_new_node(env: Env) -> None:
    iid = env.ids["cold"]
    out = env.ok("instance", "migrate", iid)  # the only candidate: n2
    assert (out["state"], out["kind"], out["source"], out["destination"]) == ("done", "cold", "n1", "n2")
    assert out["error"] is None and out["seconds"] >= 0
    row = env.listed(iid)
    assert row["node"] == "n2" and row["migrating_to"] is None and row["state"] == "stopped"
    assert iid not in env.domains("n1")
    assert env.domains("n2")[iid] == libvirt.VIR_DOMAIN_SHUTOFF, "defined there, not started"
    nodes = {n["name"]: n for n in env.ok("node", "list")}
    assert nodes["n1"]["used_memory_mib"] == 1024 and nodes["n2"]["used_memory_mib"] == 1024
    env.ec2.start_instances(InstanceIds=[iid])
    wait_for(f"{iid} running", lambda: env.state(iid) == "running", 60)
    assert env.domains("n2")[iid] == libvirt.VIR_DOMAIN_RUNNING and iid not in env.domains("n1")
    text = env.run("instance", "list").stdout
    assert iid in text and " n2 " in text


def test_an_attached_volume_moves_with_its_instance(env: Env) -> None:
    """A stopped instance's attached EBS volume moves with it, both ways: the volume's storage and
    record follow to the destination, the domain there has its disk, the attachment stays; a
    destination without volume room for it is refused."""
    iid = env.ids["cold"]  # running on n2
    env.ok("node", "update", "n1", "--inactive")  # the volume is made on n2 (test nodes cannot stream one across)
    try:
        vid = env.ec2.create_volume(Size=1, AvailabilityZone="us-east-1a")["VolumeId"]
    finally:
        env.ok("node", "update", "n1", "--active")
    env.ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    assert env.volumes("n2") == [f"{vid}.qcow2"] and env.volumes("n1") == []
    env.ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    wait_for(f"{vid} attached", lambda: env.attachment(vid) == (iid, "attached"), 60)
    env.stop(iid)
    env.ok("node", "update", "n1", "--volume-gb", "0")
    err = env.error("instance", "migrate", iid, "--to", "n1")
    assert "node n1 has no room for the 1 GiB of" in err and "--volume-gb" in err
    env.ok("node", "update", "n1", "--volume-gb", "10")
    for there, back in (("n1", "n2"), ("n2", "n1")):
        out = env.ok("instance", "migrate", iid, "--to", there)
        assert (out["state"], out["kind"], out["destination"]) == ("done", "cold", there), out
        assert env.volumes(there) == [f"{vid}.qcow2"] and env.volumes(back) == []
        assert f"/volumes/{vid}.qcow2" in env.domain_xml(there, iid), "the domain there has the volume's disk"
        shown = {n: env.ok("node", "show", n)["volume_storage"] for n in (there, back)}
        assert (shown[there]["volumes"], shown[back]["volumes"]) == (1, 0), shown
        assert env.attachment(vid) == (iid, "attached")
    env.ec2.start_instances(InstanceIds=[iid])
    wait_for(f"{iid} running", lambda: env.state(iid) == "running", 60)
    assert env.domains("n2")[iid] == libvirt.VIR_DOMAIN_RUNNING


def test_drain_moves_stopped_instances_and_reports_what_stays(env: Env) -> None:
    run, cold = env.ids["run"], env.ids["cold"]
    env.stop(cold)
    env.ok("instance", "migrate", cold, "--to", "n1")  # back to n1, still stopped
    res = env.run("node", "drain", "n1", "--json")
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    assert (out["node"], out["active"], out["moved"], out["left"]) == ("n1", False, 1, 1)
    by_id = {r["instance_id"]: r for r in out["instances"]}
    assert by_id[cold]["moved"] and by_id[cold]["kind"] == "cold" and by_id[cold]["destination"] == "n2"
    assert not by_id[run]["moved"] and TEST_DRIVER_REFUSAL in by_id[run]["error"]
    assert not {n["name"]: n for n in env.ok("node", "list")}["n1"]["active"]
    assert env.listed(cold)["node"] == "n2" and env.listed(run)["node"] == "n1"
    assert set(env.domains("n1")) == {run} and cold in env.domains("n2")
    # the text summary names each instance; a drained node is left inactive and can be drained again
    env.stop(run)
    res = env.run("node", "drain", "n1")
    assert res.exit_code == 0, res.output
    assert "node n1 is inactive; 1 of 1 instance(s) moved" in res.stdout and f"{run}: cold to n2" in res.stdout
    assert env.domains("n1") == {} and set(env.domains("n2")) == {run, cold}


def test_a_drained_node_takes_no_moves(env: Env) -> None:
    assert "node n1 is inactive" in env.error("instance", "migrate", env.ids["run"], "--to", "n1")
    assert "there is no node 'n9'" in env.error("node", "drain", "n9")
