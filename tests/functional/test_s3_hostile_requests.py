"""Cumulus against malformed and hostile requests: each one is a 4xx S3 error, never a 500, and
stores or removes nothing it should not (found by an audit; each test failed before its fix)."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import (  # noqa: F401 - fixtures
    RawResponse,
    alice,
    bucket,
    error_code,
    s3_alice,
    sign,
    signed,
    temp_files,
)
from tests.live import Creds, LiveServer

HUGE = "9" * 5000  # more digits than Python's int() converts (4,300)
FAR_DATE = "Fri, 31 Dec 9999 23:59:59 -2359"  # a valid HTTP date whose UTC time is past year 9999


def _raw_put(server: LiveServer, creds: Creds, path: str, headers: dict[str, str], body: bytes) -> RawResponse:
    """A signed PUT sent as raw bytes (http.client would not send a broken chunked body)."""
    url = server.s3_url + path
    hdrs = sign(creds, "PUT", url, headers, "UNSIGNED-PAYLOAD")
    head = f"PUT {urlsplit(url).path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    with socket.create_connection(("127.0.0.1", server.s3_port), timeout=10) as sock:
        sock.sendall((head + "Connection: close\r\n\r\n").encode() + body)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return RawResponse(status, {}, payload)


@pytest.mark.parametrize("body, code", [
    (b"zz\r\nabc\r\n0\r\n\r\n", "InvalidRequest"),  # a chunk size that is not hex
    (b"3\r\nabcXX0\r\n\r\n", "InvalidRequest"),  # chunk data not followed by CRLF
    (b"10\r\nabc", "IncompleteBody"),  # the connection ends inside a chunk
])
def test_bad_transfer_encoding_chunked_body_is_400(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str,
                                                   body: bytes, code: str) -> None:
    resp = _raw_put(server, alice, f"/{bucket}/chunked", {"Transfer-Encoding": "chunked"}, body)
    assert (resp.status, resp.code) == (400, code), resp.body
    assert b"Traceback" not in resp.body
    with pytest.raises(ClientError) as e:
        s3_alice.head_object(Bucket=bucket, Key="chunked")
    assert error_code(e.value)[1] == 404
    assert not temp_files(server)
    # a good chunked body still works
    ok = _raw_put(server, alice, f"/{bucket}/chunked", {"Transfer-Encoding": "chunked"}, b"3\r\nabc\r\n0\r\n\r\n")
    assert ok.status == 200, ok.body
    assert s3_alice.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"abc"


def test_range_numbers_longer_than_int_takes(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    whole = signed(server, alice, "GET", f"/{bucket}/k", headers={"Range": f"bytes=2-{HUGE}"})
    assert (whole.status, whole.body) == (206, b"23456789")
    suffix = signed(server, alice, "GET", f"/{bucket}/k", headers={"Range": f"bytes=-{HUGE}"})
    assert (suffix.status, suffix.body) == (206, b"0123456789")
    past = signed(server, alice, "GET", f"/{bucket}/k", headers={"Range": f"bytes={HUGE}-"})
    assert (past.status, past.code) == (416, "InvalidRange")
    head = signed(server, alice, "HEAD", f"/{bucket}/k", headers={"Range": f"bytes={HUGE}-"})
    assert head.status == 416
    upload_id = s3_alice.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    for rng in (f"bytes=0-{HUGE}", f"bytes={HUGE}-1", f"bytes=1{HUGE[:4000]}-{HUGE[:4001]}"):
        copy = signed(server, alice, "PUT", f"/{bucket}/mp?partNumber=1&uploadId={upload_id}",
                      headers={"x-amz-copy-source": f"/{bucket}/k", "x-amz-copy-source-range": rng})
        assert (copy.status, copy.code) == (400, "InvalidArgument"), copy.body
    assert s3_alice.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id).get("Parts", []) == []


@pytest.mark.parametrize("method, path, headers", [
    ("GET", "/k", {"If-Modified-Since": FAR_DATE}),
    ("GET", "/k", {"If-Unmodified-Since": FAR_DATE}),
    ("HEAD", "/k", {"If-Modified-Since": FAR_DATE}),
    ("GET", "/k?response-expires=Fri,%2031%20Dec%209999%2023:59:59%20-2359", {}),
    ("PUT", "/new", {"Expires": FAR_DATE}),
    ("PUT", "/new", {"x-amz-object-lock-retain-until-date": "9999-12-31T23:59:59-23:59"}),
    ("PUT", "/new", {"x-amz-copy-source": "/{bucket}/k", "x-amz-copy-source-if-modified-since": FAR_DATE}),
])
def test_dates_beyond_year_9999_are_400(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str, method: str,
                                        path: str, headers: dict[str, str]) -> None:
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    headers = {k: v.replace("{bucket}", bucket) for k, v in headers.items()}
    resp = signed(server, alice, method, f"/{bucket}{path}", b"new" if method == "PUT" and
                  "x-amz-copy-source" not in headers else b"", headers=headers)
    assert resp.status == 400, resp.body
    assert method == "HEAD" or resp.code == "InvalidArgument"
    assert "new" not in [o["Key"] for o in s3_alice.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_list_parts_marker_beyond_64_bits(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    upload_id = s3_alice.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3_alice.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"x")
    for marker, parts in (("9" * 30, 0), ("-" + "9" * 30, 1)):
        resp = signed(server, alice, "GET", f"/{bucket}/mp?uploadId={upload_id}&part-number-marker={marker}")
        assert resp.status == 200, resp.body
        assert resp.body.count(b"<Part>") == parts


def test_delete_object_with_a_version_id_deletes_nothing(s3_alice: Any, bucket: str) -> None:
    """Buckets are unversioned: `delete-object --version-id X` must not delete the current object."""
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"keep me")
    with pytest.raises(ClientError) as e:
        s3_alice.delete_object(Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    assert error_code(e.value) == ("InvalidArgument", 400)
    assert s3_alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"keep me"
    with pytest.raises(ClientError) as e:
        s3_alice.put_object_acl(Bucket=bucket, Key="k", ACL="public-read", VersionId="other")
    assert error_code(e.value) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as e:
        s3_alice.get_object_acl(Bucket=bucket, Key="k", VersionId="other")
    assert error_code(e.value) == ("InvalidArgument", 400)
    assert len(s3_alice.get_object_acl(Bucket=bucket, Key="k")["Grants"]) == 1  # still private
    s3_alice.delete_object(Bucket=bucket, Key="k", VersionId="null")  # the one version there is
    assert s3_alice.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_unknown_server_side_encryption_is_400(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    resp = signed(server, alice, "PUT", f"/{bucket}/k", b"x", headers={"x-amz-server-side-encryption": "BOGUS"})
    assert (resp.status, resp.code) == (400, "InvalidArgument")
    kms = signed(server, alice, "PUT", f"/{bucket}/k", b"x", headers={"x-amz-server-side-encryption": "aws:kms"})
    assert (kms.status, kms.code) == (501, "NotImplemented")  # a real S3 feature Cumulus does not have
    assert s3_alice.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_expected_bucket_owner_is_checked(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str) -> None:
    """x-amz-expected-bucket-owner names the account the caller means to write to (or read from)."""
    import json
    import uuid

    info = json.loads(server.cli("admin", "user", "add", f"carol{uuid.uuid4().hex[:6]}", "--json").stdout)
    carol = server.client("s3", Creds(info["name"], info["access_key_id"], info["secret_access_key"]))
    theirs = f"carol-{uuid.uuid4().hex[:10]}"
    carol.create_bucket(Bucket=theirs, ACL="public-read-write")
    s3_alice.put_object(Bucket=bucket, Key="src", Body=b"mine")
    try:
        with pytest.raises(ClientError) as e:
            s3_alice.put_object(Bucket=theirs, Key="k", Body=b"x", ExpectedBucketOwner="111122223333")
        assert error_code(e.value) == ("AccessDenied", 403)
        with pytest.raises(ClientError) as e:
            s3_alice.list_objects_v2(Bucket=theirs, ExpectedBucketOwner="111122223333")
        assert error_code(e.value) == ("AccessDenied", 403)
        with pytest.raises(ClientError) as e:
            carol.copy_object(Bucket=theirs, Key="copy", CopySource=f"{bucket}/src",
                              ExpectedSourceBucketOwner=info["account_id"])
        assert error_code(e.value) == ("AccessDenied", 403)
        assert carol.list_objects_v2(Bucket=theirs)["KeyCount"] == 0
        carol.put_object(Bucket=theirs, Key="k", Body=b"x", ExpectedBucketOwner=info["account_id"])
        assert carol.list_objects_v2(Bucket=theirs, ExpectedBucketOwner=info["account_id"])["KeyCount"] == 1
    finally:
        carol.delete_object(Bucket=theirs, Key="k")
        carol.delete_bucket(Bucket=theirs)


def test_object_lock_is_refused_not_ignored(s3_alice: Any, bucket: str) -> None:
    """An object stored without the retention the client asked for could be deleted by anyone
    relying on it: S3 refuses Object Lock headers on a bucket without Object Lock, as here."""
    from datetime import UTC, datetime, timedelta

    until = datetime.now(UTC) + timedelta(days=1)
    for call in (
        lambda: s3_alice.put_object(Bucket=bucket, Key="l", Body=b"x", ObjectLockMode="COMPLIANCE",
                                    ObjectLockRetainUntilDate=until),
        lambda: s3_alice.put_object(Bucket=bucket, Key="l", Body=b"x", ObjectLockLegalHoldStatus="ON"),
        lambda: s3_alice.create_multipart_upload(Bucket=bucket, Key="l", ObjectLockMode="GOVERNANCE",
                                                 ObjectLockRetainUntilDate=until),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value) == ("InvalidRequest", 400)
    assert s3_alice.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert s3_alice.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    name = f"lock-{bucket}"[:63]
    with pytest.raises(ClientError) as e:
        s3_alice.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    assert error_code(e.value) == ("NotImplemented", 501)
    assert name not in [b["Name"] for b in s3_alice.list_buckets()["Buckets"]]


_XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


@pytest.mark.parametrize("grant", [
    "<Grant><Permission>READ</Permission></Grant>",  # no Grantee
    f'<Grant><Grantee {_XSI} xsi:type="CanonicalUser"><ID>x</ID></Grantee><Permission>BOGUS</Permission></Grant>',
    f'<Grant><Grantee {_XSI} xsi:type="Bogus"><ID>x</ID></Grantee><Permission>READ</Permission></Grant>',
    (f'<Grant><Grantee {_XSI} xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI>'
     "</Grantee></Grant>"),  # no Permission
])
def test_malformed_acl_body_is_400_not_501(server: LiveServer, alice: Creds, s3_alice: Any, bucket: str,
                                           grant: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"x")
    body = (f"<AccessControlPolicy><Owner><ID>x</ID></Owner><AccessControlList>{grant}</AccessControlList>"
            "</AccessControlPolicy>").encode()
    for path in (f"/{bucket}?acl", f"/{bucket}/k?acl"):
        resp = signed(server, alice, "PUT", path, body)
        assert (resp.status, resp.code) == (400, "MalformedACLError"), resp.body
    assert len(s3_alice.get_bucket_acl(Bucket=bucket)["Grants"]) == 1
    # a well-formed grant Cumulus can express still works
    public = (f'<AccessControlPolicy><Owner><ID>x</ID></Owner><AccessControlList><Grant><Grantee {_XSI} '
              'xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee>'
              "<Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>").encode()
    assert signed(server, alice, "PUT", f"/{bucket}/k?acl", public).status == 200
    assert len(s3_alice.get_object_acl(Bucket=bucket, Key="k")["Grants"]) == 2


@pytest.mark.parametrize("query", [
    "response-content-type=a%00b", "response-cache-control=a%7fb", "response-content-disposition=a%01b",
    "response-content-type=a%0d%0aX-Injected:%201",
])
def test_response_overrides_with_control_characters_are_400(server: LiveServer, alice: Creds, s3_alice: Any,
                                                            bucket: str, query: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    for method in ("GET", "HEAD"):
        resp = signed(server, alice, method, f"/{bucket}/k?{query}")
        assert resp.status == 400, resp.body
        assert b"Internal Server Error" not in resp.body and "x-injected" not in resp.headers
    ok = signed(server, alice, "GET", f"/{bucket}/k?response-content-type=text/plain%09x")  # a tab is fine
    assert ok.status == 200 and ok.headers["content-type"] == "text/plain\tx"


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("headers, body, what", [
    ({"Content-Length": "100"}, b"abc", "object"),
    ({"Transfer-Encoding": "chunked"}, b"3\r\nabc\r\n", "object"),
    ({"Content-Length": "100", "Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="}, b"<Delete>", "xml"),
])
def test_a_body_that_stops_arriving_is_400_request_timeout(tmp_path: Any, tls: bool, headers: dict[str, str],
                                                           body: bytes, what: str) -> None:
    """A client that stops sending its body (without closing) got no answer at all, and held one of
    the server's threads for as long as it liked (16 of them stop Cumulus)."""
    import ssl
    import time

    from tests.functional.s3_fixtures import tls_client

    srv = LiveServer(tmp_path / "srv", env={"EC2GW_BODY_TIMEOUT": "1.5"},
                     extra_args=["--tls"] if tls else [], scheme="https" if tls else "http").start()
    try:
        client = tls_client(srv) if tls else srv.client("s3")
        client.create_bucket(Bucket="slow")
        method, path = ("POST", "/slow?delete") if what == "xml" else ("PUT", "/slow/k")
        hdrs = sign(srv.admin, method, srv.s3_url + path, headers, "UNSIGNED-PAYLOAD")
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        sock: Any = socket.create_connection(("127.0.0.1", srv.s3_port), timeout=10)
        if tls:
            ctx = ssl.create_default_context(cafile=str(srv.data_dir / "certs" / "ca.pem"))
            sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        with sock:
            started = time.monotonic()
            sock.sendall(head.encode() + body)  # ... and nothing more, the connection stays open
            answer = sock.recv(65536)
            while b"</Error>" not in answer and (more := sock.recv(65536)):
                answer += more
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert b"<Code>RequestTimeout</Code>" in answer
        assert time.monotonic() - started < 8
        assert client.list_objects_v2(Bucket="slow")["KeyCount"] == 0
        assert not temp_files(srv)
        client.put_object(Bucket="slow", Key="after", Body=b"x" * (3 * 1024 * 1024))  # the server is fine
        assert client.get_object(Bucket="slow", Key="after")["ContentLength"] == 3 * 1024 * 1024
        assert "Traceback" not in srv.log()
    finally:
        srv.stop()


