"""SigV4 verification against requests signed by botocore's signers and by real boto3 clients.

Every positive case is paired with a tampered one, so a verifier that accepted anything would fail.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from werkzeug.datastructures import Headers

from ec2gw.aws.auth import AuthResult, RequestView, authenticate
from ec2gw.aws.chunked import ChunkSigner
from ec2gw.errors import ServiceError

AK = "AKIDEXAMPLE12345"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SECRETS = {AK: SK, "AKDISABLED": None}
EC2 = "http://localhost:8444"
S3 = "http://localhost:8888"


def lookup(key: str) -> str | None:
    return SECRETS.get(key)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def view_of(request: Any, host: str | None = None) -> RequestView:
    """The RequestView a WSGI gateway would build for a signed botocore request (raw path and query)."""
    split = urlsplit(request.url)
    headers = Headers([(k, _s(v)) for k, v in request.headers.items()])
    if "Host" not in headers:
        headers["Host"] = host or split.netloc
    return RequestView(request.method, split.path or "/", split.query, headers)


def body_of(request: Any) -> bytes:
    body = request.body
    if body is None:
        return b""
    if hasattr(body, "read"):
        return body.read()
    return body if isinstance(body, bytes) else str(body).encode()


def ec2_request(params: str = "Action=DescribeInstances&Version=2016-11-15", region: str = "us-east-1",
                secret: str = SK, key: str = AK) -> AWSRequest:
    req = AWSRequest("POST", EC2 + "/", data=params.encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(key, secret), "ec2", region).add_auth(req)
    return req


def s3_request(method: str, key_path: str, body: bytes = b"", query: str = "", headers: dict | None = None,
               secret: str = SK) -> AWSRequest:
    url = S3 + quote(key_path, safe="/~") + (f"?{query}" if query else "")
    req = AWSRequest(method, url, data=body, headers=headers or {})
    S3SigV4Auth(Credentials(AK, secret), "s3", "us-east-1").add_auth(req)
    return req


def expect_error(code: str, status: int, fn: Any, *args: Any, **kwargs: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        fn(*args, **kwargs)
    assert (info.value.code, info.value.status) == (code, status), info.value.message
    assert info.value.message
    return info.value


def auth_ec2(request: Any, **kw: Any) -> AuthResult:
    return authenticate(view_of(request), service="ec2", lookup_secret=lookup, form_body=body_of(request), **kw)


def auth_s3(request: Any, **kw: Any) -> AuthResult:
    return authenticate(view_of(request), service="s3", lookup_secret=lookup, **kw)


class _Captured(Exception):
    pass


def capture(client: Any, operation: str, **params: Any) -> Any:
    """Let a real boto3 client sign a request and grab it before it is sent."""
    box: dict[str, Any] = {}

    def before_send(request: Any, **_: Any) -> None:
        box["request"] = request
        raise _Captured()

    client.meta.events.register("before-send", before_send)
    with pytest.raises(_Captured):
        getattr(client, operation)(**params)
    return box["request"]


@pytest.fixture(autouse=True)
def _no_aws_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


def client(service: str, endpoint: str, region: str = "us-east-1", **config: Any) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=endpoint, aws_access_key_id=AK,
                        aws_secret_access_key=SK, config=Config(**config) if config else None)


# ---------------------------------------------------------------------------------------------- EC2


def test_ec2_header_signed_by_botocore_verifies() -> None:
    result = auth_ec2(ec2_request())
    assert (result.access_key, result.scheme, result.region) == (AK, "sigv4-header", "us-east-1")
    assert result.payload_hash == hashlib.sha256(b"Action=DescribeInstances&Version=2016-11-15").hexdigest()


def test_ec2_made_up_region_like_euca2ools_is_accepted() -> None:
    result = auth_ec2(ec2_request(region="undefined-1234"))
    assert result.region == "undefined-1234"


def test_ec2_boto3_client_with_made_up_region_verifies() -> None:
    ec2 = client("ec2", EC2, region="undefined-1234")
    request = capture(ec2, "describe_instances", InstanceIds=["i-0123456789abcdef0"])
    assert auth_ec2(request).region == "undefined-1234"


def test_ec2_wrong_secret_is_signature_does_not_match() -> None:
    expect_error("SignatureDoesNotMatch", 403, auth_ec2, ec2_request(secret=SK[:-1] + "X"))


def test_ec2_tampered_body_is_rejected() -> None:
    request = ec2_request()
    view = view_of(request)
    with pytest.raises(ServiceError) as info:
        authenticate(view, service="ec2", lookup_secret=lookup,
                     form_body=b"Action=TerminateInstances&Version=2016-11-15")
    assert info.value.code == "SignatureDoesNotMatch"


def test_ec2_tampered_signed_header_is_rejected() -> None:
    request = ec2_request()
    request.headers.replace_header("Content-Type", "text/plain")
    expect_error("SignatureDoesNotMatch", 403, auth_ec2, request)


def test_ec2_declared_payload_hash_must_match_body() -> None:
    req = AWSRequest("POST", EC2 + "/", data=b"Action=DescribeRegions",
                     headers={"X-Amz-Content-SHA256": hashlib.sha256(b"Action=RunInstances").hexdigest()})
    SigV4Auth(Credentials(AK, SK), "ec2", "us-east-1").add_auth(req)
    expect_error("SignatureDoesNotMatch", 403, auth_ec2, req)


def test_ec2_unknown_and_disabled_keys() -> None:
    expect_error("AuthFailure", 401, auth_ec2, ec2_request(key="AKNOBODY"))
    expect_error("AuthFailure", 401, auth_ec2, ec2_request(key="AKDISABLED"))


def test_ec2_clock_skew() -> None:
    request = ec2_request()
    now = datetime.now(UTC)
    assert auth_ec2(request, now=now + timedelta(minutes=14)).access_key == AK
    err = expect_error("RequestExpired", 400, auth_ec2, request, now=now + timedelta(minutes=16))
    assert "clock" in err.message
    expect_error("RequestExpired", 400, auth_ec2, request, now=now - timedelta(minutes=16))


def test_ec2_without_credentials_is_missing_authentication_token() -> None:
    view = RequestView("POST", "/", "", Headers({"Host": "localhost:8444"}))
    expect_error("MissingAuthenticationToken", 401, authenticate, view, service="ec2", lookup_secret=lookup,
                 form_body=b"Action=DescribeRegions")


@pytest.mark.parametrize("header", [
    f"AWS4-HMAC-SHA256 Credential={AK}/20240101/us-east-1/ec2/aws4_request, SignedHeaders=host",
    "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abc",
    f"AWS4-HMAC-SHA256 Credential={AK}/20240101/ec2/aws4_request, SignedHeaders=host, Signature=abc",
])
def test_ec2_malformed_authorization_is_incomplete_signature(header: str) -> None:
    view = RequestView("POST", "/", "", Headers({"Host": "h", "Authorization": header, "X-Amz-Date": "20240101T000000Z"}))
    expect_error("IncompleteSignature", 400, authenticate, view, service="ec2", lookup_secret=lookup,
                 now=datetime(2024, 1, 1, tzinfo=UTC))


def test_ec2_non_ascii_signature_is_signature_does_not_match() -> None:
    """A forged signature with non-ASCII characters (gunicorn hands header bytes over as latin-1) is
    just a wrong signature; hmac.compare_digest refuses such str, which made it an InternalError."""
    request = ec2_request()
    view = view_of(request)
    headers = Headers(view.headers)
    headers["Authorization"] = headers["Authorization"] + "\u00e9"
    bad = RequestView(view.method, view.path, view.query, headers)
    expect_error("SignatureDoesNotMatch", 403, authenticate, bad, service="ec2", lookup_secret=lookup,
                 form_body=body_of(request))


@pytest.mark.parametrize("host", ["[::1", "[", "h]:x["])
def test_ec2_unparsable_host_header_is_signature_does_not_match(host: str) -> None:
    """The Host header is signed verbatim; one that is no valid URL authority (an open IPv6 bracket)
    cannot match the signature, and must not make urlsplit fail in the verifier."""
    request = ec2_request()
    view = view_of(request)
    headers = Headers(view.headers)
    headers["Host"] = host
    bad = RequestView(view.method, view.path, view.query, headers)
    expect_error("SignatureDoesNotMatch", 403, authenticate, bad, service="ec2", lookup_secret=lookup,
                 form_body=body_of(request))


@pytest.mark.parametrize("date", ["Fri, 31 Dec 9999 23:30:00 -0100", "Mon, 01 Jan 0001 00:30:00 +0100"])
def test_ec2_date_header_at_the_calendar_edge_is_incomplete_signature(date: str) -> None:
    """A Date header that converts to UTC past year 9999 (or before year 1) is no valid signing time."""
    header = f"AWS4-HMAC-SHA256 Credential={AK}/99991231/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=ab"
    view = RequestView("POST", "/", "", Headers({"Host": "h", "Authorization": header, "Date": date}))
    err = expect_error("IncompleteSignature", 400, authenticate, view, service="ec2", lookup_secret=lookup,
                       form_body=b"Action=DescribeRegions")
    assert "X-Amz-Date" in err.message or "date" in err.message


def test_ec2_unsupported_algorithm_is_auth_failure() -> None:
    view = RequestView("POST", "/", "", Headers({"Host": "h", "Authorization": "AWS4-ECDSA-P256-SHA256 x"}))
    expect_error("AuthFailure", 401, authenticate, view, service="ec2", lookup_secret=lookup)


def test_ec2_credential_scoped_to_another_service_is_rejected() -> None:
    req = AWSRequest("POST", EC2 + "/", data=b"Action=DescribeRegions")
    SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    err = expect_error("SignatureDoesNotMatch", 403, auth_ec2, req)
    assert "'ec2'" in err.message


def test_ec2_presigned_query_verifies_and_expires() -> None:
    req = AWSRequest("GET", EC2 + "/", params={"Action": "DescribeRegions", "Version": "2016-11-15"})
    SigV4QueryAuth(Credentials(AK, SK), "ec2", "undefined-1234", expires=60).add_auth(req)
    prepared = req.prepare()
    result = auth_ec2(prepared)
    assert (result.scheme, result.region) == ("sigv4-query", "undefined-1234")
    later = datetime.now(UTC) + timedelta(seconds=120)
    expect_error("RequestExpired", 400, auth_ec2, prepared, now=later)


def test_ec2_presigned_query_with_tampered_parameter_is_rejected() -> None:
    req = AWSRequest("GET", EC2 + "/", params={"Action": "DescribeRegions", "Version": "2016-11-15"})
    SigV4QueryAuth(Credentials(AK, SK), "ec2", "us-east-1").add_auth(req)
    prepared = req.prepare()
    prepared.url = prepared.url.replace("DescribeRegions", "DescribeImages")
    expect_error("SignatureDoesNotMatch", 403, auth_ec2, prepared)


def test_ec2_query_auth_params_sent_in_post_form() -> None:
    """A presigned POST whose parameters (auth included) travel in the form body instead of the URL."""
    req = AWSRequest("POST", EC2 + "/", params={"Action": "DescribeRegions", "Version": "2016-11-15"})
    SigV4QueryAuth(Credentials(AK, SK), "ec2", "us-east-1").add_auth(req)
    query = urlsplit(req.prepare().url).query
    view = RequestView("POST", "/", "", Headers({"Host": "localhost:8444"}))
    result = authenticate(view, service="ec2", lookup_secret=lookup, form_body=query.encode())
    assert result.scheme == "sigv4-query"
    tampered = query.replace("DescribeRegions", "DescribeImages").encode()
    expect_error("SignatureDoesNotMatch", 403, authenticate, view, service="ec2", lookup_secret=lookup,
                 form_body=tampered)


# ----------------------------------------------------------------------------------------------- S3


KEYS = ["bucket/plain.txt", "bucket/a b/c d.txt", "bucket/ünï €/日本語 ~!'()*.bin", "bucket/x+y=z&w;v,u"]


@pytest.mark.parametrize("key", KEYS)
def test_s3_header_signed_by_botocore_verifies_with_awkward_keys(key: str) -> None:
    request = s3_request("PUT", "/" + key, body=b"data", headers={"Content-Type": "text/plain"})
    result = auth_s3(request)
    assert (result.access_key, result.scheme) == (AK, "sigv4-header")
    assert result.payload_hash == hashlib.sha256(b"data").hexdigest()
    assert result.chunk_signer is None


@pytest.mark.parametrize("key", KEYS)
def test_s3_boto3_client_put_verifies(key: str) -> None:
    s3 = client("s3", S3, s3={"addressing_style": "path"})
    bucket, _, name = key.partition("/")
    request = capture(s3, "put_object", Bucket=bucket, Key=name, Body=b"hello")
    assert auth_s3(request).payload_hash == hashlib.sha256(b"hello").hexdigest()


def test_s3_encoded_slash_in_key_verifies_and_decoded_path_does_not_match_other_key() -> None:
    request = s3_request("GET", "/bucket/a%2Fb")  # botocore quotes '%' -> '%25': the key is literally "a%2Fb"
    assert auth_s3(request).access_key == AK
    view = view_of(request)
    other = RequestView(view.method, "/bucket/a%252Fc", view.query, view.headers)
    expect_error("SignatureDoesNotMatch", 403, authenticate, other, service="s3", lookup_secret=lookup)


def test_s3_tampered_path_reports_canonical_request() -> None:
    request = s3_request("GET", "/bucket/a b.txt")
    view = view_of(request)
    tampered = RequestView(view.method, view.path.replace("a%20b", "a%20c"), view.query, view.headers)
    err = expect_error("SignatureDoesNotMatch", 403, authenticate, tampered, service="s3", lookup_secret=lookup)
    assert "/bucket/a%20c.txt" in err.extra["CanonicalRequest"]
    assert err.extra["AWSAccessKeyId"] == AK
    assert "secret" in err.message


def test_s3_tampered_header_and_query() -> None:
    request = s3_request("GET", "/bucket/k", query="versionId=1", headers={"Range": "bytes=0-9"})
    assert auth_s3(request).access_key == AK
    request.headers.replace_header("Range", "bytes=0-99")
    expect_error("SignatureDoesNotMatch", 403, auth_s3, request)
    request = s3_request("GET", "/bucket/k", query="versionId=1")
    request.url = request.url.replace("versionId=1", "versionId=2")
    expect_error("SignatureDoesNotMatch", 403, auth_s3, request)


def test_s3_wrong_secret_unknown_key_and_skew() -> None:
    expect_error("SignatureDoesNotMatch", 403, auth_s3, s3_request("GET", "/b/k", secret="x" + SK[1:]))
    request = s3_request("GET", "/b/k")
    expect_error("InvalidAccessKeyId", 403, lambda: authenticate(view_of(request), service="s3",
                                                                  lookup_secret=lambda k: None))
    err = expect_error("RequestTimeTooSkewed", 403, auth_s3, request,
                       now=datetime.now(UTC) + timedelta(minutes=20))
    assert err.extra["MaxAllowedSkewMilliseconds"] == "900000"


def test_s3_requires_declared_payload_hash_and_a_date() -> None:
    request = s3_request("GET", "/b/k")
    view = view_of(request)
    no_hash = Headers([(k, v) for k, v in view.headers.items() if k.lower() != "x-amz-content-sha256"])
    expect_error("InvalidRequest", 400, authenticate, RequestView("GET", view.path, "", no_hash),
                 service="s3", lookup_secret=lookup)
    no_date = Headers([(k, v) for k, v in view.headers.items() if k.lower() != "x-amz-date"])
    expect_error("AccessDenied", 403, authenticate, RequestView("GET", view.path, "", no_date),
                 service="s3", lookup_secret=lookup)


def test_s3_malformed_header_is_authorization_header_malformed() -> None:
    headers = Headers({"Host": "h", "X-Amz-Date": "20240101T000000Z", "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                       "Authorization": f"AWS4-HMAC-SHA256 Credential={AK}/20240101/us-east-1/s3/aws4_request"})
    expect_error("AuthorizationHeaderMalformed", 400, authenticate, RequestView("GET", "/b", "", headers),
                 service="s3", lookup_secret=lookup, now=datetime(2024, 1, 1, tzinfo=UTC))


def test_s3_anonymous_request() -> None:
    view = RequestView("GET", "/bucket/key", "", Headers({"Host": "localhost:8888"}))
    assert authenticate(view, service="s3", lookup_secret=lookup) == AuthResult(None, "anonymous")


def test_s3_presigned_by_botocore_query_auth() -> None:
    req = AWSRequest("GET", S3 + "/bucket/" + quote("ü b~.txt", safe="/~"))
    S3SigV4QueryAuth(Credentials(AK, SK), "s3", "undefined-1234", expires=3600).add_auth(req)
    result = auth_s3(req)
    assert (result.scheme, result.payload_hash, result.region) == ("sigv4-query", "UNSIGNED-PAYLOAD", "undefined-1234")


@pytest.mark.parametrize("key", KEYS)
def test_s3_boto3_presigned_url_verifies(key: str) -> None:
    s3 = client("s3", S3, signature_version="s3v4", s3={"addressing_style": "path"})
    bucket, _, name = key.partition("/")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": name,
                                                          "ResponseContentDisposition": "attachment; x=1"})
    split = urlsplit(url)
    view = RequestView("GET", split.path, split.query, Headers({"Host": split.netloc}))
    assert authenticate(view, service="s3", lookup_secret=lookup).scheme == "sigv4-query"
    changed = split.query.replace("attachment", "inline")
    expect_error("SignatureDoesNotMatch", 403, authenticate, RequestView("GET", split.path, changed, view.headers),
                 service="s3", lookup_secret=lookup)


def test_s3_presigned_put_verifies() -> None:
    s3 = client("s3", S3, signature_version="s3v4")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60)
    split = urlsplit(url)
    view = RequestView("PUT", split.path, split.query, Headers({"Host": split.netloc, "Content-Length": "3"}))
    assert authenticate(view, service="s3", lookup_secret=lookup).payload_hash == "UNSIGNED-PAYLOAD"
    expect_error("SignatureDoesNotMatch", 403, authenticate, RequestView("GET", split.path, split.query, view.headers),
                 service="s3", lookup_secret=lookup)


def test_s3_presigned_query_encoded_differently_still_verifies() -> None:
    """Decode/re-encode per RFC 3986: a client that leaves '/' and '~' raw in the query still matches."""
    s3 = client("s3", S3, signature_version="s3v4")
    url = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": "b", "Prefix": "a~b/c d"})
    split = urlsplit(url)
    odd = split.query.replace("%2F", "/").replace("~", "%7E")
    assert odd != split.query
    view = RequestView("GET", split.path, odd, Headers({"Host": split.netloc}))
    assert authenticate(view, service="s3", lookup_secret=lookup).access_key == AK


def test_s3_presigned_expired_and_not_yet_valid() -> None:
    s3 = client("s3", S3, signature_version="s3v4")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=30)
    split = urlsplit(url)
    view = RequestView("GET", split.path, split.query, Headers({"Host": split.netloc}))
    now = datetime.now(UTC)
    assert authenticate(view, service="s3", lookup_secret=lookup, now=now + timedelta(seconds=20))
    err = expect_error("AccessDenied", 403, authenticate, view, service="s3", lookup_secret=lookup,
                       now=now + timedelta(seconds=90))
    assert "Request has expired" in err.message
    err = expect_error("AccessDenied", 403, authenticate, view, service="s3", lookup_secret=lookup,
                       now=now - timedelta(minutes=30))
    assert "not valid yet" in err.message


def test_s3_presigned_expiry_limit_is_seven_days() -> None:
    s3 = client("s3", S3, signature_version="s3v4")
    for seconds, ok in ((604800, True), (604801, False)):
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=seconds)
        split = urlsplit(url)
        view = RequestView("GET", split.path, split.query, Headers({"Host": split.netloc}))
        if ok:
            assert authenticate(view, service="s3", lookup_secret=lookup).access_key == AK
        else:
            expect_error("AuthorizationQueryParametersError", 400, authenticate, view, service="s3",
                         lookup_secret=lookup)


def test_s3_streaming_signed_payload_returns_chunk_signer() -> None:
    # S3SigV4Auth would overwrite the declared hash with the body's, so SigV4Auth signs the declaration as is
    req = AWSRequest("PUT", S3 + "/b/k", headers={"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
    SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    result = auth_s3(req)
    assert result.payload_hash == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    assert isinstance(result.chunk_signer, ChunkSigner)
    seed = _s(req.headers["Authorization"]).rsplit("Signature=", 1)[1]
    assert result.chunk_signer.previous == seed


def test_s3_invalid_payload_hash_value_is_rejected() -> None:
    req = AWSRequest("PUT", S3 + "/b/k", headers={"X-Amz-Content-SHA256": "not-a-hash"})
    SigV4Auth(Credentials(AK, SK), "s3", "us-east-1").add_auth(req)
    expect_error("InvalidArgument", 400, auth_s3, req)


def test_s3_header_and_presigned_query_together_are_refused() -> None:
    request = s3_request("GET", "/b/k", query="X-Amz-Signature=abc")
    expect_error("InvalidArgument", 400, auth_s3, request)


def test_naive_now_is_taken_as_utc() -> None:
    naive = datetime.now(UTC).replace(tzinfo=None)
    assert auth_ec2(ec2_request(), now=naive).access_key == AK


# ------------------------------------------------------------------------- every x-amz-* header signed


def test_s3_unsigned_x_amz_headers_are_access_denied_naming_them() -> None:
    req = s3_request("PUT", "/bucket/key", b"x")
    view = view_of(req)
    assert authenticate(view, service="s3", lookup_secret=lookup).scheme == "sigv4-header"
    headers = Headers(list(view.headers.items()) + [("X-Amz-Copy-Source", "/other/secret"), ("x-amz-acl", "public-read")])
    err = expect_error("AccessDenied", 403, authenticate, RequestView("PUT", view.path, view.query, headers),
                       service="s3", lookup_secret=lookup)
    assert err.extra["HeadersNotSigned"] == "x-amz-acl, x-amz-copy-source"
    assert "not signed" in err.message


def test_presigned_url_may_carry_only_content_sha256_unsigned() -> None:
    s3 = client("s3", S3, signature_version="s3v4")
    split = urlsplit(s3.generate_presigned_url("put_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60))
    ok = Headers({"Host": split.netloc, "x-amz-content-sha256": hashlib.sha256(b"abc").hexdigest()})
    result = authenticate(RequestView("PUT", split.path, split.query, ok), service="s3", lookup_secret=lookup)
    assert result.payload_hash == "UNSIGNED-PAYLOAD"  # an unsigned declaration is not taken
    for name in ("x-amz-date", "x-amz-security-token", "x-amz-acl", "x-amz-checksum-crc32"):
        bad = Headers({"Host": split.netloc, name: "AAAAAA=="})
        err = expect_error("AccessDenied", 403, authenticate, RequestView("PUT", split.path, split.query, bad),
                           service="s3", lookup_secret=lookup)
        assert err.extra["HeadersNotSigned"] == name


def test_ec2_unsigned_x_amz_header_is_access_denied() -> None:
    req = ec2_request()
    view = view_of(req)
    headers = Headers(list(view.headers.items()) + [("X-Amz-Security-Token", "t")])
    expect_error("AccessDenied", 403, authenticate, RequestView("POST", view.path, view.query, headers),
                 service="ec2", lookup_secret=lookup, form_body=body_of(req))


def test_query_is_verified_with_plus_as_space() -> None:
    """'+' is a space to both gateways: a signed %2B resent as '+' means something else and must not verify."""
    s3 = client("s3", S3, signature_version="s3v4")
    split = urlsplit(s3.generate_presigned_url("list_objects_v2", Params={"Bucket": "b", "Prefix": "a+b"}))
    assert "prefix=a%2Bb" in split.query
    host = Headers({"Host": split.netloc})
    assert authenticate(RequestView("GET", split.path, split.query, host), service="s3", lookup_secret=lookup)
    expect_error("SignatureDoesNotMatch", 403, authenticate,
                 RequestView("GET", split.path, split.query.replace("%2B", "+"), host), service="s3",
                 lookup_secret=lookup)
    spaced = urlsplit(s3.generate_presigned_url("list_objects_v2", Params={"Bucket": "b", "Prefix": "a b"}))
    assert authenticate(RequestView("GET", spaced.path, spaced.query.replace("%20", "+"), host), service="s3",
                        lookup_secret=lookup)
