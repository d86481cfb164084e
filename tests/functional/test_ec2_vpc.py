"""EC2's network view over the pools, through boto3 and the aws CLI on a live server.

The cloud: node n1 (zone us-east-1a) serves the pools public (192.0.2.0/24) and private
(10.77.0.0/24); node n2 (us-east-1b) serves lab, a pool file without netmasks (on a host bridge); four more pools
(spare0..3) are served by no node. Both nodes are libvirt's test driver, so no guest runs: what is
under test is the view (the default VPC, one subnet per pool, one network interface per NIC) and
RunInstances choosing the pools by SubnetId and NetworkInterfaces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from backends.libvirt.testing import make_test_node_uri
from tests.functional.tools import wait_for
from tests.live import Creds, LiveServer

ID = {p: re.compile(rf"^{p}-[0-9a-f]{{17}}$") for p in ("vpc", "subnet", "eni", "eni-attach")}


def _pool_file(path: Path, prefix: str, net: str, first: int, count: int, mask: str = "255.255.255.0") -> Path:
    path.write_text("none\n" + "".join(
        f"{prefix}{i} {net}.{first + i} {net}.1 {net}.255 {mask}\n" for i in range(count)))
    return path


@dataclass
class Cloud:
    srv: LiveServer
    alice: Any
    bob: Any
    alice_creds: Creds
    bob_creds: Creds
    image: str

    def subnet(self, pool: str) -> dict[str, Any]:
        found = self.alice.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [pool]}])["Subnets"]
        assert len(found) == 1, found
        return dict(found[0])

    def run(self, **kwargs: Any) -> dict[str, Any]:
        return dict(self.alice.run_instances(ImageId=self.image, MinCount=1, MaxCount=1, **kwargs)["Instances"][0])


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    root = tmp_path_factory.mktemp("vpc")
    srv = LiveServer(root / "data").start()
    try:
        srv.cli("admin", "pool", "add", "public", str(_pool_file(root / "pub", "pub", "192.0.2", 10, 12)),
                "--network-mode", "isolated")
        srv.cli("admin", "pool", "add", "private", str(_pool_file(root / "priv", "priv", "10.77.0", 10, 16)),
                "--network-mode", "isolated")
        srv.cli("admin", "pool", "add", "lab", str(_pool_file(root / "lab", "lab", "172.16.5", 10, 4, "none")),
                "--network-mode", "bridge:labbr0")
        for n in range(4):
            srv.cli("admin", "pool", "add", f"spare{n}", str(_pool_file(root / f"s{n}", f"s{n}-", f"10.9{n}.0", 10, 2)),
                    "--network-mode", "isolated")
        for name, zone, served in (("n1", "us-east-1a", "public,private"), ("n2", "us-east-1b", "lab")):
            (root / name).mkdir()
            srv.cli("admin", "node", "add", name, "--uri", make_test_node_uri(root / name, 65536, 64), "--zone", zone,
                    "--pools", served, "--vcpus", "64", "--memory", "65536")
        img = root / "img.raw"
        img.write_bytes(b"\0" * 65536)
        alice, bob = srv.make_user("alice"), srv.make_user("bob")
        image = json.loads(srv.cli("admin", "image", "import", "vpc-test", str(img), "--json", "--public").stdout)["image_id"]
        yield Cloud(srv, srv.client("ec2", alice), srv.client("ec2", bob), alice, bob, image)
    finally:
        srv.stop()


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_the_default_vpc_and_a_subnet_per_pool(cloud: Cloud) -> None:
    ec2 = cloud.alice
    vpcs = ec2.describe_vpcs()["Vpcs"]
    assert len(vpcs) == 1
    vpc = vpcs[0]
    assert ID["vpc"].match(vpc["VpcId"]) and vpc["IsDefault"] is True and vpc["State"] == "available"
    assert vpc["OwnerId"] == ec2.describe_security_groups()["SecurityGroups"][0]["OwnerId"]
    attrs = {a["AttributeName"]: [v["AttributeValue"] for v in a["AttributeValues"]]
             for a in ec2.describe_account_attributes()["AccountAttributes"]}
    assert attrs["default-vpc"] == [vpc["VpcId"]] and attrs["supported-platforms"] == ["VPC"]
    assert ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"] == vpcs
    assert ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"] == vpcs
    assert ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["false"]}])["Vpcs"] == []

    subnets = {s["Tags"][0]["Value"]: s for s in ec2.describe_subnets()["Subnets"]}
    assert set(subnets) == {"public", "private", "lab", "spare0", "spare1", "spare2", "spare3"}
    assert all(ID["subnet"].match(s["SubnetId"]) and s["VpcId"] == vpc["VpcId"] for s in subnets.values())
    assert len({s["SubnetId"] for s in subnets.values()}) == 7
    pub, priv, lab = subnets["public"], subnets["private"], subnets["lab"]
    assert (pub["CidrBlock"], priv["CidrBlock"], lab["CidrBlock"]) == ("192.0.2.0/24", "10.77.0.0/24", "172.16.5.8/29")
    assert (pub["AvailabilityZone"], priv["AvailabilityZone"], lab["AvailabilityZone"]) == (
        "us-east-1a", "us-east-1a", "us-east-1b")
    assert (pub["DefaultForAz"], priv["DefaultForAz"], lab["DefaultForAz"]) == (False, True, True)
    # a launch into private also gets a public address; public is itself public; no node serves lab with public
    assert (pub["MapPublicIpOnLaunch"], priv["MapPublicIpOnLaunch"], lab["MapPublicIpOnLaunch"]) == (False, True, False)
    assert (pub["AvailableIpAddressCount"], priv["AvailableIpAddressCount"], lab["AvailableIpAddressCount"]) == (12, 16, 4)
    assert {c["CidrBlock"] for c in vpc["CidrBlockAssociationSet"]} >= {"192.0.2.0/24", "10.77.0.0/24", "172.16.5.8/29"}

    # filters
    assert {s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
        "Subnets"]} == {priv["SubnetId"], lab["SubnetId"]}
    in_b = ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": ["us-east-1b"]},
                                         {"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    assert [s["SubnetId"] for s in in_b] == [lab["SubnetId"]]
    assert [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "cidr-block", "Values": ["10.77.*"]}])[
        "Subnets"]] == [priv["SubnetId"]]
    assert ec2.describe_subnets(SubnetIds=[lab["SubnetId"]])["Subnets"] == [lab]
    with pytest.raises(ClientError) as err:
        ec2.describe_subnets(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert _code(err) == "InvalidParameterValue" and "default-for-az" in err.value.response["Error"]["Message"]

    # pagination: 7 subnets in pages of 5, then the rest; a token is bound to its filters
    first = ec2.describe_subnets(MaxResults=5)
    assert len(first["Subnets"]) == 5 and first["NextToken"]
    rest = ec2.describe_subnets(MaxResults=5, NextToken=first["NextToken"])
    assert len(rest["Subnets"]) == 2 and "NextToken" not in rest
    assert {s["SubnetId"] for s in first["Subnets"] + rest["Subnets"]} == {s["SubnetId"] for s in subnets.values()}
    with pytest.raises(ClientError) as err:
        ec2.describe_subnets(MaxResults=5, NextToken=first["NextToken"], Filters=[{"Name": "state", "Values": ["available"]}])
    assert _code(err) == "InvalidParameterValue"
    paged = [s for page in ec2.get_paginator("describe_subnets").paginate(PaginationConfig={"PageSize": 5})
             for s in page["Subnets"]]
    assert len(paged) == 7

    # ids: malformed and unknown ones are refused as EC2 does
    for call, kwargs, code in ((ec2.describe_subnets, {"SubnetIds": ["subnet-nothex"]}, "InvalidSubnetID.Malformed"),
                               (ec2.describe_subnets, {"SubnetIds": ["subnet-0123456789abcdef0"]}, "InvalidSubnetID.NotFound"),
                               (ec2.describe_vpcs, {"VpcIds": ["vpc-0123456789abcdef0"]}, "InvalidVpcID.NotFound"),
                               (ec2.describe_vpcs, {"VpcIds": ["vpc-1"]}, "InvalidVpcID.Malformed")):
        with pytest.raises(ClientError) as err:
            call(**kwargs)
        assert _code(err) == code, kwargs


def test_the_aws_cli_reads_the_view_and_is_told_why_vpcs_are_not_made(cloud: Cloud) -> None:
    srv, creds = cloud.srv, cloud.alice_creds
    vpcs = json.loads(srv.aws("ec2", "describe-vpcs", "--filters", "Name=isDefault,Values=true", creds=creds).stdout)["Vpcs"]
    assert len(vpcs) == 1
    subnets = json.loads(srv.aws("ec2", "describe-subnets", "--page-size", "5", creds=creds).stdout)["Subnets"]
    assert len(subnets) == 7
    only = json.loads(srv.aws("ec2", "describe-subnets", "--filters", f"Name=vpc-id,Values={vpcs[0]['VpcId']}",
                              "Name=availability-zone,Values=us-east-1a", creds=creds).stdout)["Subnets"]
    # pools served by no node show the region's first zone
    assert sorted(s["CidrBlock"] for s in only) == ["10.77.0.0/24", *(f"10.9{n}.0.0/24" for n in range(4)), "192.0.2.0/24"]
    for args in (("create-vpc", "--cidr-block", "10.0.0.0/16"),
                 ("create-subnet", "--vpc-id", vpcs[0]["VpcId"], "--cidr-block", "10.0.1.0/24"),
                 ("delete-vpc", "--vpc-id", vpcs[0]["VpcId"]),
                 ("delete-subnet", "--subnet-id", subnets[0]["SubnetId"])):
        out = srv.aws("ec2", *args, creds=creds, check=False)
        assert out.returncode != 0 and "UnsupportedOperation" in out.stderr and "admin pool add" in out.stderr, out.stderr
    assert len(json.loads(srv.aws("ec2", "describe-subnets", creds=creds).stdout)["Subnets"]) == 7
    nics = json.loads(srv.aws("ec2", "describe-network-interfaces", creds=creds).stdout)["NetworkInterfaces"]
    assert isinstance(nics, list)


def test_run_instances_chooses_the_pool_by_subnet(cloud: Cloud) -> None:
    ec2 = cloud.alice
    vpc_id = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    priv, pub, lab = cloud.subnet("private"), cloud.subnet("public"), cloud.subnet("lab")

    # SubnetId=private: the primary NIC there, and (MapPublicIpOnLaunch) a NIC in the public pool
    inst = cloud.run(SubnetId=priv["SubnetId"])
    assert inst["SubnetId"] == priv["SubnetId"] and inst["VpcId"] == vpc_id
    assert inst["Placement"]["AvailabilityZone"] == "us-east-1a"
    nics = sorted(inst["NetworkInterfaces"], key=lambda n: n["Attachment"]["DeviceIndex"])
    assert [n["SubnetId"] for n in nics] == [priv["SubnetId"], pub["SubnetId"]]
    assert all(ID["eni"].match(n["NetworkInterfaceId"]) and ID["eni-attach"].match(n["Attachment"]["AttachmentId"])
               and n["VpcId"] == vpc_id for n in nics)
    assert nics[0]["PrivateIpAddress"] == inst["PrivateIpAddress"] and inst["PrivateIpAddress"].startswith("10.77.0.")
    assert nics[0]["MacAddress"] and nics[0]["MacAddress"] != nics[1]["MacAddress"]
    assert inst["PublicIpAddress"].startswith("192.0.2.") and nics[0]["Association"]["PublicIp"] == inst["PublicIpAddress"]
    assert nics[0]["PrivateIpAddresses"][0]["Association"]["PublicIp"] == inst["PublicIpAddress"]
    assert nics[0]["Groups"] == inst["SecurityGroups"] and nics[0]["Groups"][0]["GroupName"] == "default"

    # SubnetId=lab: node n2 in us-east-1b, one NIC, no public address (no node serves lab with public)
    lab_inst = cloud.run(SubnetId=lab["SubnetId"])
    assert lab_inst["Placement"]["AvailabilityZone"] == "us-east-1b" and lab_inst["SubnetId"] == lab["SubnetId"]
    assert [n["SubnetId"] for n in lab_inst["NetworkInterfaces"]] == [lab["SubnetId"]]
    assert lab_inst["PrivateIpAddress"].startswith("172.16.5.") and "PublicIpAddress" not in lab_inst

    # NetworkInterfaces: device 0 in public, device 1 in private at a chosen address
    two = cloud.run(NetworkInterfaces=[{"DeviceIndex": 1, "SubnetId": priv["SubnetId"], "PrivateIpAddress": "10.77.0.20"},
                                       {"DeviceIndex": 0, "SubnetId": pub["SubnetId"]}])
    by_index = {n["Attachment"]["DeviceIndex"]: n for n in two["NetworkInterfaces"]}
    assert sorted(by_index) == [0, 1]
    assert (by_index[0]["SubnetId"], by_index[1]["SubnetId"]) == (pub["SubnetId"], priv["SubnetId"])
    assert by_index[1]["PrivateIpAddress"] == "10.77.0.20" and two["SubnetId"] == pub["SubnetId"]
    again = ec2.describe_instances(InstanceIds=[two["InstanceId"]])["Reservations"][0]["Instances"][0]
    assert [(n["Attachment"]["DeviceIndex"], n["NetworkInterfaceId"]) for n in sorted(
        again["NetworkInterfaces"], key=lambda n: n["Attachment"]["DeviceIndex"])] == [
        (i, by_index[i]["NetworkInterfaceId"]) for i in (0, 1)]

    # one NIC in private without a public address
    plain = cloud.run(NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": priv["SubnetId"], "AssociatePublicIpAddress": False}])
    assert len(plain["NetworkInterfaces"]) == 1 and "PublicIpAddress" not in plain

    # DescribeInstances' VPC filters
    def found(name: str, value: str) -> set[str]:
        return {i["InstanceId"] for r in ec2.describe_instances(Filters=[{"Name": name, "Values": [value]}])["Reservations"]
                for i in r["Instances"]}
    assert found("subnet-id", lab["SubnetId"]) == {lab_inst["InstanceId"]}
    assert found("subnet-id", priv["SubnetId"]) == {inst["InstanceId"], plain["InstanceId"]}
    assert found("network-interface.subnet-id", priv["SubnetId"]) == {inst["InstanceId"], plain["InstanceId"], two["InstanceId"]}
    assert found("vpc-id", vpc_id) >= {inst["InstanceId"], lab_inst["InstanceId"], two["InstanceId"], plain["InstanceId"]}
    assert found("vpc-id", "vpc-0123456789abcdef0") == set()
    assert found("network-interface.addresses.private-ip-address", "10.77.0.20") == {two["InstanceId"]}

    # the subnet's free count follows
    assert cloud.subnet("lab")["AvailableIpAddressCount"] == 3


@pytest.mark.parametrize(("kwargs", "code", "says"), [
    ({"SubnetId": "subnet-0123456789abcdef0"}, "InvalidSubnetID.NotFound", "DescribeSubnets"),
    ({"SubnetId": "subnet-zz"}, "InvalidSubnetID.Malformed", "subnet-"),
    ({"SubnetId": "@private", "PrivateIpAddress": "10.78.0.1"}, "InvalidParameterValue", "range"),
    ({"SubnetId": "@private", "PrivateIpAddress": "10.77.0.200"}, "InvalidParameterValue", "no such address"),
    ({"SubnetId": "@private", "MaxCount": 2, "PrivateIpAddress": "10.77.0.12"}, "InvalidParameterCombination", "MaxCount"),
    ({"SubnetId": "@lab", "Placement": {"AvailabilityZone": "us-east-1a"}}, "InvalidParameterCombination", "us-east-1b"),
    ({"SubnetId": "@spare0"}, "InvalidParameterValue", "admin node add"),
    ({"SubnetId": "@private", "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": "@private"}]},
     "InvalidParameterCombination", "same request"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0, "NetworkInterfaceId": "eni-0123456789abcdef0"}]},
     "UnsupportedOperation", "SubnetId"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": "@private"}, {"DeviceIndex": 2, "SubnetId": "@public"}]},
     "InvalidParameterValue", "without gaps"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": "@private"}, {"DeviceIndex": 1, "SubnetId": "@private"}]},
     "InvalidParameterValue", "different subnet"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": "@private"}, {"DeviceIndex": 1, "SubnetId": "@lab"}]},
     "InvalidParameterValue", "No node serves all"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": "@private", "AssociatePublicIpAddress": True},
                            {"DeviceIndex": 1, "SubnetId": "@public"}]}, "InvalidParameterCombination", "multiple"),
])
def test_run_instances_refuses_bad_network_requests(cloud: Cloud, kwargs: dict[str, Any], code: str, says: str) -> None:
    def resolve(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("@"):
            return cloud.subnet(value[1:])["SubnetId"]
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value
    args = {"ImageId": cloud.image, "MinCount": 1, "MaxCount": 1, **resolve(kwargs)}
    before = {i["InstanceId"] for r in cloud.alice.describe_instances()["Reservations"] for i in r["Instances"]}
    with pytest.raises(ClientError) as err:
        cloud.alice.run_instances(**args)
    assert _code(err) == code and says in err.value.response["Error"]["Message"], err.value.response["Error"]
    assert {i["InstanceId"] for r in cloud.alice.describe_instances()["Reservations"] for i in r["Instances"]} == before


def test_an_address_in_use_is_refused(cloud: Cloud) -> None:
    priv = cloud.subnet("private")
    cloud.run(SubnetId=priv["SubnetId"], PrivateIpAddress="10.77.0.21")
    with pytest.raises(ClientError) as err:
        cloud.run(SubnetId=priv["SubnetId"], PrivateIpAddress="10.77.0.21")
    assert _code(err) == "InvalidIPAddress.InUse"
    # PrivateIpAddress alone picks the subnet holding it
    assert cloud.run(PrivateIpAddress="10.77.0.19")["SubnetId"] == priv["SubnetId"]


def test_network_interfaces_are_listed_filtered_and_paged(cloud: Cloud) -> None:
    ec2 = cloud.alice
    priv, pub = cloud.subnet("private"), cloud.subnet("public")
    launched = [cloud.run(SubnetId=priv["SubnetId"], InstanceType="t2.micro") for _ in range(3)]
    instances = {i["InstanceId"]: i for r in ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"] for i in r["Instances"]}
    expected = {n["NetworkInterfaceId"]: (iid, n) for iid, inst in instances.items() for n in inst["NetworkInterfaces"]}
    assert len(expected) > 5

    listed = ec2.describe_network_interfaces()["NetworkInterfaces"]
    assert {n["NetworkInterfaceId"] for n in listed} == set(expected)
    for n in listed:
        iid, seen = expected[n["NetworkInterfaceId"]]
        assert n["Attachment"]["InstanceId"] == iid and n["MacAddress"] == seen["MacAddress"]
        assert n["PrivateIpAddress"] == seen["PrivateIpAddress"] and n["SubnetId"] == seen["SubnetId"]
        assert n["Status"] == "in-use" and n["InterfaceType"] == "interface" and ID["eni"].match(n["NetworkInterfaceId"])
        assert n["AvailabilityZone"] == instances[iid]["Placement"]["AvailabilityZone"]

    one = launched[0]
    mine = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": [one["InstanceId"]]}])[
        "NetworkInterfaces"]
    assert {n["NetworkInterfaceId"] for n in mine} == {n["NetworkInterfaceId"] for n in one["NetworkInterfaces"]}
    primary = ec2.describe_network_interfaces(Filters=[
        {"Name": "attachment.instance-id", "Values": [one["InstanceId"]]},
        {"Name": "attachment.device-index", "Values": ["0"]}])["NetworkInterfaces"]
    assert [n["PrivateIpAddress"] for n in primary] == [one["PrivateIpAddress"]]
    assert primary[0]["Association"]["PublicIp"] == one["PublicIpAddress"]
    by_public = ec2.describe_network_interfaces(Filters=[{"Name": "association.public-ip", "Values": [one["PublicIpAddress"]]}])
    assert [n["NetworkInterfaceId"] for n in by_public["NetworkInterfaces"]] == [primary[0]["NetworkInterfaceId"]]
    by_mac = ec2.describe_network_interfaces(Filters=[{"Name": "mac-address", "Values": [primary[0]["MacAddress"]]}])
    assert len(by_mac["NetworkInterfaces"]) == 1
    in_pub = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [pub["SubnetId"]]}])["NetworkInterfaces"]
    assert in_pub and all(n["SubnetId"] == pub["SubnetId"] for n in in_pub)
    assert ec2.describe_network_interfaces(NetworkInterfaceIds=[primary[0]["NetworkInterfaceId"]])["NetworkInterfaces"] == primary

    pages = list(ec2.get_paginator("describe_network_interfaces").paginate(PaginationConfig={"PageSize": 5}))
    assert len(pages) >= 2 and all(len(p["NetworkInterfaces"]) <= 5 for p in pages)
    assert sorted(n["NetworkInterfaceId"] for p in pages for n in p["NetworkInterfaces"]) == sorted(expected)

    for ids, code in ((["eni-0123456789abcdef0"], "InvalidNetworkInterfaceID.NotFound"),
                      (["eni-xyz"], "InvalidNetworkInterfaceID.Malformed")):
        with pytest.raises(ClientError) as err:
            ec2.describe_network_interfaces(NetworkInterfaceIds=ids)
        assert _code(err) == code

    # a terminated instance's interfaces are gone with it
    ec2.terminate_instances(InstanceIds=[one["InstanceId"]])
    wait_for("the terminated instance's interfaces to go", lambda: ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [one["InstanceId"]]}])["NetworkInterfaces"] == [], timeout=60)


def test_another_user_sees_the_vpc_as_theirs_and_none_of_alices_interfaces(cloud: Cloud) -> None:
    priv = cloud.subnet("private")
    inst = cloud.run(SubnetId=priv["SubnetId"])
    eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    bob = cloud.bob
    bob_vpc = bob.describe_vpcs()["Vpcs"][0]
    assert bob_vpc["VpcId"] == cloud.alice.describe_vpcs()["Vpcs"][0]["VpcId"]
    alice_account = cloud.alice.describe_vpcs()["Vpcs"][0]["OwnerId"]
    assert bob_vpc["OwnerId"] == bob.describe_security_groups()["SecurityGroups"][0]["OwnerId"] != alice_account
    assert bob.describe_network_interfaces()["NetworkInterfaces"] == []
    with pytest.raises(ClientError) as err:
        bob.describe_network_interfaces(NetworkInterfaceIds=[eni])
    assert _code(err) == "InvalidNetworkInterfaceID.NotFound"
    assert bob.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": [inst["InstanceId"]]}])[
        "NetworkInterfaces"] == []
    assert bob.describe_instances(Filters=[{"Name": "subnet-id", "Values": [priv["SubnetId"]]}])["Reservations"] == []
