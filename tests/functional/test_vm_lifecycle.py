"""Real QEMU guests end to end, driven through boto3 against `ec2gw serve`.

Set-up: the tiny guest built from Debian packages (scripts/build-test-guest.sh), a libvirtd in a
namespace of its own (tests/vmhost.py) registered as node `vm1` (domain type qemu: TCG), an
isolated network pool of three addresses, and the kernel, ramdisk and disk imported into Cumulus
with `ec2gw admin image import` (the node gets them only from there). The tests run in order and
share one state; at most two guests run at once.

RunInstances -> running -> the console shows the DHCP lease of DescribeInstances' address and the
seed's instance id -> Stop/Start keeps the disk -> Reboot -> CreateImage -> the new image boots
with the first instance's disk, then powers itself off and is terminated as it asked ->
Terminate leaves no domain, overlay, seed, log or DHCP entry and frees the address -> whole-disk
boot gets the freed address -> an exhausted pool refuses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from botocore.exceptions import ClientError

from backends.seed import read_seed_iso
from tests.live import LiveServer
from tests.vmhost import VmHost, build_guest, wait_for

pytestmark = [pytest.mark.vm, pytest.mark.timeout(300)]

POOL_FILE = """# test pool: isolated network, three addresses
none
vm-a 10.99.7.10 10.99.7.1 10.99.7.255 255.255.255.0
vm-b 10.99.7.11 10.99.7.1 10.99.7.255 255.255.255.0 52:54:00:aa:bb:0b
vm-c 10.99.7.12 10.99.7.1 10.99.7.255 255.255.255.0
"""
BOOT = 90.0  # seconds a TCG guest may take to its lease on a loaded 2-core machine


class Cloud:
    """The running service, its node and what the tests made so far."""

    def __init__(self, server: LiveServer, host: VmHost) -> None:
        self.server, self.host = server, host
        self.ec2 = server.client("ec2")
        self.s3 = server.client("s3")
        self.ids: dict[str, str] = {}

    def cli_json(self, *args: str) -> Any:
        out = self.server.cli(*args, "--json", check=False, timeout=120)
        assert out.returncode == 0, f"ec2gw {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    def instance(self, iid: str) -> dict[str, Any]:
        return self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]

    def wait_state(self, iid: str, state: str, timeout: float = BOOT) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            inst = self.instance(iid)
            assert inst["State"]["Name"] != "terminated" or state == "terminated", \
                f"{iid} terminated: {inst.get('StateReason')}\nserver log:\n{self.server.log()[-4000:]}"
            return inst if inst["State"]["Name"] == state else None
        return wait_for(f"{iid} {state}", check, timeout)

    def console(self, iid: str) -> str:
        out = self.ec2.get_console_output(InstanceId=iid, Latest=True).get("Output") or ""
        return out  # boto3 decodes the base64 for us

    def wait_console(self, iid: str, pattern: str, timeout: float = BOOT, after: int = 0) -> re.Match[str]:
        rx = re.compile(pattern)

        def check() -> re.Match[str] | None:
            return rx.search(self.console(iid), after)
        try:
            return wait_for(f"console of {iid} shows {pattern!r}", check, timeout, 0.5)
        except TimeoutError:
            raise AssertionError(f"{pattern!r} not on the console of {iid}:\n{self.console(iid)[-3000:]}\n"
                                 f"server log:\n{self.server.log()[-3000:]}") from None

    def run(self, image_id: str, **kw: Any) -> str:
        res = self.ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t2.micro", **kw)
        return str(res["Instances"][0]["InstanceId"])


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    guest = build_guest()
    root = Path(tmp_path_factory.mktemp("vm"))
    host = VmHost(root / "node")
    server = LiveServer(root / "data", env={"EC2GW_NODE_STORAGE_DIR": str(root / "node-storage"),
                                             "EC2GW_STOP_TIMEOUT": "30", "EC2GW_WORKER_INTERVAL": "0.1"})
    try:
        host.start()
        server.start()
        c = Cloud(server, host)
        (root / "pool.txt").write_text(POOL_FILE)
        c.cli_json("admin", "pool", "add", "vmnet", str(root / "pool.txt"), "--network-mode", "isolated")
        c.cli_json("admin", "node", "add", "vm1", "--uri", host.uri, "--domain-type", "qemu", "--pools", "vmnet",
                   "--memory", "8192", "--vcpus", "4")
        c.ids["aki"] = c.cli_json("admin", "image", "import", "tiny-kernel", str(guest.kernel), "--kind", "kernel")["image_id"]
        c.ids["ari"] = c.cli_json("admin", "image", "import", "tiny-initrd", str(guest.initrd), "--kind", "ramdisk")["image_id"]
        c.ids["ami"] = c.cli_json("admin", "image", "import", "tiny-disk", str(guest.disk), "--kernel", c.ids["aki"],
                                  "--ramdisk", c.ids["ari"])["image_id"]
        # the node enforces security groups: let its side of the pool network reach the guest's HTTP
        c.ec2.authorize_security_group_ingress(GroupName="default", IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.99.7.1/32"}]}])
        yield c
    finally:
        server.stop()
        host.stop()


def test_launch_boots_with_lease_seed_and_user_data(cloud: Cloud) -> None:
    key = cloud.ec2.create_key_pair(KeyName="vmkey")
    iid = cloud.run(cloud.ids["ami"], KeyName="vmkey", UserData="#!/bin/sh\necho hello from user data\n")
    cloud.ids["first"] = iid
    inst = cloud.wait_state(iid, "running")
    ip = inst["PrivateIpAddress"]
    assert ip.startswith("10.99.7.") and inst["PrivateDnsName"] in ("vm-a", "vm-b", "vm-c")
    lease = cloud.wait_console(iid, r"EC2GW-LEASE ip=(\S+)")
    assert lease.group(1) == ip
    out = cloud.console(iid)
    assert f"EC2GW-SEED instance-id={iid}" in out
    assert "EC2GW-USERDATA: #!/bin/sh" in out
    assert "EC2GW-DISK-READ: EC2GW-DISK base" in out
    pool = cloud.cli_json("admin", "pool", "show", "vmnet")
    entry = next(e for e in pool["entries"] if e["ip"] == ip)
    assert entry["instance_id"] == iid
    assert inst["NetworkInterfaces"][0]["MacAddress"] == entry["mac"]
    assert entry["mac"] in cloud.host.dhcp_hosts("ec2gw-vmnet")
    seed = read_seed_iso(cloud.host.read_volume("ec2gw-instances", f"{iid}-seed.iso"))
    assert seed.label == "cidata"
    meta = seed.meta_data()
    assert meta["instance-id"] == iid and meta["local-hostname"] == entry["hostname"]
    pub = cloud.ec2.describe_key_pairs(KeyNames=["vmkey"], IncludePublicKey=True)["KeyPairs"][0]["PublicKey"]
    assert meta["public-keys"] == [pub.strip()] and key["KeyMaterial"]
    assert seed.files["user-data"] == b"#!/bin/sh\necho hello from user data\n"
    nic = seed.network_config()["config"][0]  # type: ignore[index]
    assert nic["mac_address"] == entry["mac"] and nic["subnets"][0]["address"] == ip


def test_the_guest_serves_http_and_counts(cloud: Cloud) -> None:
    """What the vm tests of volumes, networks and power build on: the guest's boot id, counter and
    CGI scripts (scripts/build-test-guest.sh), reached from the node's network namespace."""
    iid = cloud.ids["first"]
    ip = cloud.instance(iid)["PrivateIpAddress"]
    boot = cloud.wait_console(iid, r"EC2GW-BOOT-ID (\S+)").group(1)
    cloud.wait_console(iid, r"EC2GW-HTTPD port=80")
    cloud.wait_console(iid, r"EC2GW-COUNTER 2\b")
    assert re.search(rf"EC2GW-LEASE ip={re.escape(ip)} mask=\S+ router=\S* if=eth0", cloud.console(iid))
    assert re.search(r"EC2GW-NIC-ADD eth0 mac=[0-9a-f:]{17}", cloud.console(iid))
    assert re.search(r"EC2GW-BLK-ADD vda size=32768 head=", cloud.console(iid))  # 16 MiB
    assert wait_for("the guest's web page", lambda: cloud.host.http(ip, "/"), 30, 0.5) == f"EC2GW-WEB {boot}\n"
    status = dict(line.split("=", 1) for line in (cloud.host.http(ip, "/cgi-bin/status") or "").splitlines())
    assert status["boot"] == boot and int(status["counter"]) >= 2 and float(status["uptime"]) > 0
    assert "vda:32768" in status["blk"].split(",") and status["net"].startswith("eth0:")
    assert f"eth0:{ip}/24" in status["ip"].split(",")
    assert cloud.host.http(ip, "/cgi-bin/read?dev=vdz") == "error: dev=vdz is not a block device of this guest (e.g. dev=vdb)\n"
    assert cloud.host.http(ip, "/cgi-bin/busy?seconds=2") == "busy seconds=2\n"
    assert (cloud.host.http(ip, "/cgi-bin/busy?seconds=x") or "").startswith("error: seconds=x")
    # the guest takes another address, but the node's anti-spoofing filter keeps it to its own
    # (test_vm_security_groups.py): its ping from the new one fails and nothing reaches it there
    assert cloud.host.http(ip, "/cgi-bin/setip?ip=10.99.7.77", timeout=30) == \
        "setip ip=10.99.7.77 dev=eth0 to=10.99.7.1 ping=fail\n"  # the failing ping takes its 3 s
    assert cloud.host.http("10.99.7.77", "/", timeout=2) is None
    assert cloud.host.http(ip, "/cgi-bin/setip?ip=10.99.7.77&del=1", timeout=30) == "delip ip=10.99.7.77 dev=eth0\n"
    assert cloud.host.http("10.99.7.77", "/", timeout=2) is None


