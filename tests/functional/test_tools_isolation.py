"""Two users on one live server cannot see or touch each other's instances, images, keys or buckets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.tools import add_user, cloud_client, failed, image_file, ok, rows
from tests.live import LiveServer


def code(call: Any, **kw: Any) -> str:
    """The error code `call(**kw)` fails with (the test fails if it succeeds)."""
    with pytest.raises(ClientError) as err:
        call(**kw)
    return str(err.value.response["Error"]["Code"])


def test_two_users_are_isolated(server: LiveServer, tmp_path: Path) -> None:
    ivy, ivy_bundle = add_user(server, "iso-ivy")
    jon, jon_bundle = add_user(server, "iso-jon")
    ivy_conf, jon_conf = ivy_bundle / "cloud.conf", jon_bundle / "cloud.conf"
    a_ec2, a_s3 = server.client("ec2", ivy), server.client("s3", ivy)
    b_ec2, b_s3 = server.client("ec2", jon), server.client("s3", jon)
    # ivy's things: an image (via cloud-client), a key pair, an instance, a bucket with an object
    image = ok(cloud_client(ivy_conf, "--transfer", "--sourcefile", str(image_file(tmp_path / "ivy.img", 8192)))).split()[-1]
    a_ec2.create_key_pair(KeyName="ivy-key")
    inst = a_ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, KeyName="ivy-key")["Instances"][0]["InstanceId"]
    a_s3.create_bucket(Bucket="iso-ivy-bucket")
    a_s3.put_object(Bucket="iso-ivy-bucket", Key="secret.txt", Body=b"ivy's")

    # instances
    assert inst not in json.dumps(b_ec2.describe_instances())
    assert code(b_ec2.describe_instances, InstanceIds=[inst]) == "InvalidInstanceID.NotFound"
    assert code(b_ec2.terminate_instances, InstanceIds=[inst]) == "InvalidInstanceID.NotFound"
    assert code(b_ec2.stop_instances, InstanceIds=[inst]) == "InvalidInstanceID.NotFound"
    assert code(b_ec2.create_tags, Resources=[inst], Tags=[{"Key": "lease:hours", "Value": "1"}]) == "InvalidInstanceID.NotFound"
    failed(cloud_client(jon_conf, "--terminate", "--handle", inst), f"you have no instance {inst}")
    failed(cloud_client(jon_conf, "--save", "--handle", inst), f"you have no instance {inst}")
    assert inst not in cloud_client(jon_conf, "--status").stdout
    # images
    assert image not in json.dumps(b_ec2.describe_images(Owners=["self"])) + json.dumps(b_ec2.describe_images())
    assert code(b_ec2.describe_images, ImageIds=[image]) == "InvalidAMIID.NotFound"
    assert code(b_ec2.run_instances, ImageId=image, MinCount=1, MaxCount=1) == "InvalidAMIID.NotFound"
    assert code(b_ec2.deregister_image, ImageId=image) in ("InvalidAMIID.NotFound", "AuthFailure")
    assert code(b_ec2.modify_image_attribute, ImageId=image,
                LaunchPermission={"Add": [{"Group": "all"}]}) in ("InvalidAMIID.NotFound", "AuthFailure")
    assert "ivy.img" not in cloud_client(jon_conf, "--list").stdout
    failed(cloud_client(jon_conf, "--run", "--name", "ivy.img"), "no image named 'ivy.img'")
    failed(cloud_client(jon_conf, "--delete", "--name", "ivy.img"), "you have no image named 'ivy.img'")
    # key pairs
    assert [k["KeyName"] for k in b_ec2.describe_key_pairs()["KeyPairs"]] == []
    assert code(b_ec2.describe_key_pairs, KeyNames=["ivy-key"]) == "InvalidKeyPair.NotFound"
    assert code(b_ec2.run_instances, ImageId=image, MinCount=1, MaxCount=1, KeyName="ivy-key") in (
        "InvalidKeyPair.NotFound", "InvalidAMIID.NotFound")
    try:
        b_ec2.delete_key_pair(KeyName="ivy-key")  # EC2 answers success for a name it does not know
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "InvalidKeyPair.NotFound"
    assert [k["KeyName"] for k in a_ec2.describe_key_pairs()["KeyPairs"]] == ["ivy-key"]
    # buckets and objects, the image repository included
    assert "iso-ivy-bucket" not in [b["Name"] for b in b_s3.list_buckets()["Buckets"]]
    assert code(b_s3.get_object, Bucket="iso-ivy-bucket", Key="secret.txt") == "AccessDenied"
    assert code(b_s3.put_object, Bucket="iso-ivy-bucket", Key="planted", Body=b"x") == "AccessDenied"
    assert code(b_s3.delete_object, Bucket="iso-ivy-bucket", Key="secret.txt") == "AccessDenied"
    assert code(b_s3.list_objects_v2, Bucket="iso-ivy-bucket") == "AccessDenied"
    assert code(b_s3.get_object, Bucket="Repo", Key="VMS/iso-ivy/ivy.img") == "AccessDenied"
    assert code(b_s3.put_object, Bucket="Repo", Key="VMS/iso-ivy/planted.img", Body=b"x") == "AccessDenied"
    assert code(b_s3.list_objects_v2, Bucket="Repo", Prefix="VMS/iso-ivy/") == "AccessDenied"
    assert a_s3.get_object(Bucket="iso-ivy-bucket", Key="secret.txt")["Body"].read() == b"ivy's"
    assert [o["Key"] for o in a_s3.list_objects_v2(Bucket="Repo", Prefix="VMS/iso-ivy/")["Contents"]] == ["VMS/iso-ivy/ivy.img"]
    # ivy still has everything; the administrator sees both users' instances
    assert a_ec2.describe_instances(InstanceIds=[inst])["Reservations"][0]["Instances"][0]["State"]["Name"] in (
        "pending", "running")
    assert [r[0] for r in rows(ok(cloud_client(ivy_conf, "--list")))].count("ivy.img") == 1
    by_user = json.loads(server.cli("admin", "instance", "list", "--user", "iso-ivy", "--json").stdout)
    assert [r["instance_id"] for r in by_user] == [inst]
    a_ec2.terminate_instances(InstanceIds=[inst])
