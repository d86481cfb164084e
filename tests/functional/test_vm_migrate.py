"""A real QEMU guest moved live between two REMOTE nodes with `ec2gw admin instance migrate`, and
back with `ec2gw admin node drain`.

Set-up: two simulated nodes (tests/netns.py, ``qemu=True``), each a libvirtd in network and mount
namespaces of its own, reached only over qemu+tcp at 10.77.X.1 and 10.77.X.2, each with its own
node storage directory (under its private /var/lib/libvirt), so the overlay really travels. Both
serve an isolated pool network. The guest is launched with boto3 on m1, then moved to m2 while it
runs: it keeps its boot id (no reboot), its address (its HTTP server answers on it from m2's
network, with the same boot id), its console (GetConsoleOutput still shows its first boot lines
and the counter going on), and m1 no longer runs it. Draining m2 brings it back to m1.

Then an EBS volume on the same two nodes (issue 16): the guest sees it hot-plugged, writes a marker
on it, sees it grow; detached, it is attached to a second guest on m2, so its bytes move from m1's
volume pool to m2's through libvirt's download and upload streams, and the second guest reads the
marker; a snapshot of it (taken while attached) makes a new volume that the first guest reads the
marker from. A live move of that guest to m2 while m2 refuses the migration streams fails and leaves
it running on m1 with its volume, nothing of it on m2; then it moves, volume attached, and reads
the marker on m2.
Last, an instance of an EBS-backed image (made from a snapshot of the second guest's root disk)
with a data volume moves live to m2 and, stopped, cold back to m1, its volumes with it, and boots
there from its root volume. At most two guests; every wait has a timeout; the guests are terminated at the end
(and by the fixture, should a test fail before).
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
from ec2gw.compute import node_layout, volume_store
from tests import netns
from tests.live import LiveServer
from tests.vmhost import build_guest, wait_for

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]

POOL_FILE = """none
mg-a 10.99.12.10 10.99.12.1 10.99.12.255 255.255.255.0
mg-b 10.99.12.11 10.99.12.1 10.99.12.255 255.255.255.0
mg-c 10.99.12.12 10.99.12.1 10.99.12.255 255.255.255.0
"""
BOOT = 120.0  # seconds a TCG guest may take to its lease on a loaded 2-core machine
MOVE = 300.0
FAST = {"Delay": 1, "MaxAttempts": 120}  # boto3 waiters: at most two minutes
GIB_SECTORS = 1 << 21
#: the ports a destination's libvirtd gives the incoming memory and disk streams
MIGRATION_PORTS = "49152:49215"


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
        """Names of the volumes in ``pool`` of node ``name`` ([] when the node has no such pool yet)."""
        conn = libvirt.open(self.node(name).qemu_uri)
        try:
            try:
                p = conn.storagePoolLookupByName(pool)
            except libvirt.libvirtError:
                return []
            p.refresh(0)
            return sorted(v.name() for v in p.listAllVolumes(0))
        finally:
            conn.close()

    def node_run(self, name: str, *cmd: str) -> None:
        """Run ``cmd`` in node ``name``'s network namespace (which the test made)."""
        subprocess.run(["ip", "netns", "exec", self.node(name).netns, *cmd], check=True, capture_output=True, timeout=30)

    def instance_node(self, iid: str) -> str:
        return str(next(r for r in self.cli_json("admin", "instance", "list") if r["instance_id"] == iid)["node"])

    def instance(self, iid: str) -> dict[str, Any]:
        return dict(self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0])

    def console(self, iid: str) -> str:
        return str(self.ec2.get_console_output(InstanceId=iid, Latest=True).get("Output") or "")

    def http(self, name: str, ip: str, path: str) -> str:
        """GET http://ip/path from node ``name``'s own network, as its host side reaches the guest
        ('' when no answer)."""
        res = subprocess.run(["ip", "netns", "exec", self.node(name).netns, "curl", "-s", "-f", "-m", "3",
                              f"http://{ip}{path}"], capture_output=True, text=True, timeout=10, check=False)
        return res.stdout if res.returncode == 0 else ""

    def http_status(self, name: str, ip: str) -> str:
        """The guest's /cgi-bin/status as the node's own network reaches it ('' when no answer)."""
        return self.http(name, ip, "/cgi-bin/status")

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
        # the nodes enforce security groups: the pool network's host side may reach the guests' HTTP
        # port, on either node (an instance's filters are defined on the destination before it moves)
        e.ec2.authorize_security_group_ingress(GroupName="default", IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.99.12.1/32"}]}])
        yield e
        left = [i["InstanceId"] for r in e.ec2.describe_instances()["Reservations"] for i in r["Instances"]
                if i["State"]["Name"] != "terminated"]
        if left:  # a test failed before its own clean-up: end its guests through the service
            e.ec2.terminate_instances(InstanceIds=left)
            wait_for("every guest terminated", lambda: not any(
                i["State"]["Name"] != "terminated" for r in e.ec2.describe_instances(InstanceIds=left)["Reservations"]
                for i in r["Instances"]), 120)
    finally:
        server.stop()
        sim.stop()


def _boot_id(text: str) -> str:
    found = re.findall(r"EC2GW-BOOT-ID (\S+)", text)
    assert len(set(found)) == 1, f"one boot expected, found boot ids {found}"
    return found[0]


def test_a_running_guest_moves_live_and_keeps_its_boot_address_and_console(env: Env) -> None:
    env.cli_json("admin", "node", "update", "m2", "--inactive")  # launch on m1
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
    assert counters == list(range(len(counters))), "one boot, counting on without a restart, no line lost in the move"
    env.ids["boot"], env.ids["ip"] = boot, ip


def test_drain_moves_it_back(env: Env) -> None:
    iid, boot, ip = env.ids["inst"], env.ids["boot"], env.ids["ip"]
    out = env.cli_json("admin", "node", "drain", "m2", timeout=MOVE + 30)
    assert (out["moved"], out["left"], out["active"]) == (1, 0, False), out
    assert out["instances"][0]["destination"] == "m1" and out["instances"][0]["kind"] == "live"
    assert iid not in env.domains("m2") and env.domains("m1")[iid] == libvirt.VIR_DOMAIN_RUNNING
    status = wait_for("the guest's HTTP status on m1 again", lambda: env.http_status("m1", ip), 60, 0.5)
    assert f"boot={boot}" in status
    text = env.console(iid)
    assert _boot_id(text) == boot
    counters = [int(n) for n in re.findall(r"EC2GW-COUNTER (\d+)", text)]
    assert counters == list(range(counters[0], counters[0] + len(counters))), "no line lost in either move"
    env.ids["on_m1"] = iid  # running on m1: the volume test's first guest


def _launch_on(env: Env, node: str, image: str | None = None) -> tuple[str, str]:
    """A guest launched on ``node`` (the other node inactive meanwhile), running with its HTTP server up."""
    other = "m2" if node == "m1" else "m1"
    env.cli_json("admin", "node", "update", other, "--inactive")
    try:
        iid = env.ec2.run_instances(ImageId=image or env.ids["ami"], MinCount=1, MaxCount=1,
                                    InstanceType="t2.micro")["Instances"][0]["InstanceId"]
    finally:
        env.cli_json("admin", "node", "update", other, "--active")
    wait_for(f"{iid} running", lambda: env.instance(iid)["State"]["Name"] == "running", BOOT)
    _console(env, iid, r"EC2GW-HTTPD port=80", BOOT)
    assert iid in env.domains(node)
    return iid, env.instance(iid)["PrivateIpAddress"]


def _console(env: Env, iid: str, pattern: str, timeout: float, after: int = 0) -> re.Match[str]:
    rx = re.compile(pattern)
    try:
        return wait_for(f"console of {iid} shows {pattern!r}", lambda: rx.search(env.console(iid), after), timeout, 0.5)
    except TimeoutError:
        raise AssertionError(f"{pattern!r} not on the console of {iid}:\n{env.console(iid)[-2000:]}\n"
                             f"server log:\n{env.server.log()[-4000:]}") from None


def _waiter(env: Env, name: str, **kw: Any) -> None:
    """A boto3 waiter; when it gives up, the volumes' state and the server log say why."""
    try:
        env.ec2.get_waiter(name).wait(WaiterConfig=FAST, **kw)
    except Exception as exc:
        vols = env.ec2.describe_volumes()["Volumes"]
        status = env.ec2.describe_volume_status()["VolumeStatuses"]
        raise AssertionError(f"{name} {kw}: {exc}\nvolumes: {vols}\nstatus: {status}\n"
                             f"server log:\n{env.server.log()[-4000:]}") from None


def _attached(env: Env, vid: str, iid: str) -> None:
    """AttachVolume's work done (the volume is in-use from the call on; its attachment says when the
    node did it); a failed attach leaves the volume available, and DescribeVolumeStatus says why."""
    def done() -> bool:
        vol = env.ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]
        if vol["State"] == "available":
            events = env.ec2.describe_volume_status(VolumeIds=[vid])["VolumeStatuses"][0]["Events"]
            raise AssertionError(f"attaching {vid} to {iid} failed: {events}\n{env.server.log()[-3000:]}")
        return any(a["State"] == "attached" and a["InstanceId"] == iid for a in vol.get("Attachments", []))
    wait_for(f"{vid} attached to {iid}", done, 120, 0.5)


