"""Cumulus authentication and access: SigV4 / SigV2, presigned URLs, ownership, canned ACLs, the image repository."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import (  # noqa: F401 - fixtures
    alice,
    bob,
    bucket,
    error_code,
    new_bucket_name,
    s3_alice,
    s3_anon,
    s3_bob,
    send,
    sign,
)
from tests.live import Creds, LiveServer


def fetch(url: str, data: bytes | None = None, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def v4(server: LiveServer, alice: Creds) -> Any:
    """alice's client presigning with SigV4 (boto3 presigns S3 with SigV2 unless told otherwise)."""
    return server.client("s3", alice, signature_version="s3v4")


def test_presigned_get_and_put_with_urllib(v4: Any, s3_alice: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="p/ü file.txt", Body=b"presigned")
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p/ü file.txt"}, ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    assert fetch(url) == (200, b"presigned")
    put_url = v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"}, ExpiresIn=300)
    status, _ = fetch(put_url, data=b"via presigned put", method="PUT")
    assert status == 200
    assert s3_alice.get_object(Bucket=bucket, Key="up")["Body"].read() == b"via presigned put"
    tampered = url.replace("p/%C3%BC", "p/%C3%BD")
    status, body = fetch(tampered)
    assert status == 403 and b"SignatureDoesNotMatch" in body


def test_expired_and_too_long_presigns(v4: Any, s3_alice: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="e", Body=b"x")
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=1)
    v2url = s3_alice.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=1)
    time.sleep(2.1)
    for expired in (url, v2url):
        status, body = fetch(expired)
        assert status == 403 and b"<Code>AccessDenied</Code>" in body and b"expired" in body
    week = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=604800)
    assert fetch(week)[0] == 200
    too_long = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=604801)
    status, body = fetch(too_long)
    assert status == 400 and b"AuthorizationQueryParametersError" in body


def test_sigv2_header_and_query(server: LiveServer, alice: Creds, bucket: str) -> None:
    v2 = server.client("s3", alice, signature_version="s3", s3={"addressing_style": "path"})
    v2.put_object(Bucket=bucket, Key="v2", Body=b"sigv2 body", ContentType="text/plain")
    assert v2.get_object(Bucket=bucket, Key="v2")["Body"].read() == b"sigv2 body"
    assert [o["Key"] for o in v2.list_objects(Bucket=bucket)["Contents"]] == ["v2"]
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2"}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url and "Signature=" in url
    assert fetch(url) == (200, b"sigv2 body")
    bad = server.client("s3", Creds("x", alice.access_key, "wrong-secret"), signature_version="s3")
    with pytest.raises(ClientError) as e:
        bad.get_object(Bucket=bucket, Key="v2")
    assert error_code(e.value) == ("SignatureDoesNotMatch", 403)


def test_wrong_secret_unknown_key_and_skew(server: LiveServer, alice: Creds, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        server.client("s3", Creds("x", alice.access_key, "not-the-secret")).list_objects_v2(Bucket=bucket)
    assert error_code(e.value) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as e:
        server.client("s3", Creds("x", "AKIDUNKNOWN000000000", "s")).list_objects_v2(Bucket=bucket)
    assert error_code(e.value) == ("InvalidAccessKeyId", 403)
    url = f"{server.s3_url}/{bucket}"
    headers = sign(alice, "GET", url, {}, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                   when=datetime.now(UTC) - timedelta(minutes=30))
    resp = send(url, "GET", headers)
    assert (resp.status, resp.code) == (403, "RequestTimeTooSkewed")


def test_ownership(s3_alice: Any, s3_bob: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="private", Body=b"x")
    for call in (lambda: s3_bob.get_object(Bucket=bucket, Key="private"),
                 lambda: s3_bob.head_object(Bucket=bucket, Key="private"),
                 lambda: s3_bob.list_objects_v2(Bucket=bucket),
                 lambda: s3_bob.put_object(Bucket=bucket, Key="intruder", Body=b"x"),
                 lambda: s3_bob.delete_object(Bucket=bucket, Key="private"),
                 lambda: s3_bob.copy_object(Bucket=new_bucket_name(), Key="x", CopySource=f"{bucket}/private"),
                 lambda: s3_bob.delete_bucket(Bucket=bucket),
                 lambda: s3_bob.get_bucket_acl(Bucket=bucket),
                 lambda: s3_bob.put_bucket_acl(Bucket=bucket, ACL="public-read")):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value)[1] in (403, 404), e.value
        assert error_code(e.value)[0] in ("AccessDenied", "403", "NoSuchBucket")
    with pytest.raises(ClientError) as e:
        s3_bob.create_bucket(Bucket=bucket)
    assert error_code(e.value) == ("BucketAlreadyExists", 409)
    assert s3_alice.create_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200  # us-east-1: yours, 200
    assert bucket not in [b["Name"] for b in s3_bob.list_buckets()["Buckets"]]
    assert bucket in [b["Name"] for b in s3_alice.list_buckets()["Buckets"]]


