"""The service itself: restarts, signatures from every client kind, and bad input over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.auth import SigV2Auth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from lxml import etree

from tests.live import LiveServer

FAST = {"Delay": 1, "MaxAttempts": 60}


def _fetch(req: urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _error_code(body: bytes) -> str:
    return str(etree.fromstring(body).findtext("Errors/Error/Code"))


def test_restart_keeps_instances_running(tmp_path_factory: pytest.TempPathFactory) -> None:
    data = tmp_path_factory.mktemp("restart")
    srv = LiveServer(data).start()
    try:
        img = data / "i.img"
        img.write_bytes(b"\0" * 8192)
        image = json.loads(srv.cli("admin", "image", "import", "img", str(img), "--json").stdout)["image_id"]
        ec2 = srv.client("ec2")
        run = ec2.run_instances(ImageId=image, MinCount=3, MaxCount=3)
        ids = [i["InstanceId"] for i in run["Instances"]]
        ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=FAST)
        ec2.stop_instances(InstanceIds=ids[:1])
        ec2.get_waiter("instance_stopped").wait(InstanceIds=ids[:1], WaiterConfig=FAST)
        before = {i["InstanceId"]: (i["State"]["Name"], i["PrivateIpAddress"])
                  for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    finally:
        srv.stop()
    srv2 = LiveServer(data, ec2_port=srv.ec2_port, s3_port=srv.s3_port).start()
    try:
        ec2 = srv2.client("ec2")
        after = {i["InstanceId"]: (i["State"]["Name"], i["PrivateIpAddress"])
                 for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
        assert after == before
        # the test driver forgot its domains with the old process: the worker made them again
        deadline = dt.datetime.now() + dt.timedelta(seconds=30)
        while srv2.log().count("recreated domain") < 2 and dt.datetime.now() < deadline:
            time.sleep(0.2)
        assert srv2.log().count("recreated domain") == 2
        ec2.start_instances(InstanceIds=ids[:1])
        ec2.get_waiter("instance_running").wait(InstanceIds=ids[:1], WaiterConfig=FAST)
        ec2.stop_instances(InstanceIds=ids[1:])
        ec2.get_waiter("instance_stopped").wait(InstanceIds=ids[1:], WaiterConfig=FAST)
        ec2.terminate_instances(InstanceIds=ids)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=FAST)
    finally:
        srv2.stop()


def _signed_v2(server: LiveServer, params: dict[str, str], method: str = "HmacSHA256", secret: str | None = None,
               timestamp: str | None = None) -> urllib.request.Request:
    admin = server.admin
    req = AWSRequest(method="POST", url=server.ec2_url + "/", data=dict(params))
    auth = SigV2Auth(Credentials(admin.access_key, secret or admin.secret_key))
    if method == "HmacSHA1":
        # botocore signs SigV2 with SHA-256; build the SHA-1 form by hand, as legacy EC2 tools do
        import base64
        import hashlib
        import hmac
        from urllib.parse import quote

        ts = timestamp or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        p = dict(params, AWSAccessKeyId=admin.access_key, SignatureVersion="2", SignatureMethod="HmacSHA1", Timestamp=ts)
        host = f"127.0.0.1:{server.ec2_port}"
        qs = "&".join(f"{quote(k, safe='-_~.')}={quote(v, safe='-_~.')}" for k, v in sorted(p.items()))
        sts = f"POST\n{host}\n/\n{qs}"
        p["Signature"] = base64.b64encode(hmac.new((secret or admin.secret_key).encode(), sts.encode(), hashlib.sha1).digest()).decode()
        return urllib.request.Request(server.ec2_url + "/", data=urlencode(p).encode(), method="POST",
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    auth.add_auth(req)
    return urllib.request.Request(server.ec2_url + "/", data=urlencode(req.data).encode(), method="POST",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})


def test_sigv2_query_signing(server: LiveServer) -> None:
    params = {"Action": "DescribeRegions", "Version": "2016-11-15"}
    for method in ("HmacSHA256", "HmacSHA1"):
        status, body = _fetch(_signed_v2(server, params, method))
        assert status == 200, body
        assert b"<regionName>us-east-1</regionName>" in body
        status, body = _fetch(_signed_v2(server, params, method, secret="wrong-secret"))
        assert status == 403 and _error_code(body) == "SignatureDoesNotMatch"
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, body = _fetch(_signed_v2(server, params, "HmacSHA1", timestamp=old))
    assert status == 400 and _error_code(body) == "RequestExpired"


def test_sigv4_query_string_and_any_region(server: LiveServer) -> None:
    admin = server.admin
    query = {"Action": "DescribeAvailabilityZones", "Version": "2016-11-15"}
    req = AWSRequest(method="GET", url=f"{server.ec2_url}/?{urlencode(query)}")
    SigV4QueryAuth(Credentials(admin.access_key, admin.secret_key), "ec2", "undefined-4242", expires=300).add_auth(req)
    status, body = _fetch(urllib.request.Request(req.url, method="GET"))
    assert status == 200, body
    assert b"availabilityZoneInfo" in body


def test_auth_failures(server: LiveServer) -> None:
    url = server.ec2_url + "/"
    body = b"Action=DescribeRegions&Version=2016-11-15"
    status, out = _fetch(urllib.request.Request(url, data=body, method="POST"))
    assert status in (401, 403) and _error_code(out) == "MissingAuthenticationToken"
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(Credentials("AKECNOSUCHKEY0000000", "x" * 40), "ec2", "us-east-1").add_auth(req)
    status, out = _fetch(urllib.request.Request(url, data=body, headers=dict(req.headers.items()), method="POST"))
    assert status in (401, 403) and _error_code(out) in ("AuthFailure", "InvalidClientTokenId")
    admin = server.admin
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(Credentials(admin.access_key, admin.secret_key), "ec2", "us-east-1").add_auth(req)
    tampered = body.replace(b"Regions", b"Images")
    status, out = _fetch(urllib.request.Request(url, data=tampered, headers=dict(req.headers.items()), method="POST"))
    assert status == 403 and _error_code(out) == "SignatureDoesNotMatch"


def _signed(server: LiveServer, body: bytes, headers: dict[str, str] | None = None) -> dict[str, str]:
    admin = server.admin
    req = AWSRequest(method="POST", url=server.ec2_url + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    SigV4Auth(Credentials(admin.access_key, admin.secret_key), "ec2", "us-east-1").add_auth(req)
    return dict(req.headers.items())


@pytest.mark.parametrize(
    "body, code",
    [
        (b"Action=FlyToTheMoon&Version=2016-11-15", "InvalidAction"),
        (b"Version=2016-11-15", "MissingAction"),
        (b"Action=DescribeInstances&InstanceId.1=\xff\xfe", "InvalidParameterValue"),
        (b"Action=DescribeInstances&Filter.1.Name=bogus&Filter.1.Value.1=x", "InvalidParameterValue"),
        (b"Action=RunInstances&MinCount=1", "MissingParameter"),
        (b"Action=RunInstances&MinCount=x&MaxCount=1&ImageId=ami-12345678", "InvalidParameterValue"),
        (b"Action=TerminateInstances&InstanceId.1=i-nothex!!", "InvalidInstanceID.Malformed"),
    ],
)
def test_bad_input_gets_an_aws_error(server: LiveServer, body: bytes, code: str) -> None:
    status, out = _fetch(urllib.request.Request(server.ec2_url + "/", data=body, headers=_signed(server, body), method="POST"))
    assert 400 <= status < 500
    assert _error_code(out) == code
    assert etree.fromstring(out).findtext("RequestID")


def test_oversize_body_is_refused(server: LiveServer) -> None:
    """Refused by its announced size, before the body is read. The client sends only the body's first
    KiB and then reads the answer: a client still sending 3 MiB when the server has answered may see
    its connection reset by the kernel instead of the 413 (a race of the client's, not the server's)."""
    body = b"Action=DescribeRegions&Junk=" + b"x" * (3 * 1024 * 1024)
    headers = _signed(server, body)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "content-length")
    with socket.create_connection(("127.0.0.1", server.ec2_port), timeout=10) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server.ec2_port}\r\nContent-Length: {len(body)}\r\n"
                     f"{head}\r\n".encode() + body[:1024])
        answer = b""
        while b"</Response>" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    assert _status_and_code(answer) == (413, "RequestEntityTooLarge"), answer


def test_cut_off_body_does_not_break_the_service(server: LiveServer) -> None:
    body = b"Action=DescribeRegions&Version=2016-11-15"
    headers = _signed(server, body)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "content-length")
    with socket.create_connection(("127.0.0.1", server.ec2_port), timeout=10) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server.ec2_port}\r\nContent-Length: 1000\r\n{head}\r\n".encode()
                     + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"IncompleteBody" in answer
    assert server.client("ec2").describe_regions()["Regions"]


def _raw_exchange(server: LiveServer, head: str, body: bytes) -> bytes:
    """Send a request as raw bytes (header values latin-1, as on the wire), then read the answer to EOF."""
    with socket.create_connection(("127.0.0.1", server.ec2_port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _log_size(server: LiveServer) -> int:
    return server.log_path.stat().st_size if server.log_path and server.log_path.exists() else 0


def _log_since(server: LiveServer, offset: int) -> str:
    assert server.log_path is not None
    with open(server.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _status_and_code(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), _error_code(body)


@pytest.mark.parametrize("chunks", [
    b"zz\r\nAction=DescribeRegions\r\n0\r\n\r\n",  # a chunk size that is no hex number
    b"ffff\r\nAction=DescribeRegions",  # chunked body cut off by the client closing
    b"5\r\nAction=DescribeRegions\r\n0\r\n\r\n",  # chunk longer than its size: no CRLF after 5 bytes
])
def test_broken_chunked_body_is_incomplete_body(server: LiveServer, chunks: bytes) -> None:
    """gunicorn's chunked reader raises InvalidChunkSize / NoMoreData / ChunkMissingTerminator: they
    are the client's broken body (400), not InternalError; the service keeps answering."""
    headers = _signed(server, b"Action=DescribeRegions")
    log_offset = _log_size(server)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "content-length")
    answer = _raw_exchange(server, f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server.ec2_port}\r\n"
                                   f"Transfer-Encoding: chunked\r\n{head}\r\n", chunks)
    assert _status_and_code(answer) == (400, "IncompleteBody")
    assert server.client("ec2").describe_regions()["Regions"]
    assert "Traceback" not in _log_since(server, log_offset)