def _sectors(env: Env, node: str, ip: str, dev: str) -> int | None:
    found = re.search(rf"\b{dev}:(\d+)", env.http(node, ip, "/cgi-bin/status"))
    return int(found.group(1)) if found else None


def test_a_volume_moves_between_nodes_with_its_marker_grows_and_snapshots(env: Env) -> None:
    ec2: Any = env.ec2
    pool = volume_store.VOLUMES_POOL
    env.cli_json("admin", "node", "update", "m2", "--active")  # the drain left it inactive
    one = env.ids.get("on_m1")
    if one is None or env.instance(one)["State"]["Name"] != "running" or one not in env.domains("m1"):
        one, ip1 = _launch_on(env, "m1")
    else:
        ip1 = env.instance(one)["PrivateIpAddress"]
    two, ip2 = _launch_on(env, "m2")
    zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
    assert {n["zone"] for n in env.cli_json("admin", "node", "list")} == {zone}, "both nodes in one zone"

    env.cli_json("admin", "node", "update", "m2", "--inactive")  # the volume is made on m1
    try:
        vid = ec2.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"]
    finally:
        env.cli_json("admin", "node", "update", "m2", "--active")
    _waiter(env, "volume_available", VolumeIds=[vid])
    name = volume_store.volume_name(vid)
    assert name in env.volumes("m1", pool) and name not in env.volumes("m2", pool)

    # hot-plugged into the guest on m1, which writes a marker straight to the block device
    mark = len(env.console(one))
    ec2.attach_volume(VolumeId=vid, InstanceId=one, Device="/dev/sdf")
    _waiter(env, "volume_in_use", VolumeIds=[vid])
    _attached(env, vid, one)
    assert _console(env, one, r"EC2GW-BLK-ADD vdb size=(\d+)", 60, mark).group(1) == str(GIB_SECTORS)
    assert env.http("m1", ip1, "/cgi-bin/write?dev=vdb&text=VOL%2DMARKER") == "wrote 10 bytes to vdb\n"

    # grown while attached: the running guest sees 2 GiB at once (blockResize), no restart
    mark = len(env.console(one))
    assert ec2.modify_volume(VolumeId=vid, Size=2)["VolumeModification"]["ModificationState"] == "modifying"
    wait_for("the modification completed", lambda: ec2.describe_volumes_modifications(VolumeIds=[vid])[
        "VolumesModifications"][0]["ModificationState"] in ("completed", "failed"), 60)
    modification = ec2.describe_volumes_modifications(VolumeIds=[vid])["VolumesModifications"][0]
    assert modification["ModificationState"] == "completed", modification
    assert ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["Size"] == 2
    _console(env, one, rf"EC2GW-BLK-RESIZE vdb size={2 * GIB_SECTORS}\b", 30, mark)
    assert _sectors(env, "m1", ip1, "vdb") == 2 * GIB_SECTORS

    mark = len(env.console(one))
    ec2.detach_volume(VolumeId=vid)
    _waiter(env, "volume_available", VolumeIds=[vid])
    _console(env, one, r"EC2GW-BLK-DEL vdb", 60, mark)
    assert _sectors(env, "m1", ip1, "vdb") is None

    # attached to the guest on m2: the volume moves there (download and upload streams), marker and all
    mark = len(env.console(two))
    ec2.attach_volume(VolumeId=vid, InstanceId=two, Device="/dev/xvdg")
    _waiter(env, "volume_in_use", VolumeIds=[vid])
    _attached(env, vid, two)
    added = _console(env, two, r"EC2GW-BLK-ADD vdb size=(\d+) head=(\S*)", 60, mark)
    assert added.groups() == (str(2 * GIB_SECTORS), "VOL-MARKER")
    assert env.http("m2", ip2, "/cgi-bin/read?dev=vdb") == "VOL-MARKER"
    assert name in env.volumes("m2", pool) and name not in env.volumes("m1", pool), "moved, not copied"
    att = ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["Attachments"][0]
    assert (att["InstanceId"], att["Device"], att["State"]) == (two, "/dev/xvdg", "attached")

    # a snapshot of it (attached to the running guest on m2) makes a volume with the marker, which
    # the guest on m1 reads
    sid = ec2.create_snapshot(VolumeId=vid, Description="moved")["SnapshotId"]
    _waiter(env, "snapshot_completed", SnapshotIds=[sid])
    env.cli_json("admin", "node", "update", "m2", "--inactive")
    try:
        copy = ec2.create_volume(SnapshotId=sid, AvailabilityZone=zone)["VolumeId"]
    finally:
        env.cli_json("admin", "node", "update", "m2", "--active")
    _waiter(env, "volume_available", VolumeIds=[copy])
    restored = ec2.describe_volumes(VolumeIds=[copy])["Volumes"][0]
    assert (restored["SnapshotId"], restored["Size"]) == (sid, 2)
    mark = len(env.console(one))
    ec2.attach_volume(VolumeId=copy, InstanceId=one, Device="/dev/sdg")
    _waiter(env, "volume_in_use", VolumeIds=[copy])
    _attached(env, copy, one)
    added = _console(env, one, r"EC2GW-BLK-ADD vdb size=(\d+) head=(\S*)", 60, mark)
    assert added.groups() == (str(2 * GIB_SECTORS), "VOL-MARKER")
    assert env.http("m1", ip1, "/cgi-bin/read?dev=vdb") == "VOL-MARKER"

    # a move that fails half-way (m2 refuses the memory and disk streams) leaves the guest running on
    # m1 with its volume, and nothing of it on m2
    boot = _boot_id(env.console(one))
    copy_name = volume_store.volume_name(copy)
    block = ["INPUT", "-p", "tcp", "--dport", f"{MIGRATION_PORTS}", "-j", "REJECT"]
    env.node_run("m2", "iptables", "-I", *block)
    try:
        res = env.server.cli("admin", "instance", "migrate", one, "--to", "m2", "--json", check=False,
                             timeout=MOVE + 30)
    finally:
        env.node_run("m2", "iptables", "-D", *block)
    assert res.returncode == 1, f"{res.stdout}\n{res.stderr}"
    out = json.loads(res.stdout)
    assert (out["state"], out["kind"], out["destination"]) == ("failed", "live", "m2"), out
    assert "migrating" in out["error"] and env.instance_node(one) == "m1", out
    assert env.domains("m1")[one] == libvirt.VIR_DOMAIN_RUNNING and one not in env.domains("m2")
    assert copy_name in env.volumes("m1", pool) and copy_name not in env.volumes("m2", pool)
    assert not [v for v in env.volumes("m2", node_layout.INSTANCES_POOL) if v.startswith(one)]
    assert env.http("m1", ip1, "/cgi-bin/read?dev=vdb") == "VOL-MARKER"

    # the guest on m1 moves live to m2 with the volume attached: its blocks travel with the guest
    out = env.cli_json("admin", "instance", "migrate", one, "--to", "m2", timeout=MOVE + 30)
    assert (out["state"], out["kind"], out["destination"]) == ("done", "live", "m2"), out
    wait_for("the source's copy of the volume removed", lambda: copy_name not in env.volumes("m1", pool), 30, 0.5)
    assert copy_name in env.volumes("m2", pool)
    assert wait_for("the volume read on m2", lambda: env.http("m2", ip1, "/cgi-bin/read?dev=vdb"), 60, 0.5) == "VOL-MARKER"
    assert env.http("m2", ip1, "/cgi-bin/write?dev=vdb&text=AFTER%2DMOVE") == "wrote 10 bytes to vdb\n"
    assert env.http("m2", ip1, "/cgi-bin/read?dev=vdb") == "AFTER-MOVE"
    assert _boot_id(env.console(one)) == boot
    att = ec2.describe_volumes(VolumeIds=[copy])["Volumes"][0]["Attachments"][0]
    assert (att["InstanceId"], att["Device"], att["State"]) == (one, "/dev/sdg", "attached")
    # the second guest's root disk, snapshotted while it runs: the next test's EBS-backed image
    inst = env.instance(two)
    [root] = [m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"] if m["DeviceName"] == inst["RootDeviceName"]]
    env.ids["root_snapshot"] = ec2.create_snapshot(VolumeId=root, Description="root of a guest")["SnapshotId"]
    env.ids["root_writer"] = two
    _waiter(env, "snapshot_completed", SnapshotIds=[env.ids["root_snapshot"]])

    # the guests end; their volumes are detached (available) and deleted from the nodes
    ec2.terminate_instances(InstanceIds=[one, two])
    _waiter(env, "instance_terminated", InstanceIds=[one, two])
    assert one not in env.domains("m1") and two not in env.domains("m2")
    _waiter(env, "volume_available", VolumeIds=[vid, copy])
    for v in (vid, copy):
        ec2.delete_volume(VolumeId=v)
    ec2.delete_snapshot(SnapshotId=sid)
    _waiter(env, "volume_deleted", VolumeIds=[vid, copy])
    assert not env.volumes("m1", pool) and not env.volumes("m2", pool)


def test_an_ebs_backed_guest_moves_live_then_cold_with_its_root_and_data_volumes(env: Env) -> None:
    """An instance of an EBS-backed image (its root disk a volume, no overlay) with a data volume:
    moved live from m1 to m2, both volumes' blocks go with it (same boot, the data volume's marker
    read on m2); stopped and moved cold back to m1, it boots there from the root volume that its
    first boot wrote its marker on, with the data volume's marker at the head of vdb."""
    ec2: Any = env.ec2
    pool = volume_store.VOLUMES_POOL
    sid, writer = env.ids["root_snapshot"], env.ids["root_writer"]
    ami = ec2.describe_images(ImageIds=[env.ids["ami"]])["Images"][0]
    image = ec2.register_image(Name="mg-ebs", RootDeviceName="/dev/vda", KernelId=ami["KernelId"],
                               RamdiskId=ami["RamdiskId"],
                               BlockDeviceMappings=[{"DeviceName": "/dev/vda", "Ebs": {"SnapshotId": sid}}])["ImageId"]
    iid, ip = _launch_on(env, "m1", image)
    _console(env, iid, rf"EC2GW-DISK-READ: EC2GW-DISK written-by {writer}", 30)
    boot = _boot_id(env.console(iid))
    inst = env.instance(iid)
    assert inst["RootDeviceType"] == "ebs"
    root = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    zone = inst["Placement"]["AvailabilityZone"]
    env.cli_json("admin", "node", "update", "m2", "--inactive")  # the data volume is made on m1
    try:
        data = ec2.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"]
    finally:
        env.cli_json("admin", "node", "update", "m2", "--active")
    _waiter(env, "volume_available", VolumeIds=[data])
    mark = len(env.console(iid))
    ec2.attach_volume(VolumeId=data, InstanceId=iid, Device="/dev/sdf")
    _attached(env, data, iid)
    _console(env, iid, r"EC2GW-BLK-ADD vdb ", 60, mark)
    assert env.http("m1", ip, "/cgi-bin/write?dev=vdb&text=EBS%2DDATA") == "wrote 8 bytes to vdb\n"
    names = sorted(volume_store.volume_name(v) for v in (root, data))
    assert env.volumes("m1", pool) == names and env.volumes("m2", pool) == []

    out = env.cli_json("admin", "instance", "migrate", iid, "--to", "m2", timeout=MOVE + 30)
    assert (out["state"], out["kind"], out["destination"]) == ("done", "live", "m2"), out
    assert iid not in env.domains("m1") and env.domains("m2")[iid] == libvirt.VIR_DOMAIN_RUNNING
    wait_for("the source's volumes removed", lambda: env.volumes("m1", pool) == [], 30, 0.5)
    assert env.volumes("m2", pool) == names
    assert wait_for("the data volume read on m2", lambda: env.http("m2", ip, "/cgi-bin/read?dev=vdb"), 60,
                    0.5) == "EBS-DATA"
    assert _boot_id(env.console(iid)) == boot

    ec2.stop_instances(InstanceIds=[iid], Force=True)
    _waiter(env, "instance_stopped", InstanceIds=[iid])
    out = env.cli_json("admin", "instance", "migrate", iid, timeout=MOVE + 30)  # the only other node: m1
    assert (out["state"], out["kind"], out["destination"]) == ("done", "cold", "m1"), out
    assert env.volumes("m1", pool) == names
    wait_for("the source's volumes removed", lambda: env.volumes("m2", pool) == [], 30, 0.5)
    mark = len(env.console(iid))
    ec2.start_instances(InstanceIds=[iid])
    _waiter(env, "instance_running", InstanceIds=[iid])
    assert iid in env.domains("m1") and iid not in env.domains("m2")
    _console(env, iid, rf"EC2GW-DISK-READ: EC2GW-DISK written-by {iid}", BOOT, mark)
    _console(env, iid, r"EC2GW-BLK-ADD vdb size=\d+ head=EBS-DATA", 60, mark)
    vols = {v["VolumeId"]: v for v in ec2.describe_volumes(VolumeIds=[root, data])["Volumes"]}
    assert {v["State"] for v in vols.values()} == {"in-use"}
    assert [a["InstanceId"] for v in vols.values() for a in v["Attachments"]] == [iid, iid]

    ec2.terminate_instances(InstanceIds=[iid])
    _waiter(env, "instance_terminated", InstanceIds=[iid])
    _waiter(env, "volume_deleted", VolumeIds=[root])
    _waiter(env, "volume_available", VolumeIds=[data])
    ec2.delete_volume(VolumeId=data)
    ec2.deregister_image(ImageId=image, DeleteAssociatedSnapshots=True)
    _waiter(env, "volume_deleted", VolumeIds=[data])
    assert not env.volumes("m1", pool) and not env.volumes("m2", pool)
