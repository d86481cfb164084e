"""Bob attacks alice's EC2 resources with every operation the server implements; nothing of hers moves.

Alice owns a running and a stopped instance (tagged), a key pair, a private image and her default
security group. Each case below is one operation in bob's hands: it must be refused the way EC2
refuses a resource that does not exist for the caller, and alice's resource must be as it was.
Every case runs on the SQLite server and on two processes sharing PostgreSQL (alice talks to one,
bob to the other). `test_every_operation_has_a_cross_tenant_case` fails when the server gains an
operation that has no case here and is not listed in NO_TENANT_RESOURCE.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ec2gw.app import load_providers
from ec2gw.aws import dispatch
from tests.functional.tools import wait_for
from tests.security import refused, snapshot_cases
from tests.security.conftest import World, admin_cli, unique

#: operations that read or touch no per-user resource (answers are the same for every caller)
NO_TENANT_RESOURCE = {"DescribeRegions", "DescribeAvailabilityZones", "DescribeAccountAttributes",
                      "DescribeInstanceTypes"}

INSTANCE_NF = {"InvalidInstanceID.NotFound"}
IMAGE_NF = {"InvalidAMIID.NotFound"}
KEY_NF = {"InvalidKeyPair.NotFound"}
GROUP_NF = {"InvalidGroup.NotFound"}
VOLUME_NF = {"InvalidVolume.NotFound"}


@dataclass
class Loot:
    """Alice's resources in one deployment."""

    w: World
    running: str
    stopped: str
    image: str
    kernel: str
    key_name: str
    key_id: str
    key_fingerprint: str
    group_id: str
    account_id: str
    #: alice's elastic address, associated with her running instance
    eip_alloc: str = ""
    eip_ip: str = ""
    eip_assoc: str = ""
    #: alice's volumes: one available, one attached to her running instance at /dev/sdf
    volume: str = ""
    attached: str = ""

    @property
    def alice(self) -> Any:
        return self.w.alice.ec2

    @property
    def bob(self) -> Any:
        return self.w.bob.ec2

    def instance(self, iid: str) -> dict[str, Any]:
        return dict(self.alice.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0])

    def state(self, iid: str) -> str:
        return str(self.instance(iid)["State"]["Name"])

    def tags(self, resource: str) -> dict[str, str]:
        found = self.alice.describe_tags(Filters=[{"Name": "resource-id", "Values": [resource]}])["Tags"]
        return {t["Key"]: t["Value"] for t in found if not t["Key"].startswith("lease:")}

    def image_row(self) -> dict[str, Any]:
        return dict(self.alice.describe_images(ImageIds=[self.image])["Images"][0])

    def bob_sees(self) -> set[str]:
        """Every resource id bob can list, of every type."""
        seen = {i["InstanceId"] for r in self.bob.describe_instances()["Reservations"] for i in r["Instances"]}
        seen |= {i["ImageId"] for i in self.bob.describe_images()["Images"]}
        seen |= {k["KeyPairId"] for k in self.bob.describe_key_pairs()["KeyPairs"]}
        seen |= {g["GroupId"] for g in self.bob.describe_security_groups()["SecurityGroups"]}
        seen |= {t["ResourceId"] for t in self.bob.describe_tags()["Tags"]}
        seen |= {v["VolumeId"] for v in self.bob.describe_volumes()["Volumes"]}
        return seen

    def vol(self, vid: str) -> dict[str, Any]:
        return dict(self.alice.describe_volumes(VolumeIds=[vid])["Volumes"][0])

    def root(self, iid: str) -> dict[str, Any]:
        """The Ebs of the instance's root device mapping (its root volume), as alice sees it."""
        inst = self.instance(iid)
        return dict(next(m["Ebs"] for m in inst["BlockDeviceMappings"] if m["DeviceName"] == inst["RootDeviceName"]))


@pytest.fixture(scope="module")
def loot(deployment: World, tmp_path_factory: pytest.TempPathFactory) -> Loot:
    w = deployment
    ec2 = w.alice.ec2
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=w.public_image, MinCount=2, MaxCount=2, InstanceType="t2.micro", HibernationOptions={"Configured": True},
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "owner", "Value": "alice"}]}])["Instances"]]
    key = ec2.create_key_pair(KeyName=unique("alice-key"))
    path = Path(tmp_path_factory.mktemp("alice-image")) / "private.img"
    path.write_bytes(b"\x02" * 65536)
    image = str(admin_cli(w.servers[0], "image", "import", unique("alice-private"), str(path), "--owner",
                          w.alice.name)["image_id"])
    ec2.create_tags(Resources=[image], Tags=[{"Key": "owner", "Value": "alice"}])
    kernel = str(admin_cli(w.servers[0], "image", "import", unique("alice-kernel"), str(path), "--kind", "kernel",
                           "--owner", w.alice.name)["image_id"])
    group = ec2.describe_security_groups()["SecurityGroups"][0]
    ec2.create_tags(Resources=[group["GroupId"]], Tags=[{"Key": "owner", "Value": "alice"}])

    def states() -> Any:
        got = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
               for i in r["Instances"]}
        return set(got.values()) == {"running"}

    wait_for("alice's instances running", states, timeout=60)
    ec2.stop_instances(InstanceIds=[ids[1]])
    loot = Loot(w, ids[0], ids[1], image, kernel, key["KeyName"], key["KeyPairId"], key["KeyFingerprint"], group["GroupId"],
                group["OwnerId"])
    wait_for("alice's second instance stopped", lambda: loot.state(ids[1]) == "stopped", timeout=60)
    pool_file = Path(tmp_path_factory.mktemp("public-pool")) / "pool"
    pool_file.write_text("none\n" + "".join(f"xt{i} 198.51.100.{10 + i} 198.51.100.1 198.51.100.255 255.255.255.0\n"
                                             for i in range(4)))
    admin_cli(w.servers[0], "pool", "add", unique("xt-public"), str(pool_file), "--network-mode", "isolated", "--public")
    eip = ec2.allocate_address(Domain="vpc", TagSpecifications=[
        {"ResourceType": "elastic-ip", "Tags": [{"Key": "owner", "Value": "alice"}]}])
    loot.eip_alloc, loot.eip_ip = eip["AllocationId"], eip["PublicIp"]
    loot.eip_assoc = ec2.associate_address(AllocationId=loot.eip_alloc, InstanceId=ids[0])["AssociationId"]
    zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
    tagged = [{"ResourceType": "volume", "Tags": [{"Key": "owner", "Value": "alice"}]}]
    loot.volume = ec2.create_volume(AvailabilityZone=zone, Size=1, TagSpecifications=tagged)["VolumeId"]
    loot.attached = ec2.create_volume(AvailabilityZone=zone, Size=2, TagSpecifications=tagged)["VolumeId"]
    fast = {"Delay": 1, "MaxAttempts": 60}
    ec2.get_waiter("volume_available").wait(VolumeIds=[loot.volume, loot.attached], WaiterConfig=fast)
    ec2.attach_volume(VolumeId=loot.attached, InstanceId=ids[0], Device="/dev/sdf")
    wait_for("alice's volume attached",
             lambda: loot.vol(loot.attached)["Attachments"][0]["State"] == "attached", timeout=60)
    return loot


