"""Multipart uploads: boto3's transfer manager both ways, and every rule of the low-level calls."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import alice, blob_count, bob, bucket, error_code, s3_alice, s3_bob  # noqa: F401 - fixtures
from tests.live import LiveServer

MiB = 1024 * 1024


def test_upload_file_and_download_file_multipart(s3_alice: Any, bucket: str, tmp_path: Any) -> None:
    src = tmp_path / "src.bin"
    data = os.urandom(21 * MiB + 17)
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    s3_alice.upload_file(str(src), bucket, "big/file.bin", Config=cfg)
    head = s3_alice.head_object(Bucket=bucket, Key="big/file.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    md5s = [hashlib.md5(data[i:i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)]
    assert head["ETag"] == f'"{hashlib.md5(b"".join(md5s)).hexdigest()}-{len(md5s)}"'
    got = s3_alice.get_object(Bucket=bucket, Key="big/file.bin", PartNumber=2)
    assert got["PartsCount"] == 5 and got["ContentLength"] == 5 * MiB
    assert got["Body"].read() == data[5 * MiB:10 * MiB]
    dst = tmp_path / "dst.bin"
    s3_alice.download_file(bucket, "big/file.bin", str(dst), Config=cfg)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    whole = s3_alice.get_object(Bucket=bucket, Key="big/file.bin", Range=f"bytes={5 * MiB - 10}-{5 * MiB + 9}")
    assert whole["Body"].read() == data[5 * MiB - 10:5 * MiB + 10]


def _mpu(client: Any, bucket: str, key: str, **kw: Any) -> str:
    return client.create_multipart_upload(Bucket=bucket, Key=key, **kw)["UploadId"]  # type: ignore[no-any-return]


def test_low_level_rules(s3_alice: Any, bucket: str) -> None:
    uid = _mpu(s3_alice, bucket, "k", ContentType="text/x", Metadata={"m": "1"})
    p1 = os.urandom(5 * MiB)
    e1 = s3_alice.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    e2 = s3_alice.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=2, Body=b"tail")["ETag"]
    small = s3_alice.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=3, Body=b"x")["ETag"]
    for number in (0, 10001):
        with pytest.raises(ClientError) as e:
            s3_alice.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=number, Body=b"x")
        assert error_code(e.value) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as e:  # wrong order
        s3_alice.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    assert error_code(e.value) == ("InvalidPartOrder", 400)
    with pytest.raises(ClientError) as e:  # wrong etag
        s3_alice.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    assert error_code(e.value) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as e:  # a part below 5 MiB that is not the last
        s3_alice.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 3, "ETag": small}]})
    assert error_code(e.value) == ("EntityTooSmall", 400)
    parts = s3_alice.list_parts(Bucket=bucket, Key="k", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in parts["Parts"]] == [1, 2] and parts["IsTruncated"]
    rest = s3_alice.list_parts(Bucket=bucket, Key="k", UploadId=uid, PartNumberMarker=parts["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    assert [u["UploadId"] for u in s3_alice.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [uid]
    done = s3_alice.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    expected = hashlib.md5(bytes.fromhex(e1.strip('"')) + bytes.fromhex(e2.strip('"'))).hexdigest() + "-2"
    assert done["ETag"] == f'"{expected}"' and done["Key"] == "k" and done["Bucket"] == bucket
    got = s3_alice.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == p1 + b"tail"
    assert got["ContentType"] == "text/x" and got["Metadata"] == {"m": "1"}
    # completing again answers the same (S3 does); the unused part 3 is gone
    again = s3_alice.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert again["ETag"] == done["ETag"]
    assert s3_alice.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3_alice.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=4, Body=b"x")
    assert error_code(e.value) == ("NoSuchUpload", 404)
    # once the object is replaced the upload is really gone
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"new")
    with pytest.raises(ClientError) as e:
        s3_alice.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": e1}]})
    assert error_code(e.value) == ("NoSuchUpload", 404)


def test_abort_removes_parts(server: LiveServer, s3_alice: Any, bucket: str) -> None:
    before = blob_count(server)
    uid = _mpu(s3_alice, bucket, "a")
    s3_alice.upload_part(Bucket=bucket, Key="a", UploadId=uid, PartNumber=1, Body=b"x" * 1000)
    s3_alice.upload_part(Bucket=bucket, Key="a", UploadId=uid, PartNumber=1, Body=b"y" * 1000)  # replaced
    assert blob_count(server) == before + 1
    assert s3_alice.abort_multipart_upload(Bucket=bucket, Key="a", UploadId=uid)["ResponseMetadata"][
        "HTTPStatusCode"] == 204
    assert blob_count(server) == before
    with pytest.raises(ClientError) as e:
        s3_alice.abort_multipart_upload(Bucket=bucket, Key="a", UploadId=uid)
    assert error_code(e.value) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:
        s3_alice.list_parts(Bucket=bucket, Key="a", UploadId="not-an-upload")
    assert error_code(e.value) == ("NoSuchUpload", 404)


def test_other_users_cannot_touch_an_upload(s3_alice: Any, s3_bob: Any, bucket: str) -> None:
    uid = _mpu(s3_alice, bucket, "p")
    with pytest.raises(ClientError) as e:
        s3_bob.upload_part(Bucket=bucket, Key="p", UploadId=uid, PartNumber=1, Body=b"x")
    assert error_code(e.value) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as e:
        s3_bob.create_multipart_upload(Bucket=bucket, Key="q")
    assert error_code(e.value) == ("AccessDenied", 403)


def test_upload_part_copy(s3_alice: Any, bucket: str) -> None:
    data = os.urandom(6 * MiB)
    s3_alice.put_object(Bucket=bucket, Key="src", Body=data)
    uid = _mpu(s3_alice, bucket, "dst")
    r1 = s3_alice.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                                   CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    r2 = s3_alice.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2,
                                   CopySource=f"{bucket}/src", CopySourceRange=f"bytes={5 * MiB}-{6 * MiB - 1}")
    assert r1["CopyPartResult"]["ETag"] == f'"{hashlib.md5(data[:5 * MiB]).hexdigest()}"'
    with pytest.raises(ClientError) as e:
        s3_alice.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=3, CopySource=f"{bucket}/src",
                                  CopySourceRange=f"bytes=0-{6 * MiB}")
    assert error_code(e.value) == ("InvalidArgument", 400)
    s3_alice.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]}]})
    assert s3_alice.get_object(Bucket=bucket, Key="dst")["Body"].read() == data


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_checksums_composite_and_full_object(s3_alice: Any, bucket: str) -> None:
    p1, p2 = os.urandom(5 * MiB), os.urandom(1000)
    for ctype in ("COMPOSITE", "FULL_OBJECT"):
        key = f"ck-{ctype}"
        uid = _mpu(s3_alice, bucket, key, ChecksumAlgorithm="CRC32", ChecksumType=ctype)
        parts = []
        for n, body in ((1, p1), (2, p2)):
            r = s3_alice.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=body,
                                     ChecksumAlgorithm="CRC32")
            assert r["ChecksumCRC32"] == _crc32_b64(body)
            parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
        listed = s3_alice.list_parts(Bucket=bucket, Key=key, UploadId=uid)
        assert listed["ChecksumAlgorithm"] == "CRC32" and listed["Parts"][1]["ChecksumCRC32"] == _crc32_b64(p2)
        s3_alice.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
        head = s3_alice.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ChecksumType"] == ctype
        if ctype == "FULL_OBJECT":
            assert head["ChecksumCRC32"] == _crc32_b64(p1 + p2)
            # botocore validates a full-object checksum on GET
            assert s3_alice.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")["Body"].read() == p1 + p2
        else:
            raw = base64.b64decode(_crc32_b64(p1)) + base64.b64decode(_crc32_b64(p2))
            assert head["ChecksumCRC32"] == f"{_crc32_b64(raw)}-2"
    uid = _mpu(s3_alice, bucket, "bad", ChecksumAlgorithm="CRC32")
    r = s3_alice.upload_part(Bucket=bucket, Key="bad", UploadId=uid, PartNumber=1, Body=b"abc", ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as e:
        s3_alice.complete_multipart_upload(Bucket=bucket, Key="bad", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": _crc32_b64(b"xyz")}]})
    assert error_code(e.value) == ("InvalidPart", 400)
