"""The rest-xml parser and serializer against botocore itself.

botocore's client builds the requests our router and parser must read (captured before they are
sent); botocore's response parser must read back the XML and headers our serializer writes.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.parsers import create_parser
from werkzeug.datastructures import Headers

from ec2gw.aws.restxml_parser import S3Request, S3Router, parse_query, parse_request, split_path
from ec2gw.aws.restxml_serializer import serialize_error, serialize_response
from ec2gw.aws.spec import operation_model, service_model
from ec2gw.errors import ServiceError


class _Captured(Exception):
    pass


def capture(operation: str, **params: Any) -> dict[str, Any]:
    """The HTTP request botocore would send for `operation(**params)` (path style, plain http)."""
    client = boto3.client(
        "s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}),
    )
    seen: dict[str, Any] = {}

    def grab(request: Any, **_: Any) -> None:
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        seen.update(method=request.method, url=request.url, headers=Headers([(k, v.decode("latin-1") if isinstance(v, bytes) else v)
                                         for k, v in request.headers.items()]),
                    body=body or b"")
        raise _Captured()

    client.meta.events.register("before-send.s3", grab)
    with pytest.raises(_Captured):
        getattr(client, _snake(operation))(**params)
    return seen


def _snake(name: str) -> str:
    from botocore import xform_name

    return xform_name(name)


ROUTER = S3Router(service_model("s3"))


def parse_captured(seen: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    url = urlsplit(seen["url"])
    bucket, key = split_path(url.path)
    req = S3Request(seen["method"], bucket, key, parse_query(url.query), seen["headers"])
    op = ROUTER.match(req)
    if op is None:
        return None, {}
    model = operation_model("s3", op)
    payload = None
    if model.input_shape is not None and model.input_shape.serialization.get("payload"):
        member = model.input_shape.members[model.input_shape.serialization["payload"]]
        if member.type_name == "structure":
            payload = seen["body"] if isinstance(seen["body"], bytes) else seen["body"].encode()
    return op, parse_request(model, req, payload)


@pytest.mark.parametrize(
    "operation, params, expected",
    [
        ("ListBuckets", {}, {}),
        ("CreateBucket", {"Bucket": "b1", "ACL": "public-read"}, {"Bucket": "b1", "ACL": "public-read"}),
        ("CreateBucket", {"Bucket": "b1", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}},
         {"Bucket": "b1", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}}),
        ("HeadBucket", {"Bucket": "b1"}, {"Bucket": "b1"}),
        ("DeleteBucket", {"Bucket": "b1"}, {"Bucket": "b1"}),
        ("GetBucketLocation", {"Bucket": "b1"}, {"Bucket": "b1"}),
        ("ListObjects", {"Bucket": "b1", "Prefix": "a b+c/", "Delimiter": "/", "Marker": "m", "MaxKeys": 7,
                         "EncodingType": "url"},
         {"Bucket": "b1", "Prefix": "a b+c/", "Delimiter": "/", "Marker": "m", "MaxKeys": 7, "EncodingType": "url"}),
        ("ListObjectsV2", {"Bucket": "b1", "Prefix": "p/", "StartAfter": "p/a", "ContinuationToken": "tok",
                           "FetchOwner": True, "MaxKeys": 3},
         {"Bucket": "b1", "Prefix": "p/", "StartAfter": "p/a", "ContinuationToken": "tok", "FetchOwner": True,
          "MaxKeys": 3}),
        ("GetObject", {"Bucket": "b1", "Key": "dir/ü €/..//x", "Range": "bytes=0-9", "IfNoneMatch": '"e"',
                       "ResponseContentType": "text/plain", "PartNumber": 2,
                       "IfModifiedSince": datetime(2024, 5, 1, 12, 0, tzinfo=UTC)},
         {"Bucket": "b1", "Key": "dir/ü €/..//x", "Range": "bytes=0-9", "IfNoneMatch": '"e"',
          "ResponseContentType": "text/plain", "PartNumber": 2,
          "IfModifiedSince": datetime(2024, 5, 1, 12, 0, tzinfo=UTC)}),
        ("HeadObject", {"Bucket": "b1", "Key": "/lead", "ChecksumMode": "ENABLED"},
         {"Bucket": "b1", "Key": "/lead", "ChecksumMode": "ENABLED"}),
        ("DeleteObject", {"Bucket": "b1", "Key": "k"}, {"Bucket": "b1", "Key": "k"}),
        ("DeleteObjects", {"Bucket": "b1", "Delete": {"Objects": [{"Key": "a"}, {"Key": "b&<c>"}], "Quiet": True}},
         {"Bucket": "b1", "Delete": {"Objects": [{"Key": "a"}, {"Key": "b&<c>"}], "Quiet": True}}),
        ("CopyObject", {"Bucket": "b1", "Key": "dst", "CopySource": "src/k ü", "MetadataDirective": "REPLACE",
                        "Metadata": {"color": "blue"}, "CopySourceIfMatch": '"x"'},
         {"Bucket": "b1", "Key": "dst", "MetadataDirective": "REPLACE", "Metadata": {"color": "blue"},
          "CopySourceIfMatch": '"x"'}),
        ("CreateMultipartUpload", {"Bucket": "b1", "Key": "k", "ContentType": "text/x", "Metadata": {"a": "1"}},
         {"Bucket": "b1", "Key": "k", "ContentType": "text/x", "Metadata": {"a": "1"}}),
        ("UploadPart", {"Bucket": "b1", "Key": "k", "UploadId": "u1", "PartNumber": 3, "Body": b"x"},
         {"Bucket": "b1", "Key": "k", "UploadId": "u1", "PartNumber": 3}),
        ("UploadPartCopy", {"Bucket": "b1", "Key": "k", "UploadId": "u1", "PartNumber": 3, "CopySource": "s/k",
                            "CopySourceRange": "bytes=0-5"},
         {"Bucket": "b1", "Key": "k", "UploadId": "u1", "PartNumber": 3, "CopySource": "s/k",
          "CopySourceRange": "bytes=0-5"}),
        ("CompleteMultipartUpload", {"Bucket": "b1", "Key": "k", "UploadId": "u1", "MultipartUpload": {
            "Parts": [{"PartNumber": 1, "ETag": '"a"'}, {"PartNumber": 2, "ETag": '"b"', "ChecksumCRC32": "AAAAAA=="}]}},
         {"Bucket": "b1", "Key": "k", "UploadId": "u1", "MultipartUpload": {
             "Parts": [{"PartNumber": 1, "ETag": '"a"'}, {"PartNumber": 2, "ETag": '"b"', "ChecksumCRC32": "AAAAAA=="}]}}),
        ("AbortMultipartUpload", {"Bucket": "b1", "Key": "k", "UploadId": "u1"},
         {"Bucket": "b1", "Key": "k", "UploadId": "u1"}),
        ("ListParts", {"Bucket": "b1", "Key": "k", "UploadId": "u1", "MaxParts": 2, "PartNumberMarker": 4},
         {"Bucket": "b1", "Key": "k", "UploadId": "u1", "MaxParts": 2, "PartNumberMarker": 4}),
        ("ListMultipartUploads", {"Bucket": "b1", "Prefix": "p", "KeyMarker": "k", "UploadIdMarker": "u"},
         {"Bucket": "b1", "Prefix": "p", "KeyMarker": "k", "UploadIdMarker": "u"}),
        ("PutObjectAcl", {"Bucket": "b1", "Key": "k", "ACL": "public-read"},
         {"Bucket": "b1", "Key": "k", "ACL": "public-read"}),
        ("GetBucketAcl", {"Bucket": "b1"}, {"Bucket": "b1"}),
    ],
)
def test_parser_reads_what_botocore_sends(operation: str, params: dict[str, Any], expected: dict[str, Any]) -> None:
    op, parsed = parse_captured(capture(operation, **params))
    assert op == operation
    for k, v in expected.items():
        assert parsed.get(k) == v, k


def test_put_object_headers_and_metadata() -> None:
    seen = capture(
        "PutObject", Bucket="b1", Key="a/b.txt", Body=b"hello", ContentType="text/plain", ContentEncoding="gzip",
        ContentDisposition="attachment", ContentLanguage="de", CacheControl="no-cache",
        Expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), Metadata={"Color": "Blue", "x": "y"},
        ACL="public-read", ChecksumAlgorithm="SHA256",
    )
    op, parsed = parse_captured(seen)
    assert op == "PutObject"
    assert parsed["ContentType"] == "text/plain"
    assert parsed["ContentEncoding"] == "gzip"
    assert parsed["Expires"] == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed["Metadata"] == {"color": "Blue", "x": "y"}
    assert parsed["ChecksumSHA256"]
    assert "Body" not in parsed


def test_router_prefers_specific_operations() -> None:
    def route(method: str, path: str, query: str = "", **headers: str) -> str | None:
        bucket, key = split_path(path)
        return ROUTER.match(S3Request(method, bucket, key, parse_query(query), Headers(list(headers.items()))))

    assert route("GET", "/") == "ListBuckets"
    assert route("GET", "/b") == "ListObjects"
    assert route("GET", "/b", "list-type=2&prefix=x") == "ListObjectsV2"
    assert route("GET", "/b", "list-type=3") == "ListObjects"
    assert route("GET", "/b/k", "uploadId=1") == "ListParts"
    assert route("GET", "/b/k", "partNumber=1&X-Amz-Signature=x") == "GetObject"
    assert route("PUT", "/b/k") == "PutObject"
    assert route("PUT", "/b/k", **{"x-amz-copy-source": "a/b"}) == "CopyObject"
    assert route("PUT", "/b/k", "partNumber=1&uploadId=u") == "UploadPart"
    assert route("PUT", "/b/k", "partNumber=1&uploadId=u", **{"x-amz-copy-source": "a/b"}) == "UploadPartCopy"
    assert route("POST", "/b", "delete") == "DeleteObjects"
    assert route("POST", "/b/k", "uploads") == "CreateMultipartUpload"
    assert route("DELETE", "/b/k", "uploadId=u") == "AbortMultipartUpload"
    assert route("PATCH", "/b/k") is None
    assert split_path("/b/") == ("b", None)
    assert split_path("/b//x/../y") == ("b", "/x/../y")


def test_malformed_xml_is_refused() -> None:
    model = operation_model("s3", "DeleteObjects")
    req = S3Request("POST", "b", None, [("delete", "")], Headers())
    for body in (b"<Delete><Object><Key>a</Key></Object>", b"<Other/>", b"not xml",
                 b'<!DOCTYPE d [<!ENTITY e "x">]><Delete><Object><Key>&e;</Key></Object></Delete>'):
        with pytest.raises(ServiceError) as err:
            parse_request(model, req, body)
        assert err.value.code == "MalformedXML"


def test_bad_integer_is_invalid_argument() -> None:
    model = operation_model("s3", "ListObjectsV2")
    with pytest.raises(ServiceError) as err:
        parse_request(model, S3Request("GET", "b", None, [("list-type", "2"), ("max-keys", "ten")], Headers()))
    assert err.value.code == "InvalidArgument"


# --------------------------------------------------------------------------- serializer


def botocore_parse(operation: str, status: int, headers: list[tuple[str, str]], body: bytes) -> dict[str, Any]:
    model = operation_model("s3", operation)
    parser = create_parser("rest-xml")
    response = {"status_code": status, "headers": _HeaderDict(headers), "body": body}
    return parser.parse(response, model.output_shape)


def _HeaderDict(items: list[tuple[str, str]]) -> Any:
    """botocore's parser wants its case-insensitive header mapping."""
    from botocore.awsrequest import HeadersDict

    h = HeadersDict()
    for k, v in items:
        h[k] = v
    return h


