"""What S3 clients send at the edges, answered as S3 answers it (boto3, and raw HTTP where no client
sends the odd input): versioning reads on unversioned buckets, non-ASCII user metadata, partNumber
reads, URL-encoded listings of keys with control characters, empty continuation tokens, parts
uploaded again, aws-chunked as a plain content encoding, odd Expect headers, bad copy ranges."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import email.header
import hashlib
import http.client
import os
import socket
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import (  # noqa: F401 - fixtures
    RawResponse,
    alice,
    bob,
    bucket,
    error_code,
    s3_alice,
    s3_bob,
    sign,
    signed,
)
from tests.live import Creds, LiveServer

MiB = 1024 * 1024


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


# --------------------------------------------------------------------------- non-ASCII user metadata


def _put_raw_headers(server: LiveServer, creds: Creds, path: str, body: bytes, headers: dict[str, str],
                     wire: str) -> RawResponse:
    """A PUT signed as botocore signs it (the header values as text), its header values sent as `wire`
    bytes (UTF-8 as the Go and JavaScript SDKs send them, or Latin-1 as Python's http.client does)."""
    url = server.s3_url + path
    all_headers = sign(creds, "PUT", url, {**headers, "Content-Length": str(len(body))},
                       hashlib.sha256(body).hexdigest())
    conn = http.client.HTTPConnection("127.0.0.1", server.s3_port, timeout=30)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for k, v in all_headers.items():
            conn.putheader(k, v.encode(wire))
        conn.endheaders()
        conn.send(body)
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("value", ["Jörg Müller", "naïve café €5 — 東京"])
def test_non_ascii_metadata_sent_as_utf8(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str,
                                         value: str) -> None:
    res = _put_raw_headers(server, alice, f"/{bucket}/meta", b"body", {"x-amz-meta-author": value}, "utf-8")
    assert res.status == 200, (res.status, res.body)
    # S3 keeps the text and returns it mail-safe, as an RFC 2047 encoded word
    got = s3_alice.head_object(Bucket=bucket, Key="meta")["Metadata"]["author"]
    assert got.startswith("=?UTF-8?B?") and _rfc2047(got) == value
    assert _rfc2047(s3_alice.get_object(Bucket=bucket, Key="meta")["Metadata"]["author"]) == value


def _rfc2047(value: str) -> str:
    return str(email.header.make_header(email.header.decode_header(value)))


def test_non_ascii_metadata_from_boto3(s3_alice: Any, bucket: str) -> None:
    """boto3 refuses non-ASCII metadata by default; without that check it signs the text and sends
    its UTF-8 bytes."""
    from botocore.handlers import validate_ascii_metadata

    s3_alice.meta.events.unregister("before-parameter-build.s3.PutObject", validate_ascii_metadata)
    try:
        s3_alice.put_object(Bucket=bucket, Key="utf8", Body=b"x", Metadata={"author": "Jörg €"})
    finally:
        s3_alice.meta.events.register("before-parameter-build.s3.PutObject", validate_ascii_metadata)
    assert _rfc2047(s3_alice.head_object(Bucket=bucket, Key="utf8")["Metadata"]["author"]) == "Jörg €"


@pytest.mark.parametrize("version", ["s3", "s3v4"])
def test_non_ascii_metadata_from_boto3_sigv2_and_sigv4(server: LiveServer, alice: Creds, bucket: str,
                                                       version: str) -> None:
    from botocore.handlers import validate_ascii_metadata

    client = server.client("s3", alice, signature_version=version)
    client.meta.events.unregister("before-parameter-build.s3.PutObject", validate_ascii_metadata)
    client.put_object(Bucket=bucket, Key=version, Body=b"x", Metadata={"author": "Zoë 東京"})
    assert _rfc2047(client.head_object(Bucket=bucket, Key=version)["Metadata"]["author"]) == "Zoë 東京"


def test_latin1_metadata_bytes(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    """Bytes that are not UTF-8 (Python's http.client sends text as Latin-1) are Latin-1 text."""
    res = _put_raw_headers(server, alice, f"/{bucket}/latin", b"x", {"x-amz-meta-author": "Jörg"}, "latin-1")
    assert res.status == 200, (res.status, res.body)
    assert _rfc2047(s3_alice.head_object(Bucket=bucket, Key="latin")["Metadata"]["author"]) == "Jörg"


def test_non_ascii_metadata_with_a_wrong_signature_is_refused(server: LiveServer, alice: Creds, bucket: str) -> None:
    url = server.s3_url + f"/{bucket}/meta"
    headers = sign(alice, "PUT", url, {"x-amz-meta-author": "Jörg", "Content-Length": "1"},
                   hashlib.sha256(b"x").hexdigest())
    headers["x-amz-meta-author"] = "Jürg"
    conn = http.client.HTTPConnection("127.0.0.1", server.s3_port, timeout=30)
    try:
        conn.putrequest("PUT", f"/{bucket}/meta", skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v.encode("utf-8"))
        conn.endheaders()
        conn.send(b"x")
        resp = conn.getresponse()
        assert resp.status == 403 and b"SignatureDoesNotMatch" in resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- partNumber


def test_get_and_head_by_part_number(s3_alice: Any, bucket: str) -> None:
    first, second = os.urandom(5 * MiB), b"tail bytes"
    up = s3_alice.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    e1 = s3_alice.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=first)["ETag"]
    e2 = s3_alice.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=second)["ETag"]
    s3_alice.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    got = s3_alice.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert got["Body"].read() == second and got["PartsCount"] == 2
    assert got["ContentRange"] == f"bytes {5 * MiB}-{5 * MiB + len(second) - 1}/{5 * MiB + len(second)}"
    head = s3_alice.head_object(Bucket=bucket, Key="mp", PartNumber=1)
    assert head["ContentLength"] == 5 * MiB and head["PartsCount"] == 2
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-mp-parts-count"] == "2"
    assert s3_alice.get_object(Bucket=bucket, Key="mp", PartNumber=1)["Body"].read() == first
    assert refused(s3_alice.get_object, Bucket=bucket, Key="mp", PartNumber=3) == ("InvalidPartNumber", 416)
    assert refused(s3_alice.head_object, Bucket=bucket, Key="mp", PartNumber=3) == ("416", 416)
    assert refused(s3_alice.get_object, Bucket=bucket, Key="mp", PartNumber=0)[1] == 400
    assert refused(s3_alice.get_object, Bucket=bucket, Key="mp", PartNumber=10001)[1] == 400
    assert refused(s3_alice.get_object, Bucket=bucket, Key="mp", PartNumber=1, Range="bytes=0-1")[1] == 400
    # a plain object is its one part
    s3_alice.put_object(Bucket=bucket, Key="plain", Body=b"plain body")
    whole = s3_alice.get_object(Bucket=bucket, Key="plain", PartNumber=1)
    assert whole["Body"].read() == b"plain body" and "PartsCount" not in whole
    assert refused(s3_alice.get_object, Bucket=bucket, Key="plain", PartNumber=2) == ("InvalidPartNumber", 416)


