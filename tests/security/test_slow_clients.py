"""Slow clients cannot stop the service: hundreds of connections that send their headers, or
their body, a byte at a time hold no server thread, and boto3 is still answered promptly on both
endpoints. With gunicorn's gthread worker as it was (2 workers x 8 threads, a thread reading each
request's headers blocking), 20 to 40 such connections stopped both endpoints for minutes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from tests.live import LiveServer
from tests.security.dripping import Dripping, connect

SLOW = 150  # per kind and endpoint: 600 connections in all


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(Path(tmp_path_factory.mktemp("ec2gw-slow-clients"))).start()
    try:
        yield srv
    finally:
        srv.stop()


def slow_clients(ports: list[int], count: int) -> Dripping:
    """Connections that started a request and then send one more byte a second: half of them in
    the headers (never ending them), half in a body that announced 1 MB."""
    return Dripping([connect(port, b"GET / HTTP/1.1\r\nHost: x\r\n" if i % 2 else
                             b"PUT /slow/body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nx")
                     for port in ports for i in range(count * 2)], 1.0)


def _timed(call: Any) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def test_boto3_is_answered_beside_hundreds_of_slow_connections(server: LiveServer) -> None:
    ec2 = _client(server, "ec2")
    s3 = _client(server, "s3")
    s3.create_bucket(Bucket="beside")
    s3.put_object(Bucket="beside", Key="small", Body=b"s" * 4096)
    for _ in range(3):  # both server workers have built their App and answered once
        for client in (ec2, s3, _client(server, "ec2"), _client(server, "s3")):
            if client.meta.service_model.service_name == "ec2":
                client.describe_instances()
            else:
                client.get_object(Bucket="beside", Key="small")["Body"].read()
    slow = slow_clients([server.ec2_port, server.s3_port], SLOW)
    try:
        time.sleep(0.5)  # the server has taken them all in (they are in its threads, if anywhere)
        times = []
        for _ in range(5):
            times.append(_timed(lambda: ec2.describe_instances()))
            times.append(_timed(lambda: s3.get_object(Bucket="beside", Key="small")["Body"].read()))
            times.append(_timed(lambda: s3.put_object(Bucket="beside", Key="put", Body=b"p" * 1000)))
        times.sort()
        assert times[len(times) // 2] < 0.5 and times[-1] < 2.0, times  # the machine's 2 CPUs are shared
        assert s3.get_object(Bucket="beside", Key="put")["Body"].read() == b"p" * 1000
    finally:
        slow.close()
    assert "Traceback" not in server.log()


def test_a_request_that_does_not_arrive_in_time_is_request_timeout(tmp_path: Path) -> None:
    """The poller waits header_timeout seconds for the headers (and a small body), then answers
    400 RequestTimeout and closes; a complete request on the same footing is answered."""
    srv = LiveServer(tmp_path / "srv", env={"EC2GW_HEADER_TIMEOUT": "1"}).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.ec2_port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert 0.9 < time.monotonic() - started < 4
        assert answer.startswith(b"HTTP/1.1 400 ") and b"<Code>RequestTimeout</Code>" in answer, answer
        with socket.create_connection(("127.0.0.1", srv.s3_port), timeout=10) as sock:
            sock.sendall(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 400 ") and b"<Code>RequestTimeout</Code>" in answer, answer
        assert _client(srv, "ec2").describe_regions()["Regions"]
        assert "Traceback" not in srv.log()
    finally:
        srv.stop()


def _client(server: LiveServer, service: str) -> Any:
    import boto3

    creds = server.admin
    return boto3.client(service, endpoint_url=server.ec2_url if service == "ec2" else server.s3_url,
                        region_name="us-east-1", aws_access_key_id=creds.access_key,
                        aws_secret_access_key=creds.secret_key,
                        config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=10))


def test_slow_tls_handshakes_and_headers_hold_no_thread(tmp_path: Path) -> None:
    """With --tls, the handshake was made by a thread too, blocking: a client that sent half a
    ClientHello (or finished the handshake and then its headers a byte a second) kept it."""
    import ssl

    srv = LiveServer(tmp_path / "srv", extra_args=["--tls"], scheme="https").start()
    socks: list[Any] = []
    try:
        ca = str(srv.data_dir / "certs" / "ca.pem")

        def client(service: str) -> Any:
            import boto3

            creds = srv.admin
            return boto3.client(service, endpoint_url=srv.ec2_url if service == "ec2" else srv.s3_url,
                                region_name="us-east-1", aws_access_key_id=creds.access_key,
                                aws_secret_access_key=creds.secret_key, verify=ca,
                                config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=10))

        ec2, s3 = client("ec2"), client("s3")
        s3.create_bucket(Bucket="tls")
        ctx = ssl.create_default_context(cafile=ca)
        for port in (srv.ec2_port, srv.s3_port):
            for i in range(60):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                if i % 2:
                    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
                else:
                    sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                socks.append(sock)
        time.sleep(0.5)
        times = sorted(_timed(call) for _ in range(3) for call in (
            lambda: ec2.describe_regions(), lambda: s3.put_object(Bucket="tls", Key="k", Body=b"k" * 1000),
            lambda: s3.get_object(Bucket="tls", Key="k")["Body"].read()))
        assert times[-1] < 2.0, times
    finally:
        for sock in socks:
            sock.close()
        srv.stop()
    assert "Traceback" not in srv.log()


def test_pipelined_requests_on_a_kept_alive_connection(server: LiveServer) -> None:
    """Requests sent back to back on one connection are each read in the poller and answered in order."""
    one = b"GET /pipelined-missing-bucket HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.s3_port), timeout=10) as sock:
        sock.sendall(one * 3 + b"GET /pipelined-missing-bucket HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 403 ") + answer.count(b"HTTP/1.1 404 ") == 4, answer
