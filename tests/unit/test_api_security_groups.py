"""DescribeSecurityGroups: each account's default group and its rules, lookups, filters, pagination, isolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from ec2gw import ids
from ec2gw.db.models import SecurityGroup
from tests.unit.ec2_inprocess import World, error_of, make_world


@pytest.fixture
def w(tmp_path: Path) -> World:
    return make_world(tmp_path)


def add_group(w: World, owner: str, name: str, description: str = "") -> str:
    gid = ids.new_id("sg")
    with w.app.db.session(write=True) as s:
        s.add(SecurityGroup(id=gid, owner_id=w.user_id(owner), name=name, description=description))
    return gid


def test_every_account_has_its_default_group(w: World) -> None:
    mine = w.a.describe_security_groups()["SecurityGroups"]
    theirs = w.b.describe_security_groups()["SecurityGroups"]
    assert len(mine) == len(theirs) == 1
    g = mine[0]
    assert g["GroupName"] == "default" and g["GroupId"].startswith("sg-")
    assert g["OwnerId"] == w.alice.account_id and g["VpcId"].startswith("vpc-") and g["Description"]
    # EC2's default rules: all traffic from the group's members, all traffic out
    assert [(p["IpProtocol"], p["UserIdGroupPairs"]) for p in g["IpPermissions"]] == [
        ("-1", [{"GroupId": g["GroupId"], "UserId": w.alice.account_id}])]
    assert [(p["IpProtocol"], p["IpRanges"]) for p in g["IpPermissionsEgress"]] == [("-1", [{"CidrIp": "0.0.0.0/0"}])]
    assert theirs[0]["GroupId"] != g["GroupId"] and theirs[0]["OwnerId"] == w.bob.account_id


def test_lookups_and_filters(w: World) -> None:
    default = w.a.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    web = add_group(w, "alice", "web", "front ends")
    names = lambda **kw: sorted(g["GroupName"] for g in w.a.describe_security_groups(**kw)["SecurityGroups"])
    assert names() == ["default", "web"]
    assert names(GroupNames=["web"]) == ["web"]
    assert names(GroupIds=[default]) == ["default"]
    assert names(Filters=[{"Name": "group-name", "Values": ["w*"]}]) == ["web"]
    assert names(Filters=[{"Name": "group-id", "Values": [web]}]) == ["web"]
    assert names(Filters=[{"Name": "description", "Values": ["*front*"]}]) == ["web"]
    assert names(Filters=[{"Name": "owner-id", "Values": [w.alice.account_id]}]) == ["default", "web"]
    assert names(Filters=[{"Name": "owner-id", "Values": [w.bob.account_id]}]) == []
    assert names(Filters=[{"Name": "ip-permission.protocol", "Values": ["tcp"]}]) == []
    w.a.create_tags(Resources=[web], Tags=[{"Key": "tier", "Value": "front"}])
    assert names(Filters=[{"Name": "tag:tier", "Values": ["front"]}]) == ["web"]
    assert names(Filters=[{"Name": "tag-key", "Values": ["tier"]}]) == ["web"]


def test_errors_and_isolation(w: World) -> None:
    bobs = w.b.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    assert error_of(w.a.describe_security_groups, GroupIds=[bobs])[0] == "InvalidGroup.NotFound"
    assert error_of(w.a.describe_security_groups, GroupNames=["nope"])[0] == "InvalidGroup.NotFound"
    assert error_of(w.a.describe_security_groups, GroupIds=["sg-bad"])[0] == "InvalidGroupId.Malformed"
    code, msg = error_of(w.a.describe_security_groups, Filters=[{"Name": "colour", "Values": ["x"]}])
    assert code == "InvalidParameterValue" and "colour" in msg
    assert error_of(w.a.describe_security_groups, DryRun=True)[0] == "DryRunOperation"


def test_pagination(w: World) -> None:
    for i in range(11):
        add_group(w, "alice", f"g{i}")
    pages = list(w.a.get_paginator("describe_security_groups").paginate(PaginationConfig={"PageSize": 5}))
    assert [len(p["SecurityGroups"]) for p in pages] == [5, 5, 2]
    assert len({g["GroupId"] for p in pages for g in p["SecurityGroups"]}) == 12
    raw = w.ip.ec2(w.alice, validate=False)
    assert error_of(raw.describe_security_groups, MaxResults=2)[0] == "InvalidParameterValue"
    assert error_of(raw.describe_security_groups, MaxResults=5, GroupNames=["default"])[0] == "InvalidParameterCombination"
