"""Cross-tenant cases for snapshots (used by test_ec2_cross_tenant.py's CASES).

Alice owns a volume and a completed snapshot of it (made on first use, per deployment). Bob may
not see, restore, share, change or delete it; once alice shares it with him (createVolumePermission)
he may see it and make volumes from it, and still not change or delete it; unshared, it is gone
for him again.
"""

from __future__ import annotations

from typing import Any

from tests.functional.tools import wait_for
from tests.security import refused

SNAP_NF = {"InvalidSnapshot.NotFound"}
VOLUME_NF = {"InvalidVolume.NotFound"}
_made: dict[int, tuple[str, str, str]] = {}


def alices(x: Any) -> tuple[str, str, str]:
    """(volume id, snapshot id, zone) of alice's, made once per Loot."""
    key = id(x)
    if key not in _made:
        ec2 = x.alice
        zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
        vol = ec2.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"]
        wait_for("alice's volume available",
                 lambda: ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["State"] == "available", timeout=60)
        snap = ec2.create_snapshot(VolumeId=vol, Description="alice's",
                                   TagSpecifications=[{"ResourceType": "snapshot",
                                                       "Tags": [{"Key": "owner", "Value": "alice"}]}])["SnapshotId"]
        wait_for("alice's snapshot completed",
                 lambda: ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"] == "completed", timeout=60)
        _made[key] = (vol, snap, zone)
    return _made[key]


def _intact(x: Any, snap: str) -> None:
    row = x.alice.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]
    assert (row["State"], row["Description"]) == ("completed", "alice's")
    assert row["Tags"] == [{"Key": "owner", "Value": "alice"}]
    assert x.alice.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")[
        "CreateVolumePermissions"] == []


def _bob_sees_none(x: Any, snap: str, vol: str) -> None:
    refused(x.bob.describe_snapshots, SnapshotIds=[snap], codes=SNAP_NF)
    assert snap not in {s["SnapshotId"] for s in x.bob.describe_snapshots()["Snapshots"]}
    for kw in ({"Filters": [{"Name": "volume-id", "Values": [vol]}]}, {"RestorableByUserIds": ["self"]},
               {"Filters": [{"Name": "tag:owner", "Values": ["alice"]}]}):
        assert snap not in {s["SnapshotId"] for s in x.bob.describe_snapshots(**kw)["Snapshots"]}


def create_snapshot(x: Any) -> None:
    vol, snap, _ = alices(x)
    refused(x.bob.create_snapshot, VolumeId=vol, codes=VOLUME_NF)
    mine = x.alice.describe_snapshots(Filters=[{"Name": "volume-id", "Values": [vol]}])["Snapshots"]
    assert [s["SnapshotId"] for s in mine] == [snap]


def describe_snapshots(x: Any) -> None:
    vol, snap, _ = alices(x)
    _bob_sees_none(x, snap, vol)
    owner = x.alice.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["OwnerId"]
    assert x.bob.describe_snapshots(OwnerIds=[owner])["Snapshots"] == []


def delete_snapshot(x: Any) -> None:
    _, snap, _ = alices(x)
    refused(x.bob.delete_snapshot, SnapshotId=snap, codes=SNAP_NF)
    _intact(x, snap)


def snapshot_attributes(x: Any) -> None:
    vol, snap, _ = alices(x)
    bob_account = x.bob.describe_security_groups()["SecurityGroups"][0]["OwnerId"]
    refused(x.bob.describe_snapshot_attribute, SnapshotId=snap, Attribute="createVolumePermission", codes=SNAP_NF)
    refused(x.bob.modify_snapshot_attribute, SnapshotId=snap,
            CreateVolumePermission={"Add": [{"UserId": bob_account}]}, codes=SNAP_NF)
    refused(x.bob.modify_snapshot_attribute, SnapshotId=snap, CreateVolumePermission={"Add": [{"Group": "all"}]},
            codes=SNAP_NF)
    refused(x.bob.reset_snapshot_attribute, SnapshotId=snap, Attribute="createVolumePermission", codes=SNAP_NF)
    _bob_sees_none(x, snap, vol)
    _intact(x, snap)


def create_volume_from_snapshot(x: Any) -> None:
    _, snap, zone = alices(x)
    refused(x.bob.create_volume, SnapshotId=snap, AvailabilityZone=zone, codes=SNAP_NF)