@pytest.mark.parametrize("method, path", [
    ("DELETE", "/k?acl"), ("DELETE", "/k?retention"), ("DELETE", "/k?legal-hold"), ("DELETE", "/k?restore"),
    ("DELETE", "?acl"), ("DELETE", "?notification"), ("DELETE", "?versioning"), ("DELETE", "?location"),
    ("DELETE", "?uploads"), ("DELETE", "?versions"), ("PUT", "/k?uploads"), ("GET", "?delete"),
])
def test_subresource_without_such_operation_does_not_fall_back(server: LiveServer, alice: Creds, s3_alice: Any,
                                                               bucket: str, method: str, path: str) -> None:
    """DELETE /bucket?acl deleted the bucket and DELETE /bucket/key?retention the object: the
    router fell back on DeleteBucket / DeleteObject when no operation had that subresource."""
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"keep")
    if path.startswith("?"):
        s3_alice.delete_object(Bucket=bucket, Key="k")  # an empty bucket, which DeleteBucket would take
    resp = signed(server, alice, method, f"/{bucket}{path}", b"new" if method == "PUT" else b"")
    assert (resp.status, resp.code) == (405, "MethodNotAllowed"), resp.body
    s3_alice.head_bucket(Bucket=bucket)
    if not path.startswith("?"):
        assert s3_alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"keep"


