"""Block device mappings and root volumes through boto3 and the aws CLI (libvirt's test driver).

Every instance's root disk is a volume (vol-) at its image's RootDeviceName, listed by
DescribeVolumes and in DescribeInstances' BlockDeviceMappings, deleted with the instance unless
DeleteOnTermination is false; RunInstances' BlockDeviceMappings add empty volumes, made on the
instance's node and attached from its first start, and grow the root; EBS-backed images
(RegisterImage from snapshots) launch with a root volume made from their snapshot. Bad mappings get
EC2's error codes; another user neither sees nor detaches the root volume. Users are named bdm-*.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.tools import FAST, code_of, import_blank_image, instance, launch, volume, wait_for
from tests.live import Creds, LiveServer


@pytest.fixture(scope="module")
def image(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    return import_blank_image(server, tmp_path_factory.mktemp("bdm-image"), "bdm-image")


@pytest.fixture(scope="module")
def erin(server: LiveServer) -> Creds:
    return server.make_user("bdm-erin")


@pytest.fixture(scope="module")
def ec2(server: LiveServer, erin: Creds) -> Any:
    return server.client("ec2", erin)


@pytest.fixture(scope="module")
def other(server: LiveServer) -> Any:
    return server.client("ec2", server.make_user("bdm-felix"))


def mappings(ec2: Any, iid: str) -> dict[str, dict[str, Any]]:
    return {m["DeviceName"]: m["Ebs"] for m in instance(ec2, iid)["BlockDeviceMappings"]}


def terminate(ec2: Any, iid: str) -> None:
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)


def test_the_root_disk_is_a_volume_its_owner_alone_sees(ec2: Any, other: Any, image: str) -> None:
    iid = launch(ec2, image)
    inst = instance(ec2, iid)
    assert (inst["RootDeviceName"], inst["RootDeviceType"]) == ("/dev/vda", "instance-store")
    [root] = inst["BlockDeviceMappings"]
    assert root["DeviceName"] == "/dev/vda"
    assert (root["Ebs"]["Status"], root["Ebs"]["DeleteOnTermination"]) == ("attached", True)
    assert root["Ebs"]["VolumeId"].startswith("vol-") and root["Ebs"]["AttachTime"] is not None
    vid = root["Ebs"]["VolumeId"]
    vol = volume(ec2, vid)
    assert (vol["State"], vol["Size"], vol["SnapshotId"]) == ("in-use", 1, "")
    assert [(a["InstanceId"], a["Device"], a["State"], a["DeleteOnTermination"]) for a in vol["Attachments"]] == \
        [(iid, "/dev/vda", "attached", True)]
    by_instance = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
    assert [v["VolumeId"] for v in by_instance] == [vid]
    attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="blockDeviceMapping")["BlockDeviceMappings"]
    assert [(m["DeviceName"], m["Ebs"]["VolumeId"]) for m in attr] == [("/dev/vda", vid)]
    assert ec2.describe_instance_attribute(InstanceId=iid, Attribute="rootDeviceName")["RootDeviceName"]["Value"] \
        == "/dev/vda"
    # the root volume stays with its instance
    assert code_of(ec2.detach_volume, VolumeId=vid) == "IncorrectState"
    assert code_of(ec2.detach_volume, VolumeId=vid, Force=True) == "IncorrectState"
    assert code_of(ec2.delete_volume, VolumeId=vid) == "VolumeInUse"
    # growing it is asked of the node (a QEMU node grows the running guest's disk: test_vm_lifecycle.py);
    # libvirt's test driver cannot, and the modification fails saying so
    mod = ec2.modify_volume(VolumeId=vid, Size=4)["VolumeModification"]
    assert (mod["ModificationState"], mod["OriginalSize"], mod["TargetSize"]) == ("modifying", 1, 4)
    ended = wait_for("the root's modification ended", lambda: (lambda m: m if m["ModificationState"] != "modifying"
                     else None)(ec2.describe_volumes_modifications(VolumeIds=[vid])["VolumesModifications"][0]), 30)
    assert ended["ModificationState"] == "failed" and "not supported" in ended["StatusMessage"], ended
    assert volume(ec2, vid)["Size"] == 1
    assert code_of(other.modify_volume, VolumeId=vid, Size=8) == "InvalidVolume.NotFound"
    # another user neither sees nor touches it
    assert code_of(other.describe_volumes, VolumeIds=[vid]) == "InvalidVolume.NotFound"
    assert vid not in {v["VolumeId"] for v in other.describe_volumes()["Volumes"]}
    assert other.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"] == []
    assert code_of(other.detach_volume, VolumeId=vid) == "InvalidVolume.NotFound"
    assert code_of(other.delete_volume, VolumeId=vid) == "InvalidVolume.NotFound"
    assert code_of(other.create_snapshot, VolumeId=vid) == "InvalidVolume.NotFound"
    assert code_of(other.modify_instance_attribute, InstanceId=iid, BlockDeviceMappings=[
        {"DeviceName": "/dev/vda", "Ebs": {"DeleteOnTermination": False}}]) == "InvalidInstanceID.NotFound"
    assert volume(ec2, vid)["Attachments"][0]["DeleteOnTermination"] is True
    # its owner may snapshot it
    sid = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST)
    ec2.delete_snapshot(SnapshotId=sid)
    # DeleteOnTermination true: the root volume goes with the instance
    terminate(ec2, iid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid], WaiterConfig=FAST)
    assert instance(ec2, iid)["BlockDeviceMappings"] == []


def test_run_instances_maps_empty_volumes_and_a_larger_root(ec2: Any, image: str) -> None:
    tags = [{"ResourceType": "volume", "Tags": [{"Key": "team", "Value": "bdm"}]},
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "mapped"}]}]
    iid = launch(ec2, image, TagSpecifications=tags, BlockDeviceMappings=[
        {"DeviceName": "/dev/vda", "Ebs": {"VolumeSize": 3}},
        {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 2, "VolumeType": "gp3", "DeleteOnTermination": False}},
        {"DeviceName": "/dev/xvdg", "Ebs": {"VolumeSize": 1}},
        {"DeviceName": "/dev/sdh", "NoDevice": ""},
        {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}])
    maps = mappings(ec2, iid)
    assert list(maps) == ["/dev/vda", "/dev/sdf", "/dev/xvdg"]
    assert all(m["Status"] == "attached" for m in maps.values())
    assert [m["DeleteOnTermination"] for m in maps.values()] == [True, False, True]
    vols = {d: volume(ec2, m["VolumeId"]) for d, m in maps.items()}
    assert [(v["Size"], v["VolumeType"], v["State"]) for v in vols.values()] == \
        [(3, "gp2", "in-use"), (2, "gp3", "in-use"), (1, "gp2", "in-use")]
    assert all(v["Tags"] == [{"Key": "team", "Value": "bdm"}] for v in vols.values())
    assert {"Key": "Name", "Value": "mapped"} in instance(ec2, iid)["Tags"]
    # DeleteOnTermination changes with ModifyInstanceAttribute
    ec2.modify_instance_attribute(InstanceId=iid, BlockDeviceMappings=[
        {"DeviceName": "/dev/xvdg", "Ebs": {"DeleteOnTermination": False}}])
    assert mappings(ec2, iid)["/dev/xvdg"]["DeleteOnTermination"] is False
    assert code_of(ec2.modify_instance_attribute, InstanceId=iid, BlockDeviceMappings=[
        {"DeviceName": "/dev/sdp", "Ebs": {"DeleteOnTermination": False}}]) == "InvalidInstanceAttributeValue"
    # an extra volume detaches like any other and attaches again
    data = maps["/dev/sdf"]["VolumeId"]
    ec2.detach_volume(VolumeId=data)
    ec2.get_waiter("volume_available").wait(VolumeIds=[data], WaiterConfig=FAST)
    ec2.attach_volume(VolumeId=data, InstanceId=iid, Device="/dev/sdf")
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[data], WaiterConfig=FAST)
    # the root goes with the instance, the volumes marked to stay are detached
    terminate(ec2, iid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[maps["/dev/vda"]["VolumeId"]], WaiterConfig=FAST)
    kept = [maps["/dev/sdf"]["VolumeId"], maps["/dev/xvdg"]["VolumeId"]]
    ec2.get_waiter("volume_available").wait(VolumeIds=kept, WaiterConfig=FAST)
    assert all(volume(ec2, v)["Attachments"] == [] for v in kept)
    for vid in kept:
        ec2.delete_volume(VolumeId=vid)


def test_a_root_volume_marked_to_stay_outlives_its_instance(ec2: Any, image: str) -> None:
    iid = launch(ec2, image, BlockDeviceMappings=[{"DeviceName": "/dev/vda", "Ebs": {"DeleteOnTermination": False}}])
    root = mappings(ec2, iid)["/dev/vda"]
    assert root["DeleteOnTermination"] is False
    terminate(ec2, iid)
    ec2.get_waiter("volume_available").wait(VolumeIds=[root["VolumeId"]], WaiterConfig=FAST)
    vol = volume(ec2, root["VolumeId"])
    assert (vol["Size"], vol["Attachments"]) == (1, [])
    # now an ordinary volume: it attaches to another instance and is deleted
    other = launch(ec2, image)
    ec2.attach_volume(VolumeId=root["VolumeId"], InstanceId=other, Device="/dev/sdf")
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[root["VolumeId"]], WaiterConfig=FAST)
    ec2.detach_volume(VolumeId=root["VolumeId"])
    ec2.get_waiter("volume_available").wait(VolumeIds=[root["VolumeId"]], WaiterConfig=FAST)
    ec2.delete_volume(VolumeId=root["VolumeId"])
    terminate(ec2, other)


@pytest.fixture(scope="module")
def ebs_image(ec2: Any, zone: str) -> tuple[str, str]:
    """(image, root snapshot) of an EBS-backed image: a 2 GiB root and an empty 1 GiB /dev/sdf."""
    vid = ec2.create_volume(AvailabilityZone=zone, Size=2)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    sid = ec2.create_snapshot(VolumeId=vid, Description="bdm root")["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST)
    ec2.delete_volume(VolumeId=vid)
    image = ec2.register_image(Name="bdm-ebs", RootDeviceName="/dev/sda1", BlockDeviceMappings=[
        {"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": sid}},
        {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "DeleteOnTermination": True}}])["ImageId"]
    return str(image), str(sid)


def test_an_ebs_backed_image_boots_from_a_volume_made_from_its_snapshot(ec2: Any, other: Any,
                                                                        ebs_image: tuple[str, str]) -> None:
    image, sid = ebs_image
    iid = launch(ec2, image, BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 4}},
                                                  {"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 1}}])
    inst = instance(ec2, iid)
    assert (inst["RootDeviceName"], inst["RootDeviceType"]) == ("/dev/sda1", "ebs")
    maps = mappings(ec2, iid)
    assert list(maps) == ["/dev/sda1", "/dev/sdf", "/dev/sdg"]
    root = volume(ec2, maps["/dev/sda1"]["VolumeId"])
    assert (root["SnapshotId"], root["Size"], root["State"]) == (sid, 4, "in-use")
    assert volume(ec2, maps["/dev/sdf"]["VolumeId"])["Size"] == 1
    # stop and start keep the volumes; the root stays attached
    ec2.stop_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=FAST)
    ec2.start_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    assert mappings(ec2, iid) == maps
    # the image is private: another user cannot launch it
    assert code_of(other.run_instances, ImageId=image, MinCount=1, MaxCount=1) == "InvalidAMIID.NotFound"
    # CreateImage of an instance booting from a volume: an EBS-backed image of snapshots of its volumes
    copy = ec2.create_image(InstanceId=iid, Name="bdm-ebs-copy")["ImageId"]
    ec2.get_waiter("image_available").wait(ImageIds=[copy], WaiterConfig=FAST)
    img = ec2.describe_images(ImageIds=[copy])["Images"][0]
    assert (img["RootDeviceType"], img["RootDeviceName"]) == ("ebs", "/dev/sda1")
    copied = {m["DeviceName"]: m["Ebs"] for m in img["BlockDeviceMappings"]}
    assert [(d, e["VolumeSize"]) for d, e in copied.items()] == [("/dev/sda1", 4), ("/dev/sdf", 1), ("/dev/sdg", 1)]
    assert instance(ec2, iid)["State"]["Name"] == "running"  # snapshots are taken while it runs
    again = launch(ec2, copy)
    again_root = mappings(ec2, again)["/dev/sda1"]["VolumeId"]
    assert (volume(ec2, again_root)["SnapshotId"], volume(ec2, again_root)["Size"]) == \
        (copied["/dev/sda1"]["SnapshotId"], 4)
    terminate(ec2, again)
    ec2.deregister_image(ImageId=copy, DeleteAssociatedSnapshots=True)
    assert code_of(ec2.describe_snapshots, SnapshotIds=[copied["/dev/sda1"]["SnapshotId"]]) == \
        "InvalidSnapshot.NotFound"
    terminate(ec2, iid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[m["VolumeId"] for m in maps.values()], WaiterConfig=FAST)


def test_bad_mappings_get_ec2s_errors_and_leave_nothing(ec2: Any, other: Any, image: str,
                                                        ebs_image: tuple[str, str]) -> None:
    ebs, sid = ebs_image
    before_volumes = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    before_instances = {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    bad: list[tuple[str, str, list[dict[str, Any]]]] = [
        ("InvalidBlockDeviceMapping", ebs, [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 1}}]),
        ("InvalidBlockDeviceMapping", image, [{"DeviceName": "/dev/foo", "Ebs": {"VolumeSize": 1}}]),
        ("InvalidBlockDeviceMapping", image, [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}},
                                              {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 2}}]),
        ("InvalidBlockDeviceMapping", image, [{"DeviceName": "/dev/sdf"}]),
        ("InvalidBlockDeviceMapping", image, [{"DeviceName": "/dev/vda", "NoDevice": ""}]),
        ("InvalidBlockDeviceMapping", image, [{"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": sid, "VolumeSize": 1}}]),
        ("MissingParameter", image, [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeType": "gp3"}}]),
        ("MissingParameter", image, [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 8, "VolumeType": "io1"}}]),
        ("InvalidParameterValue", image, [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 0}}]),
        ("InvalidParameterValue", image, [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 20000}}]),
        ("InvalidParameterValue", image, [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "VolumeType": "sc9"}}]),
        ("InvalidParameterValue", image, [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "Encrypted": True}}]),
        ("InvalidSnapshot.NotFound", image, [{"DeviceName": "/dev/sdf",
                                              "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}}]),
        ("InvalidSnapshotID.Malformed", image, [{"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": "snap-zz"}}]),
    ]
    for code, img, maps in bad:
        assert code_of(ec2.run_instances, ImageId=img, MinCount=1, MaxCount=1, BlockDeviceMappings=maps) == code, maps
    # another user cannot map a snapshot not shared with them
    assert code_of(other.run_instances, ImageId=image, MinCount=1, MaxCount=1, BlockDeviceMappings=[
        {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": sid}}]) == "InvalidSnapshot.NotFound"
    assert {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]} == before_volumes
    assert {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]} \
        == before_instances


def test_aws_cli_block_device_mappings(server: LiveServer, erin: Creds, image: str) -> None:
    def aws(*args: str) -> Any:
        out = server.aws("ec2", *args, creds=erin).stdout
        return json.loads(out) if out.strip() else None

    mapping = json.dumps([{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 2, "DeleteOnTermination": False}}])
    iid = aws("run-instances", "--image-id", image, "--instance-type", "t2.micro",
              "--block-device-mappings", mapping)["Instances"][0]["InstanceId"]
    aws("wait", "instance-running", "--instance-ids", iid)
    got = aws("describe-instances", "--instance-ids", iid, "--query",
              "Reservations[0].Instances[0].BlockDeviceMappings[].[DeviceName,Ebs.Status,Ebs.DeleteOnTermination]")
    assert got == [["/dev/vda", "attached", True], ["/dev/sdf", "attached", False]]
    vols = aws("describe-volumes", "--filters", f"Name=attachment.instance-id,Values={iid}",
               "Name=attachment.device,Values=/dev/sdf")["Volumes"]
    assert [v["Size"] for v in vols] == [2]
    root = aws("describe-volumes", "--filters", f"Name=attachment.instance-id,Values={iid}",
               "Name=attachment.device,Values=/dev/vda")["Volumes"][0]["VolumeId"]
    detach = server.aws("ec2", "detach-volume", "--volume-id", root, creds=erin, check=False)
    assert detach.returncode != 0 and "IncorrectState" in detach.stderr
    # the data volume goes with the instance after all; the root stays this time
    aws("modify-instance-attribute", "--instance-id", iid, "--block-device-mappings",
        json.dumps([{"DeviceName": "/dev/sdf", "Ebs": {"DeleteOnTermination": True}}]))
    aws("modify-instance-attribute", "--instance-id", iid, "--block-device-mappings",
        json.dumps([{"DeviceName": "/dev/vda", "Ebs": {"DeleteOnTermination": False}}]))
    got = aws("describe-instance-attribute", "--instance-id", iid, "--attribute", "blockDeviceMapping",
              "--query", "BlockDeviceMappings[].[DeviceName,Ebs.DeleteOnTermination]")
    assert got == [["/dev/vda", False], ["/dev/sdf", True]]
    aws("terminate-instances", "--instance-ids", iid)
    aws("wait", "instance-terminated", "--instance-ids", iid)
    aws("wait", "volume-deleted", "--volume-ids", vols[0]["VolumeId"])
    aws("wait", "volume-available", "--volume-ids", root)
    aws("delete-volume", "--volume-id", root)