def test_anonymous_and_canned_acls(s3_alice: Any, s3_anon: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="secret", Body=b"s")
    s3_alice.put_object(Bucket=bucket, Key="open", Body=b"o", ACL="public-read")
    with pytest.raises(ClientError) as e:
        s3_anon.list_objects_v2(Bucket=bucket)
    assert error_code(e.value) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as e:
        s3_anon.get_object(Bucket=bucket, Key="secret")
    assert error_code(e.value) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as e:
        s3_anon.put_object(Bucket=bucket, Key="anon", Body=b"x")
    assert error_code(e.value) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as e:
        s3_anon.list_buckets()
    assert error_code(e.value) == ("AccessDenied", 403)
    assert s3_anon.get_object(Bucket=bucket, Key="open")["Body"].read() == b"o"
    grants = s3_alice.get_object_acl(Bucket=bucket, Key="open")["Grants"]
    assert {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"} in [g["Grantee"] for g in grants]
    s3_alice.put_object_acl(Bucket=bucket, Key="secret", ACL="public-read")
    assert s3_anon.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"s"
    s3_alice.put_object_acl(Bucket=bucket, Key="secret", ACL="private")
    with pytest.raises(ClientError):
        s3_anon.get_object(Bucket=bucket, Key="secret")
    s3_alice.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert sorted(o["Key"] for o in s3_anon.list_objects_v2(Bucket=bucket)["Contents"]) == ["open", "secret"]
    assert len(s3_alice.get_bucket_acl(Bucket=bucket)["Grants"]) == 2
    with pytest.raises(ClientError):  # listing is public, reading the private object is not
        s3_anon.get_object(Bucket=bucket, Key="secret")
    s3_alice.put_bucket_acl(Bucket=bucket, ACL="private")
    with pytest.raises(ClientError):
        s3_anon.list_objects_v2(Bucket=bucket)


def test_bucket_rules(s3_alice: Any) -> None:
    for bad in ("AB", "ab", "a..b", "192.168.1.10", "-abc", "abc-", "xn--abc", "under_score", "a" * 64):
        with pytest.raises(ClientError) as e:
            s3_alice.create_bucket(Bucket=bad)
        assert error_code(e.value) == ("InvalidBucketName", 400), bad
    name = new_bucket_name("rules")
    s3_alice.create_bucket(Bucket=name)
    assert s3_alice.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert s3_alice.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    s3_alice.put_object(Bucket=name, Key="x", Body=b"")
    with pytest.raises(ClientError) as e:
        s3_alice.delete_bucket(Bucket=name)
    assert error_code(e.value) == ("BucketNotEmpty", 409)
    s3_alice.delete_object(Bucket=name, Key="x")
    s3_alice.create_multipart_upload(Bucket=name, Key="pending")
    s3_alice.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        s3_alice.head_bucket(Bucket=name)
    assert error_code(e.value)[1] == 404
    with pytest.raises(ClientError) as e:
        s3_alice.create_bucket(Bucket=new_bucket_name(), CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert error_code(e.value) == ("IllegalLocationConstraintException", 400)


def test_unsupported_operation_and_method(server: LiveServer, s3_alice: Any, alice: Creds, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        s3_alice.get_bucket_policy(Bucket=bucket)
    assert error_code(e.value) == ("NotImplemented", 501)
    url = f"{server.s3_url}/{bucket}/k"
    resp = send(url, "PATCH", sign(alice, "PATCH", url, {}, "UNSIGNED-PAYLOAD"))
    assert (resp.status, resp.code) == (405, "MethodNotAllowed")


def test_image_repository_rules(server: LiveServer, alice: Creds, s3_alice: Any, s3_bob: Any, bob: Creds) -> None:
    admin = server.client("s3")
    repo = "Repo"
    admin.put_object(Bucket=repo, Key="VMS/common/shared.img", Body=b"shared image")
    own = f"VMS/{alice.name}/mine.img"
    s3_alice.put_object(Bucket=repo, Key=own, Body=b"alice image")
    assert s3_alice.get_object(Bucket=repo, Key="VMS/common/shared.img")["Body"].read() == b"shared image"
    assert [o["Key"] for o in s3_alice.list_objects_v2(Bucket=repo, Prefix=f"VMS/{alice.name}/")["Contents"]] == [own]
    assert "VMS/common/shared.img" in [o["Key"] for o in
                                       s3_alice.list_objects_v2(Bucket=repo, Prefix="VMS/common/")["Contents"]]
    for call in (lambda: s3_alice.put_object(Bucket=repo, Key="VMS/common/evil.img", Body=b"x"),
                 lambda: s3_alice.put_object(Bucket=repo, Key=f"VMS/{bob.name}/x.img", Body=b"x"),
                 lambda: s3_bob.get_object(Bucket=repo, Key=own),
                 lambda: s3_bob.delete_object(Bucket=repo, Key=own),
                 lambda: s3_alice.list_objects_v2(Bucket=repo),
                 lambda: s3_bob.list_objects_v2(Bucket=repo, Prefix=f"VMS/{alice.name}/"),
                 lambda: s3_alice.delete_object(Bucket=repo, Key="VMS/common/shared.img")):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as e:
        s3_alice.create_bucket(Bucket=repo)
    assert error_code(e.value)[1] == 409
    s3_alice.delete_object(Bucket=repo, Key=own)


def test_anonymous_client_is_unsigned(server: LiveServer) -> None:
    # sanity: the anonymous fixture really sends no credentials
    client = boto3.client("s3", endpoint_url=server.s3_url, region_name="us-east-1",
                          config=Config(signature_version=__import__("botocore").UNSIGNED))
    with pytest.raises(ClientError) as e:
        client.list_buckets()
    assert error_code(e.value) == ("AccessDenied", 403)
