"""No user name can own a shared area (issue 12, item 4).

`ec2gw admin user add common` made a user whose own prefix `Repo/VMS/common/` is where the public
images live: that user could overwrite them. Names that mean something in the image layout are
refused, and only administrators write under `Repo/VMS/common/`, whatever the caller is called and
whatever grants the repository bucket has.
"""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.live import Creds, LiveServer
from tests.security.s3_tenants import denied, s3_anon, server  # noqa: F401 - fixtures

SHARED = b"the administrator's public image" + b"\0" * 1000
SHARED_NAME = f"shared base {uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize("name", ["common", "Common", "COMMON", "VMS", "vms", "Repo"])
def test_layout_names_are_refused(server: LiveServer, name: str) -> None:
    out = server.cli("admin", "user", "add", name, "--json", check=False)
    assert out.returncode != 0
    assert f"the user name {name!r} is reserved" in out.stderr and "choose another name" in out.stderr
    listed = json.loads(server.cli("admin", "user", "list", "--json").stdout)
    assert name not in {u["name"] for u in listed}


def _legacy_user(server: LiveServer, name: str) -> Creds:
    """A user made before names were reserved (straight into the service's database)."""
    code = (
        "import json, sys\n"
        "from ec2gw import accounts\n"
        "from ec2gw.cli.main import CliState, open_app\n"
        "accounts.RESERVED_NAMES = frozenset()\n"
        "app = open_app(CliState(sys.argv[1], None, None))\n"
        "with app.db.session(write=True) as s:\n"
        "    rec = accounts.create_user(s, sys.argv[2], reserved=())\n"
        "print(json.dumps(rec.as_dict()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(server.data_dir), name], capture_output=True, text=True,
                         timeout=60, check=True)
    data = json.loads(out.stdout)
    return Creds(name, data["access_key_id"], data["secret_access_key"])


@pytest.fixture(scope="module")
def shared_image(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    disk: Path = tmp_path_factory.mktemp("img") / "base.img"
    disk.write_bytes(SHARED)
    out = server.cli("admin", "image", "import", SHARED_NAME, str(disk), "--public", "--json")
    return str(json.loads(out.stdout)["image_id"])


def test_only_administrators_write_shared_images(server: LiveServer, bob: Creds, s3_anon: Any,
                                                 shared_image: str) -> None:
    key = f"VMS/common/{SHARED_NAME}"
    common = _legacy_user(server, "common")
    admin_s3 = server.client("s3")
    # the repository open for writing to every signed-in user: still not the shared area
    admin_s3.put_bucket_acl(Bucket="Repo", GrantWrite='uri="http://acs.amazonaws.com/groups/global/AuthenticatedUsers"',
                            GrantFullControl=f'id="{admin_s3.list_buckets()["Owner"]["ID"]}"')
    try:
        for who in (common, bob):
            s3 = server.client("s3", who)
            assert s3.get_object(Bucket="Repo", Key=key)["Body"].read() == SHARED  # everyone reads it
            assert denied(s3.put_object, Bucket="Repo", Key=key, Body=b"trojan") == ("AccessDenied", 403)
            assert denied(s3.put_object, Bucket="Repo", Key="VMS/common/new", Body=b"trojan") == ("AccessDenied", 403)
            assert denied(s3.delete_object, Bucket="Repo", Key=key) == ("AccessDenied", 403)
            assert denied(s3.create_multipart_upload, Bucket="Repo", Key=key) == ("AccessDenied", 403)
            assert denied(s3.copy_object, Bucket="Repo", Key=key,
                          CopySource={"Bucket": "Repo", "Key": key}, MetadataDirective="REPLACE") == ("AccessDenied", 403)
            assert denied(s3.put_object_acl, Bucket="Repo", Key=key, ACL="private") == ("AccessDenied", 403)
            result = s3.delete_objects(Bucket="Repo", Delete={"Objects": [{"Key": key}]})
            assert [e["Code"] for e in result["Errors"]] == ["AccessDenied"]
        assert denied(s3_anon.put_object, Bucket="Repo", Key=key, Body=b"trojan") == ("AccessDenied", 403)
        # the user named common has no prefix of its own there: that prefix is the shared area
        s3c = server.client("s3", common)
        assert denied(s3c.put_object, Bucket="Repo", Key="VMS/common/mine", Body=b"x") == ("AccessDenied", 403)
    finally:
        admin_s3.put_bucket_acl(Bucket="Repo", ACL="private")
    assert admin_s3.get_object(Bucket="Repo", Key=key)["Body"].read() == SHARED
    img = server.client("ec2", bob).describe_images(ImageIds=[shared_image])["Images"][0]
    assert img["State"] == "available" and img["Public"] is True
    # an administrator still publishes there
    admin_s3.put_object(Bucket="Repo", Key="VMS/common/by-admin", Body=b"ok")
