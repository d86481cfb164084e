"""The instance life cycle through boto3 and the aws CLI against a live server."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from backends.libvirt.testing import make_test_node_uri
from tests.live import Creds, LiveServer

FAST = {"Delay": 1, "MaxAttempts": 60}


@pytest.fixture(scope="module")
def image_id(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("img") / "base.img"
    path.write_bytes(b"\0" * (1 << 20))
    out = server.cli("admin", "image", "import", "base-image", str(path), "--public", "--json")
    return str(json.loads(out.stdout)["image_id"])


@pytest.fixture(scope="module")
def alice(server: LiveServer) -> Creds:
    return server.make_user("alice")


@pytest.fixture(scope="module")
def ec2a(server: LiveServer, alice: Creds) -> Any:
    return server.client("ec2", alice)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _ids(resp: dict[str, Any]) -> list[str]:
    return [i["InstanceId"] for i in resp["Instances"]]


def _all(ec2: Any, **kw: Any) -> list[dict[str, Any]]:
    return [i for r in ec2.describe_instances(**kw)["Reservations"] for i in r["Instances"]]


def test_life_cycle_with_waiters(ec2a: Any, image_id: str) -> None:
    ud = "#!/bin/sh\necho hello\n"  # boto3 base64-encodes UserData itself
    resp = ec2a.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, InstanceType="t2.micro", UserData=ud,
                              TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]}])
    ids = _ids(resp)
    assert len(ids) == 2 and all(i.startswith("i-") and len(i) == 19 for i in ids)
    assert {i["State"]["Name"] for i in resp["Instances"]} == {"pending"}
    assert resp["ReservationId"].startswith("r-") and resp["OwnerId"].isdigit()
    assert [i["AmiLaunchIndex"] for i in resp["Instances"]] == [0, 1]
    ec2a.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=FAST)
    inst = _all(ec2a, InstanceIds=ids)
    assert {i["State"]["Code"] for i in inst} == {16}
    assert all(i["PrivateIpAddress"] and {"Key": "Name", "Value": "web"} in i["Tags"] for i in inst)
    assert len({i["PrivateIpAddress"] for i in inst}) == 2
    attr = ec2a.describe_instance_attribute(InstanceId=ids[0], Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]) == b"#!/bin/sh\necho hello\n"

    with pytest.raises(ClientError) as err:
        ec2a.modify_instance_attribute(InstanceId=ids[0], InstanceType={"Value": "m1.large"})
    assert _code(err) == "IncorrectInstanceState"

    stopping = ec2a.stop_instances(InstanceIds=ids[:1])["StoppingInstances"][0]
    assert stopping["PreviousState"]["Name"] == "running" and stopping["CurrentState"]["Name"] == "stopping"
    ec2a.get_waiter("instance_stopped").wait(InstanceIds=ids[:1], WaiterConfig=FAST)
    ec2a.modify_instance_attribute(InstanceId=ids[0], InstanceType={"Value": "m1.large"})
    assert ec2a.describe_instance_attribute(InstanceId=ids[0], Attribute="instanceType")["InstanceType"]["Value"] == "m1.large"
    with pytest.raises(ClientError) as err:
        ec2a.reboot_instances(InstanceIds=ids[:1])
    assert _code(err) == "IncorrectInstanceState"

    starting = ec2a.start_instances(InstanceIds=ids[:1])["StartingInstances"][0]
    assert starting["CurrentState"]["Name"] == "pending"
    ec2a.get_waiter("instance_running").wait(InstanceIds=ids[:1], WaiterConfig=FAST)
    assert _all(ec2a, InstanceIds=ids[:1])[0]["InstanceType"] == "m1.large"
    ec2a.reboot_instances(InstanceIds=ids)
    out = ec2a.get_console_output(InstanceId=ids[0])
    assert out["InstanceId"] == ids[0] and "Timestamp" in out

    ec2a.stop_instances(InstanceIds=ids[1:], Force=True)
    ec2a.get_waiter("instance_stopped").wait(InstanceIds=ids[1:], WaiterConfig=FAST)

    term = ec2a.terminate_instances(InstanceIds=ids)["TerminatingInstances"]
    assert {t["CurrentState"]["Name"] for t in term} <= {"shutting-down", "terminated"}
    ec2a.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=FAST)
    # terminated instances stay visible, and refuse stop/start/reboot
    assert {i["State"]["Name"] for i in _all(ec2a, InstanceIds=ids)} == {"terminated"}
    for call in (ec2a.stop_instances, ec2a.start_instances, ec2a.reboot_instances):
        with pytest.raises(ClientError) as err:
            call(InstanceIds=ids[:1])
        assert _code(err) == "IncorrectInstanceState"
    again = ec2a.terminate_instances(InstanceIds=ids[:1])["TerminatingInstances"][0]
    assert again["PreviousState"]["Name"] == "terminated" and again["CurrentState"]["Name"] == "terminated"


def test_client_token_is_idempotent(ec2a: Any, image_id: str) -> None:
    first = ec2a.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, ClientToken="tok-123")
    second = ec2a.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, ClientToken="tok-123")
    assert _ids(first) == _ids(second) and first["ReservationId"] == second["ReservationId"]
    with pytest.raises(ClientError) as err:
        ec2a.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, ClientToken="tok-123")
    assert _code(err) == "IdempotentParameterMismatch"
    ec2a.terminate_instances(InstanceIds=_ids(first))


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"ImageId": "ami-123", "MinCount": 1, "MaxCount": 1}, "InvalidAMIID.Malformed"),
        ({"ImageId": "ami-0123456789abcdef0", "MinCount": 1, "MaxCount": 1}, "InvalidAMIID.NotFound"),
        ({"MinCount": 2, "MaxCount": 1}, "InvalidParameterValue"),
        ({"MinCount": 1, "MaxCount": 1, "InstanceType": "x9.huge"}, "InvalidParameterValue"),
        ({"MinCount": 1, "MaxCount": 1, "KeyName": "no-such-key"}, "InvalidKeyPair.NotFound"),
        ({"MinCount": 1, "MaxCount": 1, "Placement": {"AvailabilityZone": "mars-1a"}}, "InvalidParameterValue"),
        ({"MinCount": 1, "MaxCount": 1, "UserData": "A" * 30000}, "InvalidParameterValue"),
        ({"MinCount": 1, "MaxCount": 1, "DryRun": True}, "DryRunOperation"),
    ],
)
def test_run_instances_refusals_create_nothing(ec2a: Any, image_id: str, kwargs: dict[str, Any], code: str) -> None:
    kwargs.setdefault("ImageId", image_id)
    before = len(_all(ec2a))
    with pytest.raises(ClientError) as err:
        ec2a.run_instances(**kwargs)
    assert _code(err) == code
    assert len(_all(ec2a)) == before


def test_user_data_limit_is_16_kib(ec2a: Any, image_id: str) -> None:
    resp = ec2a.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, UserData="x" * 16384)
    ec2a.terminate_instances(InstanceIds=_ids(resp))
    with pytest.raises(ClientError) as err:
        ec2a.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, UserData="x" * 16385)
    assert _code(err) == "InvalidParameterValue"


def test_filters(ec2a: Any, image_id: str) -> None:
    a = ec2a.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, InstanceType="t2.small",
                           TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "db-main"}]}])
    b = ec2a.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t2.medium")
    ids_a, ids_b = _ids(a), _ids(b)
    ec2a.get_waiter("instance_running").wait(InstanceIds=ids_a + ids_b, WaiterConfig=FAST)
    ec2a.stop_instances(InstanceIds=ids_b)
    ec2a.get_waiter("instance_stopped").wait(InstanceIds=ids_b, WaiterConfig=FAST)
    mine = set(ids_a + ids_b)

    def ids_for(*filters: tuple[str, list[str]]) -> set[str]:
        got = _all(ec2a, Filters=[{"Name": n, "Values": v} for n, v in filters])
        return {i["InstanceId"] for i in got} & mine

    first = _all(ec2a, InstanceIds=ids_a[:1])[0]
    assert ids_for(("instance-id", ids_a[:1])) == set(ids_a[:1])
    assert ids_for(("instance-state-name", ["running"])) == set(ids_a)
    assert ids_for(("instance-state-name", ["stopped"])) == set(ids_b)
    assert ids_for(("instance-state-code", ["80"])) == set(ids_b)
    assert ids_for(("instance-type", ["t2.s*"])) == set(ids_a)
    assert ids_for(("image-id", [image_id]), ("instance-type", ["t2.medium"])) == set(ids_b)
    assert ids_for(("availability-zone", ["us-east-1?"])) == mine
    assert ids_for(("reservation-id", [a["ReservationId"]])) == set(ids_a)
    assert ids_for(("private-ip-address", [first["PrivateIpAddress"]])) == set(ids_a[:1])
    assert ids_for(("launch-time", [first["LaunchTime"].strftime("%Y-%m-%d") + "*"])) == mine
    assert ids_for(("tag:role", ["db-*"])) == set(ids_a)
    assert ids_for(("tag-key", ["role"])) == set(ids_a)
    assert ids_for(("tag-value", ["db-main"])) == set(ids_a)
    assert ids_for(("key-name", ["nothing"])) == set()
    assert ids_for(("ip-address", ["203.0.113.*"])) == set()
    with pytest.raises(ClientError) as err:
        _all(ec2a, Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert _code(err) == "InvalidParameterValue"

    statuses = ec2a.describe_instance_status(InstanceIds=ids_a + ids_b)["InstanceStatuses"]
    assert {s["InstanceId"] for s in statuses} == set(ids_a)
    every = ec2a.describe_instance_status(InstanceIds=ids_a + ids_b, IncludeAllInstances=True)["InstanceStatuses"]
    assert {s["InstanceId"]: s["InstanceState"]["Name"] for s in every} == {
        **{i: "running" for i in ids_a}, **{i: "stopped" for i in ids_b}}
    assert all(s["InstanceStatus"]["Status"] == "ok" for s in statuses)
    ec2a.terminate_instances(InstanceIds=list(mine))


def test_paginator_counts_instances(server: LiveServer, image_id: str) -> None:
    ec2 = server.client("ec2", server.make_user("pager"))
    ids = _ids(ec2.run_instances(ImageId=image_id, MinCount=12, MaxCount=12))
    pages = list(ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5}))
    counts = [sum(len(r["Instances"]) for r in p["Reservations"]) for p in pages]
    assert counts == [5, 5, 2]
    seen = [i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]]
    assert sorted(seen) == sorted(ids)
    with pytest.raises(ClientError) as err:
        ec2.describe_instances(MaxResults=5, NextToken="bogus")
    assert _code(err) == "InvalidParameterValue"
    with pytest.raises(ClientError) as err:
        ec2.describe_instances(MaxResults=5, InstanceIds=ids[:1])
    assert _code(err) == "InvalidParameterCombination"
    token = ec2.describe_instances(MaxResults=5)["NextToken"]
    with pytest.raises(ClientError) as err:
        ec2.describe_instances(MaxResults=5, NextToken=token, Filters=[{"Name": "instance-state-name", "Values": ["pending"]}])
    assert _code(err) == "InvalidParameterValue"
    ec2.terminate_instances(InstanceIds=ids)


def test_ids_malformed_and_not_found(ec2a: Any) -> None:
    for bad in ("i-xyz", "instance", "i-0123456789ABCDEF0", "i-1234567"):
        with pytest.raises(ClientError) as err:
            ec2a.describe_instances(InstanceIds=[bad])
        assert _code(err) == "InvalidInstanceID.Malformed", bad
    for call in (ec2a.terminate_instances, ec2a.stop_instances, ec2a.start_instances, ec2a.reboot_instances):
        with pytest.raises(ClientError) as err:
            call(InstanceIds=["i-0123456789abcdef0"])
        assert _code(err) == "InvalidInstanceID.NotFound"
    with pytest.raises(ClientError) as err:
        ec2a.get_console_output(InstanceId="i-00000000")
    assert _code(err) == "InvalidInstanceID.NotFound"


def test_users_see_only_their_own_instances(server: LiveServer, ec2a: Any, image_id: str) -> None:
    bob = server.client("ec2", server.make_user("bob"))
    mine = _ids(ec2a.run_instances(ImageId=image_id, MinCount=1, MaxCount=1))
    assert mine[0] not in {i["InstanceId"] for i in _all(bob)}
    for call in (bob.terminate_instances, bob.stop_instances, bob.describe_instances):
        with pytest.raises(ClientError) as err:
            call(InstanceIds=mine)
        assert _code(err) == "InvalidInstanceID.NotFound"
    ec2a.terminate_instances(InstanceIds=mine)


def test_removed_user_keys_stop_working_at_once(server: LiveServer, image_id: str) -> None:
    creds = server.make_user("carol")
    ec2 = server.client("ec2", creds)
    s3 = server.client("s3", creds)
    ids = _ids(ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1))
    s3.create_bucket(Bucket="carols-bucket")
    for _ in range(5):  # the key is in use on Cumulus right up to the removal
        s3.list_objects_v2(Bucket="carols-bucket")
    server.cli("admin", "user", "remove", "carol")
    with pytest.raises(ClientError) as err:
        s3.list_objects_v2(Bucket="carols-bucket")
    assert _code(err) == "InvalidAccessKeyId"
    with pytest.raises(ClientError) as err:
        ec2.describe_instances()
    assert _code(err) in ("AuthFailure", "InvalidClientTokenId")
    admin_view = server.client("ec2")
    assert ids[0] not in {i["InstanceId"] for i in _all(admin_view)}


def test_aws_cli_walk(server: LiveServer, image_id: str) -> None:
    creds = server.make_user("cliuser")
    run = json.loads(server.aws("ec2", "run-instances", "--image-id", image_id, "--count", "2",
                                "--instance-type", "m1.small", creds=creds).stdout)
    ids = [i["InstanceId"] for i in run["Instances"]]
    server.aws("ec2", "wait", "instance-running", "--instance-ids", *ids, creds=creds)
    desc = json.loads(server.aws("ec2", "describe-instances", "--filters", "Name=instance-state-name,Values=running",
                                 creds=creds).stdout)
    assert {i["InstanceId"] for r in desc["Reservations"] for i in r["Instances"]} == set(ids)
    server.aws("ec2", "stop-instances", "--instance-ids", ids[0], creds=creds)
    server.aws("ec2", "wait", "instance-stopped", "--instance-ids", ids[0], creds=creds)
    server.aws("ec2", "terminate-instances", "--instance-ids", *ids, creds=creds)
    server.aws("ec2", "wait", "instance-terminated", "--instance-ids", *ids, creds=creds)
    bad = server.aws("ec2", "describe-instances", "--instance-ids", "i-0123456789abcdef0", creds=creds, check=False)
    assert bad.returncode != 0 and "InvalidInstanceID.NotFound" in bad.stderr
    regions = json.loads(server.aws("ec2", "describe-regions", creds=creds).stdout)
    assert regions["Regions"][0]["RegionName"] == "us-east-1"


def test_waiter_reports_failure_for_missing_instance(ec2a: Any) -> None:
    with pytest.raises(WaiterError):
        ec2a.get_waiter("instance_running").wait(InstanceIds=["i-0123456789abcdef0"], WaiterConfig={"Delay": 1, "MaxAttempts": 2})


def test_instance_types_zones_regions_account(ec2a: Any) -> None:
    types = {t["InstanceType"]: t for t in ec2a.describe_instance_types()["InstanceTypes"]}
    assert {"t2.micro", "t2.small", "t2.medium", "m1.small", "m1.large", "m1.xlarge"} <= set(types)
    assert types["m1.xlarge"]["VCpuInfo"]["DefaultVCpus"] == 4
    assert ec2a.describe_instance_types(InstanceTypes=["t2.micro"])["InstanceTypes"][0]["MemoryInfo"]["SizeInMiB"] == 1024
    with pytest.raises(ClientError) as err:
        ec2a.describe_instance_types(InstanceTypes=["z9.nope"])
    assert _code(err) == "InvalidInstanceType"
    zones = ec2a.describe_availability_zones()["AvailabilityZones"]
    assert zones and zones[0]["State"] == "available" and zones[0]["RegionName"] == "us-east-1"
    attrs = {a["AttributeName"] for a in ec2a.describe_account_attributes()["AccountAttributes"]}
    assert {"supported-platforms", "max-instances"} <= attrs


def test_terminated_instances_disappear_after_the_visibility_window(tmp_path_factory: pytest.TempPathFactory) -> None:
    cfg = tmp_path_factory.mktemp("cfg") / "ec2gw.toml"
    cfg.write_text("[ec2gw]\nterminated_visible_seconds = 2\nmax_instances_per_user = 3\n")
    srv = LiveServer(tmp_path_factory.mktemp("short"), global_args=["--config", str(cfg)]).start()
    try:
        img = tmp_path_factory.mktemp("i") / "x.img"
        img.write_bytes(b"\0" * 4096)
        image = json.loads(srv.cli("admin", "image", "import", "ximg", str(img), "--public", "--json").stdout)["image_id"]
        ec2 = srv.client("ec2")
        with pytest.raises(ClientError) as err:
            ec2.run_instances(ImageId=image, MinCount=4, MaxCount=4)
        assert _code(err) == "InstanceLimitExceeded"
        assert _all(ec2) == []
        ids = _ids(ec2.run_instances(ImageId=image, MinCount=2, MaxCount=5))
        assert len(ids) == 3  # as many as the quota allows, at least MinCount
        ec2.terminate_instances(InstanceIds=ids)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=FAST)
        deadline = time.monotonic() + 30
        while _all(ec2) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _all(ec2) == []
        with pytest.raises(ClientError) as err:
            ec2.describe_instances(InstanceIds=ids[:1])
        assert _code(err) == "InvalidInstanceID.NotFound"
    finally:
        srv.stop()


def test_resizing_a_stopped_instance_needs_room_on_its_node(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A stopped instance keeps its share of its node, so a bigger type must fit the node: on a
    2-vCPU node holding two t2.micro, a stopped one cannot become a t2.medium (boto3 and the aws
    CLI), and can once the other is terminated."""
    root = tmp_path_factory.mktemp("resize")
    srv = LiveServer(root / "data").start()
    try:
        (root / "n1").mkdir()
        srv.cli("admin", "node", "add", "n1", "--uri", make_test_node_uri(root / "n1", 8192, 2),
                "--vcpus", "2", "--memory", "8192")
        img = root / "img.raw"
        img.write_bytes(b"\0" * 65536)
        image = json.loads(srv.cli("admin", "image", "import", "resize-img", str(img), "--public", "--json").stdout)["image_id"]
        creds = srv.make_user("resizer")
        ec2 = srv.client("ec2", creds)
        first, second = _ids(ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="t2.micro"))
        ec2.get_waiter("instance_running").wait(InstanceIds=[first, second], WaiterConfig=FAST)
        ec2.stop_instances(InstanceIds=[first])
        ec2.get_waiter("instance_stopped").wait(InstanceIds=[first], WaiterConfig=FAST)

        with pytest.raises(ClientError) as err:
            ec2.modify_instance_attribute(InstanceId=first, InstanceType={"Value": "t2.medium"})
        assert _code(err) == "InsufficientInstanceCapacity"
        assert "smaller type" in err.value.response["Error"]["Message"]
        bad = srv.aws("ec2", "modify-instance-attribute", "--instance-id", first, "--instance-type", "Value=m1.large",
                      creds=creds, check=False)
        assert bad.returncode != 0 and "InsufficientInstanceCapacity" in bad.stderr, bad.stderr
        assert _all(ec2, InstanceIds=[first])[0]["InstanceType"] == "t2.micro", "a refused resize changes nothing"

        srv.aws("ec2", "modify-instance-attribute", "--instance-id", first, "--instance-type", "Value=t2.small", creds=creds)
        assert _all(ec2, InstanceIds=[first])[0]["InstanceType"] == "t2.small", "more memory only: there is room"

        ec2.terminate_instances(InstanceIds=[second])
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[second], WaiterConfig=FAST)
        ec2.modify_instance_attribute(InstanceId=first, InstanceType={"Value": "t2.medium"})
        ec2.start_instances(InstanceIds=[first])
        ec2.get_waiter("instance_running").wait(InstanceIds=[first], WaiterConfig=FAST)
        assert _all(ec2, InstanceIds=[first])[0]["InstanceType"] == "t2.medium"
        with pytest.raises(ClientError) as err:
            ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.micro")
        assert _code(err) == "InsufficientInstanceCapacity", "the resized instance fills the node"
        ec2.terminate_instances(InstanceIds=[first])
    finally:
        srv.stop()
