"""Elastic IP addresses on a live server, with boto3 and the aws CLI.

The cloud: a test-driver node (test:///ABS/node.xml) serving the pool `private`; a public pool
`elastic` (added with --public, 192.0.2.10-13) that no node serves: elastic addresses come from
it. Users are made per test where quotas or a clean slate matter. Test-driver domains have no
NICs, so the worker records an association as in place without a node call; the real guests'
side is tests/functional/test_vm_elastic_ips.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from backends.libvirt.testing import make_test_node_uri
from tests.live import LiveServer

PUBLIC = ["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"]


def _pool_file(path: Path, prefix: str, net: str, count: int) -> Path:
    path.write_text("none\n" + "".join(
        f"{prefix}{i} {net}.{10 + i} {net}.1 {net}.255 255.255.255.0\n" for i in range(count)))
    return path


class Cloud:
    def __init__(self, srv: LiveServer, image: str) -> None:
        self.srv = srv
        self.image = image
        self.count = 0

    def user(self, quota: int | None = None) -> Any:
        self.count += 1
        name = f"eip{self.count}"
        creds = self.srv.make_user(name)
        if quota is not None:
            self.srv.cli("admin", "quota", "set", f"user:{name}", "--addresses", str(quota))
        return self.srv.client("ec2", creds), creds

    def run(self, ec2: Any, state: str = "running") -> str:
        iid = str(ec2.run_instances(ImageId=self.image, MinCount=1, MaxCount=1, InstanceType="t2.micro")["Instances"][0]
                  ["InstanceId"])
        ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if state == "stopped":
            ec2.stop_instances(InstanceIds=[iid])
            ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        return iid

    def pool(self) -> dict[str, Any]:
        return dict(json.loads(self.srv.cli("admin", "pool", "show", "elastic", "--json").stdout))


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    root = tmp_path_factory.mktemp("eips")
    srv = LiveServer(root / "data").start()
    try:
        srv.cli("admin", "pool", "add", "elastic", str(_pool_file(root / "pub", "eip", "192.0.2", 4)),
                "--network-mode", "isolated", "--public")
        srv.cli("admin", "pool", "add", "private", str(_pool_file(root / "priv", "priv", "10.78.0", 8)),
                "--network-mode", "isolated")
        (root / "n1").mkdir()
        srv.cli("admin", "node", "add", "n1", "--uri", make_test_node_uri(root / "n1", 65536, 64),
                "--pools", "private", "--vcpus", "64", "--memory", "65536")
        img = root / "img.raw"
        img.write_bytes(b"\0" * 65536)
        image = json.loads(srv.cli("admin", "image", "import", "eip-test", str(img), "--public", "--json").stdout)["image_id"]
        yield Cloud(srv, image)
    finally:
        srv.stop()


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _instance(ec2: Any, iid: str) -> dict[str, Any]:
    return dict(ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0])


def _plugged(cloud: Cloud, ip: str, instance: str | None, timeout: float = 20.0) -> None:
    """Wait until the worker recorded the address's NIC on ``instance`` (None: on none)."""
    from ec2gw.db.session import Database
    from ec2gw.network.models import Address

    db = Database(f"sqlite:///{cloud.srv.data_dir / 'ec2gw.sqlite'}")
    deadline = time.monotonic() + timeout
    try:
        while True:
            with db.session() as s:
                row = s.query(Address).filter(Address.ip == ip).one()
                if row.plugged_into == instance:
                    return
            assert time.monotonic() < deadline, f"{ip} plugged into {row.plugged_into}, not {instance}"
            time.sleep(0.2)
    finally:
        db.dispose()


def test_pool_add_public_is_shown(cloud: Cloud) -> None:
    pools = {p["name"]: p for p in json.loads(cloud.srv.cli("admin", "pool", "list", "--json").stdout)}
    assert pools["elastic"]["role"] == "public" and pools["private"]["role"] == "private"
    assert cloud.pool()["role"] == "public"
    text = cloud.srv.cli("admin", "pool", "list").stdout
    assert "elastic" in text and "public" in text


