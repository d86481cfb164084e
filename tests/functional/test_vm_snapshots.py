"""Snapshots of a running QEMU guest's volumes (an attached one, its root), through boto3 against `ec2gw serve`.

Set-up as tests/functional/test_vm_lifecycle.py: the tiny guest (scripts/build-test-guest.sh),
one libvirtd node in a namespace of its own (tests/vmhost.py), an isolated pool, the guest's
kernel, ramdisk and disk imported into Cumulus. One guest runs.

The guest writes a marker on its attached volume (its CGI script, straight to the block device);
CreateSnapshot of the in-use volume is taken while the guest runs (libvirt's push-mode backup);
the guest then overwrites the marker; a volume made from the snapshot, attached in place of the
first, holds the first marker: the snapshot is the disk as it was, its bytes went through Cumulus.
A snapshot of the running guest's root volume, registered as an image, boots a guest from a root
volume made from it (the marker the first guest wrote on its root disk is read by the second,
and its own after a stop and start).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import LiveServer
from tests.vmhost import VmHost, build_guest, wait_for

pytestmark = [pytest.mark.vm, pytest.mark.timeout(420)]

POOL_FILE = """# test pool: isolated network, one address
none
snap-a 10.99.8.10 10.99.8.1 10.99.8.255 255.255.255.0
"""
BOOT = 120.0
FAST = {"Delay": 1, "MaxAttempts": 120}


class Cloud:
    def __init__(self, server: LiveServer, host: VmHost) -> None:
        self.server, self.host = server, host
        self.ec2 = server.client("ec2")
        self.s3 = server.client("s3")
        self.ids: dict[str, str] = {}

    def cli_json(self, *args: str) -> Any:
        out = self.server.cli(*args, "--json", check=False, timeout=120)
        assert out.returncode == 0, f"ec2gw {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    def console(self, iid: str) -> str:
        return self.ec2.get_console_output(InstanceId=iid, Latest=True).get("Output") or ""

    def wait_console(self, iid: str, pattern: str, timeout: float = BOOT, after: int = 0) -> re.Match[str]:
        rx = re.compile(pattern)
        try:
            return wait_for(f"console of {iid} shows {pattern!r}", lambda: rx.search(self.console(iid), after),
                            timeout, 0.5)
        except TimeoutError:
            raise AssertionError(f"{pattern!r} not on the console of {iid}:\n{self.console(iid)[-3000:]}\n"
                                 f"server log:\n{self.server.log()[-3000:]}") from None

    def volume(self, vid: str) -> dict[str, Any]:
        return self.ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    guest = build_guest()
    root = Path(tmp_path_factory.mktemp("vmsnap"))
    host = VmHost(root / "node")
    server = LiveServer(root / "data", env={"EC2GW_NODE_STORAGE_DIR": str(root / "node-storage"),
                                             "EC2GW_STOP_TIMEOUT": "30", "EC2GW_WORKER_INTERVAL": "0.1"})
    try:
        host.start()
        server.start()
        c = Cloud(server, host)
        (root / "pool.txt").write_text(POOL_FILE)
        c.cli_json("admin", "pool", "add", "snapnet", str(root / "pool.txt"), "--network-mode", "isolated")
        c.cli_json("admin", "node", "add", "vm1", "--uri", host.uri, "--domain-type", "qemu", "--pools", "snapnet",
                   "--memory", "8192", "--vcpus", "4")
        aki = c.cli_json("admin", "image", "import", "tiny-kernel", str(guest.kernel), "--kind", "kernel")["image_id"]
        ari = c.cli_json("admin", "image", "import", "tiny-initrd", str(guest.initrd), "--kind", "ramdisk")["image_id"]
        c.ids["ami"] = c.cli_json("admin", "image", "import", "tiny-disk", str(guest.disk), "--kernel", aki,
                                  "--ramdisk", ari)["image_id"]
        # the node enforces security groups: let its side of the pool network reach the guest's HTTP
        c.ec2.authorize_security_group_ingress(GroupName="default", IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.99.8.1/32"}]}])
        yield c
    finally:
        server.stop()
        host.stop()


def _attach(cloud: Cloud, vid: str, iid: str, mark: int) -> None:
    cloud.ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    cloud.ec2.get_waiter("volume_in_use").wait(VolumeIds=[vid], WaiterConfig=FAST)
    cloud.wait_console(iid, r"EC2GW-BLK-ADD vdb size=", 60, after=mark)


def _detach(cloud: Cloud, vid: str, iid: str, mark: int) -> None:
    cloud.ec2.detach_volume(VolumeId=vid)
    cloud.ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    cloud.wait_console(iid, r"EC2GW-BLK-DEL vdb", 60, after=mark)


def test_snapshot_of_an_attached_volume_is_the_disk_as_it_was(cloud: Cloud) -> None:
    ec2 = cloud.ec2
    iid = ec2.run_instances(ImageId=cloud.ids["ami"], MinCount=1, MaxCount=1, InstanceType="t2.micro")[
        "Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    cloud.wait_console(iid, r"EC2GW-HTTPD port=80")
    ip = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
    zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
    vid = ec2.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    _attach(cloud, vid, iid, 0)
    assert cloud.host.http(ip, "/cgi-bin/write?dev=vdb&text=BEFORE%2DSNAP") == "wrote 11 bytes to vdb\n"
    sid = ec2.create_snapshot(VolumeId=vid, Description="live")["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST)
    snap = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    assert (snap["State"], snap["Progress"], snap["VolumeSize"]) == ("completed", "100%", 1)
    assert cloud.host.http(ip, "/cgi-bin/write?dev=vdb&text=AFTER%2DSNAP%2D") == "wrote 11 bytes to vdb\n"
    assert cloud.host.http(ip, "/cgi-bin/read?dev=vdb") == "AFTER-SNAP-"
    # the bytes are in Cumulus, a compact qcow2 (1 GiB volume, a few hundred KiB stored)
    objs = cloud.s3.list_objects_v2(Bucket="Repo", Prefix="VMS/admin/snapshots/")["Contents"]
    stored = {o["Key"].rsplit("/", 1)[1]: o["Size"] for o in objs}
    assert 0 < stored[sid] < 16 << 20
    assert cloud.s3.get_object(Bucket="Repo", Key=f"VMS/admin/snapshots/{sid}", Range="bytes=0-3")[
        "Body"].read() == b"QFI\xfb"
    # a volume from it, attached in place of the first, holds the marker as it was
    restored = ec2.create_volume(SnapshotId=sid, AvailabilityZone=zone, Size=2)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[restored], WaiterConfig=FAST)
    assert cloud.volume(restored)["SnapshotId"] == sid and cloud.volume(restored)["Size"] == 2
    mark = len(cloud.console(iid))
    _detach(cloud, vid, iid, mark)
    mark = len(cloud.console(iid))
    _attach(cloud, restored, iid, mark)
    assert cloud.wait_console(iid, r"EC2GW-BLK-ADD vdb size=(\d+)", 60, after=mark).group(1) == str(2 << 21)
    assert cloud.host.http(ip, "/cgi-bin/read?dev=vdb") == "BEFORE-SNAP"
    # a detached volume is copied through the storage API: its snapshot holds the later marker
    second = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[second], WaiterConfig=FAST)
    again = ec2.create_volume(SnapshotId=second, AvailabilityZone=zone)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[again], WaiterConfig=FAST)
    mark = len(cloud.console(iid))
    _detach(cloud, restored, iid, mark)
    mark = len(cloud.console(iid))
    _attach(cloud, again, iid, mark)
    assert cloud.host.http(ip, "/cgi-bin/read?dev=vdb") == "AFTER-SNAP-"
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)
    for v in (vid, restored, again):
        if cloud.volume(v)["State"] != "deleted":
            ec2.get_waiter("volume_available").wait(VolumeIds=[v], WaiterConfig=FAST)
            ec2.delete_volume(VolumeId=v)
    for s in (sid, second):
        ec2.delete_snapshot(SnapshotId=s)
    assert "Contents" not in cloud.s3.list_objects_v2(Bucket="Repo", Prefix="VMS/admin/snapshots/")


def test_an_image_registered_from_a_root_volume_snapshot_boots_from_it(cloud: Cloud) -> None:
    """The running guest's root volume (its overlay) is snapshotted live; an image registered from
    that snapshot launches a guest whose root disk is a volume made from it: the new guest reads
    the marker the first one wrote on its root disk at boot, and serves HTTP. The first guest's
    root volume, marked to stay, outlives it as a flattened copy of its disk, which the second
    guest reads as a data disk."""
    ec2 = cloud.ec2
    ami = ec2.describe_images(ImageIds=[cloud.ids["ami"]])["Images"][0]
    first = ec2.run_instances(ImageId=ami["ImageId"], MinCount=1, MaxCount=1, InstanceType="t2.micro",
                              BlockDeviceMappings=[{"DeviceName": "/dev/vda", "Ebs": {"DeleteOnTermination": False}}])[
        "Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[first], WaiterConfig=FAST)
    cloud.wait_console(first, r"EC2GW-HTTPD port=80")
    inst = ec2.describe_instances(InstanceIds=[first])["Reservations"][0]["Instances"][0]
    [root] = [m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"] if m["DeviceName"] == inst["RootDeviceName"]]
    assert cloud.volume(root)["State"] == "in-use"
    sid = ec2.create_snapshot(VolumeId=root, Description="root of a running guest")["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST)
    # the pool has one address: the first guest makes room for the second
    ec2.terminate_instances(InstanceIds=[first])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[first], WaiterConfig=FAST)
    ec2.get_waiter("volume_available").wait(VolumeIds=[root], WaiterConfig=FAST)  # kept: copied from the overlay
    image = ec2.register_image(Name="from-root-snapshot", RootDeviceName="/dev/vda", KernelId=ami["KernelId"],
                               RamdiskId=ami["RamdiskId"],
                               BlockDeviceMappings=[{"DeviceName": "/dev/vda", "Ebs": {"SnapshotId": sid}}])["ImageId"]
    second = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.micro")[
        "Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[second], WaiterConfig=FAST)
    inst = ec2.describe_instances(InstanceIds=[second])["Reservations"][0]["Instances"][0]
    assert (inst["RootDeviceType"], inst["RootDeviceName"]) == ("ebs", "/dev/vda")
    new_root = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    assert cloud.volume(new_root)["SnapshotId"] == sid
    cloud.wait_console(second, rf"EC2GW-DISK-READ: EC2GW-DISK written-by {first}")
    cloud.wait_console(second, r"EC2GW-HTTPD port=80")
    ip = inst["PrivateIpAddress"]
    status = cloud.host.http(ip, "/cgi-bin/status")
    assert status is not None and status.startswith("boot="), status
    # the first guest's kept root volume, a data disk of the second now: the same disk (the boot
    # sector's first bytes, as the guest prints them), grown to the volume's 1 GiB
    booted = cloud.wait_console(second, r"EC2GW-BLK-ADD vda size=\d+ head=(.+)")
    mark = len(cloud.console(second))
    _attach(cloud, root, second, mark)
    added = cloud.wait_console(second, r"EC2GW-BLK-ADD vdb size=(\d+) head=(.+)", 60, after=mark)
    assert added.group(1) == str(1 << 21) and added.group(2) == booted.group(1) != "", added.group(0)
    # stopped and started, the guest boots from the same root volume again: it reads its own marker
    ec2.stop_instances(InstanceIds=[second], Force=True)
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[second], WaiterConfig=FAST)
    ec2.start_instances(InstanceIds=[second])
    ec2.get_waiter("instance_running").wait(InstanceIds=[second], WaiterConfig=FAST)
    cloud.wait_console(second, rf"EC2GW-DISK-READ: EC2GW-DISK written-by {second}")
    assert ec2.describe_instances(InstanceIds=[second])["Reservations"][0]["Instances"][0][
        "BlockDeviceMappings"][0]["Ebs"]["VolumeId"] == new_root
    ec2.terminate_instances(InstanceIds=[second])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[second], WaiterConfig=FAST)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[new_root], WaiterConfig=FAST)
    ec2.get_waiter("volume_available").wait(VolumeIds=[root], WaiterConfig=FAST)
    ec2.delete_volume(VolumeId=root)
    ec2.deregister_image(ImageId=image, DeleteAssociatedSnapshots=True)
    assert "Contents" not in cloud.s3.list_objects_v2(Bucket="Repo", Prefix="VMS/admin/snapshots/")
