"""A real QEMU guest moved live between two REMOTE nodes with `ec2gw admin instance migrate`, and
back with `ec2gw admin node drain`.

Set-up: two simulated nodes (tests/netns.py, ``qemu=True``), each a libvirtd in network and mount
namespaces of its own, reached only over qemu+tcp at 10.77.X.1 and 10.77.X.2, each with its own
node storage directory (under its private /var/lib/libvirt), so the overlay really travels. Both
serve an isolated pool network. The guest is launched with boto3 on m1, then moved to m2 while it
runs: it keeps its boot id (no reboot), its address (its HTTP server answers on it from m2's
network, with the same boot id), its console (GetConsoleOutput still shows its first boot lines
and the counter going on), and m1 no longer runs it. Draining m2 brings it back to m1.
One guest; every wait has a timeout.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from backends.libvirt.testing import qemu_unavailable_reason
from ec2gw.compute import node_layout
from tests import netns
from tests.live import LiveServer
from tests.vmhost import build_guest, wait_for

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]

POOL_FILE = "none\nmg-a 10.99.12.10 10.99.12.1 10.99.12.255 255.255.255.0\n"
BOOT = 120.0  # seconds a TCG guest may take to its lease on a loaded 2-core machine
MOVE = 300.0


class Env:
    def __init__(self, server: LiveServer, sim: netns.SimulatedNodes) -> None:
        self.server, self.sim = server, sim
        self.ec2 = server.client("ec2")
        self.ids: dict[str, str] = {}

    def cli_json(self, *args: str, timeout: float = 120) -> Any:
        out = self.server.cli(*args, "--json", check=False, timeout=timeout)
        assert out.returncode == 0, f"ec2gw {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}\n{self.server.log()[-3000:]}"
        return json.loads(out.stdout)

    def node(self, name: str) -> netns.SimNode:
        return self.sim.nodes[int(name[-1]) - 1]

    def domains(self, name: str) -> dict[str, int]:
        conn = libvirt.open(self.node(name).qemu_uri)
        try:
            return {d.name(): d.state()[0] for d in conn.listAllDomains(0)}
        finally:
            conn.close()

    def volumes(self, name: str, pool: str) -> list[str]:
        conn = libvirt.open(self.node(name).qemu_uri)
        try:
            p = conn.storagePoolLookupByName(pool)
            p.refresh(0)
            return sorted(v.name() for v in p.listAllVolumes(0))
        finally:
            conn.close()

    def instance(self, iid: str) -> dict[str, Any]:
        return dict(self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0])

    def console(self, iid: str) -> str:
        return str(self.ec2.get_console_output(InstanceId=iid, Latest=True).get("Output") or "")

    def http_status(self, name: str, ip: str) -> str:
        """The guest's /cgi-bin/status as the node's own network reaches it ('' when no answer)."""
        res = subprocess.run(["ip", "netns", "exec", self.node(name).netns, "curl", "-s", "-m", "3",
                              f"http://{ip}/cgi-bin/status"], capture_output=True, text=True, timeout=10, check=False)
        return res.stdout if res.returncode == 0 else ""

    def counter(self, iid: str) -> int:
        found = re.findall(r"EC2GW-COUNTER (\d+)", self.console(iid))
        return int(found[-1]) if found else -1


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    reason = netns.unavailable_reason() or qemu_unavailable_reason()
    if reason:
        pytest.fail(f"remote QEMU nodes cannot run here: {reason}")
    guest = build_guest()
    root = Path(tmp_path_factory.mktemp("vmmig"))
    sim = netns.SimulatedNodes(2, root / "nodes", qemu=True)
    storage = f"/var/lib/libvirt/ec2gw-{sim.token}"  # each node has its own /var/lib/libvirt
    server = LiveServer(root / "data", env={"EC2GW_NODE_STORAGE_DIR": storage, "EC2GW_STOP_TIMEOUT": "5",
                                            "EC2GW_WORKER_INTERVAL": "0.1"})
    try:
        sim.start()
        server.start()
        e = Env(server, sim)
        (root / "pool.txt").write_text(POOL_FILE)
        e.cli_json("admin", "pool", "add", "mgnet", str(root / "pool.txt"), "--network-mode", "isolated")
        for n in sim.nodes:
            e.cli_json("admin", "node", "add", f"m{n.index}", "--uri", n.qemu_uri, "--domain-type", "qemu",
                       "--pools", "mgnet", "--memory", "4096", "--vcpus", "2")
        aki = e.cli_json("admin", "image", "import", "mg-kernel", str(guest.kernel), "--kind", "kernel")["image_id"]
        ari = e.cli_json("admin", "image", "import", "mg-initrd", str(guest.initrd), "--kind", "ramdisk")["image_id"]
        e.ids["ami"] = e.cli_json("admin", "image", "import", "mg-disk", str(guest.disk), "--kernel", aki,
                                  "--ramdisk", ari)["image_id"]
        yield e
    finally:
        server.stop()
        sim.stop()


def _boot_id(text: str) -> str:
    found = re.findall(r"EC2GW-BOOT-ID (\S+)", text)
    assert len(set(found)) == 1, f"one boot expected, found boot ids {found}"
    return found[0]


def test_a_running_guest_moves_live_and_keeps_its_boot_address_and_console(env: Env) -> None:
    env.cli_json("admin", "node", "update", "m2", "--inactive")  # launch on m1
    # the nodes enforce security groups: the pool network's host side may reach the guest's HTTP
    # port, on either node (the instance's filters are defined on the destination before it moves)
    env.ec2.authorize_security_group_ingress(GroupName="default", IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.99.12.1/32"}]}])
    iid = env.ec2.run_instances(ImageId=env.ids["ami"], MinCount=1, MaxCount=1,
                                InstanceType="t2.micro")["Instances"][0]["InstanceId"]
    env.ids["inst"] = iid
    env.cli_json("admin", "node", "update", "m2", "--active")
    wait_for(f"{iid} running", lambda: env.instance(iid)["State"]["Name"] == "running", BOOT)
    ip = env.instance(iid)["PrivateIpAddress"]
    assert ip == "10.99.12.10"
    wait_for(f"{iid} ready", lambda: "EC2GW-READY" in env.console(iid), BOOT, 0.5)
    boot = _boot_id(env.console(iid))
    before = wait_for("the guest's HTTP status on m1", lambda: env.http_status("m1", ip), 60, 0.5)
    assert f"boot={boot}" in before
    counted = env.counter(iid)
    assert iid in env.domains("m1") and iid not in env.domains("m2")

    out = env.cli_json("admin", "instance", "migrate", iid, "--to", "m2", timeout=MOVE + 30)
    assert (out["state"], out["kind"], out["source"], out["destination"]) == ("done", "live", "m1", "m2"), out
    assert iid not in env.domains("m1"), "the source no longer runs (nor defines) it"
    assert env.domains("m2")[iid] == libvirt.VIR_DOMAIN_RUNNING
    wait_for("the source's overlay and seed removed (after the move is recorded)",
             lambda: not [v for v in env.volumes("m1", node_layout.INSTANCES_POOL) if v.startswith(iid)], 30, 0.5)
    listed = next(r for r in env.cli_json("admin", "instance", "list") if r["instance_id"] == iid)
    assert listed["node"] == "m2" and listed["migrating_to"] is None and listed["state"] == "running"
    inst = env.instance(iid)
    assert inst["State"]["Name"] == "running" and inst["PrivateIpAddress"] == ip
    after = wait_for("the guest's HTTP status on m2", lambda: env.http_status("m2", ip), 60, 0.5)
    assert f"boot={boot}" in after and f"{ip}/" in after, after
    wait_for("the counter going on", lambda: env.counter(iid) > counted, 30, 0.5)
    text = env.console(iid)
    assert "EC2GW-GUEST-INIT" in text and f"EC2GW-LEASE ip={ip} " in text, "the console kept its first lines"
    assert _boot_id(text) == boot
    counters = [int(n) for n in re.findall(r"EC2GW-COUNTER (\d+)", text)]
    assert counters == sorted(counters) and counters[0] == 0, "one boot, counting on without a restart"
    env.ids["boot"], env.ids["ip"] = boot, ip


def test_drain_moves_it_back(env: Env) -> None:
    iid, boot, ip = env.ids["inst"], env.ids["boot"], env.ids["ip"]
    out = env.cli_json("admin", "node", "drain", "m2", timeout=MOVE + 30)
    assert (out["moved"], out["left"], out["active"]) == (1, 0, False), out
    assert out["instances"][0]["destination"] == "m1" and out["instances"][0]["kind"] == "live"
    assert iid not in env.domains("m2") and env.domains("m1")[iid] == libvirt.VIR_DOMAIN_RUNNING
    status = wait_for("the guest's HTTP status on m1 again", lambda: env.http_status("m1", ip), 60, 0.5)
    assert f"boot={boot}" in status
    assert _boot_id(env.console(iid)) == boot
    env.ec2.terminate_instances(InstanceIds=[iid])
    wait_for(f"{iid} terminated", lambda: env.instance(iid)["State"]["Name"] == "terminated", 60)
    assert iid not in env.domains("m1")
