"""Every x-amz-* header a request carries must be covered by its signature (issue 12, item 3).

A client signs a request (boto3/botocore: header auth or a presigned URL, SigV4 or SigV2), then
whoever holds it adds x-amz-* headers or query parameters, with curl or raw HTTP. S3 refuses such a
request with 403 AccessDenied ("There were headers present in the request which were not signed",
naming them in HeadersNotSigned); otherwise the holder of a presigned PUT URL could copy the
signer's private object into it and publish it.
"""

from __future__ import annotations

import re
import subprocess
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from botocore.auth import SigV2Auth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import RawResponse, error_code, send
from tests.live import LiveServer
from tests.security.conftest import Tenant

SECRET = b"alice's private payroll"


@pytest.fixture(scope="module")
def server(live: LiveServer) -> LiveServer:
    return live


@pytest.fixture(scope="module")
def s3_alice(alice: Tenant) -> Any:
    return alice.s3


@pytest.fixture(scope="module")
def s3_anon(anon: Tenant) -> Any:
    return anon.s3


@pytest.fixture
def private(s3_alice: Any, bucket: str) -> str:
    """alice's bucket holding a private object 'secret'."""
    s3_alice.put_object(Bucket=bucket, Key="secret", Body=SECRET)
    return bucket


@pytest.fixture(scope="module")
def v4(server: LiveServer, alice: Tenant) -> Any:
    return server.client("s3", alice, signature_version="s3v4")


@pytest.fixture(scope="module")
def v2(server: LiveServer, alice: Tenant) -> Any:
    return server.client("s3", alice, signature_version="s3", s3={"addressing_style": "path"})


