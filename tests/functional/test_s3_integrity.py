"""Integrity and bad input: digests, payload hashes, flexible checksums, aws-chunked bodies (signed and
with trailers, by hand over HTTP and from boto3 over HTTPS), cut-off bodies, malformed XML."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import base64
import hashlib
import os
import time
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import (  # noqa: F401 - fixtures
    EMPTY_SHA256,
    alice,
    aws_chunked,
    blob_count,
    bucket,
    cut_off_put,
    error_code,
    s3_alice,
    send,
    sign,
    signed,
    signing_key,
    temp_files,
    tls_client,
    tls_server,
)
from tests.live import Creds, LiveServer


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _missing(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        return error_code(err)[1] == 404
    return False


def test_content_md5(s3_alice: Any, bucket: str) -> None:
    body = b"digest me"
    s3_alice.put_object(Bucket=bucket, Key="ok", Body=body, ContentMD5=_b64(hashlib.md5(body).digest()))
    with pytest.raises(ClientError) as e:
        s3_alice.put_object(Bucket=bucket, Key="bad", Body=body, ContentMD5=_b64(hashlib.md5(b"other").digest()))
    assert error_code(e.value) == ("BadDigest", 400)
    with pytest.raises(ClientError) as e:
        s3_alice.put_object(Bucket=bucket, Key="bad", Body=body, ContentMD5="not-base64!")
    assert error_code(e.value) == ("InvalidDigest", 400)
    assert _missing(s3_alice, bucket, "bad")


def test_payload_sha256_mismatch(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    resp = signed(server, alice, "PUT", f"/{bucket}/sha", b"actual body",
                  payload_hash=hashlib.sha256(b"declared body").hexdigest())
    assert (resp.status, resp.code) == (400, "XAmzContentSHA256Mismatch")
    assert _missing(s3_alice, bucket, "sha")
    ok = signed(server, alice, "PUT", f"/{bucket}/sha", b"actual body")
    assert ok.status == 200


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"])
def test_flexible_checksums(s3_alice: Any, bucket: str, algorithm: str) -> None:
    body = os.urandom(70000)
    put = s3_alice.put_object(Bucket=bucket, Key=algorithm, Body=body, ChecksumAlgorithm=algorithm)
    value = put[f"Checksum{algorithm}"]
    if algorithm == "SHA256":
        assert value == _b64(hashlib.sha256(body).digest())
    if algorithm == "CRC32":
        assert value == _b64(zlib.crc32(body).to_bytes(4, "big"))
    head = s3_alice.head_object(Bucket=bucket, Key=algorithm, ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == value and head["ChecksumType"] == "FULL_OBJECT"
    assert f"Checksum{algorithm}" not in s3_alice.head_object(Bucket=bucket, Key=algorithm)
    got = s3_alice.get_object(Bucket=bucket, Key=algorithm, ChecksumMode="ENABLED")  # botocore validates it
    assert got["Body"].read() == body
    listed = s3_alice.list_objects_v2(Bucket=bucket, Prefix=algorithm)["Contents"][0]
    assert listed["ChecksumAlgorithm"] == [algorithm]


def test_wrong_checksum_is_bad_digest(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    body = b"checksummed"
    wrong = _b64(zlib.crc32(b"something else").to_bytes(4, "big"))
    resp = signed(server, alice, "PUT", f"/{bucket}/ck", body, headers={"x-amz-checksum-crc32": wrong})
    assert (resp.status, resp.code) == (400, "BadDigest")
    resp = signed(server, alice, "PUT", f"/{bucket}/ck", body, headers={"x-amz-checksum-crc32": "%%%"})
    assert (resp.status, resp.code) == (400, "InvalidRequest")
    assert _missing(s3_alice, bucket, "ck")


def _chunked_put(server: LiveServer, creds: Creds, path: str, body: bytes, decoded: int, payload_hash: str,
                 extra: dict[str, str] | None = None, when: datetime | None = None) -> Any:
    url = server.s3_url + path
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(decoded),
               "Content-Length": str(len(body)), **(extra or {})}
    return send(url, "PUT", sign(creds, "PUT", url, headers, payload_hash, when=when), body)


def test_aws_chunked_unsigned_trailer_by_hand(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    data = os.urandom(200_000)
    crc = _b64(zlib.crc32(data).to_bytes(4, "big"))
    body = aws_chunked(data, 65536, trailers={"x-amz-checksum-crc32": crc})
    resp = _chunked_put(server, alice, f"/{bucket}/trailer", body, len(data), "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                        {"x-amz-trailer": "x-amz-checksum-crc32", "Content-Encoding": "aws-chunked,gzip"})
    assert resp.status == 200, resp.body
    assert resp.headers["x-amz-checksum-crc32"] == crc
    got = s3_alice.get_object(Bucket=bucket, Key="trailer")
    assert got["Body"].read() == data
    assert got["ContentEncoding"] == "gzip"  # the aws-chunked framing is not the object's encoding
    bad = aws_chunked(data, 65536, trailers={"x-amz-checksum-crc32": _b64(b"\0\0\0\0")})
    resp = _chunked_put(server, alice, f"/{bucket}/trailer2", bad, len(data), "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                        {"x-amz-trailer": "x-amz-checksum-crc32"})
    assert (resp.status, resp.code) == (400, "BadDigest")
    short = aws_chunked(data, 65536)[:-200]
    resp = _chunked_put(server, alice, f"/{bucket}/trailer3", short, len(data), "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                        {"x-amz-trailer": "x-amz-checksum-crc32"})
    assert resp.status == 400
    assert _missing(s3_alice, bucket, "trailer2") and _missing(s3_alice, bucket, "trailer3")


def test_streaming_signed_payload_by_hand(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    data = os.urandom(150_000)
    when = datetime.now(UTC)
    amz_date, scope = when.strftime("%Y%m%dT%H%M%SZ"), f"{when:%Y%m%d}/us-east-1/s3/aws4_request"

    def put(key: str, tamper: bool = False) -> Any:
        url = f"{server.s3_url}/{bucket}/{key}"
        framed_len = len(aws_chunked(data, 65536, signer=(b"k", amz_date, scope, "0" * 64)))
        headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
                   "Content-Length": str(framed_len)}
        all_headers = sign(alice, "PUT", url, headers, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", when=when)
        seed = all_headers["Authorization"].rsplit("Signature=", 1)[1]
        body = aws_chunked(data, 65536, signer=(signing_key(alice.secret_key, f"{when:%Y%m%d}"), amz_date, scope, seed))
        if tamper:
            i = body.index(b"\r\n") + 2 + 1000
            body = body[:i] + bytes([body[i] ^ 1]) + body[i + 1:]
        return send(url, "PUT", all_headers, body)

    assert put("signed").status == 200
    assert s3_alice.get_object(Bucket=bucket, Key="signed")["Body"].read() == data
    resp = put("tampered", tamper=True)
    assert (resp.status, resp.code) == (403, "SignatureDoesNotMatch")
    assert _missing(s3_alice, bucket, "tampered")


def test_cut_off_bodies_leave_nothing(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    before = blob_count(server)
    cut_off_put(server, alice, f"/{bucket}/cut", 4 * 1024 * 1024, os.urandom(300_000))
    uid = s3_alice.create_multipart_upload(Bucket=bucket, Key="cutpart")["UploadId"]
    cut_off_put(server, alice, f"/{bucket}/cutpart?partNumber=1&uploadId={uid}", 6 * 1024 * 1024, b"x" * 1000)
    deadline = time.monotonic() + 10
    while temp_files(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_files(server) == []
    assert _missing(s3_alice, bucket, "cut")
    assert s3_alice.list_parts(Bucket=bucket, Key="cutpart", UploadId=uid).get("Parts", []) == []
    assert blob_count(server) == before


def test_length_rules(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    url = f"{server.s3_url}/{bucket}/nolen"
    resp = send(url, "PUT", sign(alice, "PUT", url, {}, "UNSIGNED-PAYLOAD"))
    assert (resp.status, resp.code) == (411, "MissingContentLength")
    resp = send(url, "PUT", sign(alice, "PUT", url, {"Content-Length": str(6 * 1024**3)}, "UNSIGNED-PAYLOAD"))
    assert (resp.status, resp.code) == (400, "EntityTooLarge")
    assert _missing(s3_alice, bucket, "nolen")
    uid = s3_alice.create_multipart_upload(Bucket=bucket, Key="huge")["UploadId"]
    part_url = f"{server.s3_url}/{bucket}/huge?partNumber=1&uploadId={uid}"
    resp = send(part_url, "PUT", sign(alice, "PUT", part_url, {"Content-Length": str(5 * 1024**3 + 1)},
                                      "UNSIGNED-PAYLOAD"))
    assert (resp.status, resp.code) == (400, "EntityTooLarge")
    assert s3_alice.list_parts(Bucket=bucket, Key="huge", UploadId=uid).get("Parts", []) == []


def test_malformed_xml(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    uid = s3_alice.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    for body in (b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>", b"garbage",
                 b"<CompleteMultipartUpload></CompleteMultipartUpload>",
                 (b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part>"
                  b"</CompleteMultipartUpload>")):
        resp = signed(server, alice, "POST", f"/{bucket}/m?uploadId={uid}", body)
        assert (resp.status, resp.code) == (400, "MalformedXML"), body
    for body in (b"<Delete><Object><Key>a</Key></Object>", b"<Delete></Delete>", b"<Nope/>",
                 b'<!DOCTYPE x [<!ENTITY a "b">]><Delete><Object><Key>&a;</Key></Object></Delete>'):
        md5 = _b64(hashlib.md5(body).digest())
        resp = signed(server, alice, "POST", f"/{bucket}?delete", body, headers={"Content-MD5": md5})
        assert (resp.status, resp.code) == (400, "MalformedXML"), body
    body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    resp = signed(server, alice, "POST", f"/{bucket}?delete", body)
    assert (resp.status, resp.code) == (400, "InvalidRequest")  # S3 wants Content-MD5 or a checksum here
    resp = signed(server, alice, "POST", f"/{bucket}?delete", body, headers={"Content-MD5": _b64(b"0" * 16)})
    assert (resp.status, resp.code) == (400, "BadDigest")


def test_empty_payload_hash_constant(server: LiveServer, alice: Creds, bucket: str) -> None:
    resp = signed(server, alice, "GET", f"/{bucket}?list-type=2", payload_hash=EMPTY_SHA256)
    assert resp.status == 200 and b"<ListBucketResult" in resp.body


def test_boto3_over_https_sends_aws_chunked_trailers(tls_server: LiveServer) -> None:
    client = tls_client(tls_server)
    seen: list[dict[str, str]] = []
    client.meta.events.register("before-send.s3.*", lambda request, **_: seen.append(dict(request.headers)))
    client.create_bucket(Bucket="tls-bucket")
    data = os.urandom(300_000)
    client.put_object(Bucket="tls-bucket", Key="k", Body=data)
    put_headers = seen[-1]
    assert put_headers.get("x-amz-content-sha256") in (b"STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                                      "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    got = client.get_object(Bucket="tls-bucket", Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert "ContentEncoding" not in got
    from boto3.s3.transfer import TransferConfig

    big = os.urandom(11 * 1024 * 1024)
    import io

    client.upload_fileobj(io.BytesIO(big), "tls-bucket", "big",
                          Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
    out = io.BytesIO()
    client.download_fileobj("tls-bucket", "big", out)
    assert out.getvalue() == big