# --------------------------------------------------------------------------- the cases


def describe_instances(x: Loot) -> None:
    refused(x.bob.describe_instances, InstanceIds=[x.running], codes=INSTANCE_NF)
    refused(x.bob.describe_instances, InstanceIds=[x.running, x.stopped], codes=INSTANCE_NF)
    mine = x.bob.describe_instances(Filters=[{"Name": "instance-id", "Values": [x.running, x.stopped]}])
    assert mine["Reservations"] == []
    tagged = x.bob.describe_instances(Filters=[{"Name": "tag:owner", "Values": ["alice"]}])
    assert tagged["Reservations"] == []


def describe_instance_status(x: Loot) -> None:
    refused(x.bob.describe_instance_status, InstanceIds=[x.running], codes=INSTANCE_NF)
    listed = x.bob.describe_instance_status(IncludeAllInstances=True)["InstanceStatuses"]
    assert not {s["InstanceId"] for s in listed} & {x.running, x.stopped}


def terminate_instances(x: Loot) -> None:
    refused(x.bob.terminate_instances, InstanceIds=[x.running], codes=INSTANCE_NF)
    refused(x.bob.terminate_instances, InstanceIds=[x.stopped], codes=INSTANCE_NF)
    assert (x.state(x.running), x.state(x.stopped)) == ("running", "stopped")


def stop_instances(x: Loot) -> None:
    refused(x.bob.stop_instances, InstanceIds=[x.running], codes=INSTANCE_NF)
    refused(x.bob.stop_instances, InstanceIds=[x.running], Force=True, codes=INSTANCE_NF)
    refused(x.bob.stop_instances, InstanceIds=[x.running], Hibernate=True, codes=INSTANCE_NF)
    assert x.state(x.running) == "running"


def start_instances(x: Loot) -> None:
    refused(x.bob.start_instances, InstanceIds=[x.stopped], codes=INSTANCE_NF)
    assert x.state(x.stopped) == "stopped"


def reboot_instances(x: Loot) -> None:
    refused(x.bob.reboot_instances, InstanceIds=[x.running], codes=INSTANCE_NF)
    assert x.state(x.running) == "running"


def get_console_output(x: Loot) -> None:
    refused(x.bob.get_console_output, InstanceId=x.running, codes=INSTANCE_NF)
    refused(x.bob.get_console_output, InstanceId=x.running, Latest=True, codes=INSTANCE_NF)


def describe_instance_attribute(x: Loot) -> None:
    for attribute in ("userData", "instanceType", "disableApiTermination", "instanceInitiatedShutdownBehavior"):
        refused(x.bob.describe_instance_attribute, InstanceId=x.running, Attribute=attribute, codes=INSTANCE_NF)


def modify_instance_attribute(x: Loot) -> None:
    before = x.instance(x.stopped)["InstanceType"]
    refused(x.bob.modify_instance_attribute, InstanceId=x.stopped, InstanceType={"Value": "m1.large"}, codes=INSTANCE_NF)
    refused(x.bob.modify_instance_attribute, InstanceId=x.stopped, UserData={"Value": b"#!/bin/sh\nbob\n"},
            codes=INSTANCE_NF)
    refused(x.bob.modify_instance_attribute, InstanceId=x.running, DisableApiTermination={"Value": True},
            codes=INSTANCE_NF)
    refused(x.bob.modify_instance_attribute, InstanceId=x.running,
            InstanceInitiatedShutdownBehavior={"Value": "terminate"}, codes=INSTANCE_NF)
    refused(x.bob.modify_instance_attribute, InstanceId=x.running, BlockDeviceMappings=[
        {"DeviceName": x.instance(x.running)["RootDeviceName"], "Ebs": {"DeleteOnTermination": False}}],
            codes=INSTANCE_NF)
    assert x.root(x.running)["DeleteOnTermination"] is True
    assert x.instance(x.stopped)["InstanceType"] == before
    assert "Value" not in x.alice.describe_instance_attribute(InstanceId=x.stopped, Attribute="userData")["UserData"]
    assert x.alice.describe_instance_attribute(InstanceId=x.running, Attribute="disableApiTermination")[
        "DisableApiTermination"]["Value"] is False


def create_image(x: Loot) -> None:
    name = unique("bob-steals")
    refused(x.bob.create_image, InstanceId=x.stopped, Name=name, codes=INSTANCE_NF)
    refused(x.bob.create_image, InstanceId=x.running, Name=name, NoReboot=True, codes=INSTANCE_NF)
    for ec2 in (x.bob, x.alice):
        assert ec2.describe_images(Filters=[{"Name": "name", "Values": [name]}])["Images"] == []


def create_tags(x: Loot) -> None:
    for resource, codes in ((x.running, INSTANCE_NF), (x.image, IMAGE_NF), (x.group_id, GROUP_NF),
                            (x.key_id, KEY_NF)):
        before = x.tags(resource)
        refused(x.bob.create_tags, Resources=[resource], Tags=[{"Key": "owner", "Value": "bob"}], codes=codes)
        refused(x.bob.create_tags, Resources=[resource], Tags=[{"Key": "bob", "Value": "was here"}], codes=codes)
        assert x.tags(resource) == before, resource
    refused(x.bob.create_tags, Resources=[x.running], Tags=[{"Key": "lease:hours", "Value": "1"}], codes=INSTANCE_NF)