def test_allocate_associate_disassociate_release(cloud: Cloud) -> None:
    ec2, creds = cloud.user()
    iid = cloud.run(ec2)
    got = ec2.allocate_address(Domain="vpc", TagSpecifications=[
        {"ResourceType": "elastic-ip", "Tags": [{"Key": "Name", "Value": "web"}]}])
    assert got["Domain"] == "vpc" and got["PublicIp"] in PUBLIC and got["AllocationId"].startswith("eipalloc-")
    assert got["PublicIpv4Pool"] == "elastic"
    alloc, ip = got["AllocationId"], got["PublicIp"]

    listed = ec2.describe_addresses()["Addresses"]
    assert [(a["AllocationId"], a["PublicIp"], a["Domain"]) for a in listed] == [(alloc, ip, "vpc")]
    assert "AssociationId" not in listed[0] and listed[0]["Tags"] == [{"Key": "Name", "Value": "web"}]
    assert "PublicIpAddress" not in _instance(ec2, iid)

    assoc = ec2.associate_address(AllocationId=alloc, InstanceId=iid)["AssociationId"]
    assert assoc.startswith("eipassoc-")
    inst = _instance(ec2, iid)
    assert inst["PublicIpAddress"] == ip
    primary = [n for n in inst["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0][0]
    assert len(inst["NetworkInterfaces"]) == 1  # the address is the interface's association, not an interface
    assert primary["Association"]["PublicIp"] == ip
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "association.allocation-id", "Values": [alloc]}])
    [eni] = enis["NetworkInterfaces"]
    assert eni["Association"]["AssociationId"] == assoc and eni["Association"]["PublicIp"] == ip
    addr = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0]
    assert (addr["AssociationId"], addr["InstanceId"], addr["NetworkInterfaceId"], addr["PrivateIpAddress"]) == (
        assoc, iid, eni["NetworkInterfaceId"], inst["PrivateIpAddress"])
    by_ip = ec2.describe_instances(Filters=[{"Name": "ip-address", "Values": [ip]}])["Reservations"]
    assert [i["InstanceId"] for r in by_ip for i in r["Instances"]] == [iid]
    _plugged(cloud, ip, iid)

    # the operator sees who holds it
    entry = [e for e in cloud.pool()["entries"] if e["ip"] == ip][0]
    assert (entry["user"], entry["instance_id"], entry["allocation_id"]) == (creds.name, iid, alloc)
    assert f"user {creds.name}" in cloud.srv.cli("admin", "pool", "show", "elastic").stdout

    # in use: not released
    with pytest.raises(ClientError) as err:
        ec2.release_address(AllocationId=alloc)
    assert _code(err) == "InvalidIPAddress.InUse"

    ec2.disassociate_address(AssociationId=assoc)
    assert "PublicIpAddress" not in _instance(ec2, iid)
    assert "AssociationId" not in ec2.describe_addresses(PublicIps=[ip])["Addresses"][0]
    _plugged(cloud, ip, None)
    with pytest.raises(ClientError) as err:
        ec2.disassociate_address(AssociationId=assoc)
    assert _code(err) == "InvalidAssociationID.NotFound"

    ec2.release_address(AllocationId=alloc)
    assert ec2.describe_addresses()["Addresses"] == []
    with pytest.raises(ClientError) as err:
        ec2.release_address(AllocationId=alloc)
    assert _code(err) == "InvalidAllocationID.NotFound"
    entry = [e for e in cloud.pool()["entries"] if e["ip"] == ip][0]
    assert entry["user"] is None and entry["allocation_id"] is None
    ec2.terminate_instances(InstanceIds=[iid])


