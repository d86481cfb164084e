"""SigV2 verification: EC2 query signing (HmacSHA256/HmacSHA1) and S3 HMAC-SHA1 header/presigned auth."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from urllib.parse import quote, urlencode, urlsplit

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth, SigV2Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from werkzeug.datastructures import Headers

from ec2gw.aws.auth import RequestView, authenticate
from ec2gw.aws.sigv2 import ec2_string_to_sign
from tests.unit.test_sigv4 import AK, S3, SK, body_of, capture, client, expect_error, lookup, view_of

EC2_HOST = "localhost:8444"


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def ec2_sigv2_post(params: dict[str, str], secret: str = SK) -> tuple[RequestView, bytes]:
    """Sign with botocore's SigV2Auth (HmacSHA256 + Timestamp) as a POST form."""
    req = AWSRequest("POST", f"http://{EC2_HOST}/", data=dict(params))
    SigV2Auth(Credentials(AK, secret)).add_auth(req)
    body = urlencode(req.data).encode()
    return RequestView("POST", "/", "", Headers({"Host": EC2_HOST})), body


def hand_signed(method: str, params: dict[str, str], digest: str, secret: str = SK,
                host: str = EC2_HOST, path: str = "/") -> dict[str, str]:
    """SigV2 per the AWS docs, written out independently of the server code."""
    pairs = sorted(params.items())
    canonical = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
    sts = f"{method}\n{host.lower()}\n{path}\n{canonical}"
    algo = hashlib.sha1 if digest == "HmacSHA1" else hashlib.sha256
    sig = base64.b64encode(hmac.new(secret.encode(), sts.encode(), algo).digest()).decode()
    return {**params, "Signature": sig}


def base_params(**extra: str) -> dict[str, str]:
    return {"Action": "DescribeRegions", "Version": "2016-11-15", "AWSAccessKeyId": AK, "SignatureVersion": "2",
            **extra}


# ---------------------------------------------------------------------------------------------- EC2


def test_ec2_sigv2_post_signed_by_botocore_verifies() -> None:
    view, body = ec2_sigv2_post({"Action": "DescribeInstances", "Version": "2016-11-15", "Filter.1.Name": "tag:a b"})
    result = authenticate(view, service="ec2", lookup_secret=lookup, form_body=body)
    assert (result.access_key, result.scheme) == (AK, "sigv2-query")


def test_ec2_sigv2_post_tampered_or_wrong_secret() -> None:
    view, body = ec2_sigv2_post({"Action": "DescribeInstances", "Version": "2016-11-15"})
    tampered = body.replace(b"DescribeInstances", b"TerminateInstances")
    expect_error("SignatureDoesNotMatch", 403, authenticate, view, service="ec2", lookup_secret=lookup,
                 form_body=tampered)
    view, body = ec2_sigv2_post({"Action": "DescribeInstances"}, secret=SK.lower())
    expect_error("SignatureDoesNotMatch", 403, authenticate, view, service="ec2", lookup_secret=lookup,
                 form_body=body)


@pytest.mark.parametrize("digest", ["HmacSHA1", "HmacSHA256"])
def test_ec2_sigv2_get_query_with_both_methods(digest: str) -> None:
    now = datetime.now(UTC)
    params = hand_signed("GET", base_params(SignatureMethod=digest, Timestamp=_iso(now), **{"Filter.1.Value.1": "ü ~*"}),
                         digest)
    view = RequestView("GET", "/", urlencode(params, quote_via=quote), Headers({"Host": EC2_HOST}))
    assert authenticate(view, service="ec2", lookup_secret=lookup).scheme == "sigv2-query"
    wrong_method = RequestView("POST", "/", view.query, view.headers)
    expect_error("SignatureDoesNotMatch", 403, authenticate, wrong_method, service="ec2", lookup_secret=lookup)