def curl(method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> RawResponse:
    """The request as curl sends it (status and body only)."""
    cmd = ["curl", "-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if body is not None:  # without curl's own Content-Type (SigV2 signs that header)
        cmd += ["--data-binary", "@-", "-H", "Content-Type:"]
    out = subprocess.run(cmd, input=body or b"", capture_output=True, timeout=60, check=True).stdout
    text, _, status = out.rpartition(b"\n")
    return RawResponse(int(status), {}, text)


def not_signed(resp: RawResponse) -> list[str]:
    m = re.search(rb"<HeadersNotSigned>([^<]*)</HeadersNotSigned>", resp.body)
    return sorted(h.strip() for h in m.group(1).decode().split(",")) if m else []


def assert_untouched(s3_alice: Any, s3_anon: Any, bucket: str, key: str) -> None:
    """The attack left nothing behind: no object at `key`, nothing readable anonymously."""
    with pytest.raises(ClientError) as exc:
        s3_anon.get_object(Bucket=bucket, Key=key)
    assert error_code(exc.value)[1] in (403, 404)
    with pytest.raises(ClientError) as exc:
        s3_alice.head_object(Bucket=bucket, Key=key)
    assert error_code(exc.value)[1] == 404


def add_headers(client: Any, event: str, extra: dict[str, str]) -> Callable[..., None]:
    """Add headers to the request botocore has just signed (the attacker in the middle)."""

    def handler(request: Any, **_: Any) -> None:
        for k, v in extra.items():
            request.headers[k] = v

    client.meta.events.register(event, handler)
    return handler


# --------------------------------------------------------------------------- S3, SigV4 presigned URLs


def test_presigned_put_with_unsigned_copy_source_and_acl_is_refused(
        v4: Any, s3_alice: Any, s3_anon: Any, private: str) -> None:
    url = v4.generate_presigned_url("put_object", Params={"Bucket": private, "Key": "inbox"}, ExpiresIn=300)
    attack = {"x-amz-copy-source": f"/{private}/secret", "x-amz-acl": "public-read"}
    resp = curl("PUT", url, attack, b"")
    assert resp.status == 403, resp.body
    assert resp.code == "AccessDenied"
    assert b"There were headers present in the request which were not signed" in resp.body
    assert not_signed(resp) == ["x-amz-acl", "x-amz-copy-source"]
    assert_untouched(s3_alice, s3_anon, private, "inbox")
    # the URL itself still does what it was signed for
    assert curl("PUT", url, {}, b"hello").status == 200
    assert s3_alice.get_object(Bucket=private, Key="inbox")["Body"].read() == b"hello"


@pytest.mark.parametrize("header, value", [
    ("x-amz-acl", "public-read"),
    ("x-amz-grant-read", 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'),
    ("x-amz-meta-owner", "mallory"),
    ("x-amz-date", "20200101T000000Z"),
    ("x-amz-security-token", "junk"),
    ("x-amz-checksum-sha256", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
])
def test_presigned_get_and_put_refuse_any_unsigned_x_amz_header(
        v4: Any, s3_alice: Any, bucket: str, header: str, value: str) -> None:
    s3_alice.put_object(Bucket=bucket, Key="k", Body=b"data")
    for method, op in (("GET", "get_object"), ("PUT", "put_object")):
        url = v4.generate_presigned_url(op, Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
        resp = curl(method, url, {header: value}, b"" if method == "PUT" else None)
        assert resp.status == 403 and resp.code == "AccessDenied", (method, resp.body)
        assert not_signed(resp) == [header]
    assert s3_alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"


def test_presigned_url_with_signed_x_amz_headers_works_and_a_differing_duplicate_does_not(
        v4: Any, s3_alice: Any, s3_anon: Any, bucket: str) -> None:
    url = v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "acl", "ACL": "private"},
                                    ExpiresIn=300)
    assert "x-amz-acl" in urllib.parse.unquote(url)  # signed: listed in X-Amz-SignedHeaders
    # a second x-amz-acl line with another value: the server sees "private,public-read", not what was signed
    raw = send(url, "PUT", {"Host": urllib.parse.urlsplit(url).netloc, "x-amz-acl": "private",
                            "X-Amz-Acl": "public-read", "Content-Length": "1"}, b"x")
    assert raw.status == 403, raw.body
    assert_untouched(s3_alice, s3_anon, bucket, "acl")
    assert curl("PUT", url, {"x-amz-acl": "private"}, b"signed acl").status == 200
    with pytest.raises(ClientError):
        s3_anon.get_object(Bucket=bucket, Key="acl")


def test_presigned_url_may_carry_an_unsigned_content_sha256(v4: Any, s3_alice: Any, bucket: str) -> None:
    """S3 lets x-amz-content-sha256 travel unsigned with a presigned URL; the payload stays UNSIGNED-PAYLOAD."""
    url = v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "u"}, ExpiresIn=300)
    assert curl("PUT", url, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}, b"body").status == 200
    assert s3_alice.get_object(Bucket=bucket, Key="u")["Body"].read() == b"body"


@pytest.mark.parametrize("extra", [
    "x-amz-acl=public-read",
    "X-Amz-Copy-Source=%2Fother%2Fsecret",
    "X-Amz-Expires=604800",
    "X-Amz-SignedHeaders=host%3Bx-amz-acl",
])
def test_x_amz_query_parameters_added_to_a_presigned_url_are_refused(
        v4: Any, s3_alice: Any, s3_anon: Any, private: str, extra: str) -> None:
    url = v4.generate_presigned_url("put_object", Params={"Bucket": private, "Key": "q"}, ExpiresIn=300)
    resp = curl("PUT", f"{url}&{extra}", {}, b"x")
    assert resp.status == 403, resp.body
    assert resp.code in ("SignatureDoesNotMatch", "AccessDenied")
    assert_untouched(s3_alice, s3_anon, private, "q")


