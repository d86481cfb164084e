"""Every cloud-client verb, run as the real console script against a live server with a user's bundle."""

from __future__ import annotations

import configparser
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.tools import (
    add_user,
    clean_env,
    cloud_client,
    failed,
    image_file,
    instance,
    ok,
    rows,
    tags,
)
from tests.live import Creds, LiveServer, free_port

FAST = {"Delay": 1, "MaxAttempts": 60}


@pytest.fixture(scope="module")
def carol(server: LiveServer) -> tuple[Creds, Path]:
    return add_user(server, "cc-carol")


@pytest.fixture(scope="module")
def conf(carol: tuple[Creds, Path]) -> Path:
    return carol[1] / "cloud.conf"


@pytest.fixture(scope="module")
def public_image(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A public image the administrator published with cloud-client --transfer --common."""
    admin_bundle = Path(json.loads(server.cli("admin", "user", "bundle", "admin", "--json").stdout)["bundle_dir"])
    src = image_file(tmp_path_factory.mktemp("pub") / "cc-shared.img", 64 * 1024)
    out = ok(cloud_client(admin_bundle / "cloud.conf", "--transfer", "--sourcefile", str(src), "--common"))
    assert "(public)" in out and "Repo/VMS/common/cc-shared.img" in out
    return out.split()[-2]


def edited_conf(conf: Path, where: Path, **changes: str | None) -> Path:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(conf)
    for k, v in changes.items():
        if v is None:
            cp.remove_option("cloud", k)
        else:
            cp["cloud"][k] = v
    with open(where, "w") as f:
        cp.write(f)
    return where


def test_transfer_list_run_status_save_terminate_delete(server: LiveServer, carol: tuple[Creds, Path], conf: Path,
                                                        public_image: str, tmp_path: Path) -> None:
    creds, _ = carol
    ec2, s3 = server.client("ec2", creds), server.client("s3", creds)
    ec2.create_key_pair(KeyName="cc-key")
    small = image_file(tmp_path / "cc-small.img", 1 << 20)
    res = ok(cloud_client(conf, "--transfer", "--sourcefile", str(small)))
    ami = res.split()[-1]
    assert ami.startswith("ami-") and "Repo/VMS/cc-carol/cc-small.img" in res
    big = image_file(tmp_path / "big.img", 20 << 20)
    transfer = cloud_client(conf, "--transfer", "--sourcefile", str(big), "--name", "cc-big")
    ok(transfer)
    assert "100%" in transfer.stderr  # the progress bar
    head = s3.head_object(Bucket="Repo", Key="VMS/cc-carol/cc-big")
    assert head["ContentLength"] == 20 << 20 and head["ETag"].strip('"').endswith("-2")  # multipart, 16 MiB parts
    # --list: name, id, size, own or public
    listed = {r[0]: r for r in rows(ok(cloud_client(conf, "--list")))}
    assert listed["cc-small.img"][1:4] == [ami, "1.0 MiB", "own"]
    assert listed["cc-big"][2] == "20.0 MiB"
    assert listed["cc-shared.img"][1] == public_image and listed["cc-shared.img"][3] == "public"
    # a second upload under a name in use is refused before anything is sent
    failed(cloud_client(conf, "--transfer", "--sourcefile", str(small)), "already have an image named 'cc-small.img'")
    # --run with a lease, a count, a type and a key
    out = ok(cloud_client(conf, "--run", "--name", "cc-small.img", "--hours", "2", "--count", "2",
                          "--type", "t2.micro", "--key", "cc-key"))
    handles = [r[0] for r in rows(out.split("\nlaunched")[0])]
    assert len(handles) == 2 and all(h.startswith("i-") for h in handles)
    ec2.get_waiter("instance_running").wait(InstanceIds=handles, WaiterConfig=FAST)
    inst = instance(ec2, handles[0])
    assert inst["InstanceType"] == "t2.micro" and inst["KeyName"] == "cc-key" and tags(inst)["lease:hours"] == "2"
    status = {r[0]: r for r in rows(ok(cloud_client(conf, "--status")))}
    row = status[handles[0]]
    assert row[1:4] == ["running", "cc-small.img", inst["PrivateIpAddress"]]
    lease_end = datetime.strptime(row[4], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(lease_end - (datetime.now(UTC) + timedelta(hours=2))) < timedelta(minutes=2)
    one = rows(ok(cloud_client(conf, "--status", "--handle", handles[1])))
    assert [r[0] for r in one] == [handles[1]]
    # a public image runs by its name too
    shared = ok(cloud_client(conf, "--run", "--name", "cc-shared.img"))
    shared_handle = rows(shared.split("\nlaunched")[0])[0][0]
    # --save (CreateImage)
    saved = ok(cloud_client(conf, "--save", "--handle", handles[0], "--newname", "cc-saved"))
    saved_id = saved.split("(")[1].split(")")[0]
    assert saved_id.startswith("ami-")
    ec2.get_waiter("image_available").wait(ImageIds=[saved_id], WaiterConfig=FAST)
    assert "cc-saved" in {r[0] for r in rows(ok(cloud_client(conf, "--list")))}
    # --terminate
    for h in (*handles, shared_handle):
        said = ok(cloud_client(conf, "--terminate", "--handle", h))
        assert f"{h}: running -> shutting-down" in said or f"{h}: pending -> shutting-down" in said, said
    ec2.get_waiter("instance_terminated").wait(InstanceIds=handles, WaiterConfig=FAST)
    assert {r[1] for r in rows(ok(cloud_client(conf, "--status"))) if r[0] in handles} == {"terminated"}
    # --delete: deregistered and the file is gone
    assert "deleted Repo/VMS/cc-carol/cc-small.img" in ok(cloud_client(conf, "--delete", "--name", "cc-small.img"))
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["cc-small.img"]}])["Images"] == []
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket="Repo", Key="VMS/cc-carol/cc-small.img")
    assert err.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_clear_failures(server: LiveServer, conf: Path, public_image: str, tmp_path: Path) -> None:
    failed(cloud_client(conf, "--run", "--name", "no-such-image"), "no image named 'no-such-image'", "--list")
    failed(cloud_client(conf, "--delete", "--name", "cc-shared.img"), "public image of another user")
    failed(cloud_client(conf, "--delete", "--name", "never-made"), "you have no image named 'never-made'")
    failed(cloud_client(conf, "--terminate", "--handle", "i-0123456789abcdef0"), "you have no instance i-0123456789abcdef0")
    failed(cloud_client(conf, "--run", "--name", "cc-shared.img", "--hours", "100000"), "maximum lease is 336 hours")
    # endpoint down: nothing listens on that port
    down = edited_conf(conf, tmp_path / "down.conf", ec2_endpoint=f"http://127.0.0.1:{free_port()}")
    failed(cloud_client(down, "--status"), "cannot reach http://127.0.0.1:", "service is running")
    # wrong credentials (missing ones and other local mistakes: tests/unit/test_cloud_client.py)
    wrong = edited_conf(conf, tmp_path / "wrong.conf", secret_access_key="not-the-secret")
    failed(cloud_client(wrong, "--list"), "refused your credentials", "SignatureDoesNotMatch")
    # usage errors are click's (exit 2), with what to give
    usage = cloud_client(conf, "--list", "--status")
    assert usage.returncode == 2 and "exactly one of" in usage.stderr


def test_conf_defaults_to_the_bundle_in_the_home_directory(carol: tuple[Creds, Path], tmp_path: Path,
                                                             public_image: str) -> None:
    home = tmp_path / "home"
    shutil.copytree(carol[1], home / ".ec2gw")
    listed = ok(cloud_client(None, "--list", env=clean_env(HOME=str(home)), cwd=tmp_path))
    assert public_image in listed
    elsewhere = tmp_path / "conf-dir"
    shutil.copytree(carol[1], elsewhere)
    assert public_image in ok(cloud_client(None, "--list", env=clean_env(CLOUD_CLIENT_CONF=str(elsewhere / "cloud.conf"))))


def test_common_images_are_for_administrators(conf: Path, tmp_path: Path, server: LiveServer,
                                              carol: tuple[Creds, Path]) -> None:
    src = image_file(tmp_path / "cc-mine.img", 4096)
    failed(cloud_client(conf, "--transfer", "--sourcefile", str(src), "--common"), "AccessDenied")
    ec2: Any = server.client("ec2", carol[0])
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["cc-mine.img"]}])["Images"] == []
