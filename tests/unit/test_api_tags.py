"""CreateTags, DeleteTags, DescribeTags through botocore and the real gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.ec2_inprocess import World, error_of, make_world


@pytest.fixture
def w(tmp_path: Path) -> World:
    return make_world(tmp_path)


def tag_set(client: object, **kw: object) -> set[tuple[str, str, str, str]]:
    tags = client.describe_tags(**kw)["Tags"]  # type: ignore[attr-defined]
    return {(t["ResourceId"], t["ResourceType"], t["Key"], t["Value"]) for t in tags}


def test_every_resource_kind_can_be_tagged(w: World) -> None:
    ami = w.add_image("alice", "disk")
    aki = w.add_image("alice", "vmlinuz", kind="kernel")
    ari = w.add_image("alice", "initrd", kind="ramdisk")
    inst = w.add_instance("alice")
    key = w.a.create_key_pair(KeyName="k")["KeyPairId"]
    sg = w.a.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    w.a.create_tags(Resources=[ami, aki, ari, inst, key, sg], Tags=[{"Key": "env", "Value": "prod"}, {"Key": "flag"}])
    got = tag_set(w.a)
    types = {ami: "image", aki: "image", ari: "image", inst: "instance", key: "key-pair", sg: "security-group"}
    assert got == {(r, t, "env", "prod") for r, t in types.items()} | {(r, t, "flag", "") for r, t in types.items()}
    # the tags show up on the resources themselves
    assert {"Key": "env", "Value": "prod"} in w.a.describe_images(ImageIds=[ami])["Images"][0]["Tags"]
    assert {"Key": "env", "Value": "prod"} in w.a.describe_key_pairs()["KeyPairs"][0]["Tags"]
    assert {"Key": "env", "Value": "prod"} in w.a.describe_security_groups()["SecurityGroups"][0]["Tags"]


def test_create_tags_overwrites_values(w: World) -> None:
    ami = w.add_image("alice", "disk")
    w.a.create_tags(Resources=[ami], Tags=[{"Key": "Name", "Value": "one"}])
    w.a.create_tags(Resources=[ami], Tags=[{"Key": "Name", "Value": "two"}])
    assert tag_set(w.a) == {(ami, "image", "Name", "two")}


def test_terminated_instances_are_taggable_while_visible(w: World) -> None:
    recent = w.add_instance("alice", state="terminated", terminated_seconds_ago=60)
    gone = w.add_instance("alice", state="terminated", terminated_seconds_ago=7200)
    w.a.create_tags(Resources=[recent], Tags=[{"Key": "a", "Value": "b"}])
    assert error_of(w.a.create_tags, Resources=[gone], Tags=[{"Key": "a", "Value": "b"}])[0] == "InvalidInstanceID.NotFound"
    assert tag_set(w.a) == {(recent, "instance", "a", "b")}


@pytest.mark.parametrize(
    "resource, code",
    [
        ("igw-12345678", "InvalidID"),
        ("vol-12345678", "InvalidVolume.NotFound"),
        ("bogus", "InvalidID"),
        ("i-xyz", "InvalidInstanceID.Malformed"),
        ("ami-123", "InvalidAMIID.Malformed"),
        ("aki-ABCDEF12", "InvalidAMIID.Malformed"),
        ("sg-zz", "InvalidGroupId.Malformed"),
        ("key-1", "InvalidKeyPair.Malformed"),
        ("i-0123456789abcdef0", "InvalidInstanceID.NotFound"),
        ("ami-0123456789abcdef0", "InvalidAMIID.NotFound"),
        ("ari-01234567", "InvalidAMIID.NotFound"),
        ("key-0123456789abcdef0", "InvalidKeyPair.NotFound"),
        ("sg-0123456789abcdef0", "InvalidGroup.NotFound"),
    ],
)
def test_bad_resources(w: World, resource: str, code: str) -> None:
    good = w.add_image("alice", "disk")
    got, msg = error_of(w.a.create_tags, Resources=[good, resource], Tags=[{"Key": "a", "Value": "b"}])
    assert got == code and (code == "InvalidID" or resource in msg)
    assert tag_set(w.a) == set()  # all or nothing
    assert error_of(w.a.delete_tags, Resources=[resource])[0] == code


def test_other_users_resources_cannot_be_tagged(w: World) -> None:
    ami = w.add_image("alice", "private")
    public = w.add_image("alice", "shared", public=True)
    inst = w.add_instance("alice")
    key = w.a.create_key_pair(KeyName="k")["KeyPairId"]
    sg = w.a.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    w.a.create_tags(Resources=[ami, public, inst, key, sg], Tags=[{"Key": "owner", "Value": "alice"}])
    expected = {ami: "InvalidAMIID.NotFound", inst: "InvalidInstanceID.NotFound",
                key: "InvalidKeyPair.NotFound", sg: "InvalidGroup.NotFound", public: "UnauthorizedOperation"}
    for rid, code in expected.items():
        assert error_of(w.b.create_tags, Resources=[rid], Tags=[{"Key": "x", "Value": "y"}])[0] == code
        assert error_of(w.b.delete_tags, Resources=[rid])[0] == code
    assert tag_set(w.b) == set()
    assert len(tag_set(w.a)) == 5


def test_tag_validation(w: World) -> None:
    ami = w.add_image("alice", "disk")
    assert error_of(w.a.create_tags, Resources=[ami], Tags=[{"Key": "aws:reserved", "Value": "x"}])[0] == "InvalidParameterValue"
    assert error_of(w.a.create_tags, Resources=[ami], Tags=[{"Key": "k" * 129, "Value": "x"}])[0] == "InvalidParameterValue"
    assert error_of(w.a.create_tags, Resources=[ami], Tags=[{"Key": "k", "Value": "v" * 257}])[0] == "InvalidParameterValue"
    assert error_of(w.a.create_tags, Resources=[ami], Tags=[{"Key": "", "Value": "x"}])[0] == "InvalidParameterValue"
    assert error_of(w.a.create_tags, Resources=[], Tags=[{"Key": "k", "Value": "x"}])[0] == "MissingParameter"
    w.a.create_tags(Resources=[ami], Tags=[{"Key": f"k{i}", "Value": "x"} for i in range(50)])
    assert error_of(w.a.create_tags, Resources=[ami], Tags=[{"Key": "one-more", "Value": "x"}])[0] == "TagLimitExceeded"
    assert error_of(w.a.create_tags, Resources=[ami], Tags=[{"Key": "k", "Value": "x"}], DryRun=True)[0] == "DryRunOperation"
    assert len(tag_set(w.a)) == 50


def test_duplicate_tag_keys_are_invalid_parameter_value(w: World) -> None:
    """The same key twice in one request broke the (resource, key) unique index: an InternalError.
    EC2 refuses it; nothing is written."""
    ami = w.add_image("alice", "disk")
    inst = w.add_instance("alice")
    twice = [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]
    code, message = error_of(w.a.create_tags, Resources=[ami, inst], Tags=twice)
    assert code == "InvalidParameterValue" and "'k'" in message
    assert tag_set(w.a) == set()
    before = w.a.describe_instances()["Reservations"]
    for specs in ([{"ResourceType": "instance", "Tags": twice}],
                  [{"ResourceType": "instance", "Tags": twice[:1]}, {"ResourceType": "instance", "Tags": twice[1:]}]):
        code, _ = error_of(w.a.run_instances, ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=specs)
        assert code == "InvalidParameterValue"
    assert w.a.describe_instances()["Reservations"] == before
    code, _ = error_of(w.a.create_key_pair, KeyName="kp", TagSpecifications=[{"ResourceType": "key-pair", "Tags": twice}])
    assert code == "InvalidParameterValue"
    assert w.a.describe_key_pairs()["KeyPairs"] == []


def test_tag_specification_resource_types_are_those_the_operation_takes(w: World) -> None:
    """RunInstances takes instance tags and, as on AWS, volume or network-interface ones (nothing here
    keeps those: they are checked and ignored); a type the operation does not take is refused."""
    ami = w.add_image("alice", "disk")
    tag = [{"Key": "k", "Value": "v"}]
    for rtype in ("key-pair", "image", "no-such-type"):
        code, message = error_of(w.a.run_instances, ImageId=ami, MinCount=1, MaxCount=1,
                                 TagSpecifications=[{"ResourceType": rtype, "Tags": tag}])
        assert code == "InvalidParameterValue" and f"'{rtype}'" in message and "instance" in message
    assert w.a.describe_instances()["Reservations"] == []
    code, _ = error_of(w.a.create_key_pair, KeyName="kp", TagSpecifications=[{"ResourceType": "instance", "Tags": tag}])
    assert code == "InvalidParameterValue"
    assert w.a.describe_key_pairs()["KeyPairs"] == []
    w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": tag}, {"ResourceType": "volume", "Tags": [{"Key": "vol", "Value": "1"}]}])
    (inst,) = w.a.describe_instances()["Reservations"][0]["Instances"]
    keys = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert keys["k"] == "v" and "vol" not in keys


def test_delete_tags_semantics(w: World) -> None:
    ami = w.add_image("alice", "disk")
    other = w.add_image("alice", "other")
    w.a.create_tags(Resources=[ami, other], Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": ""},
                                                  {"Key": "c", "Value": "3"}, {"Key": "d", "Value": "4"}])
    w.a.delete_tags(Resources=[ami], Tags=[{"Key": "a", "Value": "not-1"}])  # value differs: kept
    w.a.delete_tags(Resources=[ami], Tags=[{"Key": "b", "Value": ""}])  # empty value matches the empty value
    w.a.delete_tags(Resources=[ami], Tags=[{"Key": "c"}])  # no value: whatever the value
    w.a.delete_tags(Resources=[ami], Tags=[{"Key": "d", "Value": ""}])  # empty value does not match "4"
    assert {(k, v) for r, _, k, v in tag_set(w.a) if r == ami} == {("a", "1"), ("d", "4")}
    w.a.delete_tags(Resources=[ami])  # no tags given: all of them
    assert {r for r, *_ in tag_set(w.a)} == {other}
    w.a.delete_tags(Resources=[other], Tags=[{"Key": "missing"}])  # nothing to delete is fine
    assert len(tag_set(w.a)) == 4


def test_describe_tags_filters(w: World) -> None:
    ami = w.add_image("alice", "disk")
    key = w.a.create_key_pair(KeyName="k")["KeyPairId"]
    w.a.create_tags(Resources=[ami], Tags=[{"Key": "Name", "Value": "web-1"}, {"Key": "env", "Value": "prod"}])
    w.a.create_tags(Resources=[key], Tags=[{"Key": "Name", "Value": "db-1"}, {"Key": "env", "Value": "dev"}])
    f = lambda *flt: tag_set(w.a, Filters=[{"Name": n, "Values": v} for n, v in flt])
    assert f(("key", ["Name"])) == {(ami, "image", "Name", "web-1"), (key, "key-pair", "Name", "db-1")}
    assert f(("value", ["web-*"])) == {(ami, "image", "Name", "web-1")}
    assert f(("value", ["?ev"])) == {(key, "key-pair", "env", "dev")}
    assert f(("resource-id", [key])) == {(key, "key-pair", "Name", "db-1"), (key, "key-pair", "env", "dev")}
    assert f(("resource-type", ["image"]), ("key", ["env"])) == {(ami, "image", "env", "prod")}
    assert f(("tag:env", ["prod", "qa"])) == {(ami, "image", "env", "prod")}
    assert f(("key", ["nothing"])) == set()
    code, msg = error_of(w.a.describe_tags, Filters=[{"Name": "colour", "Values": ["x"]}])
    assert code == "InvalidParameterValue" and "colour" in msg
    assert tag_set(w.b) == set()  # bob sees none of alice's tags


def test_tags_of_expired_instances_are_not_listed(w: World) -> None:
    inst = w.add_instance("alice", state="terminated", terminated_seconds_ago=60)
    w.a.create_tags(Resources=[inst], Tags=[{"Key": "a", "Value": "b"}])
    assert len(tag_set(w.a)) == 1
    w.app.settings.terminated_visible_seconds = 10
    assert tag_set(w.a) == set()


def test_describe_tags_pagination(w: World) -> None:
    images = [w.add_image("alice", f"img-{i:02d}") for i in range(6)]
    w.a.create_tags(Resources=images, Tags=[{"Key": f"k{j}", "Value": str(j)} for j in range(4)])
    page = w.a.describe_tags(MaxResults=5)
    assert len(page["Tags"]) == 5 and page["NextToken"]
    pages = list(w.a.get_paginator("describe_tags").paginate(PaginationConfig={"PageSize": 7}))
    assert [len(p["Tags"]) for p in pages] == [7, 7, 7, 3]
    flat = [(t["ResourceId"], t["Key"]) for p in pages for t in p["Tags"]]
    assert len(set(flat)) == 24 and flat == sorted(flat)
    filtered = [t for p in w.a.get_paginator("describe_tags").paginate(
        Filters=[{"Name": "key", "Values": ["k1"]}], PaginationConfig={"PageSize": 5}) for t in p["Tags"]]
    assert len(filtered) == 6
    # a token is bound to its filters, and MaxResults has EC2's bounds
    token = w.a.describe_tags(MaxResults=5)["NextToken"]
    assert error_of(w.a.describe_tags, MaxResults=5, NextToken=token, Filters=[{"Name": "key", "Values": ["k1"]}])[0] == \
        "InvalidParameterValue"
    assert error_of(w.a.describe_tags, MaxResults=5, NextToken="garbage")[0] == "InvalidParameterValue"
    assert error_of(w.a.describe_tags, MaxResults=4)[0] == "InvalidParameterValue"
    assert error_of(w.a.describe_tags, MaxResults=1001)[0] == "InvalidParameterValue"
    # bob's token does not show alice's tags
    assert error_of(w.b.describe_tags, MaxResults=5, NextToken=token)[0] == "InvalidParameterValue"