def test_a_plus_signed_as_2B_cannot_be_sent_as_a_space(v4: Any, s3_alice: Any, bucket: str) -> None:
    """The query is verified as the store reads it ('+' is a space): re-sending a signed %2B as a raw '+'
    would otherwise list another prefix under the same signature."""
    for key in ("a+b/1", "a b/2"):
        s3_alice.put_object(Bucket=bucket, Key=key, Body=b"x")
    url = v4.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket, "Prefix": "a+b"}, ExpiresIn=300)
    assert "prefix=a%2Bb" in url
    ok = curl("GET", url, {})
    assert ok.status == 200 and b"<Key>a%2Bb/1</Key>" in ok.body and b"<KeyCount>1</KeyCount>" in ok.body
    resp = curl("GET", url.replace("prefix=a%2Bb", "prefix=a+b"), {})
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch", resp.body


# --------------------------------------------------------------------------- S3, SigV4 header auth


def test_header_signed_request_with_added_x_amz_headers_is_refused(
        server: LiveServer, alice: Tenant, s3_alice: Any, s3_anon: Any, private: str) -> None:
    client = server.client("s3", alice, signature_version="s3v4")
    add_headers(client, "before-send.s3.PutObject",
                {"x-amz-copy-source": f"/{private}/secret", "x-amz-acl": "public-read"})
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=private, Key="copied", Body=b"")
    assert error_code(exc.value) == ("AccessDenied", 403)
    assert "not signed" in exc.value.response["Error"]["Message"]
    assert exc.value.response["Error"].get("HeadersNotSigned") == "x-amz-acl, x-amz-copy-source"
    assert_untouched(s3_alice, s3_anon, private, "copied")


def test_header_signed_request_with_an_added_meta_header_is_refused(
        server: LiveServer, alice: Tenant, bucket: str) -> None:
    client = server.client("s3", alice, signature_version="s3v4")
    client.meta.events.register("before-send.s3.ListObjectsV2",
                                lambda request, **_: request.headers.__setitem__("x-amz-meta-x", "1"))
    with pytest.raises(ClientError) as exc:
        client.list_objects_v2(Bucket=bucket)
    assert error_code(exc.value) == ("AccessDenied", 403)
    assert exc.value.response["Error"].get("HeadersNotSigned") == "x-amz-meta-x"


# --------------------------------------------------------------------------- S3, SigV2 (signed by construction)


def test_sigv2_presigned_url_with_added_x_amz_headers_is_refused(
        v2: Any, s3_alice: Any, s3_anon: Any, private: str) -> None:
    url = v2.generate_presigned_url("put_object", Params={"Bucket": private, "Key": "v2in"}, ExpiresIn=300)
    assert "Signature=" in url and "X-Amz-Signature" not in url
    for attack in ({"x-amz-copy-source": f"/{private}/secret", "x-amz-acl": "public-read"},
                   {"x-amz-date": "Sun, 06 Dec 2026 00:00:00 GMT"}):
        resp = curl("PUT", url, attack, b"")
        assert resp.status == 403 and resp.code == "SignatureDoesNotMatch", resp.body
    resp = curl("PUT", url + "&x-amz-acl=public-read", {}, b"")
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch", resp.body
    assert_untouched(s3_alice, s3_anon, private, "v2in")
    assert curl("PUT", url, {}, b"fine").status == 200


def test_sigv2_header_auth_with_added_x_amz_headers_is_refused(
        v2: Any, s3_alice: Any, s3_anon: Any, private: str) -> None:
    add_headers(v2, "before-send.s3.PutObject", {"x-amz-copy-source": f"/{private}/secret",
                                                  "x-amz-acl": "public-read"})
    try:
        with pytest.raises(ClientError) as exc:
            v2.put_object(Bucket=private, Key="v2copy", Body=b"")
    finally:
        v2.meta.events.unregister("before-send.s3.PutObject", unique_id=None)
    assert error_code(exc.value) == ("SignatureDoesNotMatch", 403)
    assert_untouched(s3_alice, s3_anon, private, "v2copy")


# --------------------------------------------------------------------------- EC2


