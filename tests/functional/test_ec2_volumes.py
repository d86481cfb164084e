"""EBS volumes through boto3 and the aws CLI on the session's live server (libvirt's test driver).

Life cycle (creating -> available -> in-use -> available -> deleting -> deleted) with boto3's
waiters, ClientToken, tags, every DescribeVolumes filter, pages, EC2's error codes, attach and
detach (device names kept, virtio targets in order), ModifyVolume (on the test driver, which cannot
resize, a grow fails with the reason and the size stays), volume status and attributes, and the
volume quotas of `ec2gw admin quota set`. Users are named vol-* so the shared server stays tidy.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from tests.functional.tools import FAST, code_of, import_blank_image, launch, volume, wait_for
from tests.live import Creds, LiveServer

VOL = re.compile(r"^vol-[0-9a-f]{17}$")


@pytest.fixture(scope="module")
def image(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    return import_blank_image(server, tmp_path_factory.mktemp("vol-image"), "vol-image")


@pytest.fixture(scope="module")
def dora(server: LiveServer) -> Creds:
    return server.make_user("vol-dora")


@pytest.fixture(scope="module")
def ec2(server: LiveServer, dora: Creds) -> Any:
    return server.client("ec2", dora)


def test_a_volume_is_created_described_and_deleted_with_the_waiters(ec2: Any, zone: str) -> None:
    made = ec2.create_volume(AvailabilityZone=zone, Size=2, VolumeType="gp3",
                             TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "data"}]}])
    vid = made["VolumeId"]
    assert VOL.match(vid)
    assert (made["State"], made["Size"], made["VolumeType"], made["AvailabilityZone"], made["Encrypted"]) == \
        ("creating", 2, "gp3", zone, False)
    assert made["Iops"] == 3000 and made["Throughput"] == 125 and made["Tags"] == [{"Key": "Name", "Value": "data"}]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    got = volume(ec2, vid)
    assert got["State"] == "available" and got["Attachments"] == [] and got["SnapshotId"] == ""
    assert got["Tags"] == [{"Key": "Name", "Value": "data"}] and got["CreateTime"] == made["CreateTime"]
    assert any(t["ResourceId"] == vid for t in ec2.describe_tags(
        Filters=[{"Name": "resource-type", "Values": ["volume"]}])["Tags"])
    ec2.delete_volume(VolumeId=vid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid], WaiterConfig=FAST)
    assert volume(ec2, vid)["State"] == "deleted"  # listed a while, as EC2 does
    assert code_of(ec2.delete_volume, VolumeId=vid) == "InvalidVolume.NotFound"


def test_client_token_makes_create_volume_idempotent(ec2: Any, zone: str) -> None:
    first = ec2.create_volume(AvailabilityZone=zone, Size=1, ClientToken="vol-token-1")
    again = ec2.create_volume(AvailabilityZone=zone, Size=1, ClientToken="vol-token-1")
    assert again["VolumeId"] == first["VolumeId"]
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=3, ClientToken="vol-token-1") == \
        "IdempotentParameterMismatch"
    ec2.get_waiter("volume_available").wait(VolumeIds=[first["VolumeId"]], WaiterConfig=FAST)
    ec2.delete_volume(VolumeId=first["VolumeId"])


def test_bad_requests_get_ec2s_error_codes(ec2: Any, zone: str) -> None:
    assert code_of(ec2.create_volume, Size=1, AvailabilityZone="xx-nowhere-1z") == "InvalidParameterValue"
    assert code_of(ec2.create_volume, AvailabilityZone=zone) == "MissingParameter"
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=0) == "InvalidParameterValue"
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=20000) == "InvalidParameterValue"
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=1, VolumeType="sc9") == "InvalidParameterValue"
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=10, VolumeType="io1") == "MissingParameter"
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=10, VolumeType="gp2", Iops=500) == \
        "InvalidParameterCombination"
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=1, Encrypted=True) == "InvalidParameterValue"
    assert code_of(ec2.create_volume, AvailabilityZone=zone, SnapshotId="snap-0123456789abcdef0") == \
        "InvalidSnapshot.NotFound"
    assert code_of(ec2.create_volume, AvailabilityZone=zone, SnapshotId="snap-nothex") == "InvalidSnapshotID.Malformed"
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=1,
                   TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "b"}]}]) == \
        "InvalidParameterValue"
    assert code_of(ec2.describe_volumes, VolumeIds=["vol-0123456789abcdef0"]) == "InvalidVolume.NotFound"
    assert code_of(ec2.describe_volumes, VolumeIds=["vol-xyz"]) == "InvalidVolumeID.Malformed"
    assert code_of(ec2.describe_volumes, Filters=[{"Name": "colour", "Values": ["red"]}]) == "InvalidParameterValue"
    assert code_of(ec2.describe_volumes, Filters=[{"Name": "size", "Values": ["big"]}]) == "InvalidParameterValue"
    assert code_of(ec2.describe_volumes, MaxResults=2) == "InvalidParameterValue"
    assert code_of(ec2.delete_volume, VolumeId="vol-0123456789abcdef0") == "InvalidVolume.NotFound"
    assert code_of(ec2.delete_volume, VolumeId="volume-1") == "InvalidVolumeID.Malformed"
    with pytest.raises(ClientError) as dry:
        ec2.create_volume(AvailabilityZone=zone, Size=1, DryRun=True)
    assert dry.value.response["Error"]["Code"] == "DryRunOperation"


def test_describe_volumes_filters_and_pages(ec2: Any, zone: str) -> None:
    made = [ec2.create_volume(AvailabilityZone=zone, Size=size, VolumeType=vtype,
                              TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "set", "Value": "pages"},
                                                                                      {"Key": "n", "Value": str(i)}]}])
            for i, (size, vtype) in enumerate([(1, "gp2"), (2, "standard"), (3, "gp3"), (4, "gp2"), (5, "gp2"),
                                               (6, "standard"), (7, "gp2")])]
    vids = [m["VolumeId"] for m in made]
    ec2.get_waiter("volume_available").wait(VolumeIds=vids, WaiterConfig=FAST)

    def ids(*filters: tuple[str, list[str]]) -> set[str]:
        got = ec2.describe_volumes(Filters=[{"Name": n, "Values": v} for n, v in filters])["Volumes"]
        return {v["VolumeId"] for v in got} & set(vids)

    mine = ("tag:set", ["pages"])
    assert ids(mine) == set(vids)
    assert ids(mine, ("size", ["3", "5"])) == {vids[2], vids[4]}
    assert ids(mine, ("volume-type", ["standard"])) == {vids[1], vids[5]}
    assert ids(mine, ("volume-id", [vids[0]])) == {vids[0]}
    assert ids(mine, ("status", ["available"])) == set(vids)
    assert ids(mine, ("status", ["in-use", "creating"])) == set()
    assert ids(mine, ("availability-zone", [zone])) == set(vids)
    assert ids(mine, ("availability-zone", ["elsewhere-1a"])) == set()
    assert ids(mine, ("tag:n", ["1", "6"])) == {vids[1], vids[6]}
    assert ids(("tag-key", ["n"]), ("tag:set", ["pag*"])) == set(vids)
    assert ids(mine, ("encrypted", ["false"])) == set(vids)
    assert ids(mine, ("encrypted", ["true"])) == set()
    assert ids(mine, ("snapshot-id", ["snap-0123456789abcdef0"])) == set()
    assert ids(mine, ("attachment.status", ["attached"])) == set()
    created = volume(ec2, vids[3])["CreateTime"]
    stamp = created.strftime("%Y-%m-%dT%H:%M:%S.") + f"{created.microsecond // 1000:03d}Z"
    assert vids[3] in ids(mine, ("create-time", [stamp]))
    seen: list[str] = []
    pages = 0
    for page in ec2.get_paginator("describe_volumes").paginate(
            Filters=[{"Name": "tag:set", "Values": ["pages"]}], PaginationConfig={"PageSize": 5}):
        pages += 1
        seen += [v["VolumeId"] for v in page["Volumes"]]
        assert len(page["Volumes"]) <= 5
    assert sorted(seen) == sorted(vids) and pages == 2
    first = ec2.describe_volumes(Filters=[{"Name": "tag:set", "Values": ["pages"]}], MaxResults=5)
    assert code_of(ec2.describe_volumes, Filters=[{"Name": "size", "Values": ["1"]}], MaxResults=5,
                   NextToken=first["NextToken"]) == "InvalidParameterValue"
    for vid in vids:
        ec2.delete_volume(VolumeId=vid)


def test_volumes_attach_and_detach_with_device_names_kept(ec2: Any, zone: str, image: str) -> None:
    iid = launch(ec2, image)
    a = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    b = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[a, b], WaiterConfig=FAST)
    att = ec2.attach_volume(VolumeId=a, InstanceId=iid, Device="/dev/sdf")
    assert (att["State"], att["Device"], att["InstanceId"], att["VolumeId"]) == ("attaching", "/dev/sdf", iid, a)
    ec2.attach_volume(VolumeId=b, InstanceId=iid, Device="/dev/xvdg")
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[a, b], WaiterConfig=FAST)
    wait_for("both attached", lambda: all(volume(ec2, v)["Attachments"][0]["State"] == "attached" for v in (a, b)), 30)
    got = volume(ec2, a)
    assert got["State"] == "in-use" and got["Attachments"][0]["Device"] == "/dev/sdf"
    assert got["Attachments"][0]["DeleteOnTermination"] is False
    flt = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
    root = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"][0]
    assert {v["VolumeId"] for v in flt} == {a, b, root["Ebs"]["VolumeId"]}  # the root device is a volume too
    flt = ec2.describe_volumes(Filters=[{"Name": "attachment.device", "Values": ["/dev/xvdg"]}])["Volumes"]
    assert [v["VolumeId"] for v in flt] == [b]
    flt = ec2.describe_volumes(Filters=[{"Name": "attachment.delete-on-termination", "Values": ["false"]},
                                        {"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
    assert len(flt) == 2

    assert code_of(ec2.delete_volume, VolumeId=a) == "VolumeInUse"
    assert code_of(ec2.attach_volume, VolumeId=a, InstanceId=iid, Device="/dev/sdh") == "VolumeInUse"
    c = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[c], WaiterConfig=FAST)
    assert code_of(ec2.attach_volume, VolumeId=c, InstanceId=iid, Device="/dev/sdf") == "InvalidParameterValue"
    assert code_of(ec2.attach_volume, VolumeId=c, InstanceId=iid, Device="/dev/sda1") == "InvalidParameterValue"
    assert code_of(ec2.attach_volume, VolumeId=c, InstanceId="i-0123456789abcdef0", Device="/dev/sdh") == \
        "InvalidInstanceID.NotFound"
    assert code_of(ec2.detach_volume, VolumeId=c) == "IncorrectState"
    assert code_of(ec2.detach_volume, VolumeId=a, InstanceId="i-0123456789abcdef0") == "InvalidAttachment.NotFound"

    out = ec2.detach_volume(VolumeId=a)
    assert out["State"] == "detaching" and out["Device"] == "/dev/sdf"
    ec2.get_waiter("volume_available").wait(VolumeIds=[a], WaiterConfig=FAST)
    assert volume(ec2, a)["Attachments"] == []
    # the freed device name (and target) is taken again
    ec2.attach_volume(VolumeId=c, InstanceId=iid, Device="/dev/sdf")
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[c], WaiterConfig=FAST)
    ec2.detach_volume(VolumeId=c, Force=True)
    ec2.get_waiter("volume_available").wait(VolumeIds=[c], WaiterConfig=FAST)

    # a stopped instance takes a volume too; terminating it detaches its volumes
    ec2.stop_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=FAST)
    ec2.attach_volume(VolumeId=a, InstanceId=iid, Device="/dev/sdh")
    wait_for("attached to the stopped instance", lambda: volume(ec2, a)["Attachments"][0]["State"] == "attached", 30)
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.get_waiter("volume_available").wait(VolumeIds=[a, b], WaiterConfig=FAST)
    assert code_of(ec2.attach_volume, VolumeId=a, InstanceId=iid, Device="/dev/sdf") == "InvalidInstanceID.NotFound"
    for vid in (a, b, c):
        ec2.delete_volume(VolumeId=vid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[a, b, c], WaiterConfig=FAST)


def test_the_available_waiter_fails_on_a_deleted_volume(ec2: Any, zone: str) -> None:
    vid = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    ec2.delete_volume(VolumeId=vid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid], WaiterConfig=FAST)
    with pytest.raises(WaiterError):
        ec2.get_waiter("volume_in_use").wait(VolumeIds=[vid], WaiterConfig={"Delay": 1, "MaxAttempts": 3})


def test_modify_volume_status_and_attributes(ec2: Any, zone: str) -> None:
    vid = ec2.create_volume(AvailabilityZone=zone, Size=2)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    assert code_of(ec2.modify_volume, VolumeId=vid, Size=1) == "InvalidParameterValue"
    assert code_of(ec2.describe_volumes_modifications, VolumeIds=[vid]) == "InvalidVolumeModification.NotFound"
    mod = ec2.modify_volume(VolumeId=vid, VolumeType="gp3")["VolumeModification"]
    assert (mod["ModificationState"], mod["OriginalVolumeType"], mod["TargetVolumeType"]) == ("completed", "gp2", "gp3")
    assert volume(ec2, vid)["VolumeType"] == "gp3"
    mod = ec2.modify_volume(VolumeId=vid, Size=4)["VolumeModification"]
    assert (mod["ModificationState"], mod["OriginalSize"], mod["TargetSize"]) == ("modifying", 2, 4)

    def ended() -> Any:
        got = ec2.describe_volumes_modifications(VolumeIds=[vid])["VolumesModifications"][0]
        return got if got["ModificationState"] in ("completed", "failed") else None

    done = wait_for("the modification ended", ended, 30)
    # libvirt's test driver cannot resize a volume: the grow fails, saying why, and the size stays
    assert done["ModificationState"] == "failed" and "not supported" in done["StatusMessage"]
    assert volume(ec2, vid)["Size"] == 2
    listed = ec2.describe_volumes_modifications(Filters=[{"Name": "modification-state", "Values": ["failed"]}])
    assert vid in {m["VolumeId"] for m in listed["VolumesModifications"]}

    status = ec2.describe_volume_status(VolumeIds=[vid])["VolumeStatuses"][0]
    assert status["VolumeStatus"]["Status"] == "ok" and status["AvailabilityZone"] == zone
    assert {d["Name"] for d in status["VolumeStatus"]["Details"]} == {"io-enabled", "io-performance"}
    ok = ec2.describe_volume_status(Filters=[{"Name": "volume-status.status", "Values": ["ok"]}])["VolumeStatuses"]
    assert vid in {s["VolumeId"] for s in ok}
    assert code_of(ec2.describe_volume_status, Filters=[{"Name": "nope", "Values": ["x"]}]) == "InvalidParameterValue"

    assert ec2.describe_volume_attribute(VolumeId=vid, Attribute="autoEnableIO")["AutoEnableIO"]["Value"] is False
    ec2.modify_volume_attribute(VolumeId=vid, AutoEnableIO={"Value": True})
    assert ec2.describe_volume_attribute(VolumeId=vid, Attribute="autoEnableIO")["AutoEnableIO"]["Value"] is True
    assert ec2.describe_volume_attribute(VolumeId=vid, Attribute="productCodes")["ProductCodes"] == []
    assert code_of(ec2.describe_volume_attribute, VolumeId=vid, Attribute="colour") == "InvalidParameterValue"
    ec2.delete_volume(VolumeId=vid)


def test_volume_quotas_count_and_size(server: LiveServer, zone: str) -> None:
    creds = server.make_user("vol-quota")
    ec2 = server.client("ec2", creds)
    out = server.cli("admin", "quota", "set", "vol-quota", "--volumes", "2", "--volume-gb", "5", "--json")
    assert json.loads(out.stdout)["volumes"] == 2
    a = ec2.create_volume(AvailabilityZone=zone, Size=3)["VolumeId"]
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=3) == "VolumeLimitExceeded"
    b = ec2.create_volume(AvailabilityZone=zone, Size=2)["VolumeId"]
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=1) == "VolumeLimitExceeded"
    ec2.get_waiter("volume_available").wait(VolumeIds=[a, b], WaiterConfig=FAST)
    assert code_of(ec2.modify_volume, VolumeId=b, Size=3) == "VolumeLimitExceeded"
    shown = json.loads(server.cli("admin", "quota", "show", "vol-quota", "--json").stdout)
    assert shown["usage"]["volumes"] == 2 and shown["usage"]["volume_bytes"] == 5 << 30
    ec2.delete_volume(VolumeId=a)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[a], WaiterConfig=FAST)
    c = ec2.create_volume(AvailabilityZone=zone, Size=3)["VolumeId"]  # a deleted volume frees its share
    server.cli("admin", "quota", "set", "vol-quota", "--volumes", "unlimited", "--volume-gb", "default")
    ec2.get_waiter("volume_available").wait(VolumeIds=[c], WaiterConfig=FAST)
    for vid in (b, c):
        ec2.delete_volume(VolumeId=vid)


def test_a_root_volume_kept_after_its_instance_counts_as_a_volume(server: LiveServer, zone: str, image: str) -> None:
    """A root with DeleteOnTermination false stays as a volume when its instance ends: it counts
    against the volume quota from the launch (or from ModifyInstanceAttribute) on."""
    creds = server.make_user("vol-keep")
    ec2 = server.client("ec2", creds)
    server.cli("admin", "quota", "set", "vol-keep", "--volumes", "1", "--volume-gb", "2")
    root = ec2.describe_images(ImageIds=[image])["Images"][0]["RootDeviceName"]

    def launch(count: int, size: int | None, keep: bool) -> Any:
        ebs: dict[str, Any] = {"DeleteOnTermination": not keep}
        if size is not None:
            ebs["VolumeSize"] = size
        return lambda: ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count, InstanceType="t2.micro",
                                         BlockDeviceMappings=[{"DeviceName": root, "Ebs": ebs}])

    assert code_of(launch(1, 500, True)) == "VolumeLimitExceeded"
    assert code_of(launch(2, 1, True)) == "VolumeLimitExceeded"
    kept = launch(1, 2, True)()["Instances"][0]["InstanceId"]
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=1) == "VolumeLimitExceeded"
    plain = launch(1, None, False)()["Instances"][0]["InstanceId"]  # a root that goes with its instance counts nothing
    ec2.get_waiter("instance_running").wait(InstanceIds=[kept, plain], WaiterConfig=FAST)
    assert code_of(ec2.modify_instance_attribute, InstanceId=plain, BlockDeviceMappings=[
        {"DeviceName": root, "Ebs": {"DeleteOnTermination": False}}]) == "VolumeLimitExceeded"
    shown = json.loads(server.cli("admin", "quota", "show", "vol-keep", "--json").stdout)
    assert shown["usage"]["volumes"] == 1 and shown["usage"]["volume_bytes"] == 2 << 30
    kept_root = [m["Ebs"]["VolumeId"] for m in ec2.describe_instances(InstanceIds=[kept])["Reservations"][0][
        "Instances"][0]["BlockDeviceMappings"] if m["DeviceName"] == root]
    ec2.terminate_instances(InstanceIds=[kept, plain])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[kept, plain], WaiterConfig=FAST)
    ec2.get_waiter("volume_available").wait(VolumeIds=kept_root, WaiterConfig=FAST)
    assert code_of(ec2.create_volume, AvailabilityZone=zone, Size=1) == "VolumeLimitExceeded"
    ec2.delete_volume(VolumeId=kept_root[0])
    ec2.get_waiter("volume_deleted").wait(VolumeIds=kept_root, WaiterConfig=FAST)
    server.cli("admin", "quota", "set", "vol-keep", "--volumes", "default", "--volume-gb", "default")


def test_the_aws_cli_walk(server: LiveServer, dora: Creds, zone: str, image: str) -> None:
    """create-volume, attach-volume, wait volume-in-use, detach-volume, wait volume-available,
    create-snapshot, wait snapshot-completed, create-volume from it, delete-volume both,
    delete-snapshot, wait volume-deleted."""
    iid = launch(server.client("ec2", dora), image)

    def aws(*args: str) -> Any:
        out = server.aws("ec2", *args, creds=dora).stdout
        return json.loads(out) if out.strip() else None

    vid = aws("create-volume", "--availability-zone", zone, "--size", "1", "--volume-type", "gp2",
              "--tag-specifications", "ResourceType=volume,Tags=[{Key=Name,Value=cli}]")["VolumeId"]
    aws("wait", "volume-available", "--volume-ids", vid)
    att = aws("attach-volume", "--volume-id", vid, "--instance-id", iid, "--device", "/dev/sdf")
    assert att["Device"] == "/dev/sdf" and att["State"] == "attaching"
    aws("wait", "volume-in-use", "--volume-ids", vid)
    assert aws("describe-volumes", "--volume-ids", vid)["Volumes"][0]["Attachments"][0]["InstanceId"] == iid
    aws("detach-volume", "--volume-id", vid)
    aws("wait", "volume-available", "--volume-ids", vid)
    sid = aws("create-snapshot", "--volume-id", vid, "--description", "cli walk")["SnapshotId"]
    aws("wait", "snapshot-completed", "--snapshot-ids", sid)
    restored = aws("create-volume", "--snapshot-id", sid, "--availability-zone", zone)["VolumeId"]
    aws("wait", "volume-available", "--volume-ids", restored)
    assert aws("describe-volumes", "--volume-ids", restored)["Volumes"][0]["SnapshotId"] == sid
    for made in (restored, vid):
        aws("delete-volume", "--volume-id", made)
    aws("delete-snapshot", "--snapshot-id", sid)
    aws("wait", "volume-deleted", "--volume-ids", vid, restored)
    gone = server.aws("ec2", "delete-volume", "--volume-id", vid, creds=dora, check=False)
    assert gone.returncode != 0 and "InvalidVolume.NotFound" in gone.stderr
    server.client("ec2", dora).terminate_instances(InstanceIds=[iid])


def test_node_volume_storage_and_zones(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A node's --volume-gb bounds the volumes it holds (InsufficientVolumeCapacity), `admin node show`
    reports used and free, and a volume never attaches across zones (InvalidVolume.ZoneMismatch)."""
    from backends.libvirt.testing import make_test_node_uri

    root = tmp_path_factory.mktemp("vol-nodes")
    srv = LiveServer(root / "data").start()
    try:
        for name, zone_name in (("va", "vz-a"), ("vb", "vz-b")):
            (root / name).mkdir()
            srv.cli("admin", "node", "add", name, "--uri", make_test_node_uri(root / name, 65536, 64), "--zone",
                    zone_name, "--volume-gb", "3")
        shown = json.loads(srv.cli("admin", "node", "show", "va", "--json").stdout)["volume_storage"]
        assert shown == {"capacity_gib": 3, "used_gib": 0, "free_gib": 3, "volumes": 0}
        path = root / "disk.img"
        path.write_bytes(b"\0" * 65536)
        image_id = json.loads(srv.cli("admin", "image", "import", "vol-nodes", str(path), "--json", "--public").stdout)[
            "image_id"]
        ec2 = srv.client("ec2", srv.make_user("vol-nodes"))
        a = ec2.create_volume(AvailabilityZone="vz-a", Size=2)["VolumeId"]
        assert code_of(ec2.create_volume, AvailabilityZone="vz-a", Size=2) == "InsufficientVolumeCapacity"
        ec2.get_waiter("volume_available").wait(VolumeIds=[a], WaiterConfig=FAST)
        assert code_of(ec2.modify_volume, VolumeId=a, Size=4) == "InsufficientVolumeCapacity"
        text = srv.cli("admin", "node", "show", "va").stdout
        assert "volume storage: 2 GiB used by 1 volume(s), 1 GiB free of 3 GiB" in text
        srv.cli("admin", "node", "update", "va", "--volume-gb", "10")
        b = ec2.create_volume(AvailabilityZone="vz-a", Size=2)["VolumeId"]
        assert json.loads(srv.cli("admin", "node", "show", "va", "--json").stdout)["volume_storage"]["free_gib"] == 6
        # a root that stays after its instance needs room there too
        root_device = ec2.describe_images(ImageIds=[image_id])["Images"][0]["RootDeviceName"]
        assert code_of(ec2.run_instances, ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t2.micro",
                       Placement={"AvailabilityZone": "vz-a"}, BlockDeviceMappings=[
                           {"DeviceName": root_device, "Ebs": {"VolumeSize": 7, "DeleteOnTermination": False}}]
                       ) == "InsufficientVolumeCapacity"
        iid = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t2.micro",
                                Placement={"AvailabilityZone": "vz-b"})["Instances"][0]["InstanceId"]
        ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
        assert code_of(ec2.attach_volume, VolumeId=a, InstanceId=iid, Device="/dev/sdf") == "InvalidVolume.ZoneMismatch"
        # a volume on va attached to an instance on vc, in the same zone, must move there: test nodes
        # have no volume streams, so the attach fails, the volume is available again, and
        # DescribeVolumeStatus says why (an attach-failed event of that instance)
        (root / "vc").mkdir()
        srv.cli("admin", "node", "add", "vc", "--uri", make_test_node_uri(root / "vc", 65536, 64), "--zone", "vz-a")
        srv.cli("admin", "node", "update", "va", "--inactive")
        try:
            there = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t2.micro",
                                      Placement={"AvailabilityZone": "vz-a"})["Instances"][0]["InstanceId"]
        finally:
            srv.cli("admin", "node", "update", "va", "--active")
        ec2.get_waiter("instance_running").wait(InstanceIds=[there], WaiterConfig=FAST)
        assert ec2.describe_volume_status(VolumeIds=[a])["VolumeStatuses"][0]["Events"] == []
        ec2.attach_volume(VolumeId=a, InstanceId=there, Device="/dev/sdf")
        wait_for("the attach failed", lambda: volume(ec2, a)["State"] == "available", 30)
        assert volume(ec2, a).get("Attachments", []) == []
        [event] = ec2.describe_volume_status(VolumeIds=[a])["VolumeStatuses"][0]["Events"]
        assert (event["EventType"], event["InstanceId"]) == ("attach-failed", there), event
        assert event["Description"].startswith(f"attach to {there} failed: ") and "not supported" in event[
            "Description"].lower(), event
        assert re.fullmatch(r"evol-[0-9a-f]{17}", event["EventId"]) and event["NotBefore"]
        found = ec2.describe_volume_status(Filters=[{"Name": "event.event-type", "Values": ["attach-failed"]}])
        assert [v["VolumeId"] for v in found["VolumeStatuses"]] == [a]
        assert code_of(ec2.create_volume, AvailabilityZone="us-east-1a", Size=1) == "InvalidParameterValue"
        ec2.get_waiter("volume_available").wait(VolumeIds=[b], WaiterConfig=FAST)
        bad = srv.cli("admin", "node", "update", "va", "--volume-gb", "-1", check=False)
        assert bad.returncode != 0 and "--volume-gb" in bad.stderr
    finally:
        srv.stop()
