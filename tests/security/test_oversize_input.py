"""Oversize input on both endpoints: huge headers, many headers, long request lines and query strings,
bodies over the limits, too many tags, keys, parts, ids and filters. Each is a quick 4xx (the
request never reaches a 500 or a hung thread) and the server answers normally afterwards.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.functional.s3_fixtures import sign
from tests.security import refused
from tests.security.conftest import Tenant, unique

MiB = 1 << 20


def exchange(port: int, head: bytes, body: bytes = b"", timeout: float = 20) -> tuple[int, bytes]:
    """Send raw bytes (tolerating a server that answers and closes before reading them all); the
    status and the answer's first 64 KiB."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            for i in range(0, len(body), 256 * 1024):
                sock.sendall(body[i:i + 256 * 1024])
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and len(data) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data:
                    headers, _, rest = data.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":", 1)[1]) for line in headers.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), None)
                    if length is not None and len(rest) >= length:
                        break
        except (ConnectionResetError, TimeoutError):
            pass
    assert data.startswith(b"HTTP/1."), (head[:200], data[:200])
    return int(data.split(b" ", 2)[1]), data


def alive(t: Tenant) -> None:
    t.ec2.describe_regions()
    t.s3.list_buckets()


def request(method: str, target: str, headers: dict[str, str], host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def aws_error(service: str, answer: bytes) -> tuple[str, str]:
    """(Code, Message) of an answer that must be the endpoint's own error document with a request id
    (EC2: Response/Errors/Error and RequestID; Cumulus: Error with RequestId), never an HTML page."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/xml" in head.lower(), answer[:400]
    if service == "ec2":
        found = re.fullmatch(rb'<\?xml[^>]*\?>\s*<Response><Errors><Error><Code>([^<]+)</Code><Message>([^<]+)'
                             rb'</Message></Error></Errors><RequestID>[0-9a-f-]{36}</RequestID></Response>', body.strip())
    else:
        found = re.fullmatch(rb'<\?xml[^>]*\?>\s*<Error><Code>([^<]+)</Code><Message>([^<]+)</Message>'
                             rb'<RequestId>[0-9a-f-]{36}</RequestId>(<HostId>[^<]*</HostId>)?</Error>', body.strip())
    assert found, answer[:600]
    return found.group(1).decode(), found.group(2).decode()


#: attack -> (status, Code) on each endpoint, and a word the message must contain
HEAD_REFUSALS = {
    "one-64k-header": ({"ec2": (431, "InvalidParameterValue"), "s3": (400, "RequestHeaderSectionTooLarge")}, "bytes"),
    "one-16k-header": ({"ec2": (431, "InvalidParameterValue"), "s3": (400, "RequestHeaderSectionTooLarge")}, "bytes"),
    "500-headers": ({"ec2": (431, "InvalidParameterValue"), "s3": (400, "RequestHeaderSectionTooLarge")},
                    "at most 300 headers"),
    "20k-request-line": ({"ec2": (414, "InvalidParameterValue"), "s3": (414, "InvalidURI")}, "8190 bytes"),
    "1m-request-line": ({"ec2": (414, "InvalidParameterValue"), "s3": (414, "InvalidURI")}, "8190 bytes"),
    "100k-header-name": ({"ec2": (431, "InvalidParameterValue"), "s3": (400, "RequestHeaderSectionTooLarge")},
                         "bytes"),
}


@pytest.mark.parametrize("service", ["ec2", "s3"])
@pytest.mark.parametrize("attack", list(HEAD_REFUSALS))
def test_oversize_heads_are_4xx(live: Any, alice: Tenant, service: str, attack: str) -> None:
    port = live.ec2_port if service == "ec2" else live.s3_port
    headers: dict[str, str] = {}
    target = "/?Action=DescribeRegions&Version=2016-11-15" if service == "ec2" else "/"
    if attack == "one-64k-header":
        headers["X-Junk"] = "a" * 65536
    elif attack == "one-16k-header":
        headers["X-Amz-Meta-Junk"] = "a" * 16384
    elif attack == "500-headers":
        headers.update({f"X-Junk-{i}": "a" for i in range(500)})
    elif attack == "20k-request-line":
        target += ("&" if "?" in target else "?") + "x=" + "a" * 20000
    elif attack == "1m-request-line":
        target += ("&" if "?" in target else "?") + "x=" + "a" * MiB
    elif attack == "100k-header-name":
        headers["X" * 100_000] = "a"
    started = time.monotonic()
    status, answer = exchange(port, request("GET", target, headers))
    expected, word = HEAD_REFUSALS[attack]
    assert (status, aws_error(service, answer)[0]) == expected[service], (attack, answer[:600])
    assert word in aws_error(service, answer)[1], answer[:600]
    assert time.monotonic() - started < 10
    alive(alice)


#: malformed requests gunicorn's parser refuses: raw bytes -> a word their message must contain
MALFORMED = {
    "bad-request-line": (b"THIS IS NOT HTTP\r\n\r\n", "request line"),
    "bad-method": (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", "method"),
    "bad-version": (b"GET / HTTP/7.3\r\nHost: x\r\n\r\n", "HTTP version"),
    "bad-header-name": (b"GET / HTTP/1.1\r\nHost: x\r\nBad{Name}: v\r\n\r\n", "header"),
    "folded-header": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: v\r\n  continued\r\n\r\n", "header"),
}


@pytest.mark.parametrize("service", ["ec2", "s3"])
@pytest.mark.parametrize("attack", list(MALFORMED))
def test_malformed_requests_get_the_endpoints_error_document(live: Any, alice: Tenant, service: str,
                                                             attack: str) -> None:
    port = live.ec2_port if service == "ec2" else live.s3_port
    raw, word = MALFORMED[attack]
    status, answer = exchange(port, raw)
    code, message = aws_error(service, answer)
    assert (status, code) == (400, "InvalidParameterValue" if service == "ec2" else "BadRequest"), answer[:600]
    assert word in message, answer[:600]
    alive(alice)


def test_150_headers_within_the_size_limits_are_served(live: Any, alice: Tenant) -> None:
    """S3 has no header count limit: a request with 150 headers (gunicorn refuses more than 100 by
    default) is served, on both endpoints."""
    def add_headers(request: Any, **_: Any) -> None:
        for i in range(150):
            request.headers[f"x-extra-{i}"] = "v"

    alice.ec2.meta.events.register_first("before-sign.ec2.DescribeRegions", add_headers)
    try:
        assert alice.ec2.describe_regions()["Regions"]
    finally:
        alice.ec2.meta.events.unregister("before-sign.ec2.DescribeRegions", add_headers)
    bucket = unique("headers")
    alice.s3.create_bucket(Bucket=bucket)
    try:
        alice.s3.meta.events.register_first("before-sign.s3.PutObject", add_headers)
        try:
            alice.s3.put_object(Bucket=bucket, Key="k", Body=b"many headers", Metadata={f"m{i}": "v" for i in range(50)})
        finally:
            alice.s3.meta.events.unregister("before-sign.s3.PutObject", add_headers)
        got = alice.s3.get_object(Bucket=bucket, Key="k")
        assert got["Body"].read() == b"many headers" and len(got["Metadata"]) == 50
        alice.s3.delete_object(Bucket=bucket, Key="k")
    finally:
        alice.s3.delete_bucket(Bucket=bucket)


def test_ec2_body_over_the_limit_is_413(live: Any, alice: Tenant) -> None:
    body = urlencode({"Action": "DescribeRegions", "Version": "2016-11-15", "Junk": "a" * (3 * MiB)}).encode()
    head = request("POST", "/", {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(len(body))})
    status, answer = exchange(live.ec2_port, head, body)
    assert status == 413 and b"<Code>" in answer, answer[:300]
    alive(alice)


def test_s3_xml_body_over_the_limit_is_refused(live: Any, alice: Tenant) -> None:
    bucket = unique("oversize")
    alice.s3.create_bucket(Bucket=bucket)
    body = b'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' + b" " * (5 * MiB) + \
        b"</AccessControlPolicy>"
    url = f"{live.s3_url}/{bucket}?acl"
    headers = sign(alice, "PUT", url, {"Content-Length": str(len(body))}, "UNSIGNED-PAYLOAD")
    head = (f"PUT /{bucket}?acl HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    status, answer = exchange(live.s3_port, head, body)
    assert status in (400, 413) and b"<Code>" in answer, answer[:300]
    assert [g["Permission"] for g in alice.s3.get_bucket_acl(Bucket=bucket)["Grants"]] == ["FULL_CONTROL"]
    alice.s3.delete_bucket(Bucket=bucket)


def test_s3_counts_and_sizes_over_the_limits(live: Any, alice: Tenant) -> None:
    bucket = unique("limits")
    s3 = alice.s3
    s3.create_bucket(Bucket=bucket)
    try:
        refused(s3.put_object, Bucket=bucket, Key="meta", Body=b"x", Metadata={"m": "x" * 3000},
                codes={"MetadataTooLarge"})
        # 200 metadata headers: no header count limit answers first, S3's metadata size limit does
        refused(s3.put_object, Bucket=bucket, Key="meta", Body=b"x", Metadata={f"m{i}": "x" * 20 for i in range(200)},
                codes={"MetadataTooLarge"}, status={400})
        refused(s3.head_object, Bucket=bucket, Key="meta", status={404})
        refused(s3.delete_objects, Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]},
                status={400})
        upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"p")["ETag"]
        refused(s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": i, "ETag": etag} for i in range(1, 10_002)]}, status={400})
        refused(s3.upload_part, Bucket=bucket, Key="mp", UploadId=upload, PartNumber=10_001, Body=b"p", status={400})
        # a PUT announcing more than the largest object: refused before any byte of the body
        url = f"{live.s3_url}/{bucket}/huge"
        headers = sign(alice, "PUT", url, {"Content-Length": str(6 * 1024 ** 4)}, "UNSIGNED-PAYLOAD")
        head = (f"PUT /{bucket}/huge HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) +
                "\r\n").encode()
        status, answer = exchange(live.s3_port, head, b"x" * 1024)
        assert status in (400, 413) and b"<Code>" in answer, answer[:300]
        assert s3.list_objects_v2(Bucket=bucket, Prefix="huge").get("Contents", []) == []
        s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)
    finally:
        s3.delete_bucket(Bucket=bucket)


def test_ec2_tag_counts_and_sizes_over_the_limits(alice: Tenant, public_image: str) -> None:
    ec2 = alice.ec2
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    refused(ec2.run_instances, ImageId=public_image, MinCount=1, MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
    refused(ec2.run_instances, ImageId=public_image, MinCount=1, MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "k" * 129, "Value": "v"}]}])
    running = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
               if i["State"]["Name"] != "terminated"]
    iid = ec2.run_instances(ImageId=public_image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    try:
        refused(ec2.create_tags, Resources=[iid], Tags=tags)
        refused(ec2.create_tags, Resources=[iid], Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(5000)])
        refused(ec2.create_tags, Resources=[iid], Tags=[{"Key": "k" * 129, "Value": "v"}])
        refused(ec2.create_tags, Resources=[iid], Tags=[{"Key": "k", "Value": "v" * 257}])
        # the limit counts the tags a resource has, not the tags of one call
        for start in range(0, 45, 15):
            ec2.create_tags(Resources=[iid], Tags=[{"Key": f"t{i}", "Value": "v"} for i in range(start, start + 15)])
        refused(ec2.create_tags, Resources=[iid], Tags=[{"Key": f"u{i}", "Value": "v"} for i in range(10)])
        got = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [iid]}])["Tags"]
        assert len([t for t in got if not t["Key"].startswith("lease:")]) <= 50, len(got)
    finally:
        ec2.terminate_instances(InstanceIds=[iid])
    assert len(running) + 1 >= len([i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                                    if i["State"]["Name"] not in ("terminated", "shutting-down")])


def test_ec2_many_ids_and_filters_answer_quickly(alice: Tenant) -> None:
    ec2 = alice.ec2
    started = time.monotonic()
    ids = [f"i-{n:017x}" for n in range(20_000)]
    refused(ec2.describe_instances, InstanceIds=ids, codes={"InvalidInstanceID.NotFound", "InvalidParameterValue",
                                                            "InvalidParameterCombination"})
    assert time.monotonic() - started < 20
    started = time.monotonic()
    filters = [{"Name": f"tag:k{i}", "Values": [f"v{j}*" for j in range(200)]} for i in range(50)]
    try:
        ec2.describe_instances(Filters=filters)
    except Exception as exc:  # a limit is fine, as long as it is a 4xx
        assert 400 <= exc.response["ResponseMetadata"]["HTTPStatusCode"] < 500, exc  # type: ignore[attr-defined]
    assert time.monotonic() - started < 20
    alive(alice)