def _ec2(server: LiveServer, req: AWSRequest, body: bytes, extra: dict[str, str]) -> RawResponse:
    """The signed request as built, plus the attacker's `extra` headers, over raw HTTP."""
    headers = {**dict(req.headers.items()), **extra, "Host": f"127.0.0.1:{server.ec2_port}"}
    if body:
        headers["Content-Length"] = str(len(body))
    return send(req.url, req.method, headers, body or None)


BODY = {"Action": "DescribeRegions", "Version": "2016-11-15"}
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def test_ec2_sigv4_header_auth_refuses_unsigned_x_amz_headers(server: LiveServer) -> None:
    admin = server.admin
    body = urllib.parse.urlencode(BODY).encode()
    req = AWSRequest(method="POST", url=server.ec2_url + "/", data=body, headers=FORM)
    SigV4Auth(Credentials(admin.access_key, admin.secret_key), "ec2", "us-east-1").add_auth(req)
    assert _ec2(server, req, body, {}).status == 200
    resp = _ec2(server, req, body, {"x-amz-security-token": "stolen"})
    assert resp.status == 403 and resp.code == "AccessDenied", resp.body
    assert b"x-amz-security-token" in resp.body and b"not signed" in resp.body


def test_ec2_sigv4_presigned_query_refuses_unsigned_x_amz_headers(server: LiveServer) -> None:
    admin = server.admin
    req = AWSRequest(method="GET", url=f"{server.ec2_url}/?{urllib.parse.urlencode(BODY)}")
    SigV4QueryAuth(Credentials(admin.access_key, admin.secret_key), "ec2", "us-east-1", expires=300).add_auth(req)
    assert curl("GET", req.url, {}).status == 200
    resp = curl("GET", req.url, {"x-amz-date": "20200101T000000Z"})
    assert resp.status == 403 and resp.code == "AccessDenied", resp.body


def test_ec2_sigv2_refuses_x_amz_headers(server: LiveServer) -> None:
    admin = server.admin
    params = dict(BODY)
    req = AWSRequest(method="POST", url=server.ec2_url + "/", data=params, headers=FORM)
    SigV2Auth(Credentials(admin.access_key, admin.secret_key)).add_auth(req)
    body = urllib.parse.urlencode(params).encode()
    assert _ec2(server, req, body, {}).status == 200
    resp = _ec2(server, req, body, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    assert resp.status == 403 and resp.code == "AccessDenied", resp.body
    assert b"x-amz-content-sha256" in resp.body


# --------------------------------------------------------------------------- what clients sign themselves still passes


def test_boto3_and_aws_cli_requests_full_of_x_amz_headers_still_pass(
        live: LiveServer, alice: Tenant, bucket: str, tmp_path: Any) -> None:
    """boto3 and the aws CLI sign every x-amz-* header they send: copy with x-amz-copy-source and
    x-amz-metadata-directive, ACL, SSE, flexible checksums (headers and aws-chunked trailers),
    multipart, and presigned URLs that sign x-amz-acl / SSE headers."""
    s3 = alice.client("s3", signature_version="s3v4")
    s3.put_object(Bucket=bucket, Key="src", Body=b"source" * 1000, ACL="private", ServerSideEncryption="AES256",
                  ChecksumAlgorithm="SHA256", Metadata={"colour": "blue"}, Tagging="a=b")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"colour": "red"}, ServerSideEncryption="AES256")
    assert s3.head_object(Bucket=bucket, Key="copy")["Metadata"] == {"colour": "red"}
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32")
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"p" * 1024,
                          ChecksumAlgorithm="CRC32")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"], "ChecksumCRC32": part["ChecksumCRC32"]}]})
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"p" * 1024
    # the aws CLI: aws-chunked uploads with a trailing checksum (multipart above 8 MiB), copy, presign
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * (9 * 1024 * 1024))
    for args in (("s3", "cp", str(big), f"s3://{bucket}/big.bin"),
                 ("s3", "cp", f"s3://{bucket}/big.bin", f"s3://{bucket}/big-copy.bin", "--sse", "AES256"),
                 ("s3api", "put-object", "--bucket", bucket, "--key", "cli", "--body", str(big), "--acl", "private",
                  "--checksum-algorithm", "CRC32")):
        out = alice.aws(*args)
        assert out.returncode == 0, (args, out.stderr)
    assert s3.head_object(Bucket=bucket, Key="big-copy.bin")["ContentLength"] == 9 * 1024 * 1024
    url = alice.aws("s3", "presign", f"s3://{bucket}/cli", check=True).stdout.strip()
    assert curl("GET", url, {}).status == 200
    # presigned PUT whose signed headers include x-amz-acl and SSE: sent as signed, it works
    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "ps", "ACL": "private",
                                                           "ServerSideEncryption": "AES256"}, ExpiresIn=300)
    resp = curl("PUT", put, {"x-amz-acl": "private", "x-amz-server-side-encryption": "AES256"}, b"ok")
    assert resp.status == 200, resp.body
    assert s3.get_object(Bucket=bucket, Key="ps")["Body"].read() == b"ok"


