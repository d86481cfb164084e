"""EBS snapshots through boto3 and the aws CLI against a live server on libvirt's test driver.

The test driver keeps no bytes in volumes, so these snapshots hold none either (data format
"empty"; tests/unit/test_backend_backup.py and the -m vm tests copy real disks): what is checked
here is the API: life cycle and waiters, filters, pagination, sharing through
createVolumePermission, volumes made from snapshots, and the errors EC2 gives.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.live import Creds, LiveServer

FAST = {"Delay": 1, "MaxAttempts": 60}


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> Creds:
    return server.make_user("snap-owner")


@pytest.fixture(scope="module")
def other(server: LiveServer) -> Creds:
    return server.make_user("snap-other")


@pytest.fixture(scope="module")
def ec2o(server: LiveServer, owner: Creds) -> Any:
    return server.client("ec2", owner)


@pytest.fixture(scope="module")
def ec2x(server: LiveServer, other: Creds) -> Any:
    return server.client("ec2", other)


@pytest.fixture(scope="module")
def zone(ec2o: Any) -> str:
    return str(ec2o.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"])


@pytest.fixture(scope="module")
def volume(ec2o: Any, zone: str) -> str:
    vid = str(ec2o.create_volume(Size=2, AvailabilityZone=zone)["VolumeId"])
    ec2o.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    return vid


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _refused(call: Any, code: str, **kw: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call(**kw)
    assert _code(exc) == code, exc.value.response["Error"]
    status = exc.value.response["ResponseMetadata"]["HTTPStatusCode"]
    assert 400 <= status < 500
    return str(exc.value.response["Error"]["Message"])


def _snapshot(ec2: Any, volume_id: str, **kw: Any) -> str:
    sid = str(ec2.create_snapshot(VolumeId=volume_id, **kw)["SnapshotId"])
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST)
    return sid


def test_life_cycle_with_waiters(ec2o: Any, volume: str, zone: str) -> None:
    resp = ec2o.create_snapshot(VolumeId=volume, Description="first",
                                TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "Name", "Value": "s1"}]}])
    sid = resp["SnapshotId"]
    assert sid.startswith("snap-") and len(sid) == 22
    assert (resp["VolumeId"], resp["State"], resp["VolumeSize"], resp["Description"]) == (volume, "pending", 2, "first")
    assert resp["OwnerId"].isdigit() and resp["Encrypted"] is False
    assert resp["Tags"] == [{"Key": "Name", "Value": "s1"}]
    ec2o.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST)
    snap = ec2o.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    assert (snap["State"], snap["Progress"], snap["VolumeId"]) == ("completed", "100%", volume)
    assert snap["Tags"] == [{"Key": "Name", "Value": "s1"}] and snap["StartTime"].tzinfo is not None
    # a volume from it, at its size or larger; smaller is refused
    made = ec2o.create_volume(SnapshotId=sid, AvailabilityZone=zone)
    assert (made["SnapshotId"], made["Size"]) == (sid, 2)
    larger = ec2o.create_volume(SnapshotId=sid, AvailabilityZone=zone, Size=3)
    ec2o.get_waiter("volume_available").wait(VolumeIds=[made["VolumeId"], larger["VolumeId"]], WaiterConfig=FAST)
    vols = {v["VolumeId"]: v for v in ec2o.describe_volumes(VolumeIds=[made["VolumeId"], larger["VolumeId"]])["Volumes"]}
    assert vols[larger["VolumeId"]]["Size"] == 3 and vols[larger["VolumeId"]]["SnapshotId"] == sid
    found = ec2o.describe_volumes(Filters=[{"Name": "snapshot-id", "Values": [sid]}])["Volumes"]
    assert {v["VolumeId"] for v in found} == {made["VolumeId"], larger["VolumeId"]}
    message = _refused(ec2o.create_volume, "InvalidParameterValue", SnapshotId=sid, AvailabilityZone=zone, Size=1)
    assert "2" in message
    for vid in (made["VolumeId"], larger["VolumeId"]):
        ec2o.delete_volume(VolumeId=vid)
    ec2o.delete_snapshot(SnapshotId=sid)
    _refused(ec2o.describe_snapshots, "InvalidSnapshot.NotFound", SnapshotIds=[sid])
    _refused(ec2o.delete_snapshot, "InvalidSnapshot.NotFound", SnapshotId=sid)
    _refused(ec2o.create_volume, "InvalidSnapshot.NotFound", SnapshotId=sid, AvailabilityZone=zone)


def test_bad_requests_get_ec2_errors(ec2o: Any, volume: str) -> None:
    _refused(ec2o.create_snapshot, "InvalidVolumeID.Malformed", VolumeId="vol-xyz")
    _refused(ec2o.create_snapshot, "InvalidVolume.NotFound", VolumeId="vol-0123456789abcdef0")
    _refused(ec2o.create_snapshot, "InvalidParameterValue", VolumeId=volume, Description="x" * 256)
    _refused(ec2o.create_snapshot, "InvalidParameterValue", VolumeId=volume,
             TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "a", "Value": "b"}]}])
    _refused(ec2o.describe_snapshots, "InvalidSnapshotID.Malformed", SnapshotIds=["snap-nothex"])
    _refused(ec2o.describe_snapshots, "InvalidSnapshot.NotFound", SnapshotIds=["snap-0123456789abcdef0"])
    _refused(ec2o.delete_snapshot, "InvalidSnapshotID.Malformed", SnapshotId="vol-0123456789abcdef0")
    _refused(ec2o.describe_snapshots, "InvalidParameterValue", Filters=[{"Name": "colour", "Values": ["red"]}])
    _refused(ec2o.describe_snapshots, "InvalidParameterValue", Filters=[{"Name": "progress", "Values": ["most"]}])
    _refused(ec2o.describe_snapshots, "InvalidUserID.Malformed", OwnerIds=["someone"])
    _refused(ec2o.describe_snapshots, "InvalidParameterValue", MaxResults=2)
    _refused(ec2o.describe_snapshot_attribute, "InvalidParameterValue", SnapshotId="snap-0123456789abcdef0",
             Attribute="size")
    with pytest.raises(ClientError) as exc:
        ec2o.create_snapshot(VolumeId=volume, DryRun=True)
    assert _code(exc) == "DryRunOperation"


def test_filters_and_pagination(ec2o: Any, volume: str, zone: str) -> None:
    second = str(ec2o.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"])
    ec2o.get_waiter("volume_available").wait(VolumeIds=[second], WaiterConfig=FAST)
    mine = [_snapshot(ec2o, volume, Description=f"batch {i}",
                      TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "batch", "Value": str(i % 2)}]}])
            for i in range(5)]
    mine.append(_snapshot(ec2o, second, Description="of the second"))

    def listed(**kw: Any) -> set[str]:
        return {s["SnapshotId"] for s in ec2o.describe_snapshots(**kw)["Snapshots"]} & set(mine)

    assert listed(OwnerIds=["self"]) == set(mine)
    account = ec2o.describe_snapshots(SnapshotIds=[mine[0]])["Snapshots"][0]["OwnerId"]
    assert listed(OwnerIds=[account]) == set(mine) and listed(OwnerIds=["amazon"]) == set()

    def f(name: str, *values: str) -> set[str]:
        return listed(Filters=[{"Name": name, "Values": list(values)}])

    assert f("snapshot-id", mine[1]) == {mine[1]}
    assert f("volume-id", second) == {mine[5]}
    assert f("status", "completed") == set(mine) and f("status", "pending", "error") == set()
    assert f("progress", "100%") == set(mine)
    assert f("volume-size", "1") == {mine[5]} and f("volume-size", "2") == set(mine[:5])
    assert f("description", "batch *") == set(mine[:5]) and f("description", "of the second") == {mine[5]}
    assert f("tag:batch", "1") == {mine[1], mine[3]} and f("tag-key", "batch") == set(mine[:5])
    assert f("owner-id", account) == set(mine)
    start = ec2o.describe_snapshots(SnapshotIds=[mine[0]])["Snapshots"][0]["StartTime"]
    assert mine[0] in f("start-time", start.strftime("%Y-%m-%d*"))
    assert f("start-time", "2001-01-01*") == set()
    # pagination: pages of 5 with the encrypted tokens, every snapshot once
    seen: list[str] = []
    kw: dict[str, Any] = {"OwnerIds": ["self"], "MaxResults": 5}
    pages = 0
    while True:
        page = ec2o.describe_snapshots(**kw)
        seen += [s["SnapshotId"] for s in page["Snapshots"]]
        pages += 1
        if "NextToken" not in page:
            break
        kw["NextToken"] = page["NextToken"]
    assert pages >= 2 and len(seen) == len(set(seen)) and set(mine) <= set(seen)
    paginated = [s["SnapshotId"] for p in ec2o.get_paginator("describe_snapshots").paginate(
        OwnerIds=["self"], PaginationConfig={"PageSize": 5}) for s in p["Snapshots"]]
    assert sorted(paginated) == sorted(seen)
    _refused(ec2o.describe_snapshots, "InvalidParameterValue", OwnerIds=["self"], MaxResults=5,
             NextToken=kw["NextToken"], Filters=[{"Name": "status", "Values": ["completed"]}])
    for sid in mine:
        ec2o.delete_snapshot(SnapshotId=sid)
    ec2o.delete_volume(VolumeId=second)


def test_sharing_through_create_volume_permission(ec2o: Any, ec2x: Any, volume: str, zone: str) -> None:
    sid = _snapshot(ec2o, volume, Description="to share")
    other_account = ec2x.describe_security_groups()["SecurityGroups"][0]["OwnerId"]
    # not shared: the other user sees nothing, restores nothing, changes nothing
    _refused(ec2x.describe_snapshots, "InvalidSnapshot.NotFound", SnapshotIds=[sid])
    assert sid not in {s["SnapshotId"] for s in ec2x.describe_snapshots()["Snapshots"]}
    _refused(ec2x.create_volume, "InvalidSnapshot.NotFound", SnapshotId=sid, AvailabilityZone=zone)
    _refused(ec2x.modify_snapshot_attribute, "InvalidSnapshot.NotFound", SnapshotId=sid,
             Attribute="createVolumePermission", OperationType="add", UserIds=[other_account])
    assert ec2o.describe_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")[
        "CreateVolumePermissions"] == []
    # shared with that user
    ec2o.modify_snapshot_attribute(SnapshotId=sid, CreateVolumePermission={"Add": [{"UserId": other_account}]})
    perms = ec2o.describe_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")
    assert perms["CreateVolumePermissions"] == [{"UserId": other_account}] and perms["SnapshotId"] == sid
    assert ec2x.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["State"] == "completed"
    assert sid in {s["SnapshotId"] for s in ec2x.describe_snapshots(RestorableByUserIds=["self"])["Snapshots"]}
    assert sid not in {s["SnapshotId"] for s in ec2x.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert sid in {s["SnapshotId"] for s in ec2o.describe_snapshots(RestorableByUserIds=[other_account])["Snapshots"]}
    theirs = ec2x.create_volume(SnapshotId=sid, AvailabilityZone=zone)
    ec2x.get_waiter("volume_available").wait(VolumeIds=[theirs["VolumeId"]], WaiterConfig=FAST)
    assert ec2x.describe_volumes(VolumeIds=[theirs["VolumeId"]])["Volumes"][0]["SnapshotId"] == sid
    # ... who still may not change, read the permissions of, or delete it
    _refused(ec2x.describe_snapshot_attribute, "AuthFailure", SnapshotId=sid, Attribute="createVolumePermission")
    _refused(ec2x.modify_snapshot_attribute, "AuthFailure", SnapshotId=sid,
             CreateVolumePermission={"Add": [{"Group": "all"}]})
    _refused(ec2x.reset_snapshot_attribute, "AuthFailure", SnapshotId=sid, Attribute="createVolumePermission")
    _refused(ec2x.delete_snapshot, "AuthFailure", SnapshotId=sid)
    _refused(ec2x.create_tags, "InvalidSnapshot.NotFound", Resources=[sid], Tags=[{"Key": "k", "Value": "v"}])
    # removed again (the legacy form: OperationType + UserId.N)
    ec2o.modify_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission", OperationType="remove",
                                   UserIds=[other_account])
    _refused(ec2x.describe_snapshots, "InvalidSnapshot.NotFound", SnapshotIds=[sid])
    # public, then reset to private
    ec2o.modify_snapshot_attribute(SnapshotId=sid, CreateVolumePermission={"Add": [{"Group": "all"}]})
    assert sid in {s["SnapshotId"] for s in ec2x.describe_snapshots(RestorableByUserIds=["all"])["Snapshots"]}
    assert ec2o.describe_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")[
        "CreateVolumePermissions"] == [{"Group": "all"}]
    ec2o.reset_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")
    _refused(ec2x.describe_snapshots, "InvalidSnapshot.NotFound", SnapshotIds=[sid])
    _refused(ec2o.modify_snapshot_attribute, "InvalidParameterValue", SnapshotId=sid,
             CreateVolumePermission={"Add": [{"Group": "everyone"}]})
    _refused(ec2o.modify_snapshot_attribute, "MissingParameter", SnapshotId=sid)
    ec2x.delete_volume(VolumeId=theirs["VolumeId"])
    ec2o.delete_snapshot(SnapshotId=sid)


def test_aws_cli_walk(server: LiveServer, owner: Creds, zone: str) -> None:
    def aws(*args: str) -> Any:
        out = server.aws("ec2", *args, creds=owner).stdout
        return json.loads(out) if out.strip() else None

    vid = aws("create-volume", "--size", "1", "--availability-zone", zone)["VolumeId"]
    aws("wait", "volume-available", "--volume-ids", vid)
    sid = aws("create-snapshot", "--volume-id", vid, "--description", "cli walk")["SnapshotId"]
    aws("wait", "snapshot-completed", "--snapshot-ids", sid)
    snap = aws("describe-snapshots", "--snapshot-ids", sid)["Snapshots"][0]
    assert (snap["State"], snap["Description"]) == ("completed", "cli walk")
    restored = aws("create-volume", "--snapshot-id", sid, "--availability-zone", zone)["VolumeId"]
    aws("wait", "volume-available", "--volume-ids", restored)
    assert aws("describe-volumes", "--volume-ids", restored)["Volumes"][0]["SnapshotId"] == sid
    aws("delete-volume", "--volume-id", restored)
    aws("delete-snapshot", "--snapshot-id", sid)
    aws("delete-volume", "--volume-id", vid)
    gone = server.aws("ec2", "describe-snapshots", "--snapshot-ids", sid, creds=owner, check=False)
    assert gone.returncode != 0 and "InvalidSnapshot.NotFound" in gone.stderr


def test_image_registered_from_a_snapshot(ec2o: Any, ec2x: Any, volume: str) -> None:
    sid = _snapshot(ec2o, volume, Description="root")
    data = _snapshot(ec2o, volume, Description="data")
    image = ec2o.register_image(
        Name="from-snapshot", RootDeviceName="/dev/sda1", Architecture="x86_64",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": sid, "VolumeSize": 4}},
                             {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": data, "DeleteOnTermination": False}},
                             {"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 1, "VolumeType": "gp3"}}])["ImageId"]
    img = ec2o.describe_images(ImageIds=[image])["Images"][0]
    assert (img["RootDeviceType"], img["RootDeviceName"]) == ("ebs", "/dev/sda1")
    maps = {m["DeviceName"]: m["Ebs"] for m in img["BlockDeviceMappings"]}
    assert maps["/dev/sda1"]["SnapshotId"] == sid and maps["/dev/sda1"]["VolumeSize"] == 4
    assert maps["/dev/sda1"]["DeleteOnTermination"] is True
    assert (maps["/dev/sdf"]["SnapshotId"], maps["/dev/sdf"]["VolumeSize"], maps["/dev/sdf"]["DeleteOnTermination"]) \
        == (data, 2, False)
    assert maps["/dev/sdg"] == {"VolumeSize": 1, "VolumeType": "gp3", "DeleteOnTermination": True, "Encrypted": False}
    attr = ec2o.describe_image_attribute(ImageId=image, Attribute="blockDeviceMapping")["BlockDeviceMappings"]
    assert {m["DeviceName"] for m in attr} == {"/dev/sda1", "/dev/sdf", "/dev/sdg"}
    by_snapshot = ec2o.describe_images(Filters=[{"Name": "block-device-mapping.snapshot-id", "Values": [data]}])
    assert [i["ImageId"] for i in by_snapshot["Images"]] == [image]
    assert image in {i["ImageId"] for i in ec2o.describe_images(
        Owners=["self"], Filters=[{"Name": "root-device-type", "Values": ["ebs"]}])["Images"]}
    # a snapshot an image uses stays
    message = _refused(ec2o.delete_snapshot, "InvalidSnapshot.InUse", SnapshotId=sid)
    assert image in message
    # launching it (a root volume made from the snapshot): tests/functional/test_ec2_block_device_mappings.py
    # bad registrations
    _refused(ec2o.register_image, "InvalidParameterValue", Name="too-small", RootDeviceName="/dev/sda1",
             BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": sid, "VolumeSize": 1}}])
    _refused(ec2o.register_image, "InvalidBlockDeviceMapping", Name="no-root", RootDeviceName="/dev/sda1",
             BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": sid}}])
    _refused(ec2o.register_image, "MissingParameter", Name="no-root-name",
             BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": sid}}])
    _refused(ec2o.register_image, "InvalidParameterCombination", Name="both", ImageLocation="Repo/x",
             RootDeviceName="/dev/sda1", BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": sid}}])
    # another user cannot register an image from a snapshot not shared with them
    _refused(ec2x.register_image, "InvalidSnapshot.NotFound", Name="stolen", RootDeviceName="/dev/sda1",
             BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": sid}}])
    # deregistering with DeleteAssociatedSnapshots removes the image's snapshots
    ec2o.deregister_image(ImageId=image, DeleteAssociatedSnapshots=True)
    _refused(ec2o.describe_snapshots, "InvalidSnapshot.NotFound", SnapshotIds=[sid])
    _refused(ec2o.describe_snapshots, "InvalidSnapshot.NotFound", SnapshotIds=[data])


def test_create_image_snapshots_the_attached_volumes(server: LiveServer, ec2o: Any, zone: str,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("img") / "root.img"
    path.write_bytes(b"\0" * (1 << 20))
    ami = json.loads(server.cli("admin", "image", "import", "snap-test-root", str(path), "--public",
                                "--json").stdout)["image_id"]
    iid = ec2o.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2o.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    vid = ec2o.create_volume(Size=3, AvailabilityZone=zone)["VolumeId"]
    ec2o.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    ec2o.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    ec2o.get_waiter("volume_in_use").wait(VolumeIds=[vid], WaiterConfig=FAST)
    image = ec2o.create_image(InstanceId=iid, Name="with-a-volume", NoReboot=True,
                              TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "from", "Value": "ci"}]}])[
        "ImageId"]
    ec2o.get_waiter("image_available").wait(ImageIds=[image], WaiterConfig=FAST)
    img = ec2o.describe_images(ImageIds=[image])["Images"][0]
    assert img["RootDeviceType"] == "instance-store"
    maps = {m["DeviceName"]: m["Ebs"] for m in img["BlockDeviceMappings"]}
    assert list(maps) == ["/dev/sdf"] and maps["/dev/sdf"]["VolumeSize"] == 3
    sid = maps["/dev/sdf"]["SnapshotId"]
    ec2o.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST)
    snap = ec2o.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    assert (snap["VolumeId"], snap["VolumeSize"]) == (vid, 3) and iid in snap["Description"]
    assert snap["Tags"] == [{"Key": "from", "Value": "ci"}]
    _refused(ec2o.delete_snapshot, "InvalidSnapshot.InUse", SnapshotId=sid)
    ec2o.deregister_image(ImageId=image, DeleteAssociatedSnapshots=True)
    _refused(ec2o.describe_snapshots, "InvalidSnapshot.NotFound", SnapshotIds=[sid])
    ec2o.terminate_instances(InstanceIds=[iid])
    ec2o.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)