# --------------------------------------------------------------------------- listings


CONTROL_KEYS = ["dir\nname/x", "dir\nname/y", "tab\tkey", "cr\rkey", "bell\x07key", "plain", "sp ace+plus%"]


def test_listing_keys_with_control_characters(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    for key in CONTROL_KEYS:
        s3_alice.put_object(Bucket=bucket, Key=key, Body=b"x")
    # botocore asks for EncodingType=url and decodes Key, Prefix, Delimiter, markers
    v2 = s3_alice.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in v2["Contents"]] == sorted(CONTROL_KEYS, key=lambda k: k.encode())
    v1 = s3_alice.list_objects(Bucket=bucket, Prefix="dir\n", Delimiter="/")
    assert v1["Prefix"] == "dir\n" and v1["CommonPrefixes"] == [{"Prefix": "dir\nname/"}]
    inside = s3_alice.list_objects(Bucket=bucket, Prefix="dir\nname/", Marker="dir\nname/x")
    assert [o["Key"] for o in inside["Contents"]] == ["dir\nname/y"] and inside["Marker"] == "dir\nname/x"
    paged = [o["Key"] for p in s3_alice.get_paginator("list_objects").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2}) for o in p.get("Contents", [])]
    assert paged == sorted(CONTROL_KEYS, key=lambda k: k.encode())
    after = s3_alice.list_objects_v2(Bucket=bucket, StartAfter="cr\rkey")
    assert after["StartAfter"] == "cr\rkey" and "cr\rkey" not in [o["Key"] for o in after["Contents"]]
    versions = s3_alice.list_object_versions(Bucket=bucket, Prefix="dir\n")
    assert [v["Key"] for v in versions["Versions"]] == ["dir\nname/x", "dir\nname/y"]
    # on the wire: keys percent-encoded (ListObjects' Prefix stays as asked, as on S3)
    res = signed(server, alice, "GET", f"/{bucket}?encoding-type=url&prefix=dir%0A")
    assert res.status == 200 and b"<Key>dir%0Aname/x</Key>" in res.body, res.body
    res = signed(server, alice, "GET", f"/{bucket}?list-type=2&encoding-type=url&prefix=dir%0A")
    assert b"<Prefix>dir%0A</Prefix>" in res.body and b"<Key>dir%0Aname/y</Key>" in res.body, res.body
    for key in ("bell\x07key", "cr\rkey"):  # DeleteObjects' XML cannot name them
        s3_alice.delete_object(Bucket=bucket, Key=key)


def test_list_v2_with_an_empty_continuation_token(server: LiveServer, alice: Creds, s3_alice: Any,
                                                  bucket: str) -> None:
    for key in ("a", "b", "c"):
        s3_alice.put_object(Bucket=bucket, Key=key, Body=b"x")
    res = signed(server, alice, "GET", f"/{bucket}?list-type=2&continuation-token=&max-keys=2")
    assert res.status == 200, res.body
    assert res.body.count(b"<Key>") == 2 and b"<NextContinuationToken>" in res.body
    got = s3_alice.list_objects_v2(Bucket=bucket, ContinuationToken="")
    assert [o["Key"] for o in got["Contents"]] == ["a", "b", "c"]
    assert refused(s3_alice.list_objects_v2, Bucket=bucket, ContinuationToken="bogus") == ("InvalidArgument", 400)