NOW = datetime(2024, 6, 1, 10, 20, 30, 123000, tzinfo=UTC)
OWNER = {"ID": "a" * 64, "DisplayName": "alice"}


@pytest.mark.parametrize(
    "operation, result",
    [
        ("ListBuckets", {"Buckets": [{"Name": "b1", "CreationDate": NOW}, {"Name": "b2", "CreationDate": NOW}],
                         "Owner": OWNER}),
        ("ListObjectsV2", {"Name": "b1", "Prefix": "p/", "KeyCount": 2, "MaxKeys": 2, "IsTruncated": True,
                           "NextContinuationToken": "t", "Delimiter": "/",
                           "Contents": [{"Key": "p/a&b", "LastModified": NOW, "ETag": '"x"', "Size": 3,
                                         "StorageClass": "STANDARD", "Owner": OWNER}],
                           "CommonPrefixes": [{"Prefix": "p/d/"}]}),
        ("ListObjects", {"Name": "b1", "Prefix": "", "Marker": "", "MaxKeys": 1000, "IsTruncated": False,
                         "Contents": [{"Key": "k", "LastModified": NOW, "ETag": '"x"', "Size": 0}]}),
        ("CreateMultipartUpload", {"Bucket": "b1", "Key": "k", "UploadId": "u1", "ChecksumAlgorithm": "CRC32"}),
        ("CompleteMultipartUpload", {"Bucket": "b1", "Key": "k", "ETag": '"abc-2"', "Location": "http://h/b1/k"}),
        ("ListParts", {"Bucket": "b1", "Key": "k", "UploadId": "u", "MaxParts": 10, "IsTruncated": False,
                       "Parts": [{"PartNumber": 1, "ETag": '"e"', "Size": 5, "LastModified": NOW}],
                       "Owner": OWNER, "Initiator": OWNER, "StorageClass": "STANDARD"}),
        ("ListMultipartUploads", {"Bucket": "b1", "MaxUploads": 1000, "IsTruncated": False,
                                  "Uploads": [{"Key": "k", "UploadId": "u", "Initiated": NOW, "Owner": OWNER}]}),
        ("DeleteObjects", {"Deleted": [{"Key": "a"}], "Errors": [{"Key": "b", "Code": "AccessDenied",
                                                                  "Message": "no"}]}),
        ("CopyObject", {"CopyObjectResult": {"ETag": '"e"', "LastModified": NOW}}),
        ("UploadPartCopy", {"CopyPartResult": {"ETag": '"e"', "LastModified": NOW}}),
        ("GetBucketAcl", {"Owner": OWNER, "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": "a" * 64, "DisplayName": "alice"}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
             "Permission": "READ"}]}),
        ("HeadObject", {"ContentLength": 5, "ETag": '"e"', "LastModified": NOW.replace(microsecond=0),
                        "ContentType": "text/plain", "Metadata": {"color": "blue", "u": "ü"},
                        "ChecksumCRC32": "AAAAAA==", "PartsCount": 3, "AcceptRanges": "bytes",
                        "Expires": NOW.replace(microsecond=0)}),
        ("PutObject", {"ETag": '"e"', "ChecksumCRC32C": "AAAAAA=="}),
    ],
)
def test_botocore_reads_what_we_serialize(operation: str, result: dict[str, Any]) -> None:
    resp = serialize_response(operation_model("s3", operation), result)
    body = resp.body if isinstance(resp.body, bytes) else b""
    parsed = botocore_parse(operation, resp.status, resp.headers, body)
    parsed.pop("ResponseMetadata", None)
    for k, v in result.items():
        if k == "Expires":
            continue
        assert parsed.get(k) == v, (k, parsed.get(k), v)


