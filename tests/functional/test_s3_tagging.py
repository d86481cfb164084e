"""Object and bucket tagging through boto3 against a live server: x-amz-tagging on PUT, copy and
multipart create; Put/Get/DeleteObjectTagging and Put/Get/DeleteBucketTagging with S3's limits
and errors; and no tagging operation for another user."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import alice, bob, bucket, error_code, s3_alice, s3_bob  # noqa: F401 - fixtures
from tests.live import LiveServer


def tags_of(s3: Any, bucket: str, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def refused(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    code, status = error_code(info.value)
    return code, status, info.value.response["Error"].get("Message", "")


def test_put_with_tagging_header_then_get_put_delete(s3_alice: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="project=blue&owner=J%C3%B6rg%20M&empty=")
    assert tags_of(s3_alice, bucket, "k") == {"project": "blue", "owner": "Jörg M", "empty": ""}
    got = s3_alice.get_object(Bucket=bucket, Key="k")
    assert got["TagCount"] == 3
    s3_alice.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    assert tags_of(s3_alice, bucket, "k") == {"a": "1"}
    assert s3_alice.get_object_tagging(Bucket=bucket, Key="k", VersionId="null")["TagSet"] == [
        {"Key": "a", "Value": "1"}]
    assert s3_alice.delete_object_tagging(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3_alice.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert "TagCount" not in s3_alice.get_object(Bucket=bucket, Key="k")
    # a new version carries the tags it was written with, none otherwise
    s3_alice.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"y")
    assert tags_of(s3_alice, bucket, "k") == {}


def test_copy_keeps_or_replaces_tags(s3_alice: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="src", Body=b"x", Tagging="a=1&b=2")
    s3_alice.copy_object(Bucket=bucket, Key="same", CopySource={"Bucket": bucket, "Key": "src"})
    assert tags_of(s3_alice, bucket, "same") == {"a": "1", "b": "2"}
    s3_alice.copy_object(Bucket=bucket, Key="new", CopySource={"Bucket": bucket, "Key": "src"},
                         TaggingDirective="REPLACE", Tagging="c=3")
    assert tags_of(s3_alice, bucket, "new") == {"c": "3"}
    s3_alice.copy_object(Bucket=bucket, Key="none", CopySource={"Bucket": bucket, "Key": "src"},
                         TaggingDirective="REPLACE")
    assert tags_of(s3_alice, bucket, "none") == {}
    # changing only the tags of an object in place is a valid copy
    s3_alice.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                         TaggingDirective="REPLACE", Tagging="d=4")
    assert tags_of(s3_alice, bucket, "src") == {"d": "4"}
    code, status, _ = refused(s3_alice.copy_object, Bucket=bucket, Key="x",
                              CopySource={"Bucket": bucket, "Key": "src"}, TaggingDirective="MERGE")
    assert (code, status) == ("InvalidArgument", 400)


def test_multipart_create_with_tagging(s3_alice: Any, bucket: str) -> None:
    up = s3_alice.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="stage=done")["UploadId"]
    etag = s3_alice.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"part")["ETag"]
    s3_alice.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert tags_of(s3_alice, bucket, "mp") == {"stage": "done"}


@pytest.mark.parametrize(("tagset", "code"), [
    ([{"Key": f"k{i}", "Value": "v"} for i in range(11)], "BadRequest"),
    ([{"Key": "k" * 129, "Value": "v"}], "InvalidTag"),
    ([{"Key": "k", "Value": "v" * 257}], "InvalidTag"),
    ([{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}], "InvalidTag"),
    ([{"Key": "aws:owner", "Value": "v"}], "InvalidTag"),
    ([{"Key": "semi;colon", "Value": "v"}], "InvalidTag"),
])
def test_object_tag_limits(s3_alice: Any, bucket: str, tagset: list[dict[str, str]], code: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=me")
    got, status, message = refused(s3_alice.put_object_tagging, Bucket=bucket, Key="k", Tagging={"TagSet": tagset})
    assert (got, status) == (code, 400) and message
    assert tags_of(s3_alice, bucket, "k") == {"keep": "me"}


def test_object_tag_limits_at_the_edge_are_taken(s3_alice: Any, bucket: str) -> None:
    tagset = [{"Key": f"{i}" + "k" * 127, "Value": "v" * 256} for i in range(10)]
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3_alice.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tagset})
    assert len(tags_of(s3_alice, bucket, "k")) == 10


def test_bad_tagging_headers(s3_alice: Any, bucket: str) -> None:
    eleven = "&".join(f"k{i}=v" for i in range(11))
    assert refused(s3_alice.put_object, Bucket=bucket, Key="k", Body=b"x", Tagging=eleven)[:2] == ("BadRequest", 400)
    assert refused(s3_alice.put_object, Bucket=bucket, Key="k", Body=b"x", Tagging="a=1&a=2")[:2] == (
        "InvalidArgument", 400)
    assert refused(s3_alice.create_multipart_upload, Bucket=bucket, Key="k", Tagging="k=" + "v" * 257)[:2] == (
        "InvalidTag", 400)
    assert s3_alice.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    assert s3_alice.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_object_tagging_of_a_missing_key(s3_alice: Any, bucket: str) -> None:
    assert refused(s3_alice.get_object_tagging, Bucket=bucket, Key="nope")[:2] == ("NoSuchKey", 404)
    assert refused(s3_alice.put_object_tagging, Bucket=bucket, Key="nope",
                   Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})[:2] == ("NoSuchKey", 404)
    assert refused(s3_alice.get_object_tagging, Bucket=bucket, Key="nope", VersionId="3HL4kqtJlcpXroDTDmJ")[:2] == (
        "InvalidArgument", 400)


def test_bucket_tagging(s3_alice: Any, bucket: str) -> None:
    code, status, message = refused(s3_alice.get_bucket_tagging, Bucket=bucket)
    assert (code, status) == ("NoSuchTagSet", 404) and message
    s3_alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "storage"},
                                                                   {"Key": "cost", "Value": "42"}]})
    assert s3_alice.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "team", "Value": "storage"},
                                                                    {"Key": "cost", "Value": "42"}]
    fifty = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    s3_alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": fifty})
    assert len(s3_alice.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50
    assert refused(s3_alice.put_bucket_tagging, Bucket=bucket,
                   Tagging={"TagSet": [*fifty, {"Key": "x", "Value": "y"}]})[:2] == ("BadRequest", 400)
    assert refused(s3_alice.put_bucket_tagging, Bucket=bucket,
                   Tagging={"TagSet": [{"Key": "k" * 129, "Value": "v"}]})[:2] == ("InvalidTag", 400)
    assert len(s3_alice.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50
    assert s3_alice.delete_bucket_tagging(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert refused(s3_alice.get_bucket_tagging, Bucket=bucket)[:2] == ("NoSuchTagSet", 404)


def test_another_user_cannot_read_or_change_tags(s3_alice: Any, s3_bob: Any, bucket: str) -> None:
    s3_alice.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="secret=1", ACL="public-read")
    s3_alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "secret", "Value": "2"}]})
    for call, kwargs in [
        (s3_bob.get_object_tagging, {"Key": "k"}),
        (s3_bob.put_object_tagging, {"Key": "k", "Tagging": {"TagSet": []}}),
        (s3_bob.delete_object_tagging, {"Key": "k"}),
        (s3_bob.get_bucket_tagging, {}),
        (s3_bob.put_bucket_tagging, {"Tagging": {"TagSet": [{"Key": "bob", "Value": "was here"}]}}),
        (s3_bob.delete_bucket_tagging, {}),
    ]:
        code, status, message = refused(call, Bucket=bucket, **kwargs)
        assert (code, status) == ("AccessDenied", 403) and message, call
    assert tags_of(s3_alice, bucket, "k") == {"secret": "1"}
    assert s3_alice.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "secret", "Value": "2"}]
    # bob's own object in alice's public-read-write bucket: his to tag, and alice's as the bucket's owner
    s3_bob.put_object(Bucket=bucket, Key="bobs", Body=b"b", Tagging="by=bob")
    assert tags_of(s3_bob, bucket, "bobs") == {"by": "bob"} == tags_of(s3_alice, bucket, "bobs")


def test_tag_count_on_get_not_head(server: LiveServer, s3_alice: Any, bucket: str) -> None:
    """HEAD shows no tag count (S3 sends it on GET only); GetObject does."""
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")
    assert "TagCount" not in s3_alice.head_object(Bucket=bucket, Key="k")
    assert server.client("s3").get_object(Bucket=bucket, Key="k")["TagCount"] == 1


def test_copying_another_users_tags_needs_the_right_to_read_them(s3_alice: Any, s3_bob: Any, bucket: str) -> None:
    """bob may read alice's public-read object, not its tags: a copy that would carry them over is
    refused; with TaggingDirective REPLACE he gets the bytes and tags of his own."""
    s3_alice.put_object(Bucket=bucket, Key="tagged", Body=b"public", ACL="public-read", Tagging="secret=1")
    s3_alice.put_object(Bucket=bucket, Key="plain", Body=b"public", ACL="public-read")
    theirs = "bobs-" + bucket[-12:]
    s3_bob.create_bucket(Bucket=theirs)
    try:
        code, status, message = refused(s3_bob.copy_object, Bucket=theirs, Key="copy",
                                        CopySource={"Bucket": bucket, "Key": "tagged"})
        assert (code, status) == ("AccessDenied", 403) and "REPLACE" in message
        s3_bob.copy_object(Bucket=theirs, Key="copy", CopySource={"Bucket": bucket, "Key": "tagged"},
                           TaggingDirective="REPLACE", Tagging="mine=yes")
        assert tags_of(s3_bob, theirs, "copy") == {"mine": "yes"}
        s3_bob.copy_object(Bucket=theirs, Key="plain", CopySource={"Bucket": bucket, "Key": "plain"})
        assert tags_of(s3_bob, theirs, "plain") == {}
    finally:
        for key in ("copy", "plain"):
            s3_bob.delete_object(Bucket=theirs, Key=key)
        s3_bob.delete_bucket(Bucket=theirs)