def test_ec2_sigv2_string_to_sign_matches_botocore() -> None:
    req = AWSRequest("POST", f"http://{EC2_HOST}/", data={"Action": "X", "Name": "a b/ü~"})
    params = {**req.data, "AWSAccessKeyId": AK, "SignatureVersion": "2", "SignatureMethod": "HmacSHA256",
              "Timestamp": "2024-01-01T00:00:00Z"}
    qs, _ = SigV2Auth(Credentials(AK, SK)).calc_signature(req, params)
    assert ec2_string_to_sign("POST", EC2_HOST, "/", list(params.items())) == f"POST\n{EC2_HOST}\n/\n{qs}"


def test_ec2_sigv2_timestamp_skew_and_expires() -> None:
    now = datetime.now(UTC)
    old = hand_signed("GET", base_params(SignatureMethod="HmacSHA256", Timestamp=_iso(now - timedelta(minutes=20))),
                      "HmacSHA256")
    view = RequestView("GET", "/", urlencode(old), Headers({"Host": EC2_HOST}))
    err = expect_error("RequestExpired", 400, authenticate, view, service="ec2", lookup_secret=lookup)
    assert "clock" in err.message
    for delta, ok in ((timedelta(minutes=5), True), (timedelta(minutes=-1), False)):
        params = hand_signed("GET", base_params(SignatureMethod="HmacSHA256", Expires=_iso(now + delta)), "HmacSHA256")
        view = RequestView("GET", "/", urlencode(params), Headers({"Host": EC2_HOST}))
        if ok:
            assert authenticate(view, service="ec2", lookup_secret=lookup, now=now).access_key == AK
        else:
            expect_error("RequestExpired", 400, authenticate, view, service="ec2", lookup_secret=lookup, now=now)


def test_ec2_sigv2_unknown_key_unsupported_version_and_missing_time() -> None:
    now = datetime.now(UTC)
    params = hand_signed("GET", base_params(SignatureMethod="HmacSHA256", Timestamp=_iso(now), AWSAccessKeyId="AKX"),
                         "HmacSHA256")
    view = RequestView("GET", "/", urlencode(params), Headers({"Host": EC2_HOST}))
    expect_error("AuthFailure", 401, authenticate, view, service="ec2", lookup_secret=lookup)
    v1 = base_params(SignatureMethod="HmacSHA256", Timestamp=_iso(now), SignatureVersion="1", Signature="x")
    view = RequestView("GET", "/", urlencode(v1), Headers({"Host": EC2_HOST}))
    expect_error("AuthFailure", 401, authenticate, view, service="ec2", lookup_secret=lookup)
    no_time = hand_signed("GET", base_params(SignatureMethod="HmacSHA256"), "HmacSHA256")
    view = RequestView("GET", "/", urlencode(no_time), Headers({"Host": EC2_HOST}))
    expect_error("MissingParameter", 400, authenticate, view, service="ec2", lookup_secret=lookup)


@pytest.mark.parametrize("name, value", [
    ("Timestamp", "0001-01-01T00:00:00+01:00"), ("Timestamp", "9999-12-31T23:59:59-01:00"),
    ("Expires", "0001-01-01T00:00:00+01:00"), ("Expires", "9999-12-31T23:59:59-01:00"),
])
def test_ec2_sigv2_time_at_the_calendar_edge_is_incomplete_signature(name: str, value: str) -> None:
    """A Timestamp or Expires whose UTC time falls outside years 1-9999 is refused, not an InternalError."""
    params = hand_signed("GET", base_params(SignatureMethod="HmacSHA256", **{name: value}), "HmacSHA256")
    view = RequestView("GET", "/", urlencode(params), Headers({"Host": EC2_HOST}))
    err = expect_error("IncompleteSignature", 400, authenticate, view, service="ec2", lookup_secret=lookup)
    assert name in err.message