# --------------------------------------------------------------------------- EC2: parameters the signature does not cover


def _sigv2_form(live: LiveServer, params: dict[str, str], url: str) -> dict[str, str]:
    """`params` signed by botocore's SigV2 signer for a POST to `url` (the form a legacy EC2 tool sends)."""
    admin = live.admin
    signed = dict(params)
    SigV2Auth(Credentials(admin.access_key, admin.secret_key)).add_auth(
        AWSRequest(method="POST", url=url, data=signed, headers=FORM))
    return signed


def _post(url: str, body: bytes, content_type: str) -> RawResponse:
    parts = urllib.parse.urlsplit(url)
    return send(url, "POST", {"Host": parts.netloc, "Content-Type": content_type,
                              "Content-Length": str(len(body))}, body)


def test_ec2_sigv2_form_signature_does_not_cover_added_query_parameters(live: LiveServer) -> None:
    url = live.ec2_url + "/"
    body = urllib.parse.urlencode(_sigv2_form(live, BODY, url)).encode()
    assert _post(url, body, FORM["Content-Type"]).status == 200
    # the same signed body, with a parameter added to the URL: the gateway would read it too
    resp = _post(url + "?RegionName.1=nowhere", body, FORM["Content-Type"])
    assert resp.status == 403 and resp.code == "AccessDenied", resp.body
    assert b"RegionName.1" in resp.body and b"not signed" in resp.body


def test_ec2_sigv2_query_signature_does_not_cover_an_added_form_body(live: LiveServer) -> None:
    url = live.ec2_url + "/"
    query = urllib.parse.urlencode(_sigv2_form(live, BODY, url))
    assert _post(f"{url}?{query}", b"", FORM["Content-Type"]).status == 200
    resp = _post(f"{url}?{query}", b"Action=DescribeAvailabilityZones", FORM["Content-Type"])
    assert resp.status == 403 and resp.code == "AccessDenied", resp.body
    assert b"availabilityZoneInfo" not in resp.body


def test_ec2_credentials_in_a_body_the_gateway_does_not_read_are_not_credentials(live: LiveServer) -> None:
    """A signed form sent as text/plain: the gateway reads no parameter from such a body, so its
    signature must not vouch for the parameters of the query string."""
    url = live.ec2_url + "/"
    body = urllib.parse.urlencode(_sigv2_form(live, BODY, url)).encode()
    query = urllib.parse.urlencode({"Action": "DescribeAvailabilityZones", "Version": "2016-11-15"})
    resp = _post(f"{url}?{query}", body, "text/plain")
    assert resp.status in (401, 403) and resp.code == "MissingAuthenticationToken", resp.body
    assert b"availabilityZoneInfo" not in resp.body