def test_reassociation_interfaces_and_stopped_instances(cloud: Cloud) -> None:
    ec2, _ = cloud.user()
    one, two = cloud.run(ec2), cloud.run(ec2, state="stopped")
    a = ec2.allocate_address(Domain="vpc")
    b = ec2.allocate_address(Domain="vpc")
    first = ec2.associate_address(AllocationId=a["AllocationId"], InstanceId=one)["AssociationId"]
    # the same association again: the same id
    assert ec2.associate_address(AllocationId=a["AllocationId"], InstanceId=one)["AssociationId"] == first

    # elsewhere without AllowReassociation: Resource.AlreadyAssociated; with it, it moves
    eni_two = _instance(ec2, two)["NetworkInterfaces"][0]["NetworkInterfaceId"]
    with pytest.raises(ClientError) as err:
        ec2.associate_address(AllocationId=a["AllocationId"], NetworkInterfaceId=eni_two)
    assert _code(err) == "Resource.AlreadyAssociated"
    moved = ec2.associate_address(PublicIp=a["PublicIp"], NetworkInterfaceId=eni_two, AllowReassociation=True)
    assert moved["AssociationId"] != first
    assert "PublicIpAddress" not in _instance(ec2, one)
    assert _instance(ec2, two)["PublicIpAddress"] == a["PublicIp"]  # a stopped instance gets it at start
    _plugged(cloud, a["PublicIp"], two)

    # a second address on the same interface takes the first one's place
    ec2.associate_address(AllocationId=b["AllocationId"], InstanceId=two)
    assert _instance(ec2, two)["PublicIpAddress"] == b["PublicIp"]
    assert "AssociationId" not in ec2.describe_addresses(AllocationIds=[a["AllocationId"]])["Addresses"][0]

    ec2.start_instances(InstanceIds=[two])
    ec2.get_waiter("instance_running").wait(InstanceIds=[two], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    assert _instance(ec2, two)["PublicIpAddress"] == b["PublicIp"]

    # filters
    def ids(**kw: Any) -> list[str]:
        return sorted(x["AllocationId"] for x in ec2.describe_addresses(**kw)["Addresses"])

    assert ids(Filters=[{"Name": "instance-id", "Values": [two]}]) == [b["AllocationId"]]
    assert ids(Filters=[{"Name": "public-ip", "Values": [a["PublicIp"]]}]) == [a["AllocationId"]]
    assert ids(Filters=[{"Name": "domain", "Values": ["vpc"]}]) == sorted([a["AllocationId"], b["AllocationId"]])
    assert ids(Filters=[{"Name": "network-interface-id", "Values": [eni_two]}]) == [b["AllocationId"]]
    private = _instance(ec2, two)["PrivateIpAddress"]
    assert ids(Filters=[{"Name": "private-ip-address", "Values": [private]}]) == [b["AllocationId"]]
    assoc_b = ec2.describe_addresses(AllocationIds=[b["AllocationId"]])["Addresses"][0]["AssociationId"]
    assert ids(Filters=[{"Name": "association-id", "Values": [assoc_b]}]) == [b["AllocationId"]]
    assert ids(Filters=[{"Name": "allocation-id", "Values": [a["AllocationId"]]}]) == [a["AllocationId"]]
    ec2.create_tags(Resources=[a["AllocationId"]], Tags=[{"Key": "role", "Value": "spare"}])
    assert ids(Filters=[{"Name": "tag:role", "Values": ["spare"]}]) == [a["AllocationId"]]
    assert ids(Filters=[{"Name": "tag-key", "Values": ["role"]}]) == [a["AllocationId"]]

    # terminating disassociates; the address stays allocated
    ec2.terminate_instances(InstanceIds=[two])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[two], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    left = ec2.describe_addresses(AllocationIds=[b["AllocationId"]])["Addresses"][0]
    assert "AssociationId" not in left and "InstanceId" not in left
    _plugged(cloud, b["PublicIp"], None)
    for alloc in (a, b):
        ec2.release_address(AllocationId=alloc["AllocationId"])
    ec2.terminate_instances(InstanceIds=[one])


def test_quota_and_an_exhausted_pool(cloud: Cloud) -> None:
    ec2, _ = cloud.user(quota=1)
    got = ec2.allocate_address(Domain="vpc")
    with pytest.raises(ClientError) as err:
        ec2.allocate_address(Domain="vpc")
    assert _code(err) == "AddressLimitExceeded" and "quota allows 1" in err.value.response["Error"]["Message"]
    ec2.release_address(PublicIp=got["PublicIp"])

    other, _ = cloud.user(quota=10)
    held = [other.allocate_address(Domain="vpc")["AllocationId"] for _ in PUBLIC]
    with pytest.raises(ClientError) as err:
        other.allocate_address(Domain="vpc")
    assert _code(err) == "InsufficientAddressCapacity" and "elastic" in err.value.response["Error"]["Message"]
    for alloc in held:
        other.release_address(AllocationId=alloc)
    # a named address and a named pool
    exact = other.allocate_address(Domain="vpc", Address=PUBLIC[2], PublicIpv4Pool="elastic")
    assert exact["PublicIp"] == PUBLIC[2]
    with pytest.raises(ClientError) as err:
        other.allocate_address(Domain="vpc", Address=PUBLIC[2])
    assert _code(err) == "InvalidIPAddress.InUse"
    with pytest.raises(ClientError) as err:
        other.allocate_address(Domain="vpc", PublicIpv4Pool="private")
    assert _code(err) == "InvalidPublicIpv4PoolID.NotFound"
    other.release_address(AllocationId=exact["AllocationId"])


@pytest.mark.parametrize(("call", "kwargs", "code"), [
    ("allocate_address", {"Domain": "classic"}, "InvalidParameterValue"),
    ("allocate_address", {"Address": "not-an-ip"}, "InvalidParameterValue"),
    ("describe_addresses", {"AllocationIds": ["eipalloc-nope"]}, "InvalidAllocationID.Malformed"),
    ("describe_addresses", {"AllocationIds": ["eipalloc-0123456789abcdef0"]}, "InvalidAllocationID.NotFound"),
    ("describe_addresses", {"PublicIps": ["198.51.100.1"]}, "InvalidAddress.NotFound"),
    ("describe_addresses", {"Filters": [{"Name": "colour", "Values": ["red"]}]}, "InvalidParameterValue"),
    ("associate_address", {"InstanceId": "i-0123456789abcdef0"}, "MissingParameter"),
    ("associate_address", {"AllocationId": "eipalloc-0123456789abcdef0", "InstanceId": "i-0123456789abcdef0"},
     "InvalidAllocationID.NotFound"),
    ("associate_address", {"AllocationId": "eipalloc-0123456789abcdef0", "PublicIp": "192.0.2.10",
                           "InstanceId": "i-0123456789abcdef0"}, "InvalidParameterCombination"),
    ("disassociate_address", {}, "MissingParameter"),
    ("disassociate_address", {"AssociationId": "eipassoc-0123456789abcdef0"}, "InvalidAssociationID.NotFound"),
    ("disassociate_address", {"AssociationId": "assoc-1"}, "InvalidAssociationID.Malformed"),
    ("release_address", {"AllocationId": "eipalloc-0123456789abcdef0"}, "InvalidAllocationID.NotFound"),
    ("release_address", {"PublicIp": "192.0.2.10"}, "InvalidAddress.NotFound"),
    ("release_address", {}, "MissingParameter"),
])
def test_bad_requests_get_ec2_errors(cloud: Cloud, call: str, kwargs: dict[str, Any], code: str) -> None:
    ec2, _ = cloud.user()
    with pytest.raises(ClientError) as err:
        getattr(ec2, call)(**kwargs)
    assert _code(err) == code, err.value.response
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_association_errors(cloud: Cloud) -> None:
    ec2, _ = cloud.user()
    iid = cloud.run(ec2)
    got = ec2.allocate_address(Domain="vpc")
    with pytest.raises(ClientError) as err:
        ec2.associate_address(AllocationId=got["AllocationId"], InstanceId="i-0123456789abcdef0")
    assert _code(err) == "InvalidInstanceID.NotFound"
    with pytest.raises(ClientError) as err:
        ec2.associate_address(AllocationId=got["AllocationId"], NetworkInterfaceId="eni-0123456789abcdef0")
    assert _code(err) == "InvalidNetworkInterfaceID.NotFound"
    with pytest.raises(ClientError) as err:
        ec2.associate_address(AllocationId=got["AllocationId"], InstanceId=iid, PrivateIpAddress="10.78.0.250")
    assert _code(err) == "InvalidParameterValue"
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    with pytest.raises(ClientError) as err:
        ec2.associate_address(AllocationId=got["AllocationId"], InstanceId=iid)
    assert _code(err) == "IncorrectInstanceState"
    ec2.release_address(AllocationId=got["AllocationId"])


def test_aws_cli(cloud: Cloud) -> None:
    ec2, creds = cloud.user()
    iid = cloud.run(ec2)
    got = json.loads(cloud.srv.aws("ec2", "allocate-address", "--domain", "vpc", creds=creds).stdout)
    out = json.loads(cloud.srv.aws("ec2", "associate-address", "--allocation-id", got["AllocationId"],
                                   "--instance-id", iid, creds=creds).stdout)
    listed = json.loads(cloud.srv.aws("ec2", "describe-addresses", "--filters", f"Name=instance-id,Values={iid}",
                                      creds=creds).stdout)["Addresses"]
    assert [(a["PublicIp"], a["AssociationId"]) for a in listed] == [(got["PublicIp"], out["AssociationId"])]
    cloud.srv.aws("ec2", "disassociate-address", "--association-id", out["AssociationId"], creds=creds)
    cloud.srv.aws("ec2", "release-address", "--allocation-id", got["AllocationId"], creds=creds)
    assert json.loads(cloud.srv.aws("ec2", "describe-addresses", creds=creds).stdout)["Addresses"] == []
    ec2.terminate_instances(InstanceIds=[iid])


def test_interface_and_instance_groups(cloud: Cloud) -> None:
    ec2, _ = cloud.user()
    iid = cloud.run(ec2)
    web = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    db = ec2.create_security_group(GroupName="db", Description="db")["GroupId"]
    eni = _instance(ec2, iid)["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[web, db])
    assert sorted(g["GroupId"] for g in _instance(ec2, iid)["SecurityGroups"]) == sorted([web, db])
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    assert sorted(g["GroupId"] for g in got["Groups"]) == sorted([web, db])
    ec2.modify_instance_attribute(InstanceId=iid, Groups=[web])
    assert [g["GroupId"] for g in _instance(ec2, iid)["SecurityGroups"]] == [web]
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, SourceDestCheck={"Value": True})
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Description={"Value": ""})
    for kwargs, code in (({"SourceDestCheck": {"Value": False}}, "InvalidParameterValue"),
                         ({"Groups": ["sg-0123456789abcdef0"]}, "InvalidGroup.NotFound"),
                         ({"Groups": [web], "SourceDestCheck": {"Value": True}}, "InvalidParameterCombination")):
        with pytest.raises(ClientError) as err:
            ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, **kwargs)
        assert _code(err) == code
    with pytest.raises(ClientError) as err:
        ec2.modify_network_interface_attribute(NetworkInterfaceId="eni-0123456789abcdef0", Groups=[web])
    assert _code(err) == "InvalidNetworkInterfaceID.NotFound"
    ec2.terminate_instances(InstanceIds=[iid])


def test_sts_caller_identity_on_the_ec2_endpoint(cloud: Cloud) -> None:
    """Tools learn their account id so (Ansible's ec2_security_group does before anything else)."""
    ec2, creds = cloud.user()
    sts = cloud.srv.client("sts", creds)
    me = sts.get_caller_identity()
    owner = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["OwnerId"]
    assert me["Account"] == owner and me["Arn"] == f"arn:aws:iam::{owner}:user/{creds.name}"
    assert me["UserId"] == creds.access_key
    other, other_creds = cloud.user()
    assert cloud.srv.client("sts", other_creds).get_caller_identity()["Account"] != owner
