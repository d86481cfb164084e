"""Apache libcloud, unmodified, against a live server: its compute drivers (Nimbus, Eucalyptus, EC2
with SigV2 and SigV4) and its storage drivers (S3 pointed at the host and port, MinIO)."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from libcloud.storage.drivers.minio import MinIOStorageDriver
from libcloud.storage.drivers.s3 import S3StorageDriver

from tests.live import Creds, LiveServer


@pytest.fixture(scope="module")
def carol(server: LiveServer) -> Creds:
    return server.make_user("carol")


# --------------------------------------------------------------------------- storage


STORAGE_DRIVERS = {"s3": S3StorageDriver, "minio": MinIOStorageDriver}


@pytest.mark.parametrize("kind", sorted(STORAGE_DRIVERS))
def test_storage_walk(server: LiveServer, carol: Creds, kind: str, tmp_path: Any) -> None:
    """create container, upload (stream and file), list, download, delete objects, delete container."""
    driver = STORAGE_DRIVERS[kind](carol.access_key, carol.secret_key, secure=False, host="127.0.0.1",
                                   port=server.s3_port)
    container = driver.create_container(f"libcloud-{kind}")
    assert container.name in [c.name for c in driver.list_containers()]

    streamed = driver.upload_object_via_stream(io.BytesIO(b"stream " * 5000), container, "dir/streamed.txt")
    assert streamed.size == 35000
    path = tmp_path / "file.bin"
    path.write_bytes(bytes(range(256)) * 64)
    uploaded = driver.upload_object(str(path), container, "dir/file.bin")
    assert uploaded.size == 16384
    assert sorted(o.name for o in driver.list_container_objects(container)) == ["dir/file.bin", "dir/streamed.txt"]
    assert [o.name for o in driver.list_container_objects(container, prefix="dir/f")] == ["dir/file.bin"]

    got = driver.get_object(container.name, "dir/file.bin")
    assert got.size == 16384
    assert b"".join(driver.download_object_as_stream(got)) == path.read_bytes()
    target = tmp_path / "back.txt"
    assert driver.download_object(driver.get_object(container.name, "dir/streamed.txt"), str(target))
    assert target.read_bytes() == b"stream " * 5000

    assert driver.delete_object(streamed) and driver.delete_object(uploaded)
    assert list(driver.list_container_objects(container)) == []
    assert driver.delete_container(container)
    assert container.name not in [c.name for c in driver.list_containers()]


def _signed_with_empty_region(url: str, creds: Creds, service: str, method: str, body: bytes,
                              headers: dict[str, str]) -> tuple[int, bytes]:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(creds.access_key, creds.secret_key), service, "").add_auth(request)
    assert "//" + service + "/aws4_request" in request.headers["Authorization"]
    prepared = urllib.request.Request(url, data=body or None, method=method, headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(prepared, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_an_empty_region_in_the_credential_scope_is_accepted_on_both_endpoints(server: LiveServer, carol: Creds) -> None:
    form = b"Action=DescribeRegions&Version=2016-11-15"
    status, body = _signed_with_empty_region(server.ec2_url + "/", carol, "ec2", "POST", form,
                                             {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and b"<regionName>us-east-1</regionName>" in body, body
    status, body = _signed_with_empty_region(server.s3_url + "/", carol, "s3", "GET", b"",
                                             {"x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})
    assert status == 200 and b"ListAllMyBucketsResult" in body, body