def test_get_object_body_streams_through() -> None:
    stream = io.BytesIO(b"abc")
    resp = serialize_response(operation_model("s3", "GetObject"), {"Body": stream, "ContentLength": 3, "_status": 206})
    assert resp.body is stream and resp.status == 206
    assert ("Content-Length", "3") in resp.headers


def test_delete_bucket_is_204_and_error_document() -> None:
    assert serialize_response(operation_model("s3", "DeleteBucket"), {}).status == 204
    body = serialize_error("NoSuchKey", "The specified key does not exist.", "RID", {"Key": "a<b", "Bad Name": "x"})
    parsed = create_parser("rest-xml").parse(
        {"status_code": 404, "headers": _HeaderDict([("x-amz-request-id", "RID")]), "body": body},
        operation_model("s3", "GetObject").output_shape,
    )
    assert parsed["Error"] == {"Code": "NoSuchKey", "Message": "The specified key does not exist.", "Key": "a<b"}
    assert parsed["ResponseMetadata"]["RequestId"] == "RID"
    assert b"Bad Name" not in body


def test_get_bucket_location_document() -> None:
    from botocore.handlers import parse_get_bucket_location

    resp = serialize_response(operation_model("s3", "GetBucketLocation"), {"LocationConstraint": "eu-west-1"})

    class _Http:
        content = resp.body
        raw = object()

    parsed: dict[str, Any] = {}
    parse_get_bucket_location(parsed, _Http())
    assert parsed["LocationConstraint"] == "eu-west-1"