def test_ec2_sigv2_host_header_is_signed() -> None:
    now = datetime.now(UTC)
    params = hand_signed("GET", base_params(SignatureMethod="HmacSHA256", Timestamp=_iso(now)), "HmacSHA256")
    view = RequestView("GET", "/", urlencode(params), Headers({"Host": "evil.example:8444"}))
    expect_error("SignatureDoesNotMatch", 403, authenticate, view, service="ec2", lookup_secret=lookup)


# ----------------------------------------------------------------------------------------------- S3


def s3_v2(method: str, path: str, query: str = "", headers: dict[str, str] | None = None,
          secret: str = SK) -> AWSRequest:
    url = S3 + quote(path, safe="/~") + (f"?{query}" if query else "")
    req = AWSRequest(method, url, headers=headers or {})
    HmacV1Auth(Credentials(AK, secret)).add_auth(req)
    return req


def auth(request: AWSRequest, **kw: object) -> object:
    return authenticate(view_of(request), service="s3", lookup_secret=lookup, **kw)  # type: ignore[arg-type]


SUBRESOURCES = ["uploads", "partNumber=3&uploadId=abc%2Bdef", "acl", "delete", "tagging", "versionId=v1",
                "response-content-disposition=attachment%3B%20filename%3D%22a%20b%22&response-content-type=text%2Fplain"]


@pytest.mark.parametrize("query", ["", *SUBRESOURCES])
@pytest.mark.parametrize("key", ["bucket/k", "bucket/a b/ü €~.txt"])
def test_s3_sigv2_header_signed_by_botocore(key: str, query: str) -> None:
    headers = {"Content-Type": "text/plain", "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==", "x-amz-meta-Colour": " blue "}
    request = s3_v2("PUT", "/" + key, query, headers)
    result = auth(request)
    assert (result.access_key, result.scheme) == (AK, "sigv2-header")  # type: ignore[attr-defined]


@pytest.mark.parametrize("change", ["content-type", "meta", "subresource", "path", "method"])
def test_s3_sigv2_header_tampering_is_detected(change: str) -> None:
    request = s3_v2("PUT", "/bucket/k", "partNumber=1&uploadId=u1",
                    {"Content-Type": "text/plain", "x-amz-meta-a": "1"})
    view = view_of(request)
    headers, path, query, method = Headers(view.headers), view.path, view.query, view.method
    if change == "content-type":
        headers["Content-Type"] = "text/html"
    elif change == "meta":
        headers["x-amz-meta-a"] = "2"
    elif change == "subresource":
        query = "partNumber=2&uploadId=u1"
    elif change == "path":
        path = "/bucket/other"
    else:
        method = "DELETE"
    expect_error("SignatureDoesNotMatch", 403, authenticate, RequestView(method, path, query, headers),
                 service="s3", lookup_secret=lookup)


def test_s3_sigv2_wrong_secret_unknown_key_and_skew() -> None:
    expect_error("SignatureDoesNotMatch", 403, auth, s3_v2("GET", "/b/k", secret=SK + "x"))
    request = s3_v2("GET", "/b/k")
    expect_error("InvalidAccessKeyId", 403, lambda: authenticate(view_of(request), service="s3",
                                                                  lookup_secret=lambda k: None))
    expect_error("RequestTimeTooSkewed", 403, auth, request, now=datetime.now(UTC) + timedelta(hours=1))


