"""Images through Cumulus: upload with S3, RegisterImage with bucket/key, what deleting the object does,
and `ec2gw admin image import` putting files into the repository."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import alice, error_code, s3_alice  # noqa: F401 - fixtures
from tests.live import Creds, LiveServer

QCOW2_HEADER = b"QFI\xfb\x00\x00\x00\x03" + b"\x00" * 504


def _image(ec2: Any, image_id: str) -> dict[str, Any]:
    return ec2.describe_images(ImageIds=[image_id])["Images"][0]  # type: ignore[no-any-return]


def test_register_an_uploaded_image_and_delete_its_object(server: LiveServer, alice: Creds, s3_alice: Any) -> None:
    ec2 = server.client("ec2", alice)
    key = f"VMS/{alice.name}/disk.qcow2"
    s3_alice.put_object(Bucket="Repo", Key=key, Body=QCOW2_HEADER + os.urandom(4096))
    image_id = ec2.register_image(Name="alice disk", ImageLocation=f"Repo/{key}")["ImageId"]
    assert image_id.startswith("ami-")
    img = _image(ec2, image_id)
    assert img["State"] == "available" and img["ImageLocation"] == f"Repo/{key}"
    # the object is gone: the image is unavailable (failed), with the reason
    s3_alice.delete_object(Bucket="Repo", Key=key)
    img = _image(ec2, image_id)
    assert img["State"] == "failed"
    assert img["StateReason"]["Code"] == "Client.ObjectDeleted"
    # uploaded again: available again
    s3_alice.put_object(Bucket="Repo", Key=key, Body=QCOW2_HEADER)
    assert _image(ec2, image_id)["State"] == "available"
    ec2.deregister_image(ImageId=image_id)
    s3_alice.delete_object(Bucket="Repo", Key=key)


def test_register_refuses_objects_one_may_not_read(server: LiveServer, alice: Creds) -> None:
    admin_s3 = server.client("s3")
    admin_s3.put_object(Bucket="Repo", Key="VMS/admin/private.img", Body=b"\0" * 1024)
    with pytest.raises(ClientError) as e:
        server.client("ec2", alice).register_image(Name="not mine", ImageLocation="Repo/VMS/admin/private.img")
    assert error_code(e.value)[0] == "InvalidManifest"


def test_admin_image_import(server: LiveServer, alice: Creds, s3_alice: Any, tmp_path: Path) -> None:
    disk = tmp_path / "base.img"
    disk.write_bytes(os.urandom(3 * 1024 * 1024))
    out = server.cli("admin", "image", "import", "shared base", str(disk), "--public", "--json")
    image_id = json.loads(out.stdout)["image_id"]
    got = s3_alice.get_object(Bucket="Repo", Key="VMS/common/shared base")
    assert got["Body"].read() == disk.read_bytes()
    img = _image(server.client("ec2", alice), image_id)
    assert img["State"] == "available" and img["Public"] is True
    out = server.cli("admin", "image", "import", "admin only", str(disk), "--json")
    private_id = json.loads(out.stdout)["image_id"]
    assert server.client("s3").head_object(Bucket="Repo", Key="VMS/admin/admin only")["ContentLength"] == 3 << 20
    with pytest.raises(ClientError) as e:
        s3_alice.get_object(Bucket="Repo", Key="VMS/admin/admin only")
    assert error_code(e.value) == ("AccessDenied", 403)
    assert _image(server.client("ec2"), private_id)["State"] == "available"