def test_the_guest_sees_disk_and_nic_hotplug(cloud: Cloud) -> None:
    """A disk and a NIC attached to the running domain (live only, straight through libvirt)
    appear on the console within seconds; the NIC gets its DHCP lease; both go away again."""
    iid = cloud.ids["first"]
    ip = cloud.instance(iid)["PrivateIpAddress"]
    conn = libvirt.open(cloud.host.uri)
    try:
        dom = conn.lookupByName(iid)
        pool = conn.storagePoolLookupByName("ec2gw-instances")
        vol = pool.createXML("<volume><name>hotplug-probe.img</name><capacity unit='M'>1</capacity>"
                             "<target><format type='raw'/></target></volume>", 0)
        net = conn.networkLookupByName("ec2gw-vmnet")
        host = "<host mac='52:54:00:ee:00:01' ip='10.99.7.50'/>"
        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1,
                   host, libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE)
        disk = (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{vol.path()}'/>"
                "<target dev='vdb' bus='virtio'/></disk>")
        nic = ("<interface type='network'><mac address='52:54:00:ee:00:01'/><source network='ec2gw-vmnet'/>"
               "<model type='virtio'/></interface>")
        try:
            mark = len(cloud.console(iid))
            dom.attachDeviceFlags(disk, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            cloud.wait_console(iid, r"EC2GW-BLK-ADD vdb size=2048 head=\r?\n", 30, after=mark)
            assert cloud.host.http(ip, "/cgi-bin/write?dev=vdb&text=MARK%2D1") == "wrote 6 bytes to vdb\n"
            assert cloud.host.http(ip, "/cgi-bin/read?dev=vdb") == "MARK-1"
            dom.attachDeviceFlags(nic, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            cloud.wait_console(iid, r"EC2GW-NIC-ADD eth1 mac=52:54:00:ee:00:01", 30, after=mark)
            cloud.wait_console(iid, r"EC2GW-LEASE ip=10.99.7.50 mask=\S+ router=\S* if=eth1", 30, after=mark)
            # (no HTTP to 10.99.7.50: the guest answers through eth0, whose filter lets it send only
            # from eth0's own address, as anti-spoofing should; the lease above shows the NIC works)
            dom.detachDeviceFlags(nic, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            dom.detachDeviceFlags(disk, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            cloud.wait_console(iid, r"EC2GW-NIC-DEL eth1", 30, after=mark)
            cloud.wait_console(iid, r"EC2GW-BLK-DEL vdb", 30, after=mark)
            assert vol.info()[1] == 1 << 20
            assert cloud.host.read_volume("ec2gw-instances", "hotplug-probe.img")[:6] == b"MARK-1"
        finally:
            net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1,
                       host, libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE)
            if "hotplug-probe" not in dom.XMLDesc(0):  # else the failure above is the one to see
                vol.delete(0)
    finally:
        conn.close()


def test_growing_the_root_volume_grows_the_running_guests_disk(cloud: Cloud) -> None:
    """ModifyVolume of the root volume (the overlay on an image in Cumulus) grows the running
    guest's disk at once (blockResize); the next test grows it again while stopped."""
    iid = cloud.ids["first"]
    inst = cloud.instance(iid)
    root = [m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"] if m["DeviceName"] == inst["RootDeviceName"]][0]
    assert cloud.ec2.describe_volumes(VolumeIds=[root])["Volumes"][0]["Size"] == 1
    mark = len(cloud.console(iid))
    mod = cloud.ec2.modify_volume(VolumeId=root, Size=2)["VolumeModification"]
    assert (mod["ModificationState"], mod["OriginalSize"], mod["TargetSize"]) == ("modifying", 1, 2)

    def ended() -> dict[str, Any] | None:
        got = cloud.ec2.describe_volumes_modifications(VolumeIds=[root])["VolumesModifications"][0]
        return got if got["ModificationState"] != "modifying" else None

    done = wait_for("the root's modification ended", ended, 60)
    assert done["ModificationState"] == "completed", done
    cloud.wait_console(iid, r"EC2GW-BLK-RESIZE vda size=4194304\b", 60, after=mark)
    ip = inst["PrivateIpAddress"]
    status = dict(line.split("=", 1) for line in (cloud.host.http(ip, "/cgi-bin/status") or "").splitlines())
    assert "vda:4194304" in status["blk"].split(","), status
    assert cloud.ec2.describe_volumes(VolumeIds=[root])["Volumes"][0]["Size"] == 2


def test_stop_start_keeps_the_disk(cloud: Cloud) -> None:
    iid = cloud.ids["first"]
    cloud.ec2.stop_instances(InstanceIds=[iid])
    cloud.wait_state(iid, "stopped", 60)
    assert cloud.host.domains()[iid] == 5  # VIR_DOMAIN_SHUTOFF: still defined, disk kept
    # the root grows while stopped too (its overlay through the storage API)
    inst = cloud.instance(iid)
    root = [m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"] if m["DeviceName"] == inst["RootDeviceName"]][0]
    cloud.ec2.modify_volume(VolumeId=root, Size=3)
    done = wait_for("the stopped root's modification ended", lambda: (lambda m: m if m["ModificationState"] != "modifying"
                    else None)(cloud.ec2.describe_volumes_modifications(VolumeIds=[root])["VolumesModifications"][0]), 60)
    assert done["ModificationState"] == "completed", done
    cloud.ec2.start_instances(InstanceIds=[iid])
    inst = cloud.wait_state(iid, "running")
    cloud.wait_console(iid, rf"EC2GW-DISK-READ: EC2GW-DISK written-by {iid}")
    assert cloud.wait_console(iid, r"EC2GW-LEASE ip=(\S+)").group(1) == inst["PrivateIpAddress"]
    status = wait_for("the guest's status page", lambda: cloud.host.http(inst["PrivateIpAddress"], "/cgi-bin/status"),
                      60, 0.5)
    assert "blk=vda:6291456" in status, status  # the root grown to 2 GiB while running, then to 3 while stopped


def test_reboot_restarts_the_guest(cloud: Cloud) -> None:
    iid = cloud.ids["first"]
    before = cloud.console(iid).count("EC2GW-READY")
    cloud.ec2.reboot_instances(InstanceIds=[iid])
    wait_for("a second boot on the console", lambda: cloud.console(iid).count("EC2GW-READY") > before, BOOT, 0.5)
    assert cloud.instance(iid)["State"]["Name"] == "running"


def test_create_image_from_the_stopped_instance(cloud: Cloud) -> None:
    iid = cloud.ids["first"]
    cloud.ec2.stop_instances(InstanceIds=[iid])
    cloud.wait_state(iid, "stopped", 60)
    image_id = cloud.ec2.create_image(InstanceId=iid, Name="saved-from-first")["ImageId"]
    cloud.ids["saved"] = image_id
    assert image_id.startswith("ami-")

    def available() -> dict[str, Any] | None:
        img = cloud.ec2.describe_images(ImageIds=[image_id])["Images"][0]
        assert img["State"] in ("pending", "available"), img
        return img if img["State"] == "available" else None
    img = wait_for(f"{image_id} available", available, 120, 0.5)
    assert img["KernelId"] == cloud.ids["aki"] and img["RamdiskId"] == cloud.ids["ari"]
    head = cloud.s3.head_object(Bucket="Repo", Key="VMS/admin/saved-from-first")
    assert head["ContentLength"] > 0
    body = cloud.s3.get_object(Bucket="Repo", Key="VMS/admin/saved-from-first", Range="bytes=0-3")["Body"].read()
    assert body == b"QFI\xfb"  # flattened into a self-contained qcow2
    assert cloud.instance(iid)["State"]["Name"] == "stopped"  # it was stopped: it stays stopped


def test_the_new_image_boots_with_the_saved_disk_and_may_power_itself_off(cloud: Cloud) -> None:
    first = cloud.ids["first"]
    iid = cloud.run(cloud.ids["saved"], UserData="EC2GW-POWEROFF-AFTER-BOOT\n",
                    InstanceInitiatedShutdownBehavior="terminate")
    cloud.ids["second"] = iid
    inst = cloud.wait_state(iid, "running")
    ip = inst["PrivateIpAddress"]
    # the guest powers itself off right after booting: read every marker from one console snapshot
    seen = cloud.wait_console(iid, rf"(?s)(?=.*EC2GW-DISK-READ: EC2GW-DISK written-by {first})"
                                   rf"(?=.*EC2GW-SEED instance-id={iid})(?=.*EC2GW-LEASE ip=(\S+))")
    assert seen.group(1) == ip
    gone = cloud.wait_state(iid, "terminated", 60)  # it powered itself off: terminate, as it asked
    assert gone["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"


def test_terminate_leaves_nothing_behind(cloud: Cloud) -> None:
    ids = [cloud.ids["first"], cloud.ids["second"]]  # the second terminated itself already
    macs = [cloud.instance(i)["NetworkInterfaces"][0]["MacAddress"] for i in ids]
    cloud.ec2.terminate_instances(InstanceIds=ids[:1])
    for iid in ids:
        cloud.wait_state(iid, "terminated", 60)
    domains = cloud.host.domains()
    assert not [i for i in ids if i in domains]
    leftovers = [v for pool in ("ec2gw-instances", "ec2gw-console") for v in cloud.host.volumes(pool)
                 if any(v.startswith(i) for i in ids)]
    assert leftovers == []
    assert not set(macs) & set(cloud.host.dhcp_hosts("ec2gw-vmnet"))
    pool = cloud.cli_json("admin", "pool", "show", "vmnet")
    assert pool["in_use"] == 0 and pool["free"] == 3
    images = cloud.host.volumes("ec2gw-images")  # the cache stays for the next launch
    assert any(v.startswith(cloud.ids["ami"]) for v in images)


def test_whole_disk_image_boots_and_reuses_the_address(cloud: Cloud) -> None:
    guest = build_guest()
    disk_ami = cloud.cli_json("admin", "image", "import", "tiny-disk-boot", str(guest.disk))["image_id"]
    iid = cloud.run(disk_ami)
    cloud.ids["disk"] = iid
    inst = cloud.wait_state(iid, "running")
    assert inst["PrivateIpAddress"] == "10.99.7.10"  # the first address, free again after terminate
    cloud.wait_console(iid, r"EC2GW-MBR-BOOT")


def test_exhausted_pool_refuses_and_creates_nothing(cloud: Cloud) -> None:
    before = {i["InstanceId"] for r in cloud.ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    with pytest.raises(ClientError) as err:
        cloud.ec2.run_instances(ImageId=cloud.ids["ami"], MinCount=3, MaxCount=3, InstanceType="t2.micro")
    assert err.value.response["Error"]["Code"] == "InsufficientFreeAddressesInSubnet"
    after = {i["InstanceId"] for r in cloud.ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert after == before
    assert cloud.cli_json("admin", "pool", "show", "vmnet")["in_use"] == 1
    cloud.ec2.terminate_instances(InstanceIds=[cloud.ids["disk"]])
    cloud.wait_state(cloud.ids["disk"], "terminated", 60)
    assert cloud.ids["disk"] not in cloud.host.domains()