def test_s3_sigv2_with_x_amz_date_signs_an_empty_date_line() -> None:
    """boto2/euca2ools style: x-amz-date present, Date line empty in the string to sign."""
    amz_date = formatdate(usegmt=True)
    sts = f"GET\n\n\n\nx-amz-date:{amz_date}\n/bucket/a%20b?acl"
    sig = base64.b64encode(hmac.new(SK.encode(), sts.encode(), hashlib.sha1).digest()).decode()
    headers = Headers({"Host": "localhost:8888", "x-amz-date": amz_date, "Authorization": f"AWS {AK}:{sig}"})
    view = RequestView("GET", "/bucket/a%20b", "acl", headers)
    assert authenticate(view, service="s3", lookup_secret=lookup).scheme == "sigv2-header"
    headers["x-amz-date"] = formatdate(usegmt=True, timeval=datetime.now(UTC).timestamp() - 60)
    expect_error("SignatureDoesNotMatch", 403, authenticate, view, service="s3", lookup_secret=lookup)
    headers["x-amz-date"] = formatdate(usegmt=True, timeval=0)
    expect_error("RequestTimeTooSkewed", 403, authenticate, view, service="s3", lookup_secret=lookup)


def test_s3_sigv2_virtual_hosted_bucket_is_part_of_the_resource() -> None:
    date = formatdate(usegmt=True)
    sts = f"GET\n\n\n{date}\n/mybucket/photo.jpg"
    sig = base64.b64encode(hmac.new(SK.encode(), sts.encode(), hashlib.sha1).digest()).decode()
    view = RequestView("GET", "/photo.jpg", "", Headers({"Host": "mybucket.s3.local", "Date": date,
                                                           "Authorization": f"AWS {AK}:{sig}"}))
    assert authenticate(view, service="s3", lookup_secret=lookup, virtual_host_bucket="mybucket").access_key == AK
    expect_error("SignatureDoesNotMatch", 403, authenticate, view, service="s3", lookup_secret=lookup)


def test_s3_sigv2_malformed_header_and_missing_date() -> None:
    view = RequestView("GET", "/b", "", Headers({"Host": "h", "Date": formatdate(usegmt=True), "Authorization": "AWS nocolon"}))
    expect_error("AuthorizationHeaderMalformed", 400, authenticate, view, service="s3", lookup_secret=lookup)
    view = RequestView("GET", "/b", "", Headers({"Host": "h", "Authorization": f"AWS {AK}:c2ln"}))
    expect_error("AccessDenied", 403, authenticate, view, service="s3", lookup_secret=lookup)


def test_s3_sigv2_presigned_by_botocore_query_auth() -> None:
    req = AWSRequest("GET", S3 + "/bucket/" + quote("a b/ü.txt") + "?response-content-type=text%2Fplain")
    HmacV1QueryAuth(Credentials(AK, SK), expires=60).add_auth(req)
    result = auth(req)
    assert result.scheme == "sigv2-query"  # type: ignore[attr-defined]
    err = expect_error("AccessDenied", 403, auth, req, now=datetime.now(UTC) + timedelta(seconds=120))
    assert "Request has expired" in err.message
    req.url = req.url.replace("text%2Fplain", "text%2Fhtml")
    expect_error("SignatureDoesNotMatch", 403, auth, req)


def test_s3_sigv2_boto3_presigned_url_and_put() -> None:
    s3 = client("s3", S3, signature_version="s3", s3={"addressing_style": "path"})
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "x y/ü~.txt"}, ExpiresIn=100)
    split = urlsplit(url)
    view = RequestView("GET", split.path, split.query, Headers({"Host": split.netloc}))
    assert authenticate(view, service="s3", lookup_secret=lookup).scheme == "sigv2-query"
    request = capture(s3, "put_object", Bucket="b", Key="x y/ü.txt", Body=b"abc", ContentType="text/plain")
    assert body_of(request) == b"abc"
    assert authenticate(view_of(request), service="s3", lookup_secret=lookup).scheme == "sigv2-header"


def test_s3_sigv2_presigned_missing_parameter() -> None:
    view = RequestView("GET", "/b/k", f"AWSAccessKeyId={AK}&Signature=abc", Headers({"Host": "h"}))
    expect_error("AuthorizationQueryParametersError", 400, authenticate, view, service="s3", lookup_secret=lookup)


