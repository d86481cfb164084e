"""A real QEMU guest on a REMOTE node, reached only over qemu+tcp, driven through boto3.

Set-up: one simulated node (tests/netns.py, ``qemu=True``): a libvirtd in a network and mount
namespace of its own, listening on TCP at 10.77.X.1, with virtlogd and a private /dev/kvm. The
service reaches it only through ``qemu+tcp://10.77.X.1/system`` and shares no files with it: the
node storage directory is under /var/lib/libvirt, which the node has privately (bind-mounted
from its own directory), so the path does not exist for the service. Images reach the node via
volume uploads, and the console log can only be read through the storage API.

node add creates the pool's network before any launch -> RunInstances -> GetConsoleOutput
shows the guest's markers and the lease of DescribeInstances' address -> DeregisterImage keeps
the cached base volume while the instance has its overlay on it -> Terminate -> the worker
removes it. One guest at a time.
"""

from __future__ import annotations

import json
import os
import time
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

pytestmark = [pytest.mark.vm, pytest.mark.timeout(300)]

POOL_FILE = "none\nrm-a 10.99.8.10 10.99.8.1 10.99.8.255 255.255.255.0\nrm-b 10.99.8.11 10.99.8.1 10.99.8.255 255.255.255.0\n"
BOOT = 90.0  # seconds a TCG guest may take to its lease on a loaded 2-core machine


class Remote:
    def __init__(self, server: LiveServer, node: netns.SimNode, storage: str) -> None:
        self.server, self.node, self.storage = server, node, storage
        #: where the node's storage directory really is (its /var/lib/libvirt is node.root/lib)
        self.storage_on_host = node.root / "lib" / Path(storage).relative_to("/var/lib/libvirt")
        self.ec2 = server.client("ec2")
        self.ids: dict[str, str] = {}
        self.added: dict[str, Any] = {}

    def cli_json(self, *args: str) -> Any:
        out = self.server.cli(*args, "--json", check=False, timeout=120)
        assert out.returncode == 0, f"ec2gw {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    def libvirt(self) -> Any:
        return libvirt.open(self.node.qemu_uri)

    def volumes(self, pool: str) -> list[str]:
        conn = self.libvirt()
        try:
            p = conn.storagePoolLookupByName(pool)
            p.refresh(0)
            return sorted(v.name() for v in p.listAllVolumes(0))
        finally:
            conn.close()

    def state(self, iid: str) -> str:
        inst = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        return str(inst["State"]["Name"])

    def console(self, iid: str) -> str:
        return str(self.ec2.get_console_output(InstanceId=iid, Latest=True).get("Output") or "")


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    reason = netns.unavailable_reason() or qemu_unavailable_reason()
    if reason:
        pytest.fail(f"a remote QEMU node cannot run here: {reason}")
    guest = build_guest()
    root = Path(tmp_path_factory.mktemp("remote"))
    sim = netns.SimulatedNodes(1, root / "nodes", qemu=True)
    storage = f"/var/lib/libvirt/ec2gw-{sim.token}"  # exists only inside the node's mount namespace
    server = LiveServer(root / "data", env={"EC2GW_NODE_STORAGE_DIR": storage, "EC2GW_STOP_TIMEOUT": "5",
                                            "EC2GW_WORKER_INTERVAL": "0.1"})
    try:
        sim.start()
        server.start()
        r = Remote(server, sim.nodes[0], storage)
        (root / "pool.txt").write_text(POOL_FILE)
        r.cli_json("admin", "pool", "add", "rnet", str(root / "pool.txt"), "--network-mode", "isolated")
        r.added = r.cli_json("admin", "node", "add", "r1", "--uri", r.node.qemu_uri, "--domain-type", "qemu",
                             "--pools", "rnet", "--memory", "4096", "--vcpus", "2")
        r.ids["aki"] = r.cli_json("admin", "image", "import", "r-kernel", str(guest.kernel), "--kind", "kernel")["image_id"]
        r.ids["ari"] = r.cli_json("admin", "image", "import", "r-initrd", str(guest.initrd), "--kind", "ramdisk")["image_id"]
        r.ids["ami"] = r.cli_json("admin", "image", "import", "r-disk", str(guest.disk), "--kernel", r.ids["aki"],
                                  "--ramdisk", r.ids["ari"])["image_id"]
        yield r
    finally:
        server.stop()
        sim.stop()


def test_node_add_created_the_pools_network_before_any_launch(remote: Remote) -> None:
    assert remote.added["network_errors"] == {} and remote.added["pools"] == ["rnet"]
    conn = remote.libvirt()
    try:
        assert conn.listAllDomains(0) == []  # nothing launched yet
        net = conn.networkLookupByName("ec2gw-rnet")
        assert net.isActive() and net.autostart()
    finally:
        conn.close()


def test_console_output_of_a_guest_on_a_remote_node(remote: Remote) -> None:
    iid = remote.ec2.run_instances(ImageId=remote.ids["ami"], MinCount=1, MaxCount=1,
                                   InstanceType="t2.micro")["Instances"][0]["InstanceId"]
    remote.ids["inst"] = iid
    wait_for(f"{iid} running", lambda: remote.state(iid) == "running", BOOT)
    inst = remote.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    ip = inst["PrivateIpAddress"]
    assert ip in ("10.99.8.10", "10.99.8.11")

    def leased() -> str | None:
        out = remote.console(iid)
        return out if f"EC2GW-LEASE ip={ip} " in out else None
    try:
        out = wait_for(f"the lease on the console of {iid}", leased, BOOT, 0.5)
    except TimeoutError:
        raise AssertionError(f"no lease on the console of {iid}:\n{remote.console(iid)[-3000:]}\n"
                             f"server log:\n{remote.server.log()[-3000:]}") from None
    assert "EC2GW-GUEST-INIT" in out and f"EC2GW-SEED instance-id={iid}" in out
    wait_for(f"{iid} done booting", lambda: "EC2GW-READY" in remote.console(iid), 30, 0.5)
    time.sleep(1.0)  # the guest is quiet now: a live console (no history) would show nothing
    again = remote.console(iid)
    assert "EC2GW-GUEST-INIT" in again and f"EC2GW-LEASE ip={ip} " in again, "the whole log, not a live window"
    # the log is on the node only: the service has no file to read, it came through the storage API
    log_path = f"{remote.storage}/console/{node_layout.console_name(iid)}"
    assert not os.path.exists(log_path)
    assert (remote.storage_on_host / "console" / node_layout.console_name(iid)).is_file()


def test_a_deregistered_image_leaves_the_node_after_its_last_instance(remote: Remote) -> None:
    iid, ami = remote.ids["inst"], remote.ids["ami"]
    cached = [v for v in remote.volumes(node_layout.IMAGES_POOL) if v.startswith(ami)]
    assert len(cached) == 1
    remote.ec2.deregister_image(ImageId=ami)
    time.sleep(2.5)  # a few passes of the worker (one a second looks for deregistered images)
    assert cached[0] in remote.volumes(node_layout.IMAGES_POOL), "the running instance's overlay is backed by it"
    remote.ec2.terminate_instances(InstanceIds=[iid])
    wait_for(f"{iid} terminated", lambda: remote.state(iid) == "terminated", 60)
    wait_for("the cached volume removed", lambda: cached[0] not in remote.volumes(node_layout.IMAGES_POOL), 10)
    left = remote.volumes(node_layout.IMAGES_POOL)
    assert any(v.startswith(remote.ids["aki"]) for v in left) and any(v.startswith(remote.ids["ari"]) for v in left), \
        "the kernel and ramdisk are still registered: their cache stays"
