"""What S3 clients send at the edges, answered as S3 answers it (boto3, and raw HTTP where no client
sends the odd input): versioning reads on unversioned buckets, non-ASCII user metadata, partNumber
reads, URL-encoded listings of keys with control characters, empty continuation tokens, parts
uploaded again, aws-chunked as a plain content encoding, odd Expect headers, bad copy ranges."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import (  # noqa: F401 - fixtures
    alice,
    bob,
    bucket,
    error_code,
    s3_alice,
    s3_bob,
)


def refused(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    code, status = error_code(info.value)
    assert 400 <= status < 500
    return code, status


# --------------------------------------------------------------------------- versioning reads


def test_unversioned_bucket_versioning_reads(s3_alice: Any, bucket: str) -> None:
    got = s3_alice.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in got and "MFADelete" not in got
    for key in ("a", "b/1", "b/2", "c"):
        s3_alice.put_object(Bucket=bucket, Key=key, Body=key.encode())
    listed = s3_alice.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in listed["Versions"]] == [
        ("a", "null", True, 1), ("b/1", "null", True, 3), ("b/2", "null", True, 3), ("c", "null", True, 1)]
    assert "DeleteMarkers" not in listed and listed["IsTruncated"] is False
    rolled = s3_alice.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [v["Key"] for v in rolled["Versions"]] == ["a", "c"]
    assert rolled["CommonPrefixes"] == [{"Prefix": "b/"}]
    page = s3_alice.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert page["IsTruncated"] and (page["NextKeyMarker"], page["NextVersionIdMarker"]) == ("b/1", "null")
    rest = s3_alice.list_object_versions(Bucket=bucket, KeyMarker="b/1", VersionIdMarker="null")
    assert [v["Key"] for v in rest["Versions"]] == ["b/2", "c"]
    every = [v["Key"] for p in s3_alice.get_paginator("list_object_versions").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 1}) for v in p.get("Versions", [])]
    assert every == ["a", "b/1", "b/2", "c"]
    assert refused(s3_alice.list_object_versions, Bucket=bucket, VersionIdMarker="null") == ("InvalidArgument", 400)


def test_version_id_null_reads_and_deletes_the_object(s3_alice: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"body")
    assert s3_alice.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"body"
    assert s3_alice.head_object(Bucket=bucket, Key="k", VersionId="null")["ContentLength"] == 4
    assert refused(s3_alice.get_object, Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ") == (
        "InvalidArgument", 400)
    assert refused(s3_alice.delete_object, Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ") == (
        "InvalidArgument", 400)
    s3_alice.delete_object(Bucket=bucket, Key="k", VersionId="null")
    assert refused(s3_alice.head_object, Bucket=bucket, Key="k") == ("404", 404)
    # what a forced bucket removal does: list the versions, delete them by version id
    s3_alice.put_object(Bucket=bucket, Key="x", Body=b"x")
    versions = s3_alice.list_object_versions(Bucket=bucket)["Versions"]
    done = s3_alice.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]})
    assert [d["Key"] for d in done["Deleted"]] == ["x"] and not done.get("Errors")
    s3_alice.delete_bucket(Bucket=bucket)
    s3_alice.create_bucket(Bucket=bucket)  # for the fixture's cleanup


def test_versioning_reads_are_the_owners(s3_alice: Any, s3_bob: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"body")
    assert refused(s3_bob.get_bucket_versioning, Bucket=bucket) == ("AccessDenied", 403)
    assert refused(s3_bob.list_object_versions, Bucket=bucket) == ("AccessDenied", 403)
