"""Quotas set with `ec2gw admin quota set`, refused by EC2 (boto3, aws CLI, cloud-client) and by Cumulus (403)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.tools import add_user, cloud_client, failed, image_file, ok
from tests.live import LiveServer


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def ids(resp: dict[str, Any]) -> list[str]:
    return [i["InstanceId"] for i in resp["Instances"]]


def live(ec2: Any) -> list[str]:
    return [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")]


def test_instance_and_vcpu_quotas(server: LiveServer, tmp_path: Path) -> None:
    creds, bundle = add_user(server, "q-gil", "--group", "q-class")
    conf = bundle / "cloud.conf"
    image = ok(cloud_client(conf, "--transfer", "--sourcefile", str(image_file(tmp_path / "q.img", 4096)))).split()[-1]
    set_out = json.loads(server.cli("admin", "quota", "set", "q-class", "--instances", "2", "--vcpus", "3", "--json").stdout)
    assert (set_out["kind"], set_out["instances"], set_out["vcpus"], set_out["memory_mib"]) == ("group", 2, 3, "default")
    ec2 = server.client("ec2", creds)
    with pytest.raises(ClientError) as err:
        ec2.run_instances(ImageId=image, MinCount=3, MaxCount=3, InstanceType="t2.micro")
    assert code_of(err) == "InstanceLimitExceeded" and "allows running 2 instances" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="t2.medium")  # 4 vCPUs
    assert code_of(err) == "VcpuLimitExceeded" and "of 3" in err.value.response["Error"]["Message"]
    cli = server.aws("ec2", "run-instances", "--image-id", image, "--count", "3", "--instance-type", "t2.micro",
                     creds=creds, check=False)
    assert cli.returncode != 0 and "InstanceLimitExceeded" in cli.stderr
    assert ec2.describe_instances()["Reservations"] == []  # nothing partly created
    first = ids(ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.medium"))
    failed(cloud_client(conf, "--run", "--name", "q.img", "--type", "t2.medium"), "refused by your quota (VcpuLimitExceeded)")
    second = ids(ec2.run_instances(ImageId=image, MinCount=1, MaxCount=5, InstanceType="t2.micro"))
    assert len(second) == 1  # the rest of the vCPU and instance quota
    failed(cloud_client(conf, "--run", "--name", "q.img"), "refused by your quota (InstanceLimitExceeded)")
    assert sorted(live(ec2)) == sorted(first + second)
    shown = json.loads(server.cli("admin", "quota", "show", "q-gil", "--json").stdout)
    assert shown["limits"]["vcpus"] == 3 and shown["usage"]["vcpus"] == 3 and shown["usage"]["instances"] == 2
    # the user's own quota beats the group's
    server.cli("admin", "quota", "set", "user:q-gil", "--instances", "unlimited", "--vcpus", "unlimited")
    third = ids(ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="t2.medium"))
    ec2.terminate_instances(InstanceIds=first + second + third)


def test_resizing_a_stopped_instance_is_held_to_the_vcpu_quota(server: LiveServer, tmp_path: Path) -> None:
    """Stopped instances count in the quota, so ModifyInstanceAttribute may not grow one past it."""
    fast = {"Delay": 1, "MaxAttempts": 60}
    creds, _ = add_user(server, "q-ivy")
    server.cli("admin", "quota", "set", "q-ivy", "--vcpus", "2")
    image = json.loads(server.cli("admin", "image", "import", "q-ivy-img", str(image_file(tmp_path / "q-ivy.img", 4096)),
                                  "--public", "--json").stdout)["image_id"]
    ec2 = server.client("ec2", creds)
    stopped, running = ids(ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="t2.micro"))
    ec2.get_waiter("instance_running").wait(InstanceIds=[stopped, running], WaiterConfig=fast)
    ec2.stop_instances(InstanceIds=[stopped])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[stopped], WaiterConfig=fast)

    with pytest.raises(ClientError) as err:
        ec2.modify_instance_attribute(InstanceId=stopped, InstanceType={"Value": "t2.medium"})  # 1 more vCPU
    message = err.value.response["Error"]["Message"]
    assert code_of(err) == "VcpuLimitExceeded" and stopped in message and "2 of 2" in message, message
    cli = server.aws("ec2", "modify-instance-attribute", "--instance-id", stopped, "--instance-type", "Value=t2.medium",
                     creds=creds, check=False)
    assert cli.returncode != 0 and "VcpuLimitExceeded" in cli.stderr, cli.stderr
    attr = ec2.describe_instance_attribute(InstanceId=stopped, Attribute="instanceType")
    assert attr["InstanceType"]["Value"] == "t2.micro", "a refused resize changes nothing"

    ec2.terminate_instances(InstanceIds=[running])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[running], WaiterConfig=fast)
    ec2.modify_instance_attribute(InstanceId=stopped, InstanceType={"Value": "t2.medium"})
    ec2.modify_instance_attribute(InstanceId=stopped, InstanceType={"Value": "t2.micro"})  # shrinking back is fine
    attr = ec2.describe_instance_attribute(InstanceId=stopped, Attribute="instanceType")
    assert attr["InstanceType"]["Value"] == "t2.micro"
    ec2.terminate_instances(InstanceIds=[stopped])


def test_storage_quota_refuses_with_403_and_stores_nothing(server: LiveServer, tmp_path: Path) -> None:
    creds, bundle = add_user(server, "q-hal")
    server.cli("admin", "quota", "set", "q-hal", "--storage", "0.0002")  # 214748 bytes
    s3 = server.client("s3", creds)
    s3.create_bucket(Bucket="q-hal-bucket")
    s3.put_object(Bucket="q-hal-bucket", Key="first", Body=b"x" * 100_000)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="q-hal-bucket", Key="second", Body=b"y" * 150_000)
    assert code_of(err) == "QuotaExceeded" and err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "storage quota" in err.value.response["Error"]["Message"]
    upload = s3.create_multipart_upload(Bucket="q-hal-bucket", Key="multi")["UploadId"]
    with pytest.raises(ClientError) as err:
        s3.upload_part(Bucket="q-hal-bucket", Key="multi", UploadId=upload, PartNumber=1, Body=b"z" * (5 << 20))
    assert code_of(err) == "QuotaExceeded"
    s3.abort_multipart_upload(Bucket="q-hal-bucket", Key="multi", UploadId=upload)
    big = image_file(tmp_path / "q-hal.img", 300_000)
    cli = server.aws("s3", "cp", str(big), "s3://q-hal-bucket/by-cli", creds=creds, check=False)
    assert cli.returncode != 0 and "QuotaExceeded" in cli.stderr
    conf = bundle / "cloud.conf"
    failed(cloud_client(conf, "--transfer", "--sourcefile", str(big)), "refused by your quota (QuotaExceeded)")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="q-hal-bucket").get("Contents", [])] == ["first"]
    assert s3.list_objects_v2(Bucket="Repo", Prefix="VMS/q-hal/").get("KeyCount") == 0
    assert "q-hal.img" not in ok(cloud_client(conf, "--list"))
    # freeing space makes room again
    s3.delete_object(Bucket="q-hal-bucket", Key="first")
    s3.put_object(Bucket="q-hal-bucket", Key="second", Body=b"y" * 150_000)