def delete_tags(x: Loot) -> None:
    for resource, codes in ((x.running, INSTANCE_NF), (x.image, IMAGE_NF), (x.group_id, GROUP_NF)):
        before = x.tags(resource)
        assert before.get("owner") == "alice", (resource, before)
        refused(x.bob.delete_tags, Resources=[resource], Tags=[{"Key": "owner"}], codes=codes)
        refused(x.bob.delete_tags, Resources=[resource], codes=codes)
        assert x.tags(resource) == before, resource


def describe_tags(x: Loot) -> None:
    for resource in (x.running, x.stopped, x.image, x.group_id):
        assert x.bob.describe_tags(Filters=[{"Name": "resource-id", "Values": [resource]}])["Tags"] == []
    assert x.bob.describe_tags(Filters=[{"Name": "value", "Values": ["alice"]}])["Tags"] == []


def describe_images(x: Loot) -> None:
    refused(x.bob.describe_images, ImageIds=[x.image], codes=IMAGE_NF)
    assert x.bob.describe_images(Owners=[x.account_id])["Images"] == []
    assert x.bob.describe_images(Filters=[{"Name": "image-id", "Values": [x.image]}])["Images"] == []
    assert x.image not in {i["ImageId"] for i in x.bob.describe_images(ExecutableUsers=["self"])["Images"]}
    for filters in ([{"Name": "owner-id", "Values": [x.account_id]}], [{"Name": "is-public", "Values": ["false"]}],
                    [{"Name": "name", "Values": ["alice-*"]}], [{"Name": "image-type", "Values": ["kernel"]}]):
        assert not {i["ImageId"] for i in x.bob.describe_images(Filters=filters)["Images"]} & {x.image, x.kernel}
    listed = x.bob.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["*"]}])["KeyPairs"]
    assert x.key_id not in {k["KeyPairId"] for k in listed}


def deregister_image(x: Loot) -> None:
    refused(x.bob.deregister_image, ImageId=x.image, codes=IMAGE_NF)
    assert x.image_row()["State"] == "available"


def describe_image_attribute(x: Loot) -> None:
    for attribute in ("launchPermission", "description", "kernel", "ramdisk", "blockDeviceMapping"):
        refused(x.bob.describe_image_attribute, ImageId=x.image, Attribute=attribute, codes=IMAGE_NF)
    refused(x.bob.describe_image_attribute, ImageId=x.kernel, Attribute="launchPermission", codes=IMAGE_NF)


def modify_image_attribute(x: Loot) -> None:
    refused(x.bob.modify_image_attribute, ImageId=x.image, LaunchPermission={"Add": [{"Group": "all"}]},
            codes=IMAGE_NF)
    refused(x.bob.modify_image_attribute, ImageId=x.image, Attribute="launchPermission", OperationType="add",
            UserGroups=["all"], codes=IMAGE_NF)
    refused(x.bob.modify_image_attribute, ImageId=x.image, Description={"Value": "bob's now"}, codes=IMAGE_NF)
    row = x.image_row()
    assert row["Public"] is False and row.get("Description", "") != "bob's now"
    refused(x.bob.describe_images, ImageIds=[x.image], codes=IMAGE_NF)


def public_image_stays_the_administrators(x: Loot) -> None:
    """ModifyImageAttribute and DeregisterImage on a public image bob can see and launch, but not change."""
    refused(x.bob.deregister_image, ImageId=x.w.public_image)
    refused(x.bob.modify_image_attribute, ImageId=x.w.public_image, LaunchPermission={"Remove": [{"Group": "all"}]})
    refused(x.bob.modify_image_attribute, ImageId=x.w.public_image, Description={"Value": "bob's now"})
    refused(x.bob.create_tags, Resources=[x.w.public_image], Tags=[{"Key": "bob", "Value": "x"}])
    row = x.alice.describe_images(ImageIds=[x.w.public_image])["Images"][0]
    assert row["Public"] is True and row["State"] == "available" and row.get("Description") != "bob's now"


def run_instances(x: Loot) -> None:
    refused(x.bob.run_instances, ImageId=x.image, MinCount=1, MaxCount=1, codes=IMAGE_NF)
    refused(x.bob.run_instances, ImageId=x.w.public_image, KernelId=x.kernel, MinCount=1, MaxCount=1, codes=IMAGE_NF)
    # a kernel id where a machine image goes: refused by its prefix alone, the same for one that does not exist
    theirs = refused(x.bob.run_instances, ImageId=x.kernel, MinCount=1, MaxCount=1)
    nobodys = refused(x.bob.run_instances, ImageId="aki-0123456789abcdef0", MinCount=1, MaxCount=1)
    assert theirs[:2] == nobodys[:2], (theirs, nobodys)
    refused(x.bob.run_instances, ImageId=x.w.public_image, MinCount=1, MaxCount=1, KeyName=x.key_name, codes=KEY_NF)
    refused(x.bob.run_instances, ImageId=x.w.public_image, MinCount=1, MaxCount=1, SecurityGroupIds=[x.group_id],
            codes=GROUP_NF)
    launched = [i for r in x.bob.describe_instances()["Reservations"] for i in r["Instances"]
                if i["ImageId"] in (x.image, x.kernel) or i.get("KernelId") == x.kernel or i.get("KeyName") == x.key_name
                or x.group_id in {g["GroupId"] for g in i.get("SecurityGroups", [])}]
    assert launched == [], launched


def register_image(x: Loot) -> None:
    """Bob registers alice's image object (read through the image's own location) as his image."""
    location = x.image_row().get("ImageLocation") or ""
    assert "/" in location, x.image_row()
    refused(x.bob.register_image, Name=unique("bob-copy"), ImageLocation=location)
    # his own object, with alice's private kernel
    bucket = unique("bob-image")
    x.w.bob.s3.create_bucket(Bucket=bucket)
    x.w.bob.s3.put_object(Bucket=bucket, Key="disk.img", Body=b"\0" * 4096)
    refused(x.bob.register_image, Name=unique("bob-kernel"), ImageLocation=f"{bucket}/disk.img", KernelId=x.kernel,
            codes=IMAGE_NF)
    mine = x.bob.describe_images(Owners=["self"])["Images"]
    assert not [i for i in mine if i.get("ImageLocation") == location or i.get("KernelId") == x.kernel], mine


