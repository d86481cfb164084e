"""Addresses through the API on a live server: an instance gets one NIC per pool and DescribeInstances
lists every one of them; a launch short of addresses starts as many instances as the pools hold
(at least MinCount) or nothing.

The node is libvirt's test driver with private state (test:///ABS/node.xml) serving two small pools,
so no guest runs: the address bookkeeping is what is under test, with boto3 and the aws CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from backends.libvirt.testing import make_test_node_uri
from tests.live import LiveServer


def _pool_file(path: Path, prefix: str, net: str, count: int) -> Path:
    path.write_text("none\n" + "".join(
        f"{prefix}{i} {net}.{10 + i} {net}.1 {net}.255 255.255.255.0\n" for i in range(count)))
    return path


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Any, str]]:
    root = tmp_path_factory.mktemp("addresses")
    srv = LiveServer(root / "data").start()
    try:
        srv.cli("admin", "pool", "add", "public", str(_pool_file(root / "pub", "pub", "192.0.2", 3)),
                "--network-mode", "isolated")
        srv.cli("admin", "pool", "add", "private", str(_pool_file(root / "priv", "priv", "10.77.0", 4)),
                "--network-mode", "isolated")
        (root / "n1").mkdir()
        srv.cli("admin", "node", "add", "n1", "--uri", make_test_node_uri(root / "n1", 65536, 64),
                "--pools", "public,private", "--vcpus", "64", "--memory", "65536")
        img = root / "img.raw"
        img.write_bytes(b"\0" * 65536)
        image = json.loads(srv.cli("admin", "image", "import", "addr-test", str(img), "--json").stdout)["image_id"]
        yield srv, srv.client("ec2"), image
    finally:
        srv.stop()


def _all(ec2: Any, state: str | None = None) -> list[dict[str, Any]]:
    filters = [{"Name": "instance-state-name", "Values": [state]}] if state else []
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def test_every_nic_is_listed_and_a_short_launch_starts_what_fits(cloud: tuple[LiveServer, Any, str]) -> None:
    srv, ec2, image = cloud
    # t2.micro (default rules) wants a NIC in each pool: the public pool (3 addresses) limits it
    first = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.micro")["Instances"][0]
    nics = sorted(first["NetworkInterfaces"], key=lambda n: n["Attachment"]["DeviceIndex"])
    assert len(nics) == 2
    assert nics[0]["PrivateIpAddress"] == first["PrivateIpAddress"] == "10.77.0.10"  # the private NIC is primary
    assert nics[0]["Association"]["PublicIp"] == first["PublicIpAddress"] == "192.0.2.10"
    assert nics[1]["PrivateIpAddress"] == "192.0.2.10" and "Association" not in nics[1]
    assert len({n["MacAddress"] for n in nics}) == 2 and first["PrivateDnsName"] == "priv0"

    described = ec2.describe_instances(InstanceIds=[first["InstanceId"]])["Reservations"][0]["Instances"][0]
    assert sorted(n["MacAddress"] for n in described["NetworkInterfaces"]) == sorted(n["MacAddress"] for n in nics)

    # 2 public addresses are left: MaxCount=5 MinCount=2 launches 2, numbered 0 and 1
    res = ec2.run_instances(ImageId=image, MinCount=2, MaxCount=5, InstanceType="t2.micro")
    assert sorted(i["AmiLaunchIndex"] for i in res["Instances"]) == [0, 1]
    publics = {i["PublicIpAddress"] for i in res["Instances"]}
    assert publics == {"192.0.2.11", "192.0.2.12"}

    # nothing is left in the public pool: at least one is impossible, and nothing is created
    before = {i["InstanceId"] for i in _all(ec2)}
    with pytest.raises(ClientError) as err:
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=3, InstanceType="t2.micro")
    assert err.value.response["Error"]["Code"] == "InsufficientFreeAddressesInSubnet"
    assert "public" in err.value.response["Error"]["Message"]
    assert {i["InstanceId"] for i in _all(ec2)} == before
    shown = json.loads(srv.cli("admin", "pool", "show", "private", "--json").stdout)
    assert shown["in_use"] == 3  # the refused launch took no private address either

    # the aws CLI sees the same NICs
    out = json.loads(srv.aws("ec2", "describe-instances", "--instance-ids", first["InstanceId"]).stdout)
    cli_nics = out["Reservations"][0]["Instances"][0]["NetworkInterfaces"]
    assert sorted(n["PrivateIpAddress"] for n in cli_nics) == ["10.77.0.10", "192.0.2.10"]

    # terminating gives the addresses back: a new launch gets one of them
    ec2.terminate_instances(InstanceIds=[first["InstanceId"]])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[first["InstanceId"]],
                                              WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    again = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=2, InstanceType="t2.micro")["Instances"]
    assert [i["PublicIpAddress"] for i in again] == ["192.0.2.10"]