def test_compressed_transfer_encoding_is_not_stored_as_the_object(server: LiveServer, alice: Creds, s3_alice: Any,
                                                                  bucket: str) -> None:
    """The server only removes the chunked framing: a `gzip, chunked` body was stored compressed
    as the object's bytes. S3 answers 501 NotImplemented for such a Transfer-Encoding."""
    import gzip

    packed = gzip.compress(b"hello")
    body = b"%x\r\n" % len(packed) + packed + b"\r\n0\r\n\r\n"
    resp = _raw_put(server, alice, f"/{bucket}/gz", {"Transfer-Encoding": "gzip, chunked"}, body)
    assert (resp.status, resp.code) == (501, "NotImplemented"), resp.body
    assert s3_alice.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_grant_headers_are_applied_or_refused_never_ignored(server: LiveServer, s3_alice: Any, bucket: str) -> None:
    """x-amz-grant-* were dropped without a word: an object asked to be public was stored private,
    and PutBucketAcl with grant headers said a header was missing."""
    all_users = 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'

    def grants(acl: dict[str, Any]) -> set[tuple[str, str]]:
        return {(g["Permission"], g["Grantee"].get("URI", "owner")) for g in acl["Grants"]}

    public = {("FULL_CONTROL", "owner"), ("READ", "http://acs.amazonaws.com/groups/global/AllUsers")}
    s3_alice.put_object(Bucket=bucket, Key="pub", Body=b"x", GrantRead=all_users)
    assert grants(s3_alice.get_object_acl(Bucket=bucket, Key="pub")) == public
    s3_alice.put_object(Bucket=bucket, Key="priv", Body=b"x")
    s3_alice.put_object_acl(Bucket=bucket, Key="priv", GrantRead=all_users)
    assert grants(s3_alice.get_object_acl(Bucket=bucket, Key="priv")) == public
    s3_alice.put_bucket_acl(Bucket=bucket, GrantRead=all_users)
    assert grants(s3_alice.get_bucket_acl(Bucket=bucket)) == public
    for kwargs, code in (
        ({"GrantRead": all_users, "ACL": "private"}, ("InvalidRequest", 400)),
        ({"GrantRead": "everyone"}, ("InvalidArgument", 400)),
        ({"GrantFullControl": 'id="0123456789abcdef"'}, ("InvalidArgument", 400)),  # no user has that ID
        ({"GrantRead": 'emailAddress="x@example.com"'}, ("UnresolvableGrantByEmailAddress", 400)),
    ):
        with pytest.raises(ClientError) as e:
            s3_alice.put_object(Bucket=bucket, Key="bad", Body=b"x", **kwargs)
        assert error_code(e.value) == code
    assert "bad" not in [o["Key"] for o in s3_alice.list_objects_v2(Bucket=bucket)["Contents"]]