def create_key_pair(x: Loot) -> None:
    """Bob may have a key of the same name; alice's key stays hers, and bob deleting his leaves hers."""
    made = x.bob.create_key_pair(KeyName=x.key_name)
    assert made["KeyPairId"] != x.key_id
    try:
        mine = x.alice.describe_key_pairs(KeyNames=[x.key_name])["KeyPairs"]
        assert [(k["KeyPairId"], k["KeyFingerprint"]) for k in mine] == [(x.key_id, x.key_fingerprint)]
    finally:
        x.bob.delete_key_pair(KeyName=x.key_name)
    assert [k["KeyPairId"] for k in x.alice.describe_key_pairs(KeyNames=[x.key_name])["KeyPairs"]] == [x.key_id]


def import_key_pair(x: Loot) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    made = x.bob.import_key_pair(KeyName=x.key_name, PublicKeyMaterial=public)
    try:
        assert made["KeyPairId"] != x.key_id
        mine = x.alice.describe_key_pairs(KeyNames=[x.key_name])["KeyPairs"]
        assert [(k["KeyPairId"], k["KeyFingerprint"]) for k in mine] == [(x.key_id, x.key_fingerprint)]
    finally:
        x.bob.delete_key_pair(KeyPairId=made["KeyPairId"])


def delete_key_pair(x: Loot) -> None:
    """EC2 answers DeleteKeyPair of an unknown name with success; alice's key must survive it all the same."""
    for kwargs in ({"KeyName": x.key_name}, {"KeyPairId": x.key_id}):
        try:
            x.bob.delete_key_pair(**kwargs)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] in KEY_NF, exc.response
    assert [k["KeyPairId"] for k in x.alice.describe_key_pairs(KeyNames=[x.key_name])["KeyPairs"]] == [x.key_id]


def describe_key_pairs(x: Loot) -> None:
    refused(x.bob.describe_key_pairs, KeyNames=[x.key_name], codes=KEY_NF)
    refused(x.bob.describe_key_pairs, KeyPairIds=[x.key_id], codes=KEY_NF)
    assert x.key_id not in {k["KeyPairId"] for k in x.bob.describe_key_pairs()["KeyPairs"]}
    assert x.bob.describe_key_pairs(Filters=[{"Name": "key-pair-id", "Values": [x.key_id]}])["KeyPairs"] == []


def describe_security_groups(x: Loot) -> None:
    refused(x.bob.describe_security_groups, GroupIds=[x.group_id], codes=GROUP_NF)
    assert x.bob.describe_security_groups(Filters=[{"Name": "group-id", "Values": [x.group_id]}])["SecurityGroups"] == []
    assert x.bob.describe_security_groups(Filters=[{"Name": "owner-id", "Values": [x.account_id]}])["SecurityGroups"] == []


def describe_addresses(x: Loot) -> None:
    # no Elastic IP is allocated here: nothing of alice's instances shows up as an address of bob's
    assert x.bob.describe_addresses(Filters=[{"Name": "instance-id", "Values": [x.running, x.stopped]}])["Addresses"] == []
    assert x.bob.describe_addresses()["Addresses"] == []


def _alices_eip(x: Loot) -> dict[str, Any]:
    return dict(x.alice.describe_addresses(AllocationIds=[x.eip_alloc])["Addresses"][0])


def _eip_unchanged(x: Loot) -> None:
    got = _alices_eip(x)
    assert (got["PublicIp"], got.get("AssociationId"), got.get("InstanceId")) == (x.eip_ip, x.eip_assoc, x.running)
    assert got["Tags"] == [{"Key": "owner", "Value": "alice"}]
    assert x.instance(x.running)["PublicIpAddress"] == x.eip_ip


def describe_alices_address(x: Loot) -> None:
    refused(x.bob.describe_addresses, AllocationIds=[x.eip_alloc], codes={"InvalidAllocationID.NotFound"})
    refused(x.bob.describe_addresses, PublicIps=[x.eip_ip], codes={"InvalidAddress.NotFound"})
    for name, value in (("allocation-id", x.eip_alloc), ("public-ip", x.eip_ip), ("association-id", x.eip_assoc),
                        ("instance-id", x.running), ("tag:owner", "alice")):
        assert x.bob.describe_addresses(Filters=[{"Name": name, "Values": [value]}])["Addresses"] == []
    refused(x.bob.create_tags, Resources=[x.eip_alloc], Tags=[{"Key": "owner", "Value": "bob"}],
            codes={"InvalidAllocationID.NotFound"})
    refused(x.bob.delete_tags, Resources=[x.eip_alloc], codes={"InvalidAllocationID.NotFound"})
    _eip_unchanged(x)


def allocate_address(x: Loot) -> None:
    """Bob gets an address of his own, never alice's (asking for hers by address is InUse)."""
    refused(x.bob.allocate_address, Domain="vpc", Address=x.eip_ip, codes={"InvalidIPAddress.InUse"})
    mine = x.bob.allocate_address(Domain="vpc")
    try:
        assert mine["PublicIp"] != x.eip_ip
        assert [a["AllocationId"] for a in x.bob.describe_addresses()["Addresses"]] == [mine["AllocationId"]]
    finally:
        x.bob.release_address(AllocationId=mine["AllocationId"])
    _eip_unchanged(x)


def associate_address(x: Loot) -> None:
    """Bob can neither move alice's address nor put his own on alice's instance or interface."""
    refused(x.bob.associate_address, AllocationId=x.eip_alloc, InstanceId=x.running, AllowReassociation=True,
            codes={"InvalidAllocationID.NotFound"})
    refused(x.bob.associate_address, PublicIp=x.eip_ip, InstanceId=x.stopped, AllowReassociation=True,
            codes={"InvalidAddress.NotFound"})
    mine = x.bob.allocate_address(Domain="vpc")
    try:
        for target in (x.running, x.stopped):
            refused(x.bob.associate_address, AllocationId=mine["AllocationId"], InstanceId=target,
                    AllowReassociation=True, codes=INSTANCE_NF)
        eni = x.instance(x.running)["NetworkInterfaces"][0]["NetworkInterfaceId"]
        refused(x.bob.associate_address, AllocationId=mine["AllocationId"], NetworkInterfaceId=eni,
                AllowReassociation=True, codes={"InvalidNetworkInterfaceID.NotFound"})
        assert "AssociationId" not in x.bob.describe_addresses(AllocationIds=[mine["AllocationId"]])["Addresses"][0]
    finally:
        x.bob.release_address(AllocationId=mine["AllocationId"])
    _eip_unchanged(x)


