"""Callers without credentials: every EC2 operation refuses them; Cumulus gives them only what an ACL grants."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from ec2gw.app import load_providers
from storage.api import registry as s3_registry
from tests.security import S3_REFUSALS, refused
from tests.security.conftest import Tenant

EC2_OPERATIONS = load_providers().names()


def test_the_frame_gives_two_ordinary_users_and_an_administrator(admin: Tenant, alice: Tenant, bob: Tenant) -> None:
    ids = {t.name: t.s3.list_buckets()["Owner"]["ID"] for t in (admin, alice, bob)}
    assert len(set(ids.values())) == 3, ids
    assert len(EC2_OPERATIONS) > 20 and len(s3_registry.names()) > 20


@pytest.mark.parametrize("action", EC2_OPERATIONS)
def test_every_ec2_operation_refuses_unsigned_requests(anon: Tenant, action: str) -> None:
    """Raw POSTs of every implemented action, with and without parameters: 401/403 AuthFailure-like errors."""
    for params in ({}, {"InstanceId.1": "i-0123456789abcdef0", "ImageId": "ami-0123456789abcdef0", "KeyName": "k"}):
        body = urllib.parse.urlencode({"Action": action, "Version": "2016-11-15", **params}).encode()
        req = urllib.request.Request(anon.server.ec2_url + "/", data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        text = err.value.read().decode(errors="replace")
        assert err.value.code in (401, 403), (action, err.value.code, text)
        assert "<Code>" in text and "<Message>" in text and "sign" in text.lower(), text


def test_anonymous_boto3_is_refused_on_ec2(anon: Tenant) -> None:
    code, status, message = refused(anon.ec2.describe_instances)
    assert code in ("AuthFailure", "MissingAuthenticationToken"), (code, message)
    refused(anon.ec2.run_instances, ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)


def test_anonymous_gets_nothing_private_from_cumulus(anon: Tenant, alice: Tenant, bucket: str) -> None:
    alice.s3.put_object(Bucket=bucket, Key="secret", Body=b"alice's")
    s3: Any = anon.s3
    refused(s3.list_buckets, codes={"AccessDenied"})
    refused(s3.list_objects_v2, Bucket=bucket, codes={"AccessDenied"})
    refused(s3.get_object, Bucket=bucket, Key="secret", codes={"AccessDenied"})
    refused(s3.head_object, Bucket=bucket, Key="secret", status={403})
    refused(s3.put_object, Bucket=bucket, Key="dropped", Body=b"x", codes={"AccessDenied"})
    refused(s3.delete_object, Bucket=bucket, Key="secret", codes={"AccessDenied"})
    refused(s3.get_bucket_acl, Bucket=bucket, codes={"AccessDenied"})
    refused(s3.put_bucket_acl, Bucket=bucket, ACL="public-read-write", codes={"AccessDenied"})
    refused(s3.create_bucket, Bucket=f"{bucket}-anon", codes=S3_REFUSALS)
    refused(s3.create_multipart_upload, Bucket=bucket, Key="mp", codes={"AccessDenied"})
    assert alice.s3.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"alice's"
    assert [o["Key"] for o in alice.s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["secret"]
    assert alice.s3.get_bucket_acl(Bucket=bucket)["Grants"][0]["Permission"] == "FULL_CONTROL"