def register_image_from_snapshot(x: Any) -> None:
    _, snap, _ = alices(x)
    refused(x.bob.register_image, Name="bobs-of-alices", RootDeviceName="/dev/sda1", BlockDeviceMappings=[
        {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": snap}}], codes=SNAP_NF)
    x.alice.modify_snapshot_attribute(SnapshotId=snap, CreateVolumePermission={"Add": [{"Group": "all"}]})
    try:  # public: anyone may make volumes of it, but an image only of their own copy
        refused(x.bob.register_image, Name="bobs-of-alices", RootDeviceName="/dev/sda1", BlockDeviceMappings=[
            {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": snap}}], codes={"OperationNotPermitted"})
    finally:
        x.alice.reset_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
    _intact(x, snap)


def run_instances_with_snapshot(x: Any) -> None:
    _, snap, _ = alices(x)
    refused(x.bob.run_instances, ImageId=x.w.public_image, MinCount=1, MaxCount=1, InstanceType="t2.micro",
            BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": snap}}], codes=SNAP_NF)
    _intact(x, snap)


def sharing_then_works(x: Any) -> None:
    """Shared with bob, he sees and restores it, and still cannot change or delete it; then unshared."""
    vol, snap, zone = alices(x)
    bob_account = x.bob.describe_security_groups()["SecurityGroups"][0]["OwnerId"]
    x.alice.modify_snapshot_attribute(SnapshotId=snap, CreateVolumePermission={"Add": [{"UserId": bob_account}]})
    try:
        assert x.bob.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"] == "completed"
        made = x.bob.create_volume(SnapshotId=snap, AvailabilityZone=zone)["VolumeId"]
        wait_for("bob's volume from alice's snapshot", lambda: x.bob.describe_volumes(VolumeIds=[made])[
            "Volumes"][0]["State"] == "available", timeout=60)
        x.bob.delete_volume(VolumeId=made)
        refused(x.bob.delete_snapshot, SnapshotId=snap, codes={"AuthFailure"})
        refused(x.bob.modify_snapshot_attribute, SnapshotId=snap, CreateVolumePermission={"Add": [{"Group": "all"}]},
                codes={"AuthFailure"})
        refused(x.bob.reset_snapshot_attribute, SnapshotId=snap, Attribute="createVolumePermission",
                codes={"AuthFailure"})
        refused(x.bob.describe_snapshot_attribute, SnapshotId=snap, Attribute="createVolumePermission",
                codes={"AuthFailure"})
        refused(x.bob.create_tags, Resources=[snap], Tags=[{"Key": "owner", "Value": "bob"}], codes=SNAP_NF)
        # alice's tags are hers: the shared view shows none
        assert x.bob.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0].get("Tags", []) == []
        # whom else alice shares with is not bob's to learn
        admin_account = x.w.admin.ec2.describe_security_groups()["SecurityGroups"][0]["OwnerId"]
        x.alice.modify_snapshot_attribute(SnapshotId=snap, CreateVolumePermission={"Add": [{"UserId": admin_account}]})
        assert x.bob.describe_snapshots(RestorableByUserIds=[admin_account])["Snapshots"] == []
        assert snap in {s["SnapshotId"] for s in x.alice.describe_snapshots(RestorableByUserIds=[admin_account])[
            "Snapshots"]}
        # an image of bob's would keep alice's snapshot in use after she stops sharing it
        refused(x.bob.register_image, Name="bobs-of-alices", RootDeviceName="/dev/sda1", BlockDeviceMappings=[
            {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": snap}}], codes={"OperationNotPermitted"})
    finally:
        x.alice.reset_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
    _bob_sees_none(x, snap, vol)
    _intact(x, snap)


CASES = {
    "CreateVolume": [create_volume_from_snapshot],
    "RegisterImage": [register_image_from_snapshot],
    "RunInstances": [run_instances_with_snapshot],
    "CreateSnapshot": [create_snapshot],
    "DescribeSnapshots": [describe_snapshots, sharing_then_works],
    "DeleteSnapshot": [delete_snapshot],
    "DescribeSnapshotAttribute": [snapshot_attributes],
    "ModifySnapshotAttribute": [snapshot_attributes, sharing_then_works],
    "ResetSnapshotAttribute": [snapshot_attributes],
}