def disassociate_address(x: Loot) -> None:
    refused(x.bob.disassociate_address, AssociationId=x.eip_assoc, codes={"InvalidAssociationID.NotFound"})
    refused(x.bob.disassociate_address, PublicIp=x.eip_ip, codes={"InvalidAddress.NotFound"})
    _eip_unchanged(x)


def release_address(x: Loot) -> None:
    refused(x.bob.release_address, AllocationId=x.eip_alloc, codes={"InvalidAllocationID.NotFound"})
    refused(x.bob.release_address, PublicIp=x.eip_ip, codes={"InvalidAddress.NotFound"})
    _eip_unchanged(x)


def modify_network_interface_attribute(x: Loot) -> None:
    bob_group = x.bob.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    eni = x.instance(x.running)["NetworkInterfaces"][0]["NetworkInterfaceId"]
    for groups in ([bob_group], [x.group_id]):
        refused(x.bob.modify_network_interface_attribute, NetworkInterfaceId=eni, Groups=groups,
                codes={"InvalidNetworkInterfaceID.NotFound"})
    refused(x.bob.modify_network_interface_attribute, NetworkInterfaceId=eni, SourceDestCheck={"Value": True},
            codes={"InvalidNetworkInterfaceID.NotFound"})
    assert [g["GroupId"] for g in x.instance(x.running)["SecurityGroups"]] == [x.group_id]


def monitor_instances(x: Loot) -> None:
    refused(x.bob.monitor_instances, InstanceIds=[x.running], codes=INSTANCE_NF)
    refused(x.bob.monitor_instances, InstanceIds=[x.stopped], codes=INSTANCE_NF)
    assert x.instance(x.running)["Monitoring"] == {"State": "disabled"}


def unmonitor_instances(x: Loot) -> None:
    x.alice.monitor_instances(InstanceIds=[x.stopped])
    try:
        refused(x.bob.unmonitor_instances, InstanceIds=[x.stopped], codes=INSTANCE_NF)
        assert x.instance(x.stopped)["Monitoring"] == {"State": "enabled"}
    finally:
        x.alice.unmonitor_instances(InstanceIds=[x.stopped])


ENI_NF = {"InvalidNetworkInterfaceID.NotFound"}


def _alices_nics(x: Loot) -> list[dict[str, Any]]:
    return list(x.instance(x.running)["NetworkInterfaces"])


def describe_vpcs(x: Loot) -> None:
    """The VPC is the installation's; each caller sees it as their own, never as alice's."""
    vpcs = x.bob.describe_vpcs()["Vpcs"]
    assert len(vpcs) == 1 and vpcs[0]["OwnerId"] != x.account_id
    assert x.bob.describe_vpcs(Filters=[{"Name": "owner-id", "Values": [x.account_id]}])["Vpcs"] == []


def describe_subnets(x: Loot) -> None:
    subnets = x.bob.describe_subnets()["Subnets"]
    assert subnets and all(s["OwnerId"] != x.account_id for s in subnets)
    assert x.bob.describe_subnets(Filters=[{"Name": "owner-id", "Values": [x.account_id]}])["Subnets"] == []


def describe_network_interfaces(x: Loot) -> None:
    nics = _alices_nics(x)
    assert nics and all(n["NetworkInterfaceId"].startswith("eni-") for n in nics)
    for n in nics:
        refused(x.bob.describe_network_interfaces, NetworkInterfaceIds=[n["NetworkInterfaceId"]], codes=ENI_NF)
    seen = x.bob.describe_network_interfaces()["NetworkInterfaces"]
    assert not {n["NetworkInterfaceId"] for n in seen} & {n["NetworkInterfaceId"] for n in nics}
    for name, value in (("attachment.instance-id", x.running), ("mac-address", nics[0]["MacAddress"]),
                        ("private-ip-address", nics[0]["PrivateIpAddress"]), ("owner-id", x.account_id)):
        assert x.bob.describe_network_interfaces(Filters=[{"Name": name, "Values": [value]}])["NetworkInterfaces"] == []


def run_instances_on_alices_address(x: Loot) -> None:
    """Bob asks for the address alice's instance holds, and names her group on an interface."""
    nic = _alices_nics(x)[0]
    refused(x.bob.run_instances, ImageId=x.w.public_image, MinCount=1, MaxCount=1, SubnetId=nic["SubnetId"],
            PrivateIpAddress=nic["PrivateIpAddress"], codes={"InvalidIPAddress.InUse"})
    refused(x.bob.run_instances, ImageId=x.w.public_image, MinCount=1, MaxCount=1,
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": nic["SubnetId"], "Groups": [x.group_id]}], codes=GROUP_NF)
    assert _alices_nics(x)[0]["PrivateIpAddress"] == nic["PrivateIpAddress"]
    assert x.bob.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])[
        "Reservations"] == []


def vpcs_and_subnets_stay_as_they_are(x: Loot) -> None:
    vpc_before = x.alice.describe_vpcs()["Vpcs"]
    subnets_before = x.alice.describe_subnets()["Subnets"]
    unsupported = {"UnsupportedOperation"}
    refused(x.bob.create_vpc, CidrBlock="10.0.0.0/16", codes=unsupported)
    refused(x.bob.create_subnet, VpcId=vpc_before[0]["VpcId"], CidrBlock=subnets_before[0]["CidrBlock"], codes=unsupported)
    refused(x.bob.delete_vpc, VpcId=vpc_before[0]["VpcId"], codes=unsupported)
    refused(x.bob.delete_subnet, SubnetId=subnets_before[0]["SubnetId"], codes=unsupported)
    assert x.alice.describe_vpcs()["Vpcs"] == vpc_before
    assert [s["SubnetId"] for s in x.alice.describe_subnets()["Subnets"]] == [s["SubnetId"] for s in subnets_before]