# --------------------------------------------------------------------------- multipart


def test_part_uploaded_again_completes_with_the_latest(s3_alice: Any, bucket: str) -> None:
    old, new, tail = os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"
    up = s3_alice.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    e_old = s3_alice.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=old)["ETag"]
    e_tail = s3_alice.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=tail)["ETag"]
    e_new = s3_alice.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=new)["ETag"]
    parts = s3_alice.list_parts(Bucket=bucket, Key="mp", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, e_new), (2, e_tail)]
    code, status = refused(s3_alice.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=up,
                           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e_old},
                                                      {"PartNumber": 2, "ETag": e_tail}]})
    assert (code, status) == ("InvalidPart", 400)
    s3_alice.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": e_new}, {"PartNumber": 2, "ETag": e_tail}]})
    assert s3_alice.get_object(Bucket=bucket, Key="mp")["Body"].read() == new + tail


def test_part_one_finishing_last_wins(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    """Part 1 is sent again while the others go up; its upload ends last, and Complete uses it."""
    first, again, tail = os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"
    up = s3_alice.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3_alice.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=first)
    path = f"/{bucket}/mp?partNumber=1&uploadId={up}"
    url = server.s3_url + path
    headers = sign(alice, "PUT", url, {"Content-Length": str(len(again))}, "UNSIGNED-PAYLOAD")
    sock = socket.create_connection(("127.0.0.1", server.s3_port), timeout=30)
    try:
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode() + again[: MiB])  # part 1 is on its way ...
        e_tail = s3_alice.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=tail)["ETag"]
        sock.sendall(again[MiB:])  # ... and finishes after part 2
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply
    e_again = f'"{hashlib.md5(again).hexdigest()}"'
    assert e_again.encode() in reply
    s3_alice.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": e_again}, {"PartNumber": 2, "ETag": e_tail}]})
    assert s3_alice.get_object(Bucket=bucket, Key="mp")["Body"].read() == again + tail


# --------------------------------------------------------------------------- odd headers


def test_aws_chunked_as_a_plain_content_encoding(server: LiveServer, alice: Creds, s3_alice: Any,
                                                 bucket: str) -> None:
    """Content-Encoding: aws-chunked on a body that is not aws-chunked (a plain payload hash, no
    x-amz-decoded-content-length): the body is the object, and no encoding is kept."""
    body = b"plain body, not chunked"
    res = signed(server, alice, "PUT", f"/{bucket}/enc", body=body, headers={"Content-Encoding": "aws-chunked"})
    assert res.status == 200, res.body
    got = s3_alice.get_object(Bucket=bucket, Key="enc")
    assert got["Body"].read() == body and "ContentEncoding" not in got
    res = signed(server, alice, "PUT", f"/{bucket}/gz", body=body, headers={"Content-Encoding": "aws-chunked,gzip"})
    assert res.status == 200, res.body
    got = s3_alice.get_object(Bucket=bucket, Key="gz")
    assert got["Body"].read() == body and got["ContentEncoding"] == "gzip"


@pytest.mark.parametrize("expect", ["", "200", "nonsense"])
def test_expect_headers_other_than_100_continue_are_ignored(server: LiveServer, alice: Creds, s3_alice: Any,
                                                            bucket: str, expect: str) -> None:
    body = b"expect " + expect.encode()
    res = signed(server, alice, "PUT", f"/{bucket}/expect", body=body, headers={"Expect": expect})
    assert res.status == 200, (res.status, res.body)
    assert s3_alice.get_object(Bucket=bucket, Key="expect")["Body"].read() == body
    res = signed(server, alice, "GET", f"/{bucket}/expect", headers={"Expect": expect})
    assert res.status == 200 and res.body == body


@pytest.mark.parametrize("bad", ["", "0-3", "bytes=0-1,2-3", "bytes=5-2", "bytes=abc-def", "bytes=-3", "bytes=2-",
                                 "bytes=0-100"])
def test_upload_part_copy_with_an_invalid_range(s3_alice: Any, bucket: str, bad: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="src", Body=b"0123456789")
    up = s3_alice.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    with pytest.raises(ClientError) as info:
        s3_alice.upload_part_copy(Bucket=bucket, Key="dst", UploadId=up, PartNumber=1, CopySourceRange=bad,
                                  CopySource={"Bucket": bucket, "Key": "src"})
    code, status = error_code(info.value)
    assert (code, status) == ("InvalidArgument", 400), (bad, code, status)
    assert info.value.response["Error"]["Message"]
    assert s3_alice.list_parts(Bucket=bucket, Key="dst", UploadId=up).get("Parts", []) == []
    ok = s3_alice.upload_part_copy(Bucket=bucket, Key="dst", UploadId=up, PartNumber=1, CopySourceRange="bytes=2-9",
                                   CopySource={"Bucket": bucket, "Key": "src"})
    assert ok["CopyPartResult"]["ETag"] == f'"{hashlib.md5(b"23456789").hexdigest()}"'
