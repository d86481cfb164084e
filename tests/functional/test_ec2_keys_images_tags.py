"""Key pairs, images, tags and security groups through boto3 and the aws CLI against a live server."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.live import Creds, LiveServer

QCOW2_HEAD = b"QFI\xfb\x00\x00\x00\x03"


@pytest.fixture(scope="module")
def carol(server: LiveServer) -> Creds:
    return server.make_user("kit-carol")


@pytest.fixture(scope="module")
def dave(server: LiveServer) -> Creds:
    return server.make_user("kit-dave")


@pytest.fixture(scope="module")
def ec2c(server: LiveServer, carol: Creds) -> Any:
    return server.client("ec2", carol)


@pytest.fixture(scope="module")
def ec2d(server: LiveServer, dave: Creds) -> Any:
    return server.client("ec2", dave)


def code_of(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    return str(exc.value.response["Error"]["Code"])


def ids_of(resp: dict[str, Any]) -> list[str]:
    return [i["ImageId"] for i in resp["Images"]]


# --- key pairs -------------------------------------------------------------------------------


def test_key_pair_life_cycle(ec2c: Any, ec2d: Any) -> None:
    made = ec2c.create_key_pair(KeyName="fn-rsa")
    key = serialization.load_pem_private_key(made["KeyMaterial"].encode(), None)
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert made["KeyFingerprint"] == ":".join(f"{b:02x}" for b in hashlib.sha1(pkcs8).digest())
    ed = ec2c.create_key_pair(KeyName="fn-ed", KeyType="ed25519",
                              TagSpecifications=[{"ResourceType": "key-pair", "Tags": [{"Key": "use", "Value": "ssh"}]}])
    assert ed["KeyFingerprint"].endswith("=") and ed["Tags"] == [{"Key": "use", "Value": "ssh"}]
    listed = {k["KeyName"]: k for k in ec2c.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]}
    assert set(listed) == {"fn-rsa", "fn-ed"} and listed["fn-ed"]["PublicKey"].startswith("ssh-ed25519 ")
    assert code_of(ec2c.create_key_pair, KeyName="fn-rsa") == "InvalidKeyPair.Duplicate"
    assert code_of(ec2d.describe_key_pairs, KeyNames=["fn-rsa"]) == "InvalidKeyPair.NotFound"
    assert ec2c.delete_key_pair(KeyName="fn-rsa")["Return"] is True
    assert ec2c.delete_key_pair(KeyName="fn-rsa")["Return"] is True
    assert ec2c.delete_key_pair(KeyPairId=ed["KeyPairId"])["KeyPairId"] == ed["KeyPairId"]
    assert ec2c.describe_key_pairs()["KeyPairs"] == []


def test_import_key_pair_with_the_aws_cli(server: LiveServer, carol: Creds, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = tmp_path / "id_rsa.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
                    + b" carol@laptop\n")
    out = server.aws("ec2", "import-key-pair", "--key-name", "fn-imported", "--public-key-material", f"fileb://{pub}",
                     creds=carol)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert json.loads(out.stdout)["KeyFingerprint"] == ":".join(f"{b:02x}" for b in hashlib.md5(spki).digest())
    listed = json.loads(server.aws("ec2", "describe-key-pairs", "--key-names", "fn-imported", creds=carol).stdout)
    assert listed["KeyPairs"][0]["KeyType"] == "rsa"
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-rsa not-base64\n")
    failed = server.aws("ec2", "import-key-pair", "--key-name", "fn-bad", "--public-key-material", f"fileb://{bad}",
                        creds=carol, check=False)
    assert failed.returncode != 0 and "InvalidKey.Format" in failed.stderr
    server.aws("ec2", "delete-key-pair", "--key-name", "fn-imported", creds=carol)


def test_import_ed25519_with_boto3(ec2c: Any) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    r = ec2c.import_key_pair(KeyName="fn-ed-import", PublicKeyMaterial=line)
    assert r["KeyFingerprint"] == base64.b64encode(hashlib.sha256(base64.b64decode(line.split()[1])).digest()).decode()
    ec2c.delete_key_pair(KeyPairId=r["KeyPairId"])


# --- security groups -------------------------------------------------------------------------


def test_default_security_group(ec2c: Any, ec2d: Any) -> None:
    groups = ec2c.describe_security_groups()["SecurityGroups"]
    assert [g["GroupName"] for g in groups] == ["default"]
    daves = ec2d.describe_security_groups()["SecurityGroups"]
    assert len(groups[0]["OwnerId"]) == 12 and groups[0]["OwnerId"] != daves[0]["OwnerId"]
    assert code_of(ec2d.describe_security_groups, GroupIds=[groups[0]["GroupId"]]) == "InvalidGroup.NotFound"
    assert ec2c.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"] == groups[0]["GroupId"]


# --- images ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def public_image(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("kit-img") / "kit-base.img"
    path.write_bytes(b"\0" * 65536)
    out = server.cli("admin", "image", "import", "kit-base", str(path), "--public", "--json")
    return str(json.loads(out.stdout)["image_id"])


def test_admin_imported_public_image_is_visible_to_everyone(ec2c: Any, ec2d: Any, public_image: str) -> None:
    for client in (ec2c, ec2d):
        img = client.describe_images(ImageIds=[public_image])["Images"][0]
        assert img["Public"] is True and img["Name"] == "kit-base" and img["State"] == "available"
        assert public_image in ids_of(client.describe_images(ExecutableUsers=["all"]))
    assert code_of(ec2c.deregister_image, ImageId=public_image) == "AuthFailure"
    ec2c.get_waiter("image_available").wait(ImageIds=[public_image], WaiterConfig={"Delay": 1, "MaxAttempts": 5})


def test_register_share_and_deregister_an_uploaded_image(server: LiveServer, carol: Creds, ec2c: Any, ec2d: Any) -> None:
    s3 = server.client("s3", carol)
    bucket = "kit-carol-images"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="disks/web.qcow2", Body=QCOW2_HEAD + b"\0" * 4088)
    ami = ec2c.register_image(Name="web", ImageLocation=f"{bucket}/disks/web.qcow2", Description="web server",
                              Architecture="x86_64")["ImageId"]
    img = ec2c.describe_images(ImageIds=[ami])["Images"][0]
    assert img["ImageLocation"] == f"{bucket}/disks/web.qcow2" and img["Description"] == "web server"
    assert code_of(ec2c.register_image, Name="web", ImageLocation=f"{bucket}/disks/web.qcow2") == "InvalidAMIName.Duplicate"
    assert code_of(ec2d.register_image, Name="stolen", ImageLocation=f"{bucket}/disks/web.qcow2") == "InvalidManifest"
    assert code_of(ec2d.describe_images, ImageIds=[ami]) == "InvalidAMIID.NotFound"
    # deleting the object makes the image fail; uploading it again makes it available again
    s3.delete_object(Bucket=bucket, Key="disks/web.qcow2")
    img = ec2c.describe_images(ImageIds=[ami])["Images"][0]
    assert img["State"] == "failed" and img["StateReason"]["Code"] == "Client.ObjectDeleted"
    s3.put_object(Bucket=bucket, Key="disks/web.qcow2", Body=QCOW2_HEAD + b"\0" * 8184)
    assert ec2c.describe_images(ImageIds=[ami])["Images"][0]["State"] == "available"
    ec2c.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"Group": "all"}]})
    assert ec2d.describe_images(ImageIds=[ami])["Images"][0]["Public"] is True
    ec2c.create_tags(Resources=[ami], Tags=[{"Key": "tier", "Value": "web"}])
    assert ids_of(ec2c.describe_images(Filters=[{"Name": "tag:tier", "Values": ["web"]}])) == [ami]
    assert ec2c.deregister_image(ImageId=ami)["Return"] is True
    assert code_of(ec2d.describe_images, ImageIds=[ami]) == "InvalidAMIID.NotFound"


def test_describe_images_paginator_and_cli(server: LiveServer, carol: Creds, ec2c: Any, tmp_path: Path) -> None:
    made = []
    for i in range(7):
        path = tmp_path / f"img{i}"
        path.write_bytes(b"\0" * 512)
        out = server.cli("admin", "image", "import", f"kit-page-{i}", str(path), "--owner", "kit-carol", "--json")
        made.append(json.loads(out.stdout)["image_id"])
    pages = list(ec2c.get_paginator("describe_images").paginate(Owners=["self"], PaginationConfig={"PageSize": 5}))
    assert all(len(p["Images"]) <= 5 for p in pages) and len(pages) >= 2
    assert set(made) <= {i for p in pages for i in ids_of(p)}
    out = server.aws("ec2", "describe-images", "--owners", "self", "--filters", "Name=name,Values=kit-page-*",
                     creds=carol)
    assert sorted(i["ImageId"] for i in json.loads(out.stdout)["Images"]) == sorted(made)


# --- tags ------------------------------------------------------------------------------------


def test_tags_and_describe_tags_paginator(server: LiveServer, carol: Creds, ec2c: Any, ec2d: Any) -> None:
    sg = ec2c.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    key = ec2c.create_key_pair(KeyName="fn-tagged")["KeyPairId"]
    ec2c.create_tags(Resources=[sg, key], Tags=[{"Key": f"t{i}", "Value": str(i)} for i in range(6)])
    tags = [t for p in ec2c.get_paginator("describe_tags").paginate(
        Filters=[{"Name": "resource-id", "Values": [sg, key]}], PaginationConfig={"PageSize": 5}) for t in p["Tags"]]
    assert len(tags) == 12
    assert code_of(ec2d.create_tags, Resources=[sg], Tags=[{"Key": "x", "Value": "y"}]) == "InvalidGroup.NotFound"
    assert code_of(ec2c.create_tags, Resources=["vol-12345678"], Tags=[{"Key": "x", "Value": "y"}]) == "InvalidVolume.NotFound"
    assert code_of(ec2c.create_tags, Resources=["vpc-12345678"], Tags=[{"Key": "x", "Value": "y"}]) == "InvalidID"
    assert code_of(ec2c.describe_tags, Filters=[{"Name": "bogus", "Values": ["1"]}]) == "InvalidParameterValue"
    server.aws("ec2", "delete-tags", "--resources", sg, "--tags", "Key=t0", "Key=t1,Value=wrong", creds=carol)
    left = {t["Key"] for t in ec2c.describe_tags(Filters=[{"Name": "resource-id", "Values": [sg]}])["Tags"]}
    assert left == {"t1", "t2", "t3", "t4", "t5"}
    ec2c.delete_key_pair(KeyName="fn-tagged")
    assert ec2c.describe_tags(Filters=[{"Name": "resource-type", "Values": ["key-pair"]}])["Tags"] == []