def _alices_group(x: Loot) -> dict[str, Any]:
    return dict(x.alice.describe_security_groups(GroupIds=[x.group_id])["SecurityGroups"][0])


_OPEN_ALL = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


def authorize_security_group_ingress(x: Loot) -> None:
    before = _alices_group(x)
    refused(x.bob.authorize_security_group_ingress, GroupId=x.group_id, IpPermissions=_OPEN_ALL, codes=GROUP_NF)
    refused(x.bob.authorize_security_group_ingress, GroupName="default", IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": x.group_id, "UserId": x.account_id}]}], codes=GROUP_NF)
    assert _alices_group(x) == before


def authorize_security_group_egress(x: Loot) -> None:
    before = _alices_group(x)
    refused(x.bob.authorize_security_group_egress, GroupId=x.group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 25, "ToPort": 25, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}], codes=GROUP_NF)
    assert _alices_group(x) == before


def revoke_security_group_rules(x: Loot) -> None:
    before = _alices_group(x)
    rule_ids = [r["SecurityGroupRuleId"] for r in x.alice.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [x.group_id]}])["SecurityGroupRules"]]
    assert rule_ids
    refused(x.bob.revoke_security_group_ingress, GroupId=x.group_id, SecurityGroupRuleIds=rule_ids, codes=GROUP_NF)
    refused(x.bob.revoke_security_group_egress, GroupId=x.group_id, IpPermissions=_OPEN_ALL, codes=GROUP_NF)
    refused(x.bob.revoke_security_group_egress, GroupId=x.group_id, SecurityGroupRuleIds=rule_ids, codes=GROUP_NF)
    assert _alices_group(x) == before


def describe_security_group_rules(x: Loot) -> None:
    rule_ids = [r["SecurityGroupRuleId"] for r in x.alice.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [x.group_id]}])["SecurityGroupRules"]]
    refused(x.bob.describe_security_group_rules, SecurityGroupRuleIds=rule_ids,
            codes={"InvalidSecurityGroupRuleId.NotFound"})
    assert x.bob.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [x.group_id]}])[
        "SecurityGroupRules"] == []
    assert not {r["SecurityGroupRuleId"] for r in x.bob.describe_security_group_rules()["SecurityGroupRules"]} & set(rule_ids)


def create_and_delete_security_group(x: Loot) -> None:
    """Bob may have a group of alice's group's name; deleting his, or hers by id, leaves hers."""
    before = _alices_group(x)
    refused(x.bob.delete_security_group, GroupId=x.group_id, codes=GROUP_NF)
    name = unique("shared-name")
    mine = x.alice.create_security_group(GroupName=name, Description="alice's")["GroupId"]
    try:
        his = x.bob.create_security_group(GroupName=name, Description="bob's")["GroupId"]
        assert his != mine
        x.bob.delete_security_group(GroupName=name)
        assert x.alice.describe_security_groups(GroupNames=[name])["SecurityGroups"][0]["GroupId"] == mine
        refused(x.bob.delete_security_group, GroupId=mine, codes=GROUP_NF)
    finally:
        x.alice.delete_security_group(GroupId=mine)
    assert _alices_group(x) == before


def modify_instance_groups(x: Loot) -> None:
    bob_group = x.bob.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    refused(x.bob.modify_instance_attribute, InstanceId=x.running, Groups=[bob_group], codes=INSTANCE_NF)
    refused(x.bob.modify_instance_attribute, InstanceId=x.running, Groups=[x.group_id], codes=INSTANCE_NF)
    assert [g["GroupId"] for g in x.instance(x.running)["SecurityGroups"]] == [x.group_id]


def nothing_of_alices_is_listed_for_bob(x: Loot) -> None:
    assert not x.bob_sees() & {x.running, x.stopped, x.image, x.kernel, x.key_id, x.group_id, x.volume, x.attached}


# --------------------------------------------------------------------------- volumes


