"""Images through botocore and the real gateway: visibility, filters, pagination, attributes, sharing,
registration from Cumulus objects, the admin import, and the lookup RunInstances uses."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from ec2gw import images as svc
from ec2gw.errors import ServiceError
from tests.unit.ec2_inprocess import World, error_of, make_world


@pytest.fixture
def w(tmp_path: Path) -> World:
    return make_world(tmp_path)


def ids_of(resp: dict[str, Any]) -> list[str]:
    return [i["ImageId"] for i in resp["Images"]]


# --- DescribeImages --------------------------------------------------------------------------


def test_shape_of_an_image(w: World) -> None:
    aki = w.add_image("alice", "vmlinuz", kind="kernel")
    ari = w.add_image("alice", "initrd", kind="ramdisk")
    ami = w.add_image("alice", "debian", kernel_id=aki, ramdisk_id=ari, description="Debian 12", architecture="i386")
    img = w.a.describe_images(ImageIds=[ami])["Images"][0]
    assert img["ImageId"] == ami and img["Name"] == "debian" and img["Description"] == "Debian 12"
    assert img["ImageLocation"] == "Repo/VMS/alice/debian" and img["State"] == "available"
    assert img["OwnerId"] == w.alice.account_id and img["Public"] is False
    assert img["Architecture"] == "i386" and img["ImageType"] == "machine"
    assert img["KernelId"] == aki and img["RamdiskId"] == ari
    assert img["RootDeviceType"] == "instance-store" and img["RootDeviceName"].startswith("/dev/")
    assert img["VirtualizationType"] == "hvm" and img["BlockDeviceMappings"] == [] and img["Tags"] == []
    created = dt.datetime.strptime(img["CreationDate"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 60
    kinds = {i["ImageId"]: i["ImageType"] for i in w.a.describe_images()["Images"]}
    assert kinds == {ami: "machine", aki: "kernel", ari: "ramdisk"}


def test_users_see_their_own_and_public_images(w: World) -> None:
    mine = w.add_image("alice", "mine")
    shared = w.add_image("alice", "shared", public=True)
    bobs = w.add_image("bob", "bobs")
    assert set(ids_of(w.a.describe_images())) == {mine, shared}
    assert set(ids_of(w.b.describe_images())) == {shared, bobs}
    assert error_of(w.b.describe_images, ImageIds=[mine])[0] == "InvalidAMIID.NotFound"
    assert ids_of(w.b.describe_images(ImageIds=[shared])) == [shared]


def test_owners_and_executable_by(w: World) -> None:
    mine = w.add_image("alice", "mine")
    shared = w.add_image("alice", "shared", public=True)
    bobs = w.add_image("bob", "bobs")
    bobs_public = w.add_image("bob", "bobs-public", public=True)
    q = lambda **kw: set(ids_of(w.a.describe_images(**kw)))
    assert q(Owners=["self"]) == {mine, shared}
    assert q(Owners=[w.alice.account_id]) == {mine, shared}
    assert q(Owners=[w.bob.account_id]) == {bobs_public}
    assert q(Owners=["self", w.bob.account_id]) == {mine, shared, bobs_public}
    assert q(Owners=["amazon"]) == set()
    assert q(Owners=["999999999999"]) == set()
    assert q(ExecutableUsers=["all"]) == {shared, bobs_public}
    assert q(ExecutableUsers=["self"]) == {mine, shared}
    assert q(ExecutableUsers=[w.bob.account_id]) == set()
    assert q(Owners=["self"], ExecutableUsers=["all"]) == {shared}
    assert bobs not in q()
    assert error_of(w.a.describe_images, Owners=["someone"])[0] == "InvalidUserID.Malformed"
    assert error_of(w.a.describe_images, ExecutableUsers=["12"])[0] == "InvalidUserID.Malformed"


def test_filters(w: World) -> None:
    aki = w.add_image("alice", "vmlinuz-6.1", kind="kernel", public=True)
    web = w.add_image("alice", "web server", kernel_id=aki, description="nginx on debian", architecture="x86_64")
    arm = w.add_image("alice", "arm build", architecture="arm64", root_device_name="/dev/sda1")
    w.a.create_tags(Resources=[web], Tags=[{"Key": "role", "Value": "web"}])
    q = lambda *flt: set(ids_of(w.a.describe_images(Filters=[{"Name": n, "Values": v} for n, v in flt])))
    assert q(("name", ["web*"])) == {web}
    assert q(("image-id", [arm])) == {arm}
    assert q(("architecture", ["arm64"])) == {arm}
    assert q(("image-type", ["kernel"])) == {aki}
    assert q(("kernel-id", [aki])) == {web}
    assert q(("description", ["*nginx*"])) == {web}
    assert q(("root-device-name", ["/dev/sda1"])) == {arm}
    assert q(("is-public", ["true"])) == {aki}
    assert q(("is-public", ["false"])) == {web, arm}
    assert q(("owner-id", [w.alice.account_id])) == {aki, web, arm}
    assert q(("state", ["available"])) == {aki, web, arm}
    assert q(("state", ["pending"])) == set()
    assert q(("tag:role", ["web"])) == {web}
    assert q(("tag-key", ["role"])) == {web}
    assert q(("root-device-type", ["instance-store"])) == {aki, web, arm}
    assert q(("root-device-type", ["ebs"])) == set()
    assert q(("virtualization-type", ["hvm"]), ("architecture", ["x86_64"])) == {aki, web}
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    assert q(("creation-date", [f"{today}T*"])) == {aki, web, arm}
    assert q(("creation-date", ["2001-01-01T*"])) == set()
    # ids and filters together: the filters narrow, missing ids are errors
    assert set(ids_of(w.a.describe_images(ImageIds=[web, arm], Filters=[{"Name": "architecture", "Values": ["arm64"]}]))) == {arm}
    code, msg = error_of(w.a.describe_images, Filters=[{"Name": "colour", "Values": ["x"]}])
    assert code == "InvalidParameterValue" and "colour" in msg
    assert error_of(w.a.describe_images, Filters=[{"Name": "is-public", "Values": ["maybe"]}])[0] == "InvalidParameterValue"


def test_bad_image_ids(w: World) -> None:
    good = w.add_image("alice", "good")
    assert error_of(w.a.describe_images, ImageIds=["ami-nothex"])[0] == "InvalidAMIID.Malformed"
    assert error_of(w.a.describe_images, ImageIds=["i-12345678"])[0] == "InvalidAMIID.Malformed"
    code, msg = error_of(w.a.describe_images, ImageIds=[good, "ami-12345678", "aki-0123456789abcdef0"])
    assert code == "InvalidAMIID.NotFound" and "ami-12345678" in msg and "aki-0123456789abcdef0" in msg
    assert error_of(w.a.describe_images, DryRun=True)[0] == "DryRunOperation"


def test_paginator(w: World) -> None:
    made = {w.add_image("alice", f"img-{i:02d}", public=i % 3 == 0) for i in range(12)}
    pages = list(w.a.get_paginator("describe_images").paginate(PaginationConfig={"PageSize": 5}))
    assert [len(p["Images"]) for p in pages] == [5, 5, 2]
    flat = [i for p in pages for i in ids_of(p)]
    assert set(flat) == made and flat == sorted(flat)
    public = [i for p in w.a.get_paginator("describe_images").paginate(
        Filters=[{"Name": "is-public", "Values": ["true"]}], PaginationConfig={"PageSize": 5}) for i in ids_of(p)]
    assert len(public) == 4
    token = w.a.describe_images(MaxResults=5)["NextToken"]
    assert error_of(w.a.describe_images, MaxResults=5, NextToken=token, Owners=["self"])[0] == "InvalidParameterValue"
    raw = w.ip.ec2(w.alice, validate=False)
    assert error_of(raw.describe_images, MaxResults=4)[0] == "InvalidParameterValue"
    assert error_of(raw.describe_images, MaxResults=1001)[0] == "InvalidParameterValue"


# --- attributes, sharing, deregistration ----------------------------------------------------


def test_describe_image_attribute(w: World) -> None:
    aki = w.add_image("alice", "vmlinuz", kind="kernel")
    ami = w.add_image("alice", "disk", kernel_id=aki, description="my disk")
    attr = lambda name: w.a.describe_image_attribute(ImageId=ami, Attribute=name)
    assert attr("description")["Description"] == {"Value": "my disk"}
    assert attr("kernel")["KernelId"] == {"Value": aki}
    assert attr("ramdisk")["RamdiskId"] == {}
    assert attr("launchPermission")["LaunchPermissions"] == []
    assert attr("productCodes")["ProductCodes"] == []
    assert attr("blockDeviceMapping")["BlockDeviceMappings"] == []
    assert attr("sriovNetSupport")["ImageId"] == ami
    assert attr("bootMode")["ImageId"] == ami
    assert attr("lastLaunchedTime")["ImageId"] == ami
    raw = w.ip.ec2(w.alice, validate=False)
    assert error_of(raw.describe_image_attribute, ImageId=ami, Attribute="colour")[0] == "InvalidParameterValue"
    assert error_of(w.a.describe_image_attribute, ImageId="ami-zz", Attribute="description")[0] == "InvalidAMIID.Malformed"
    assert error_of(w.b.describe_image_attribute, ImageId=ami, Attribute="description")[0] == "InvalidAMIID.NotFound"


def test_sharing_with_launch_permission_all(w: World) -> None:
    ami = w.add_image("alice", "disk")
    assert ami not in ids_of(w.b.describe_images())
    w.a.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"Group": "all"}]})
    assert ami in ids_of(w.b.describe_images())
    assert w.b.describe_images(ImageIds=[ami])["Images"][0]["Public"] is True
    assert w.a.describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"] == [{"Group": "all"}]
    # bob sees it but may not change it, list its permissions or deregister it
    assert w.b.describe_image_attribute(ImageId=ami, Attribute="description")["ImageId"] == ami
    assert error_of(w.b.describe_image_attribute, ImageId=ami, Attribute="launchPermission")[0] == "AuthFailure"
    assert error_of(w.b.modify_image_attribute, ImageId=ami, Description={"Value": "mine now"})[0] == "AuthFailure"
    assert error_of(w.b.deregister_image, ImageId=ami)[0] == "AuthFailure"
    # the older form euca2ools sends: Attribute, OperationType, UserGroup.N
    w.a.modify_image_attribute(ImageId=ami, Attribute="launchPermission", OperationType="remove", UserGroups=["all"])
    assert ami not in ids_of(w.b.describe_images())
    assert error_of(w.b.describe_images, ImageIds=[ami])[0] == "InvalidAMIID.NotFound"


def test_modify_image_attribute_description_and_errors(w: World) -> None:
    ami = w.add_image("alice", "disk")
    w.a.modify_image_attribute(ImageId=ami, Description={"Value": "new text"})
    assert w.a.describe_images(ImageIds=[ami])["Images"][0]["Description"] == "new text"
    w.a.modify_image_attribute(ImageId=ami, Attribute="description", Value="older form")
    assert w.a.describe_image_attribute(ImageId=ami, Attribute="description")["Description"] == {"Value": "older form"}
    bad = [
        ({"LaunchPermission": {"Add": [{"UserId": w.bob.account_id}]}}, "InvalidParameterValue"),
        ({"LaunchPermission": {"Add": [{"Group": "friends"}]}}, "InvalidParameterValue"),
        ({"Attribute": "launchPermission", "UserGroups": ["all"]}, "MissingParameter"),
        ({}, "MissingParameter"),
        ({"Description": {"Value": "x" * 256}}, "InvalidParameterValue"),
        ({"LaunchPermission": {"Add": [{"Group": "all"}]}, "DryRun": True}, "DryRunOperation"),
    ]
    for kwargs, code in bad:
        assert error_of(w.a.modify_image_attribute, ImageId=ami, **kwargs)[0] == code, kwargs
    assert w.a.describe_images(ImageIds=[ami])["Images"][0]["Public"] is False
    assert error_of(w.a.modify_image_attribute, ImageId="ami-0123456789abcdef0", Description={"Value": "x"})[0] == \
        "InvalidAMIID.NotFound"


def test_deregister(w: World) -> None:
    ami = w.add_image("alice", "disk")
    w.a.create_tags(Resources=[ami], Tags=[{"Key": "a", "Value": "b"}])
    assert error_of(w.a.deregister_image, ImageId=ami, DryRun=True)[0] == "DryRunOperation"
    assert error_of(w.b.deregister_image, ImageId=ami)[0] == "InvalidAMIID.NotFound"
    assert w.a.deregister_image(ImageId=ami)["Return"] is True
    assert w.a.describe_images()["Images"] == [] and w.a.describe_tags()["Tags"] == []
    assert error_of(w.a.deregister_image, ImageId=ami)[0] == "InvalidAMIID.NotFound"
    assert error_of(w.a.deregister_image, ImageId="ami-bad")[0] == "InvalidAMIID.Malformed"
    # the name is free again
    again = w.add_image("alice", "disk")
    assert ids_of(w.a.describe_images()) == [again]


# --- the lookup RunInstances uses ------------------------------------------------------------


def test_find_launchable_image(w: World) -> None:
    ami = w.add_image("alice", "disk")
    aki = w.add_image("bob", "kernel", kind="kernel", public=True)
    pending = w.add_image("alice", "pending", state="pending")
    alice, bob = w.user_id("alice"), w.user_id("bob")

    def code(user: int, image_id: Any, kind: str = "machine") -> str:
        with w.app.db.session() as s:
            try:
                svc.find_launchable_image(s, user, image_id, kind)
            except ServiceError as exc:
                return exc.code
        return "ok"

    assert code(alice, ami) == "ok" and code(alice, aki, "kernel") == "ok"
    assert code(bob, ami) == "InvalidAMIID.NotFound"
    assert code(alice, "ami-0123456789abcdef0") == "InvalidAMIID.NotFound"
    assert code(alice, "ami-XYZ") == "InvalidAMIID.Malformed"
    assert code(alice, "") == "MissingParameter"
    assert code(alice, pending) == "InvalidAMIID.Unavailable"
    assert code(alice, aki) == "InvalidParameterValue"  # a kernel is not a machine image
    assert code(alice, ami, "ramdisk") == "InvalidParameterValue"


# --- RegisterImage and the admin import (need Cumulus) ---------------------------------------


@pytest.fixture
def store() -> Any:
    return pytest.importorskip("storage.images", reason="Cumulus (storage/images.py) is not there yet")


def put(w: World, store: Any, owner: str, key: str, data: bytes, tmp_path: Path) -> str:
    path = tmp_path / key.replace("/", "_")
    path.write_bytes(data)
    store.put_file(w.app, w.user_id(owner), w.app.settings.image_bucket, key, str(path), len(data))
    return f"{w.app.settings.image_bucket}/{key}"


QCOW2 = b"QFI\xfb\x00\x00\x00\x03" + b"\x00" * 1016


def test_register_image_from_cumulus(w: World, store: Any, tmp_path: Path) -> None:
    raw_loc = put(w, store, "alice", store.user_image_key(w.app.settings, "alice", "raw.img"), b"\x00" * 4096, tmp_path)
    qcow_loc = put(w, store, "alice", store.user_image_key(w.app.settings, "alice", "disk.qcow2"), QCOW2, tmp_path)
    aki_id = w.add_image("alice", "vmlinuz", kind="kernel")
    r = w.a.register_image(
        Name="raw disk", ImageLocation=raw_loc, Description="a raw disk", Architecture="x86_64", KernelId=aki_id,
        RootDeviceName="/dev/vda", TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "k", "Value": "v"}]}],
    )
    ami = r["ImageId"]
    assert ami.startswith("ami-")
    img = w.a.describe_images(ImageIds=[ami])["Images"][0]
    assert img["Name"] == "raw disk" and img["ImageLocation"] == raw_loc and img["KernelId"] == aki_id
    assert img["State"] == "available" and img["Tags"] == [{"Key": "k", "Value": "v"}]
    qcow = w.a.register_image(Name="qcow", ImageLocation=qcow_loc)["ImageId"]
    from ec2gw.db.models import Image

    with w.app.db.session() as s:
        assert (s.get(Image, ami).disk_format, s.get(Image, ami).size_bytes) == ("raw", 4096)
        assert (s.get(Image, qcow).disk_format, s.get(Image, qcow).size_bytes) == ("qcow2", len(QCOW2))
    w.b.register_image(Name="raw disk", ImageLocation=put(w, store, "bob", store.user_image_key(
        w.app.settings, "bob", "x"), b"x" * 10, tmp_path))  # names are per owner


def test_register_image_errors(w: World, store: Any, tmp_path: Path) -> None:
    loc = put(w, store, "alice", store.user_image_key(w.app.settings, "alice", "disk.img"), b"\x00" * 512, tmp_path)
    first = w.a.register_image(Name="disk", ImageLocation=loc)["ImageId"]
    bobs_aki = w.add_image("bob", "kernel", kind="kernel")
    cases = [
        ({"Name": "disk", "ImageLocation": loc}, "InvalidAMIName.Duplicate"),
        ({"Name": "ab", "ImageLocation": loc}, "InvalidAMIName.Malformed"),
        ({"Name": "bad|name", "ImageLocation": loc}, "InvalidAMIName.Malformed"),
        ({"Name": "other"}, "MissingParameter"),
        ({"Name": "other", "ImageLocation": "nobucketkey"}, "InvalidParameterValue"),
        ({"Name": "other", "ImageLocation": "Repo/VMS/alice/missing"}, "InvalidManifest"),
        ({"Name": "other", "ImageLocation": loc, "KernelId": "ami-12345678"}, "InvalidAMIID.Malformed"),
        ({"Name": "other", "ImageLocation": loc, "KernelId": "aki-12345678"}, "InvalidAMIID.NotFound"),
        ({"Name": "other", "ImageLocation": loc, "KernelId": bobs_aki}, "InvalidAMIID.NotFound"),
        ({"Name": "other", "ImageLocation": loc, "Architecture": "sparc"}, "InvalidParameterValue"),
        ({"Name": "other", "ImageLocation": loc, "RootDeviceName": "vda"}, "InvalidParameterValue"),
        ({"Name": "other", "ImageLocation": loc, "DryRun": True}, "DryRunOperation"),
        ({"Name": "other", "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": "snap-12345678"}}]},
         "MissingParameter"),
        ({"Name": "other", "RootDeviceName": "/dev/sda1",
          "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": "snap-12345678"}}]},
         "InvalidSnapshot.NotFound"),
    ]
    raw = w.ip.ec2(w.alice, validate=False)
    for kwargs, code in cases:
        assert error_of(raw.register_image, **kwargs)[0] == code, kwargs
    # bob may not register alice's private object
    assert error_of(w.b.register_image, Name="stolen", ImageLocation=loc)[0] == "InvalidManifest"
    assert ids_of(w.a.describe_images(Owners=["self"])) == [first]


def test_import_image(w: World, store: Any, tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"\x7fELF" + b"\x00" * 2000)
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(QCOW2)
    aki = svc.import_image(w.app, name="vmlinuz", path=kernel, kind="kernel", owner_name="alice")
    assert aki.startswith("aki-")
    ami = svc.import_image(w.app, name="debian", path=str(disk), kernel_id=aki, owner_name="alice")
    img = w.a.describe_images(ImageIds=[ami])["Images"][0]
    settings = w.app.settings
    assert img["ImageLocation"] == f"{settings.image_bucket}/{store.user_image_key(settings, 'alice', 'debian')}"
    assert img["KernelId"] == aki and img["Public"] is False
    assert ami not in ids_of(w.b.describe_images())
    with pytest.raises(ServiceError) as dup:
        svc.import_image(w.app, name="debian", path=disk, owner_name="alice")
    assert dup.value.code == "InvalidAMIName.Duplicate"
    with pytest.raises(FileNotFoundError):
        svc.import_image(w.app, name="nothing", path=tmp_path / "missing", owner_name="alice")
    with pytest.raises(ServiceError):
        svc.import_image(w.app, name="x", path=disk, owner_name="nobody")


def test_import_public_image_goes_to_common(w: World, store: Any, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\x00" * 1024)
    ami = svc.import_image(w.app, name="base", path=disk, public=True)
    settings = w.app.settings
    for client in (w.a, w.b):
        img = client.describe_images(ImageIds=[ami])["Images"][0]
        assert img["Public"] is True
        assert img["ImageLocation"] == f"{settings.image_bucket}/{store.common_image_key(settings, 'base')}"
    with w.app.db.session() as s:
        assert svc.find_launchable_image(s, w.user_id("bob"), ami).name == "base"


def test_import_never_overwrites_another_images_object(w: World, store: Any, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\x00" * 1024)
    first = svc.import_image(w.app, name="base", path=disk, public=True)
    with pytest.raises(ServiceError) as exc:
        svc.import_image(w.app, name="base", path=disk, public=True, owner_name="alice")
    assert exc.value.code == "InvalidAMIName.Duplicate" and first in exc.value.message
    assert [i["Name"] for i in w.a.describe_images(Owners=["self"])["Images"]] == []


def test_failed_images_say_why(w: World) -> None:
    bad = w.add_image("alice", "gone", state="failed", state_reason="Client.ObjectDeleted: the object was deleted")
    other = w.add_image("alice", "odd", state="failed", state_reason="no reason code")
    imgs = {i["ImageId"]: i for i in w.a.describe_images(Filters=[{"Name": "state", "Values": ["failed"]}])["Images"]}
    assert imgs[bad]["StateReason"] == {"Code": "Client.ObjectDeleted", "Message": "the object was deleted"}
    assert imgs[other]["StateReason"] == {"Code": "failed", "Message": "no reason code"}
    assert "StateReason" not in w.a.describe_images(ImageIds=[w.add_image("alice", "fine")])["Images"][0]
    with w.app.db.session() as s, pytest.raises(ServiceError) as exc:
        svc.find_launchable_image(s, w.user_id("alice"), bad)
    assert exc.value.code == "InvalidAMIID.Unavailable" and "deleted" in exc.value.message
