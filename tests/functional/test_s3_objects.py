"""Cumulus objects through boto3: put/get/head, metadata, ranges, conditions, copy, delete, listings."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import hashlib
import io
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import (  # noqa: F401 - fixtures
    alice,
    bob,
    bucket,
    error_code,
    s3_alice,
    s3_anon,
    s3_bob,
    send,
    sign,
)
from tests.live import Creds, LiveServer


def test_put_get_head_with_metadata_and_content_headers(s3_alice: Any, bucket: str) -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    put = s3_alice.put_object(
        Bucket=bucket, Key="docs/readme.txt", Body=b"hello cumulus", ContentType="text/plain; charset=utf-8",
        ContentEncoding="identity", ContentDisposition='attachment; filename="r.txt"', ContentLanguage="en",
        CacheControl="max-age=60", Expires=expires, Metadata={"color": "blue", "Owner-Name": "Alice"},
    )
    assert put["ETag"] == '"c7a79bf5cf7b3e1ab3a1ab8ab8bdb1d1"' or len(put["ETag"]) == 34
    got = s3_alice.get_object(Bucket=bucket, Key="docs/readme.txt")
    assert got["Body"].read() == b"hello cumulus"
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "text/plain; charset=utf-8"
    assert got["ContentEncoding"] == "identity"
    assert got["ContentDisposition"] == 'attachment; filename="r.txt"'
    assert got["ContentLanguage"] == "en"
    assert got["CacheControl"] == "max-age=60"
    assert got["Expires"] == expires
    assert got["Metadata"] == {"color": "blue", "owner-name": "Alice"}
    head = s3_alice.head_object(Bucket=bucket, Key="docs/readme.txt")
    assert head["ContentLength"] == 13 and head["ETag"] == put["ETag"]
    assert head["Metadata"] == got["Metadata"]
    assert abs(head["LastModified"] - datetime.now(UTC)) < timedelta(minutes=1)


def test_default_content_type_and_empty_object(s3_alice: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3_alice.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ContentType"] == "binary/octet-stream"
    assert got["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'


def test_missing_key_and_bucket(s3_alice: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        s3_alice.get_object(Bucket=bucket, Key="nope")
    assert error_code(e.value) == ("NoSuchKey", 404)
    assert e.value.response["Error"]["Key"] == "nope"
    with pytest.raises(ClientError) as e:
        s3_alice.head_object(Bucket=bucket, Key="nope")
    assert error_code(e.value)[1] == 404
    with pytest.raises(ClientError) as e:
        s3_alice.get_object(Bucket="no-such-bucket-here", Key="k")
    assert error_code(e.value) == ("NoSuchBucket", 404)


def test_ranges(s3_alice: Any, bucket: str) -> None:
    data = bytes(range(256)) * 40
    s3_alice.put_object(Bucket=bucket, Key="r", Body=data)

    def get(r: str) -> dict[str, Any]:
        return s3_alice.get_object(Bucket=bucket, Key="r", Range=r)  # type: ignore[no-any-return]

    got = get("bytes=10-19")
    assert got["Body"].read() == data[10:20]
    assert got["ContentRange"] == f"bytes 10-19/{len(data)}"
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert get("bytes=10000-")["Body"].read() == data[10000:]
    assert get("bytes=-7")["Body"].read() == data[-7:]
    assert get("bytes=-99999")["Body"].read() == data
    assert get(f"bytes=0-{len(data) + 50}")["Body"].read() == data
    whole = get("bytes=20-10")  # not a valid range: ignored, as S3 does
    assert whole["ResponseMetadata"]["HTTPStatusCode"] == 200 and whole["Body"].read() == data
    for bad in (f"bytes={len(data)}-", f"bytes={len(data) + 5}-{len(data) + 9}", "bytes=-0"):
        with pytest.raises(ClientError) as e:
            get(bad)
        assert error_code(e.value) == ("InvalidRange", 416)
        assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == f"bytes */{len(data)}"
    head = s3_alice.head_object(Bucket=bucket, Key="r", Range="bytes=0-9")
    assert head["ContentLength"] == 10 and head["ResponseMetadata"]["HTTPStatusCode"] == 206


def test_conditional_get(s3_alice: Any, bucket: str) -> None:
    etag = s3_alice.put_object(Bucket=bucket, Key="c", Body=b"x")["ETag"]
    past = datetime.now(UTC) - timedelta(days=1)
    future = datetime.now(UTC) + timedelta(days=1)
    assert s3_alice.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"x"
    with pytest.raises(ClientError) as e:
        s3_alice.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert error_code(e.value) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3_alice.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert error_code(e.value)[1] == 304
    with pytest.raises(ClientError) as e:
        s3_alice.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert error_code(e.value)[1] == 304
    assert s3_alice.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)["Body"].read() == b"x"
    with pytest.raises(ClientError) as e:
        s3_alice.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert error_code(e.value) == ("PreconditionFailed", 412)
    # If-Match holds: If-Unmodified-Since is not looked at (S3's documented precedence)
    assert s3_alice.get_object(Bucket=bucket, Key="c", IfMatch=etag, IfUnmodifiedSince=past)["Body"].read() == b"x"
    with pytest.raises(ClientError) as e:
        s3_alice.head_object(Bucket=bucket, Key="c", IfNoneMatch="*")
    assert error_code(e.value)[1] == 304


def test_conditional_put(s3_alice: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="once", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3_alice.put_object(Bucket=bucket, Key="once", Body=b"2", IfNoneMatch="*")
    assert error_code(e.value) == ("PreconditionFailed", 412)
    assert s3_alice.get_object(Bucket=bucket, Key="once")["Body"].read() == b"1"


def test_response_overrides(s3_alice: Any, s3_anon: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="o", Body=b"x", ACL="public-read")
    got = s3_alice.get_object(Bucket=bucket, Key="o", ResponseContentType="application/json",
                              ResponseContentDisposition="inline", ResponseCacheControl="no-store",
                              ResponseContentLanguage="fr", ResponseContentEncoding="gzip",
                              ResponseExpires=datetime(2031, 1, 1, tzinfo=UTC))
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-store"
    assert got["ContentLanguage"] == "fr"
    assert got["ContentEncoding"] == "gzip"
    assert got["Expires"] == datetime(2031, 1, 1, tzinfo=UTC)
    with pytest.raises(ClientError) as e:
        s3_anon.get_object(Bucket=bucket, Key="o", ResponseContentType="text/html")
    assert error_code(e.value) == ("InvalidRequest", 400)


def test_keys_with_any_utf8_and_path_tricks(s3_alice: Any, bucket: str) -> None:
    keys = ["../../etc/passwd", "/leading", "a//b", "dir/./x", "ünï cødé/🙂.txt", "sp ace+plus%25&amp", "..", "a/../b"]
    for i, key in enumerate(keys):
        s3_alice.put_object(Bucket=bucket, Key=key, Body=str(i).encode())
    for i, key in enumerate(keys):
        assert s3_alice.get_object(Bucket=bucket, Key=key)["Body"].read() == str(i).encode()
    listed = [o["Key"] for o in s3_alice.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())
    with pytest.raises(ClientError) as e:
        s3_alice.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert error_code(e.value) == ("KeyTooLongError", 400)


def test_overwrite_is_atomic_for_an_open_reader(s3_alice: Any, bucket: str) -> None:
    first, second = os.urandom(3 * 1024 * 1024), os.urandom(3 * 1024 * 1024)
    s3_alice.put_object(Bucket=bucket, Key="ow", Body=first)
    stream = s3_alice.get_object(Bucket=bucket, Key="ow")["Body"]
    head = stream.read(1024)
    s3_alice.put_object(Bucket=bucket, Key="ow", Body=second)
    s3_alice.delete_object(Bucket=bucket, Key="ow")
    assert head + stream.read() == first
    s3_alice.put_object(Bucket=bucket, Key="ow", Body=second)
    assert s3_alice.get_object(Bucket=bucket, Key="ow")["Body"].read() == second


def test_delete_and_delete_objects(s3_alice: Any, bucket: str) -> None:
    for i in range(5):
        s3_alice.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x")
    resp = s3_alice.delete_object(Bucket=bucket, Key="d/0")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3_alice.delete_object(Bucket=bucket, Key="never-existed")["ResponseMetadata"]["HTTPStatusCode"] == 204
    out = s3_alice.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/1"}, {"Key": "d/2"}, {"Key": "zz"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["d/1", "d/2", "zz"]
    out = s3_alice.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/3"}], "Quiet": True})
    assert "Deleted" not in out and "Errors" not in out
    assert [o["Key"] for o in s3_alice.list_objects_v2(Bucket=bucket)["Contents"]] == ["d/4"]
    with pytest.raises(ClientError) as e:
        s3_alice.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert error_code(e.value) == ("MalformedXML", 400)


def test_delete_objects_reports_denied_keys(s3_alice: Any, s3_bob: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="mine", Body=b"x")
    out = s3_bob.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "mine"}]})
    assert out["Errors"] == [{"Key": "mine", "Code": "AccessDenied", "Message": "Access Denied"}]
    assert "Deleted" not in out
    assert s3_alice.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"x"


def test_copy_object(s3_alice: Any, bucket: str) -> None:
    put = s3_alice.put_object(Bucket=bucket, Key="src", Body=b"copy me", ContentType="text/x",
                              Metadata={"a": "1"})
    out = s3_alice.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert out["CopyObjectResult"]["ETag"] == put["ETag"]
    got = s3_alice.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"copy me" and got["Metadata"] == {"a": "1"} and got["ContentType"] == "text/x"
    s3_alice.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                         Metadata={"b": "2"}, ContentType="text/y")
    head = s3_alice.head_object(Bucket=bucket, Key="dst2")
    assert head["Metadata"] == {"b": "2"} and head["ContentType"] == "text/y"
    # the copy is independent of its source
    s3_alice.delete_object(Bucket=bucket, Key="src")
    assert s3_alice.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"copy me"
    with pytest.raises(ClientError) as e:
        s3_alice.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/dst")
    assert error_code(e.value) == ("InvalidRequest", 400)
    s3_alice.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/dst", MetadataDirective="REPLACE",
                         Metadata={"c": "3"})
    assert s3_alice.head_object(Bucket=bucket, Key="dst")["Metadata"] == {"c": "3"}


def test_copy_source_conditions(s3_alice: Any, bucket: str) -> None:
    etag = s3_alice.put_object(Bucket=bucket, Key="s", Body=b"x")["ETag"]
    s3_alice.copy_object(Bucket=bucket, Key="t", CopySource=f"{bucket}/s", CopySourceIfMatch=etag)
    for kwargs in ({"CopySourceIfMatch": '"nope"'}, {"CopySourceIfNoneMatch": etag},
                   {"CopySourceIfModifiedSince": datetime.now(UTC) + timedelta(days=1)},
                   {"CopySourceIfUnmodifiedSince": datetime.now(UTC) - timedelta(days=1)}):
        with pytest.raises(ClientError) as e:
            s3_alice.copy_object(Bucket=bucket, Key="t", CopySource=f"{bucket}/s", **kwargs)
        assert error_code(e.value) == ("PreconditionFailed", 412), kwargs
    with pytest.raises(ClientError) as e:
        s3_alice.copy_object(Bucket=bucket, Key="t", CopySource=f"{bucket}/missing")
    assert error_code(e.value) == ("NoSuchKey", 404)


def test_list_objects_v1_v2_delimiter_and_paginators(s3_alice: Any, bucket: str) -> None:
    keys = [f"photos/2024/{i:02d}.jpg" for i in range(7)] + [f"photos/2025/{i}.jpg" for i in range(3)] + \
        ["photos/top.jpg", "readme", "z/1", "z/2"]
    for k in keys:
        s3_alice.put_object(Bucket=bucket, Key=k, Body=b"")
    pages = list(s3_alice.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3}))
    assert len(pages) == 5
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(keys)
    assert all(p["KeyCount"] <= 3 for p in pages)
    v1 = list(s3_alice.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}))
    assert [o["Key"] for p in v1 for o in p.get("Contents", [])] == sorted(keys)
    assert all("Owner" in o for p in v1 for o in p.get("Contents", []))
    top = s3_alice.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [c["Prefix"] for c in top["CommonPrefixes"]] == ["photos/", "z/"]
    assert [o["Key"] for o in top["Contents"]] == ["readme"]
    sub = s3_alice.list_objects_v2(Bucket=bucket, Prefix="photos/", Delimiter="/")
    assert [c["Prefix"] for c in sub["CommonPrefixes"]] == ["photos/2024/", "photos/2025/"]
    assert [o["Key"] for o in sub["Contents"]] == ["photos/top.jpg"]
    # a page of common prefixes: the marker skips the whole prefix
    entries = []
    for page in s3_alice.get_paginator("list_objects").paginate(Bucket=bucket, Delimiter="/",
                                                                PaginationConfig={"PageSize": 1}):
        entries += [c["Prefix"] for c in page.get("CommonPrefixes", [])] + [o["Key"] for o in page.get("Contents", [])]
    assert entries == ["photos/", "readme", "z/"]
    entries = []
    for page in s3_alice.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="photos/", Delimiter="/",
                                                                   PaginationConfig={"PageSize": 1}):
        entries += [c["Prefix"] for c in page.get("CommonPrefixes", [])] + [o["Key"] for o in page.get("Contents", [])]
    assert entries == ["photos/2024/", "photos/2025/", "photos/top.jpg"]
    after = s3_alice.list_objects_v2(Bucket=bucket, StartAfter="photos/2025/2.jpg")
    assert [o["Key"] for o in after["Contents"]] == ["photos/top.jpg", "readme", "z/1", "z/2"]
    assert "Owner" not in after["Contents"][0]
    owned = s3_alice.list_objects_v2(Bucket=bucket, FetchOwner=True, MaxKeys=1)
    assert owned["Contents"][0]["Owner"]["ID"] and owned["IsTruncated"] is True
    with pytest.raises(ClientError) as e:
        s3_alice.list_objects_v2(Bucket=bucket, ContinuationToken="garbage")
    assert error_code(e.value) == ("InvalidArgument", 400)


def test_list_encoding_type_url(s3_alice: Any, bucket: str) -> None:
    weird = "we ird+\x01key\u00e9"
    s3_alice.put_object(Bucket=bucket, Key=weird, Body=b"")
    # botocore asks for encoding-type=url itself and decodes
    assert [o["Key"] for o in s3_alice.list_objects_v2(Bucket=bucket)["Contents"]] == [weird]
    assert [o["Key"] for o in s3_alice.list_objects(Bucket=bucket)["Contents"]] == [weird]
    # as on S3, a key XML cannot carry cannot be named in a DeleteObjects body; DeleteObject works
    with pytest.raises(ClientError) as e:
        s3_alice.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": weird}]})
    assert error_code(e.value) == ("MalformedXML", 400)
    s3_alice.delete_object(Bucket=bucket, Key=weird)


def test_large_object_download_file_roundtrip(s3_alice: Any, bucket: str, tmp_path: Any) -> None:
    data = os.urandom(6 * 1024 * 1024 + 123)
    s3_alice.upload_fileobj(io.BytesIO(data), bucket, "blob.bin")
    path = tmp_path / "back.bin"
    s3_alice.download_file(bucket, "blob.bin", str(path))
    assert path.read_bytes() == data


def test_virtual_hosted_requests(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    """`bucket.localhost:port/key` (virtual-hosted style) reaches the same bucket as `/bucket/key`."""
    url = f"http://{bucket}.localhost:{server.s3_port}/v%20h/key"
    body = b"virtual host"
    headers = sign(alice, "PUT", url, {"Content-Length": str(len(body))}, hashlib.sha256(body).hexdigest())
    assert send(url, "PUT", headers, body, address="127.0.0.1").status == 200
    assert s3_alice.get_object(Bucket=bucket, Key="v h/key")["Body"].read() == body
    list_url = f"http://{bucket}.localhost:{server.s3_port}/?list-type=2"
    resp = send(list_url, "GET", sign(alice, "GET", list_url, {}, hashlib.sha256(b"").hexdigest()), address="127.0.0.1")
    assert resp.status == 200 and b"<Key>v h/key</Key>" in resp.body