def _bobs_volume(x: Loot) -> str:
    zone = x.bob.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
    vid = str(x.bob.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"])
    x.bob.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return vid


def _volumes_intact(x: Loot) -> None:
    free, used = x.vol(x.volume), x.vol(x.attached)
    assert (free["State"], free["Size"], free["Attachments"]) == ("available", 1, [])
    assert (used["State"], used["Size"]) == ("in-use", 2)
    assert [(a["InstanceId"], a["Device"], a["State"]) for a in used["Attachments"]] == [(x.running, "/dev/sdf", "attached")]
    assert x.tags(x.volume) == {"owner": "alice"}


def describe_volumes(x: Loot) -> None:
    refused(x.bob.describe_volumes, VolumeIds=[x.volume], codes=VOLUME_NF)
    refused(x.bob.describe_volumes, VolumeIds=[x.attached], codes=VOLUME_NF)
    refused(x.bob.describe_volumes, VolumeIds=[x.root(x.running)["VolumeId"]], codes=VOLUME_NF)
    for flt in ({"Name": "volume-id", "Values": [x.volume, x.attached]}, {"Name": "tag:owner", "Values": ["alice"]},
                {"Name": "attachment.instance-id", "Values": [x.running]}):
        assert x.bob.describe_volumes(Filters=[flt])["Volumes"] == []


def create_volume(x: Loot) -> None:
    """Bob's ClientToken equal to one alice used gives bob a volume of his own, never hers."""
    zone = x.alice.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
    mine = x.alice.create_volume(AvailabilityZone=zone, Size=1, ClientToken="shared-token")["VolumeId"]
    his = x.bob.create_volume(AvailabilityZone=zone, Size=1, ClientToken="shared-token")["VolumeId"]
    assert his != mine
    refused(x.bob.describe_volumes, VolumeIds=[mine], codes=VOLUME_NF)
    fast = {"Delay": 1, "MaxAttempts": 60}
    x.alice.get_waiter("volume_available").wait(VolumeIds=[mine], WaiterConfig=fast)
    x.bob.get_waiter("volume_available").wait(VolumeIds=[his], WaiterConfig=fast)
    x.alice.delete_volume(VolumeId=mine)
    x.bob.delete_volume(VolumeId=his)


def delete_volume(x: Loot) -> None:
    refused(x.bob.delete_volume, VolumeId=x.volume, codes=VOLUME_NF)
    refused(x.bob.delete_volume, VolumeId=x.attached, codes=VOLUME_NF)
    refused(x.bob.delete_volume, VolumeId=x.root(x.stopped)["VolumeId"], codes=VOLUME_NF)
    _volumes_intact(x)


def attach_volume(x: Loot) -> None:
    refused(x.bob.attach_volume, VolumeId=x.volume, InstanceId=x.running, Device="/dev/sdg",
            codes=VOLUME_NF | INSTANCE_NF)
    bobs = _bobs_volume(x)
    # his volume into her instance, her volume into an instance of his: neither is found
    refused(x.bob.attach_volume, VolumeId=bobs, InstanceId=x.running, Device="/dev/sdg", codes=INSTANCE_NF)
    refused(x.bob.attach_volume, VolumeId=bobs, InstanceId=x.stopped, Device="/dev/sdg", codes=INSTANCE_NF)
    refused(x.alice.attach_volume, VolumeId=bobs, InstanceId=x.running, Device="/dev/sdg", codes=VOLUME_NF)
    x.bob.delete_volume(VolumeId=bobs)
    _volumes_intact(x)


def detach_volume(x: Loot) -> None:
    refused(x.bob.detach_volume, VolumeId=x.attached, codes=VOLUME_NF)
    refused(x.bob.detach_volume, VolumeId=x.attached, InstanceId=x.running, Force=True, codes=VOLUME_NF)
    root = x.root(x.running)
    refused(x.bob.detach_volume, VolumeId=root["VolumeId"], InstanceId=x.running, Force=True, codes=VOLUME_NF)
    assert x.root(x.running) == root and root["Status"] == "attached"
    _volumes_intact(x)


def modify_volume(x: Loot) -> None:
    refused(x.bob.modify_volume, VolumeId=x.volume, Size=8, codes=VOLUME_NF)
    refused(x.bob.modify_volume, VolumeId=x.attached, VolumeType="gp3", codes=VOLUME_NF)
    _volumes_intact(x)
    assert x.vol(x.attached)["VolumeType"] == "gp2"


def describe_volumes_modifications(x: Loot) -> None:
    refused(x.bob.describe_volumes_modifications, VolumeIds=[x.volume], codes=VOLUME_NF)
    listed = x.bob.describe_volumes_modifications()["VolumesModifications"]
    assert not {m["VolumeId"] for m in listed} & {x.volume, x.attached}


def describe_volume_status(x: Loot) -> None:
    refused(x.bob.describe_volume_status, VolumeIds=[x.volume], codes=VOLUME_NF)
    listed = x.bob.describe_volume_status()["VolumeStatuses"]
    assert not {s["VolumeId"] for s in listed} & {x.volume, x.attached}


def volume_attributes(x: Loot) -> None:
    refused(x.bob.describe_volume_attribute, VolumeId=x.volume, Attribute="autoEnableIO", codes=VOLUME_NF)
    refused(x.bob.modify_volume_attribute, VolumeId=x.volume, AutoEnableIO={"Value": True}, codes=VOLUME_NF)
    assert x.alice.describe_volume_attribute(VolumeId=x.volume, Attribute="autoEnableIO")["AutoEnableIO"]["Value"] is False


def volume_tags(x: Loot) -> None:
    refused(x.bob.create_tags, Resources=[x.volume], Tags=[{"Key": "owner", "Value": "bob"}], codes=VOLUME_NF)
    refused(x.bob.delete_tags, Resources=[x.volume], Tags=[{"Key": "owner"}], codes=VOLUME_NF)
    assert x.tags(x.volume) == {"owner": "alice"}


#: operation -> the cases that attack alice's resources with it
CASES: dict[str, list[Callable[[Loot], None]]] = {
    "DescribeInstances": [describe_instances, nothing_of_alices_is_listed_for_bob],
    "DescribeInstanceStatus": [describe_instance_status],
    "TerminateInstances": [terminate_instances],
    "StopInstances": [stop_instances],
    "StartInstances": [start_instances],
    "RebootInstances": [reboot_instances],
    "GetConsoleOutput": [get_console_output],
    "DescribeInstanceAttribute": [describe_instance_attribute],
    "ModifyInstanceAttribute": [modify_instance_attribute, modify_instance_groups],
    "CreateImage": [create_image],
    "CreateTags": [create_tags, volume_tags],
    "DeleteTags": [delete_tags, volume_tags],
    "DescribeTags": [describe_tags],
    "DescribeImages": [describe_images],
    "DeregisterImage": [deregister_image, public_image_stays_the_administrators],
    "DescribeImageAttribute": [describe_image_attribute],
    "ModifyImageAttribute": [modify_image_attribute],
    "RunInstances": [run_instances, run_instances_on_alices_address],
    "RegisterImage": [register_image],
    "CreateKeyPair": [create_key_pair],
    "ImportKeyPair": [import_key_pair],
    "DeleteKeyPair": [delete_key_pair],
    "DescribeKeyPairs": [describe_key_pairs],
    "DescribeSecurityGroups": [describe_security_groups],
    "DescribeAddresses": [describe_addresses, describe_alices_address],
    "AllocateAddress": [allocate_address],
    "AssociateAddress": [associate_address],
    "DisassociateAddress": [disassociate_address],
    "ReleaseAddress": [release_address],
    "ModifyNetworkInterfaceAttribute": [modify_network_interface_attribute],
    "MonitorInstances": [monitor_instances],
    "UnmonitorInstances": [unmonitor_instances],
    "DescribeVpcs": [describe_vpcs],
    "DescribeSubnets": [describe_subnets],
    "DescribeNetworkInterfaces": [describe_network_interfaces],
    "CreateVpc": [vpcs_and_subnets_stay_as_they_are],
    "CreateSubnet": [vpcs_and_subnets_stay_as_they_are],
    "DeleteVpc": [vpcs_and_subnets_stay_as_they_are],
    "DeleteSubnet": [vpcs_and_subnets_stay_as_they_are],
    "CreateSecurityGroup": [create_and_delete_security_group],
    "DeleteSecurityGroup": [create_and_delete_security_group],
    "AuthorizeSecurityGroupIngress": [authorize_security_group_ingress],
    "AuthorizeSecurityGroupEgress": [authorize_security_group_egress],
    "RevokeSecurityGroupIngress": [revoke_security_group_rules],
    "RevokeSecurityGroupEgress": [revoke_security_group_rules],
    "DescribeSecurityGroupRules": [describe_security_group_rules],
    "CreateVolume": [create_volume],
    "DescribeVolumes": [describe_volumes, nothing_of_alices_is_listed_for_bob],
    "DeleteVolume": [delete_volume],
    "AttachVolume": [attach_volume],
    "DetachVolume": [detach_volume],
    "ModifyVolume": [modify_volume],
    "DescribeVolumesModifications": [describe_volumes_modifications],
    "DescribeVolumeStatus": [describe_volume_status],
    "DescribeVolumeAttribute": [volume_attributes],
    "ModifyVolumeAttribute": [volume_attributes],
}
for _op, _cases in snapshot_cases.CASES.items():
    CASES[_op] = CASES.get(_op, []) + _cases


# --------------------------------------------------------------------------- CloudWatch (metrics)


def _window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(minutes=30), now + timedelta(minutes=2)


def _alice_has_metrics(x: Loot) -> None:
    """Alice herself reads samples of her running instance (so bob's empty answers mean something)."""
    cw = x.w.alice.client("cloudwatch")
    start, end = _window()

    def sampled() -> bool:
        got = cw.get_metric_statistics(Namespace="AWS/EC2", MetricName="DiskReadOps", StartTime=start, EndTime=end,
                                       Dimensions=[{"Name": "InstanceId", "Value": x.running}], Period=600,
                                       Statistics=["SampleCount"])
        return bool(got["Datapoints"])

    wait_for("samples of alice's running instance", sampled, timeout=60)


def get_metric_statistics(x: Loot) -> None:
    _alice_has_metrics(x)
    cw = x.w.bob.client("cloudwatch")
    start, end = _window()
    for dims in ([{"Name": "InstanceId", "Value": x.running}], [{"Name": "InstanceId", "Value": x.stopped}],
                 [{"Name": "ImageId", "Value": x.w.public_image}], [{"Name": "InstanceType", "Value": "t2.micro"}], []):
        got = cw.get_metric_statistics(Namespace="AWS/EC2", MetricName="DiskReadOps", Dimensions=dims, StartTime=start,
                                       EndTime=end, Period=600, Statistics=["SampleCount", "Sum"])
        assert got["Datapoints"] == [], dims


def get_metric_data(x: Loot) -> None:
    _alice_has_metrics(x)
    cw = x.w.bob.client("cloudwatch")
    start, end = _window()
    got = cw.get_metric_data(StartTime=start, EndTime=end, MetricDataQueries=[
        {"Id": f"m{i}", "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": metric,
                                                  "Dimensions": [{"Name": "InstanceId", "Value": x.running}]},
                                       "Period": 60, "Stat": "SampleCount"}}
        for i, metric in enumerate(("CPUUtilization", "NetworkIn", "DiskWriteBytes"))])
    assert [r["Values"] for r in got["MetricDataResults"]] == [[], [], []]