def test_ec2_sigv2_signature_with_unencoded_plus() -> None:
    """Old tools leave '+' of the base64 signature unencoded; in a query it reads as a space."""
    now = datetime.now(UTC)
    for i in range(50):  # find a signature that contains '+'
        params = hand_signed("GET", base_params(SignatureMethod="HmacSHA256", Timestamp=_iso(now), Nonce=str(i)),
                             "HmacSHA256")
        if "+" in params["Signature"]:
            break
    assert "+" in params["Signature"]
    raw = "&".join(f"{k}={quote(v, safe='+')}" for k, v in params.items())
    view = RequestView("GET", "/", raw, Headers({"Host": EC2_HOST}))
    assert authenticate(view, service="ec2", lookup_secret=lookup).access_key == AK


# ------------------------------------------------------------------------- unsigned parts, replay windows


def test_ec2_sigv2_expires_is_bounded_by_max_expires() -> None:
    now = datetime.now(UTC)
    far = hand_signed("GET", base_params(SignatureMethod="HmacSHA256", Expires="2099-01-01T00:00:00Z"), "HmacSHA256")
    view = RequestView("GET", "/", urlencode(far), Headers({"Host": EC2_HOST}))
    err = expect_error("RequestExpired", 400, authenticate, view, service="ec2", lookup_secret=lookup, now=now)
    assert "1800 seconds" in err.message
    assert authenticate(view, service="ec2", lookup_secret=lookup, now=now,
                        sigv2_max_expires=100 * 365 * 86400).access_key == AK
    soon = hand_signed("GET", base_params(SignatureMethod="HmacSHA256", Expires=_iso(now + timedelta(minutes=2))),
                       "HmacSHA256")
    view = RequestView("GET", "/", urlencode(soon), Headers({"Host": EC2_HOST}))
    expect_error("RequestExpired", 400, authenticate, view, service="ec2", lookup_secret=lookup, now=now,
                 sigv2_max_expires=60)


def test_ec2_sigv2_refuses_x_amz_headers_and_parameters_outside_the_signed_place() -> None:
    view, body = ec2_sigv2_post({"Action": "DescribeRegions", "Version": "2016-11-15"})
    form = Headers({"Host": EC2_HOST, "Content-Type": "application/x-www-form-urlencoded"})
    assert authenticate(RequestView("POST", "/", "", form), service="ec2", lookup_secret=lookup, form_body=body)
    amz = Headers({**dict(form.items()), "x-amz-date": "20260101T000000Z"})
    err = expect_error("AccessDenied", 403, authenticate, RequestView("POST", "/", "", amz), service="ec2",
                       lookup_secret=lookup, form_body=body)
    assert "x-amz-date" in err.message
    err = expect_error("AccessDenied", 403, authenticate, RequestView("POST", "/", "InstanceId.1=i-1", form),
                       service="ec2", lookup_secret=lookup, form_body=body)
    assert "InstanceId.1" in err.message
    # the signed form in a body the gateway does not read as a form carries no credentials
    text = Headers({"Host": EC2_HOST, "Content-Type": "text/plain"})
    expect_error("MissingAuthenticationToken", 401, authenticate, RequestView("POST", "/", "", text), service="ec2",
                 lookup_secret=lookup, form_body=body)


def test_s3_sigv2_presigned_url_is_good_for_at_most_a_week() -> None:
    now = datetime.now(UTC)
    for seconds, ok in ((604800, True), (30 * 86400, False)):
        req = AWSRequest("GET", S3 + "/bucket/key")
        HmacV1QueryAuth(Credentials(AK, SK), expires=seconds).add_auth(req)
        split = urlsplit(req.url)
        view = RequestView("GET", split.path, split.query, Headers({"Host": split.netloc}))
        if ok:
            assert authenticate(view, service="s3", lookup_secret=lookup, now=now).scheme == "sigv2-query"
        else:
            expect_error("AuthorizationQueryParametersError", 400, authenticate, view, service="s3",
                         lookup_secret=lookup, now=now)
