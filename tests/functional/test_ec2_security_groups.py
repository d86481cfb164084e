"""Security groups with rules through boto3 and the aws CLI on a live server (libvirt's test driver).

Groups are made and deleted, rules authorized and revoked (protocols, port ranges, ICMP type and
code, IPv4 CIDRs, referenced groups), duplicates and unknown rules refused as EC2 refuses them,
and instances moved between groups. Another user reaches none of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.live import Creds, LiveServer

SG = re.compile(r"^sg-[0-9a-f]{17}$")
SGR = re.compile(r"^sgr-[0-9a-f]{17}$")


@dataclass
class Cloud:
    srv: LiveServer
    alice: Any
    bob: Any
    alice_creds: Creds
    image: str

    def group(self, gid: str) -> dict[str, Any]:
        return dict(self.alice.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0])

    def rules(self, gid: str) -> list[dict[str, Any]]:
        return list(self.alice.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [gid]}])[
            "SecurityGroupRules"])


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    root = tmp_path_factory.mktemp("groups")
    srv = LiveServer(root / "data").start()
    try:
        img = root / "img.raw"
        img.write_bytes(b"\0" * 65536)
        image = json.loads(srv.cli("admin", "image", "import", "sg-test", str(img), "--json", "--public").stdout)["image_id"]
        alice, bob = srv.make_user("alice"), srv.make_user("bob")
        yield Cloud(srv, srv.client("ec2", alice), srv.client("ec2", bob), alice, image)
    finally:
        srv.stop()


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def _fails(code: str, call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    assert _code(err) == code, err.value.response["Error"]
    message = str(err.value.response["Error"]["Message"])
    assert message
    return message


def test_the_default_group_has_ec2s_default_rules(cloud: Cloud) -> None:
    ec2 = cloud.alice
    default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]
    vpc_id = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    assert default["VpcId"] == vpc_id
    assert default["IpPermissions"] == [{"IpProtocol": "-1", "IpRanges": [], "Ipv6Ranges": [], "PrefixListIds": [],
                                         "UserIdGroupPairs": [{"GroupId": default["GroupId"], "UserId": default["OwnerId"]}]}]
    assert default["IpPermissionsEgress"] == [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [],
                                               "PrefixListIds": [], "UserIdGroupPairs": []}]
    rules = cloud.rules(default["GroupId"])
    assert len(rules) == 2 and all(SGR.match(r["SecurityGroupRuleId"]) for r in rules)
    ingress = next(r for r in rules if not r["IsEgress"])
    assert ingress["ReferencedGroupInfo"]["GroupId"] == default["GroupId"] and ingress["IpProtocol"] == "-1"
    _fails("CannotDelete", ec2.delete_security_group, GroupId=default["GroupId"])
    _fails("InvalidGroup.Reserved", ec2.create_security_group, GroupName="default", Description="x")


def test_rules_are_authorized_described_filtered_and_revoked(cloud: Cloud) -> None:
    ec2 = cloud.alice
    made = ec2.create_security_group(GroupName="web", Description="web servers",
                                     TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "tier", "Value": "web"}]}])
    web = made["GroupId"]
    assert SG.match(web) and made["Tags"] == [{"Key": "tier", "Value": "web"}]
    db = ec2.create_security_group(GroupName="db", Description="databases")["GroupId"]
    _fails("InvalidGroup.Duplicate", ec2.create_security_group, GroupName="web", Description="again")
    # a new group starts with the egress rule only
    assert cloud.group(web)["IpPermissions"] == [] and len(cloud.group(web)["IpPermissionsEgress"]) == 1

    answer = ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "http"}, {"CidrIp": "198.51.100.0/24"}]},
        {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8099, "UserIdGroupPairs": [{"GroupId": db}]},
        {"IpProtocol": "icmp", "FromPort": 8, "ToPort": 0, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "IpRanges": [{"CidrIp": "10.1.2.0/24"}]},
    ])
    assert answer["Return"] is True and len(answer["SecurityGroupRules"]) == 5
    assert all(SGR.match(r["SecurityGroupRuleId"]) and r["GroupId"] == web for r in answer["SecurityGroupRules"])
    ec2.authorize_security_group_egress(GroupId=db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": web}]}])

    group = cloud.group(web)
    perms = {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")): p for p in group["IpPermissions"]}
    assert set(perms) == {("tcp", 80, 80), ("tcp", 8000, 8099), ("icmp", 8, 0), ("udp", 53, 53)}
    assert perms[("tcp", 80, 80)]["IpRanges"] == [{"CidrIp": "0.0.0.0/0", "Description": "http"}, {"CidrIp": "198.51.100.0/24"}]
    assert [p["GroupId"] for p in perms[("tcp", 8000, 8099)]["UserIdGroupPairs"]] == [db]

    # EC2 refuses a rule the group has already, even within a larger request, and keeps nothing of it
    message = _fails("InvalidPermission.Duplicate", ec2.authorize_security_group_ingress, GroupId=web, IpPermissions=[
        {"IpProtocol": "udp", "FromPort": 54, "ToPort": 54, "IpRanges": [{"CidrIp": "10.1.2.0/24"}]},
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert "0.0.0.0/0" in message and "80" in message
    assert len(cloud.group(web)["IpPermissions"]) == 4
    # "6" is tcp: the same rule
    _fails("InvalidPermission.Duplicate", ec2.authorize_security_group_ingress, GroupId=web,
           IpPermissions=[{"IpProtocol": "6", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "198.51.100.0/24"}]}])

    for perm, says in (({"IpProtocol": "tcp", "FromPort": 90, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "ToPort"),
                       ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 70000, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "65535"),
                       ({"IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "FromPort"),
                       ({"IpProtocol": "icmp", "FromPort": -1, "ToPort": 3, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "ICMP"),
                       ({"IpProtocol": "gre", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "protocol number"),
                       ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "IpRanges": [{"CidrIp": "10.0.0.1/8"}]}, "host bits"),
                       ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}, "IPv4")):
        message = _fails("InvalidParameterValue", ec2.authorize_security_group_ingress, GroupId=web, IpPermissions=[perm])
        assert says in message, (perm, message)
    _fails("InvalidGroup.NotFound", ec2.authorize_security_group_ingress, GroupId=web,
           IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-0123456789abcdef0"}]}])

    # the rule filters of DescribeSecurityGroups
    def groups(name: str, *values: str) -> set[str]:
        return {g["GroupId"] for g in ec2.describe_security_groups(Filters=[{"Name": name, "Values": list(values)}])[
            "SecurityGroups"]}
    assert groups("ip-permission.from-port", "80") == {web}
    assert groups("ip-permission.to-port", "8099") == {web}
    assert groups("ip-permission.cidr", "198.51.100.*") == {web}
    assert groups("ip-permission.protocol", "icmp") == {web}
    assert groups("ip-permission.protocol", "17") == {web}
    assert groups("ip-permission.group-id", db) == {web}
    assert groups("ip-permission.group-name", "db") == {web}
    assert groups("egress.ip-permission.group-id", web) == {db}
    assert groups("egress.ip-permission.to-port", "5432") == {db}
    assert web in groups("egress.ip-permission.cidr", "0.0.0.0/0")
    assert groups("ip-permission.cidr", "203.0.113.0/24") == set()
    assert groups("vpc-id", ec2.describe_vpcs()["Vpcs"][0]["VpcId"]) >= {web, db}
    assert groups("tag:tier", "web") == {web}

    # DescribeSecurityGroupRules: ids, filters, pages
    rules = cloud.rules(web)
    assert len(rules) == 6  # 5 ingress, 1 egress
    icmp = next(r for r in rules if r["IpProtocol"] == "icmp")
    assert (icmp["FromPort"], icmp["ToPort"], icmp["CidrIpv4"], icmp["IsEgress"]) == (8, 0, "10.0.0.0/8", False)
    assert ec2.describe_security_group_rules(SecurityGroupRuleIds=[icmp["SecurityGroupRuleId"]])["SecurityGroupRules"] == [icmp]
    pages = list(ec2.get_paginator("describe_security_group_rules").paginate(
        Filters=[{"Name": "group-id", "Values": [web]}], PaginationConfig={"PageSize": 5}))
    assert [len(p["SecurityGroupRules"]) for p in pages] == [5, 1]
    _fails("InvalidSecurityGroupRuleId.NotFound", ec2.describe_security_group_rules,
           SecurityGroupRuleIds=["sgr-0123456789abcdef0"])
    _fails("InvalidSecurityGroupRuleId.Malformed", ec2.describe_security_group_rules, SecurityGroupRuleIds=["sgr-1"])

    # DeleteSecurityGroup: a group that another group's rules name is in use
    message = _fails("DependencyViolation", ec2.delete_security_group, GroupId=db)
    assert web in message

    # revoke by permission and by rule id; unknown rules are refused
    ec2.revoke_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8099, "UserIdGroupPairs": [{"GroupId": db}]}])
    ec2.revoke_security_group_ingress(GroupId=web, SecurityGroupRuleIds=[icmp["SecurityGroupRuleId"]])
    _fails("InvalidPermission.NotFound", ec2.revoke_security_group_ingress, GroupId=web,
           IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    _fails("InvalidSecurityGroupRuleId.NotFound", ec2.revoke_security_group_egress, GroupId=web,
           SecurityGroupRuleIds=[icmp["SecurityGroupRuleId"]])
    assert {(p["IpProtocol"], p.get("FromPort")) for p in cloud.group(web)["IpPermissions"]} == {("tcp", 80), ("udp", 53)}
    ec2.revoke_security_group_egress(GroupId=db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": web}]}])
    assert ec2.delete_security_group(GroupId=db)["Return"] is True
    _fails("InvalidGroup.NotFound", ec2.describe_security_groups, GroupIds=[db])


def test_instances_join_groups_and_a_group_in_use_stays(cloud: Cloud) -> None:
    ec2 = cloud.alice
    app = ec2.create_security_group(GroupName="app", Description="app servers")["GroupId"]
    default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    plain = ec2.run_instances(ImageId=cloud.image, MinCount=1, MaxCount=1)["Instances"][0]
    assert [g["GroupId"] for g in plain["SecurityGroups"]] == [default]
    inst = ec2.run_instances(ImageId=cloud.image, MinCount=1, MaxCount=1, SecurityGroupIds=[app])["Instances"][0]
    assert inst["SecurityGroups"] == [{"GroupName": "app", "GroupId": app}]
    assert inst["NetworkInterfaces"][0]["Groups"] == [{"GroupName": "app", "GroupId": app}]
    message = _fails("DependencyViolation", ec2.delete_security_group, GroupId=app)
    assert inst["InstanceId"] in message

    ec2.modify_instance_attribute(InstanceId=inst["InstanceId"], Groups=[default, app])
    seen = ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]["Instances"][0]
    assert sorted(g["GroupId"] for g in seen["SecurityGroups"]) == sorted([default, app])
    attr = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="groupSet")["Groups"]
    assert sorted(g["GroupId"] for g in attr) == sorted([default, app])
    nics = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [app]}])["NetworkInterfaces"]
    assert {n["Attachment"]["InstanceId"] for n in nics} == {inst["InstanceId"]}
    _fails("InvalidGroup.NotFound", ec2.modify_instance_attribute, InstanceId=inst["InstanceId"],
           Groups=["sg-0123456789abcdef0"])

    ec2.modify_instance_attribute(InstanceId=inst["InstanceId"], Groups=[default])
    assert ec2.delete_security_group(GroupId=app)["Return"] is True


def test_the_aws_cli_manages_groups_and_rules(cloud: Cloud) -> None:
    srv, creds = cloud.srv, cloud.alice_creds
    gid = json.loads(srv.aws("ec2", "create-security-group", "--group-name", "cli", "--description", "from the CLI",
                             creds=creds).stdout)["GroupId"]
    srv.aws("ec2", "authorize-security-group-ingress", "--group-id", gid, "--protocol", "tcp", "--port", "22",
            "--cidr", "203.0.113.0/24", creds=creds)
    dup = srv.aws("ec2", "authorize-security-group-ingress", "--group-id", gid, "--protocol", "tcp", "--port", "22",
                  "--cidr", "203.0.113.0/24", creds=creds, check=False)
    assert dup.returncode != 0 and "InvalidPermission.Duplicate" in dup.stderr
    listed = json.loads(srv.aws("ec2", "describe-security-groups", "--filters", "Name=ip-permission.from-port,Values=22",
                                creds=creds).stdout)["SecurityGroups"]
    assert [g["GroupId"] for g in listed] == [gid]
    rules = json.loads(srv.aws("ec2", "describe-security-group-rules", "--filters", f"Name=group-id,Values={gid}",
                               creds=creds).stdout)["SecurityGroupRules"]
    assert {(r["IpProtocol"], r["FromPort"], r.get("CidrIpv4")) for r in rules} == {
        ("tcp", 22, "203.0.113.0/24"), ("-1", -1, "0.0.0.0/0")}
    srv.aws("ec2", "revoke-security-group-ingress", "--group-id", gid, "--protocol", "tcp", "--port", "22",
            "--cidr", "203.0.113.0/24", creds=creds)
    srv.aws("ec2", "delete-security-group", "--group-id", gid, creds=creds)
    gone = srv.aws("ec2", "describe-security-groups", "--group-ids", gid, creds=creds, check=False)
    assert gone.returncode != 0 and "InvalidGroup.NotFound" in gone.stderr


def test_the_aws_cli_moves_an_instance_between_groups(cloud: Cloud) -> None:
    """modify-instance-attribute --groups and modify-network-interface-attribute --groups as the
    aws CLI sends them; the instance and its interface show the new groups."""
    srv, creds, ec2 = cloud.srv, cloud.alice_creds, cloud.alice
    web = ec2.create_security_group(GroupName="cli-web", Description="web")["GroupId"]
    db = ec2.create_security_group(GroupName="cli-db", Description="db")["GroupId"]
    inst = ec2.run_instances(ImageId=cloud.image, MinCount=1, MaxCount=1)["Instances"][0]
    iid, eni = inst["InstanceId"], inst["NetworkInterfaces"][0]["NetworkInterfaceId"]

    def groups() -> tuple[list[str], list[str]]:
        attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="groupSet")["Groups"]
        nic = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
        return sorted(g["GroupId"] for g in attr), sorted(g["GroupId"] for g in nic["Groups"])

    srv.aws("ec2", "modify-instance-attribute", "--instance-id", iid, "--groups", web, db, creds=creds)
    assert groups() == (sorted([web, db]), sorted([web, db]))
    srv.aws("ec2", "modify-network-interface-attribute", "--network-interface-id", eni, "--groups", db, creds=creds)
    attr = json.loads(srv.aws("ec2", "describe-instance-attribute", "--instance-id", iid, "--attribute", "groupSet",
                              creds=creds).stdout)
    assert [g["GroupId"] for g in attr["Groups"]] == [db] and groups() == ([db], [db])
    bad = srv.aws("ec2", "modify-instance-attribute", "--instance-id", iid, "--groups", "sg-0123456789abcdef0",
                  creds=creds, check=False)
    assert bad.returncode != 0 and "InvalidGroup.NotFound" in bad.stderr
    assert groups() == ([db], [db]), "a refused change changes nothing"
    assert iid in _fails("DependencyViolation", ec2.delete_security_group, GroupId=db)
    ec2.terminate_instances(InstanceIds=[iid])


def test_another_user_reaches_none_of_alices_groups(cloud: Cloud) -> None:
    ec2, bob = cloud.alice, cloud.bob
    gid = ec2.create_security_group(GroupName="private-app", Description="alice's")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    before = cloud.group(gid)
    rule_ids = [r["SecurityGroupRuleId"] for r in cloud.rules(gid)]
    alice_account = before["OwnerId"]
    open_all = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    _fails("InvalidGroup.NotFound", bob.authorize_security_group_ingress, GroupId=gid, IpPermissions=open_all)
    _fails("InvalidGroup.NotFound", bob.authorize_security_group_egress, GroupId=gid, IpPermissions=open_all)
    _fails("InvalidGroup.NotFound", bob.revoke_security_group_ingress, GroupId=gid, SecurityGroupRuleIds=rule_ids[:1])
    _fails("InvalidGroup.NotFound", bob.revoke_security_group_egress, GroupId=gid, IpPermissions=open_all)
    _fails("InvalidGroup.NotFound", bob.delete_security_group, GroupId=gid)
    bob_group = bob.create_security_group(GroupName="private-app", Description="bob's")["GroupId"]
    assert bob_group != gid
    _fails("InvalidGroup.NotFound", bob.authorize_security_group_ingress, GroupId=bob_group, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": gid, "UserId": alice_account}]}])
    _fails("InvalidGroup.NotFound", bob.authorize_security_group_ingress, GroupId=bob_group, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": gid}]}])
    assert bob.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [gid]}])["SecurityGroupRules"] == []
    _fails("InvalidSecurityGroupRuleId.NotFound", bob.describe_security_group_rules, SecurityGroupRuleIds=rule_ids)
    assert cloud.group(gid) == before
    bob.delete_security_group(GroupId=bob_group)
    assert cloud.group(gid) == before