def test_a_body_that_stops_arriving_is_400_request_timeout(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A client that announced a body and stopped sending it (without closing) held a server thread
    for as long as it liked: sixteen of them stopped the endpoint. Now, after body_timeout seconds of
    silence, it gets 400 RequestTimeout and the connection ends; other clients are served meanwhile."""
    srv = LiveServer(Path(tmp_path_factory.mktemp("ec2gw-slow")), env={"EC2GW_BODY_TIMEOUT": "1.5"}).start()
    try:
        body = b"Action=DescribeRegions&Version=2016-11-15"
        headers = _signed(srv, body)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "content-length")
        stalled = [  # Content-Length announces more than is sent; a chunked body stops mid-chunk
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{srv.ec2_port}\r\n{head}Content-Length: {len(body)}\r\n\r\n",
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{srv.ec2_port}\r\n{head}Transfer-Encoding: chunked\r\n\r\n",
        ]
        sent = [body[:10], b"%x\r\n" % len(body) + body[:10]]
        socks = []
        for _ in range(10):  # more stalled clients than the server has threads for one worker
            for request, part in zip(stalled, sent, strict=True):
                sock = socket.create_connection(("127.0.0.1", srv.ec2_port), timeout=10)
                sock.sendall(request.encode("latin-1") + part)  # ... and nothing more; the socket stays open
                socks.append(sock)
        started = time.monotonic()
        assert srv.client("ec2").describe_regions()["Regions"]  # served beside them
        for sock in socks:
            with sock:
                answer = b""
                while chunk := sock.recv(65536):  # read to EOF: the server ends the connection
                    answer += chunk
                assert _status_and_code(answer) == (400, "RequestTimeout"), answer
        assert time.monotonic() - started < 9
        assert "Traceback" not in srv.log()
    finally:
        srv.stop()


@pytest.mark.parametrize("change", ["host", "signature"])
def test_junk_host_or_non_ascii_signature_is_signature_does_not_match(server: LiveServer, change: str) -> None:
    """Host "[::1" broke urlsplit in the verifier, a signature with a latin-1 byte broke
    hmac.compare_digest: both were InternalError."""
    body = b"Action=DescribeRegions&Version=2016-11-15"
    headers = _signed(server, body)
    log_offset = _log_size(server)
    host = f"127.0.0.1:{server.ec2_port}"
    if change == "host":
        host = "[::1"
    else:
        headers["Authorization"] += "\xe9"
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    answer = _raw_exchange(server, f"POST / HTTP/1.1\r\nHost: {host}\r\n{head}Connection: close\r\n\r\n", body)
    assert _status_and_code(answer) == (403, "SignatureDoesNotMatch")
    assert "Traceback" not in _log_since(server, log_offset)


def test_version_decides_the_namespace(server: LiveServer) -> None:
    body = b"Action=DescribeRegions&Version=2014-10-01"
    status, out = _fetch(urllib.request.Request(server.ec2_url + "/", data=body, headers=_signed(server, body), method="POST"))
    assert status == 200
    assert etree.fromstring(out).tag == "{http://ec2.amazonaws.com/doc/2014-10-01/}DescribeRegionsResponse"


def test_dry_run_of_every_mutating_call(server: LiveServer) -> None:
    ec2 = server.client("ec2")
    for call, kwargs in ((ec2.describe_instances, {}), (ec2.describe_regions, {})):
        with pytest.raises(ClientError) as err:
            call(DryRun=True, **kwargs)
        assert err.value.response["Error"]["Code"] == "DryRunOperation"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_every_response_has_a_request_id(server: LiveServer) -> None:
    resp: dict[str, Any] = server.client("ec2").describe_regions()
    assert len(resp["ResponseMetadata"]["RequestId"]) == 36


def test_first_start_makes_the_default_pool_and_a_low_priority_worker(server: LiveServer) -> None:
    """The embedded default pool exists before the first launch, and the compute worker runs at a
    lower CPU priority than the API processes (bursts of launches must not slow down requests)."""
    listed = {p["name"]: p for p in json.loads(server.cli("admin", "pool", "list", "--json").stdout)}
    assert listed["default"]["addresses"] == 4093 and listed["default"]["subnet"] == "10.128.0.0/20"
    assert server.proc is not None

    def niceness(pid: int) -> int:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[16])

    with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as f:
        children = [int(c) for c in f.read().split()]
    workers = [pid for pid in children if b"compute-worker" in open(f"/proc/{pid}/cmdline", "rb").read()]
    assert len(workers) == 1
    assert niceness(workers[0]) - niceness(server.proc.pid) == 5
