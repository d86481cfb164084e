"""Names and ids a tenant gives are checked whole: a value with a newline after it is refused, not
taken as the value before it.

Python's `$` matches before a final newline, so a pattern `^...$` used with re.match let
"probe-data\\n" pass as a bucket name (a look-alike of another tenant's "probe-data", listed by
ListBuckets with the newline), "/dev/sdf\\n" as a device and "vol-...\\n" as a volume id.
"""

from __future__ import annotations

import urllib.request

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.functional.s3_fixtures import empty_and_delete, new_bucket_name
from tests.security import raw_answer, refused
from tests.security.conftest import Tenant, World, unique


def _s3_raw(t: Tenant, method: str, path: str) -> tuple[int, str]:
    """A signed S3 request with `path` sent as it is (boto3 refuses such bucket names itself)."""
    url = t.server.s3_url + path
    req = AWSRequest(method=method, url=url, data=b"")
    req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    S3SigV4Auth(Credentials(t.access_key, t.secret_key), "s3", "us-east-1").add_auth(req)
    return raw_answer(urllib.request.Request(url, method=method, headers=dict(req.headers.items())))


def test_a_bucket_name_with_a_newline_is_refused(world: World) -> None:
    name = new_bucket_name("whole")
    world.alice.s3.create_bucket(Bucket=name)
    try:
        for odd in (f"{name}%0A", f"{new_bucket_name('whole')}%0A", f"{name}%0D%0A"):
            status, body = _s3_raw(world.bob, "PUT", "/" + odd)
            assert status == 400 and "<Code>InvalidBucketName</Code>" in body, (odd, status, body[:300])
        names = [b["Name"] for b in world.bob.s3.list_buckets()["Buckets"]]
        assert not [n for n in names if n.startswith(name) or "\n" in n], names
        # an existing bucket's name with a newline after it is no way to it either
        status, body = _s3_raw(world.bob, "GET", f"/{name}%0A")
        assert 400 <= status < 500 and "<Code>" in body, (status, body[:300])
    finally:
        empty_and_delete(world.alice.s3, name)


def test_ids_and_devices_with_a_newline_are_malformed(world: World) -> None:
    ec2 = world.bob.ec2
    vol, inst = "vol-" + "0" * 17, "i-" + "0" * 17
    code, status, _ = refused(ec2.describe_volumes, VolumeIds=[vol + "\n"])
    assert code.endswith(".Malformed") and status == 400, code
    code, _, _ = refused(ec2.describe_instances, InstanceIds=[inst + "\n"])
    assert code.endswith(".Malformed"), code
    _, _, message = refused(ec2.attach_volume, VolumeId=vol, InstanceId=inst, Device="/dev/sdf\n",
                            codes={"InvalidParameterValue"})
    assert "device" in message.lower()
    refused(ec2.run_instances, ImageId=world.public_image, MinCount=1, MaxCount=1, InstanceType="t2.micro",
            BlockDeviceMappings=[{"DeviceName": "/dev/sdf\n", "Ebs": {"VolumeSize": 1}}],
            codes={"InvalidBlockDeviceMapping"})
    assert not [r for r in ec2.describe_instances(Filters=[{"Name": "image-id", "Values": [world.public_image]},
                                                           {"Name": "instance-state-name", "Values": ["pending"]}])[
        "Reservations"]]


def test_image_names_and_devices_with_a_newline_are_refused(world: World) -> None:
    ec2 = world.bob.ec2
    refused(ec2.register_image, Name=unique("img") + "\n", ImageLocation="no-such-bucket/disk.img",
            codes={"InvalidAMIName.Malformed"})
    refused(ec2.register_image, Name=unique("img"), ImageLocation="no-such-bucket/disk.img",
            RootDeviceName="/dev/vda\n", codes={"InvalidParameterValue"})
    refused(ec2.register_image, Name=unique("img"), RootDeviceName="/dev/sda1\n",
            BlockDeviceMappings=[{"DeviceName": "/dev/sda1\n", "Ebs": {"SnapshotId": "snap-" + "0" * 17}}],
            codes={"InvalidParameterValue"})
