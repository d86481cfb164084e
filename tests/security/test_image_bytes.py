"""An image never exposes bytes its registrant cannot read now (issue 12, item 1).

Before: bob registered alice's public-read object as ami-X; alice overwrote it with secret bytes
and made it private; bob launched ami-X and saved it with CreateImage, and `Repo/VMS/bob/<name>`
held alice's secret. Now an image is the bytes its owner registered: an object replaced by anyone
but the image's owner fails the image (Client.ObjectReplaced), and every use of an image (launch,
copy to a node, CreateImage's copy) checks again that the image's owner may read its object.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.security.conftest import Tenant
from tests.security.s3_tenants import code, denied

PUBLIC = b"QFI\xfb" + b"\0" * 4092  # a harmless public disk
SECRET = b"alice's secret disk " * 200


def wait(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def image(ec2: Any, image_id: str) -> dict[str, Any]:
    return ec2.describe_images(ImageIds=[image_id])["Images"][0]  # type: ignore[no-any-return]


def run(ec2: Any, image_id: str) -> str:
    res = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t2.micro")
    return str(res["Instances"][0]["InstanceId"])


def state(ec2: Any, iid: str) -> str:
    return str(ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"])


@pytest.fixture
def pair(new_user: Callable[[str], Tenant]) -> tuple[Tenant, Tenant]:
    """A fresh alice and bob (these tests leave images and instances behind), and a bucket of alice's."""
    return new_user("alice"), new_user("bob")


@pytest.fixture
def bucket(pair: tuple[Tenant, Tenant]) -> str:
    name = f"img-{uuid.uuid4().hex[:12]}"
    pair[0].s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def shared(pair: tuple[Tenant, Tenant], bucket: str) -> str:
    """alice's public-read disk, `bucket/disk.img`."""
    pair[0].s3.put_object(Bucket=bucket, Key="disk.img", Body=PUBLIC, ACL="public-read")
    return f"{bucket}/disk.img"


def test_replaced_object_fails_the_image(pair: tuple[Tenant, Tenant], shared: str) -> None:
    """The reproduction: alice's overwrite (secret, private) never reaches bob's image."""
    alice, bob = pair
    s3_alice, s3_bob, ec2b = alice.s3, bob.s3, bob.ec2
    bucket, key = shared.split("/", 1)
    ami = ec2b.register_image(Name=f"from-alice-{uuid.uuid4().hex[:6]}", ImageLocation=shared)["ImageId"]
    s3_alice.put_object(Bucket=bucket, Key=key, Body=SECRET)  # private
    assert denied(s3_bob.get_object, Bucket=bucket, Key=key) == ("AccessDenied", 403)
    img = image(ec2b, ami)
    assert img["State"] == "failed" and img["StateReason"]["Code"] == "Client.ObjectReplaced"
    with pytest.raises(ClientError) as e:
        run(ec2b, ami)
    assert code(e) == ("InvalidAMIID.Unavailable", 400)
    # made public again by alice: still not the bytes bob registered; he registers anew if he wants them
    s3_alice.put_object_acl(Bucket=bucket, Key=key, ACL="public-read")
    assert image(ec2b, ami)["State"] == "failed"


def test_access_is_checked_at_every_use(pair: tuple[Tenant, Tenant], shared: str) -> None:
    """alice makes the very object bob registered private: bob can no longer launch it, and a
    CreateImage of the instance he started before does not copy it."""
    alice, bob = pair
    s3_alice, s3_bob, ec2b = alice.s3, bob.s3, bob.ec2
    bucket, key = shared.split("/", 1)
    ami = ec2b.register_image(Name=f"acl-{uuid.uuid4().hex[:6]}", ImageLocation=shared)["ImageId"]
    iid = run(ec2b, ami)  # readable now: launches
    wait(f"{iid} running", lambda: state(ec2b, iid) == "running")
    s3_alice.put_object_acl(Bucket=bucket, Key=key, ACL="private")
    assert denied(s3_bob.get_object, Bucket=bucket, Key=key) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as e:
        run(ec2b, ami)
    assert code(e) == ("InvalidAMIID.Unavailable", 400)
    assert "may no longer read" in e.value.response["Error"]["Message"]
    name = f"saved-{uuid.uuid4().hex[:6]}"
    saved = ec2b.create_image(InstanceId=iid, Name=name, NoReboot=True)["ImageId"]
    done = wait(f"{saved} settled", lambda: (i := image(ec2b, saved))["State"] != "pending" and i)
    assert done["State"] == "failed" and "no longer available" in done["StateReason"]["Message"], done
    assert denied(s3_bob.get_object, Bucket="Repo", Key=f"VMS/{bob.name}/{name}") == ("NoSuchKey", 404)
    ec2b.terminate_instances(InstanceIds=[iid])


def test_public_image_replaced_by_another_user(pair: tuple[Tenant, Tenant], bucket: str) -> None:
    """alice's public image from her object in her public-read-write bucket: bob's overwrite (bucket
    WRITE lets him) fails the image rather than making everyone boot bob's bytes."""
    alice, bob = pair
    s3_alice, s3_bob, ec2a, ec2b = alice.s3, bob.s3, alice.ec2, bob.ec2
    s3_alice.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    s3_alice.put_object(Bucket=bucket, Key="base.img", Body=PUBLIC)
    ami = ec2a.register_image(Name=f"base-{uuid.uuid4().hex[:6]}", ImageLocation=f"{bucket}/base.img")["ImageId"]
    ec2a.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"Group": "all"}]})
    assert image(ec2b, ami)["State"] == "available"
    s3_bob.put_object(Bucket=bucket, Key="base.img", Body=b"QFI\xfb bob's trojan", ACL="public-read")
    img = image(ec2b, ami)
    assert img["State"] == "failed" and img["StateReason"]["Code"] == "Client.ObjectReplaced"
    for ec2 in (ec2a, ec2b):
        with pytest.raises(ClientError) as e:
            run(ec2, ami)
        assert code(e) == ("InvalidAMIID.Unavailable", 400)
    # the image's owner uploads it again: her bytes, available again
    s3_alice.put_object(Bucket=bucket, Key="base.img", Body=PUBLIC)
    assert image(ec2b, ami)["State"] == "available"


def test_registration_needs_read_now(pair: tuple[Tenant, Tenant], bucket: str) -> None:
    alice, bob = pair
    alice.s3.put_object(Bucket=bucket, Key="private.img", Body=SECRET)
    with pytest.raises(ClientError) as e:
        bob.ec2.register_image(Name=f"steal-{uuid.uuid4().hex[:6]}", ImageLocation=f"{bucket}/private.img")
    assert code(e)[0] == "InvalidManifest"