def list_metrics(x: Loot) -> None:
    _alice_has_metrics(x)
    cw = x.w.bob.client("cloudwatch")
    assert cw.list_metrics()["Metrics"] == []
    assert cw.list_metrics(Dimensions=[{"Name": "InstanceId", "Value": x.running}])["Metrics"] == []
    out = x.w.bob.aws("cloudwatch", "get-metric-statistics", "--namespace", "AWS/EC2", "--metric-name", "NetworkIn",
                      "--dimensions", f"Name=InstanceId,Value={x.running}", "--start-time", _window()[0].isoformat(),
                      "--end-time", _window()[1].isoformat(), "--period", "60", "--statistics", "Sum", check=True)
    assert json.loads(out.stdout)["Datapoints"] == []


#: CloudWatch operation -> the cases where bob asks for metrics of alice's instances
CLOUDWATCH_CASES: dict[str, list[Callable[[Loot], None]]] = {
    "GetMetricStatistics": [get_metric_statistics],
    "GetMetricData": [get_metric_data],
    "ListMetrics": [list_metrics],
}


def test_every_operation_has_a_cross_tenant_case() -> None:
    implemented = set(load_providers().names())
    missing = implemented - set(CASES) - NO_TENANT_RESOURCE
    assert not missing, (f"EC2 operations without a cross-tenant case: {sorted(missing)}; add one to CASES in "
                         f"{__file__} (or to NO_TENANT_RESOURCE if they touch no per-user resource)")
    assert not (set(CASES) | NO_TENANT_RESOURCE) - implemented, "cases for operations the server does not have"


def test_every_cloudwatch_operation_has_a_cross_tenant_case() -> None:
    load_providers()
    assert set(dispatch.cloudwatch.names()) == set(CLOUDWATCH_CASES), (
        f"CloudWatch operations and CLOUDWATCH_CASES in {__file__} differ: add a case for each operation")


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{op}-{c.__name__}")
                                  for op, cs in (CASES | CLOUDWATCH_CASES).items() for c in cs])
def test_bob_cannot_reach_alices_resources(loot: Loot, case: Callable[[Loot], None]) -> None:
    case(loot)


def test_alices_resources_are_intact_and_hers(loot: Loot) -> None:
    """After every attack: alice still sees and uses all of it."""
    assert (loot.state(loot.running), loot.state(loot.stopped)) == ("running", "stopped")
    assert loot.tags(loot.running) == {"owner": "alice"}
    assert loot.image_row()["State"] == "available" and loot.image_row()["Public"] is False
    assert loot.alice.get_console_output(InstanceId=loot.running)["InstanceId"] == loot.running
    keys = loot.alice.describe_key_pairs(KeyNames=[loot.key_name])["KeyPairs"]
    assert [(k["KeyPairId"], k["KeyFingerprint"]) for k in keys] == [(loot.key_id, loot.key_fingerprint)]
    _volumes_intact(loot)
