"""Slow bodies cannot stop the service either: bodies whose first 64 KiB arrive at once (so the
poller hands the request to a thread, see ec2gw/cli/http_worker.py) and the rest a byte at a time.

* Refused requests (an anonymous PUT with a 100 MB Content-Length): the application answers 403
  without reading the body, and gunicorn's gthread then drains what is left of the body for up to
  5 s in the thread before reusing the connection. A hundred such connections, each trickling a
  byte every half second, held every thread of both endpoints for half a minute (a GET / took
  27 s beside 200 of them). A thread now waits for a body its application did not read only as
  long as a client that is sending it needs (http_worker.DRAIN_WAIT), then closes the connection.
* Accepted uploads (a signed-in user's PUT into their own bucket): the thread reads the body as it
  comes, and body_timeout only bounds silence, so 20 uploads trickling a byte a second held every
  thread of both endpoints for as long as they lasted. Now at most threads - 2 requests per worker
  read a large body in a thread at once (http_worker.RESERVED_THREADS); the others wait, unread.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from tests.live import Creds, LiveServer
from tests.security.conftest import make_user
from tests.security.dripping import Dripping, connect

FAST = b"x" * 70_000  # more than the poller's PREREAD: the request goes to a thread at once


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(Path(tmp_path_factory.mktemp("ec2gw-slow-bodies"))).start()
    try:
        yield srv
    finally:
        srv.stop()


def trickle(port: int, heads: list[bytes], every: float) -> Dripping:
    """Connections that sent a request's headers and the first 70 KB of its body, then one byte
    every `every` seconds."""
    return Dripping([connect(port, head + FAST) for head in heads], every)


def slowest_answer(server: LiveServer, creds: Creds, rounds: int = 4) -> float:
    """Seconds the slowest of `rounds` DescribeInstances and ListBuckets calls took (a timeout: 5 s)."""
    ec2, s3 = (boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=creds.access_key,
                            aws_secret_access_key=creds.secret_key,
                            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=5))
               for service, url in (("ec2", server.ec2_url), ("s3", server.s3_url)))
    worst = 0.0
    try:
        for _ in range(rounds):
            for call in (ec2.describe_instances, s3.list_buckets):
                started = time.monotonic()
                try:
                    call()
                except Exception:  # a timeout (botocore's ReadTimeoutError, ConnectTimeoutError)
                    worst = max(worst, 5.0)
                    continue
                worst = max(worst, time.monotonic() - started)
            time.sleep(0.5)
    finally:
        ec2.close()
        s3.close()
    return worst


def answered(sock: socket.socket) -> bool:
    """Whether the server answered on (or closed) a non-blocking connection."""
    try:
        return sock.recv(65536, socket.MSG_PEEK) is not None
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_refused_bodies_trickling_hold_no_thread(server: LiveServer) -> None:
    heads = [b"PUT /no-such-bucket-%d/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" % i
             for i in range(200)]
    slow = trickle(server.s3_port, heads, every=0.5)
    try:
        time.sleep(2.0)
        worst = slowest_answer(server, server.admin)
        waiting = sum(not answered(sock) for sock in slow.socks)
    finally:
        slow.close()
    assert worst < 2.0, f"the slowest answer beside 200 refused, trickling uploads took {worst:.2f} s"
    assert not waiting, f"{waiting} of the 200 refused uploads had no answer after {2 + 4 * 0.5:.0f} s"


def test_accepted_uploads_trickling_leave_threads_for_others(server: LiveServer) -> None:
    bob = make_user(server, "slowbob")
    s3 = server.client("s3", bob)
    s3.create_bucket(Bucket="slow-uploads")
    heads = []
    for i in range(20):
        url = urlsplit(s3.generate_presigned_url("put_object", Params={"Bucket": "slow-uploads", "Key": f"k{i}"},
                                                 ExpiresIn=600))
        heads.append(f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                     "Content-Length: 2000000\r\n\r\n".encode())
    slow = trickle(server.s3_port, heads, every=1.0)
    try:
        time.sleep(1.0)
        worst = slowest_answer(server, server.admin, rounds=2)
    finally:
        slow.close()
    assert worst < 2.0, f"the slowest answer beside 20 trickling uploads took {worst:.2f} s"





def test_uploads_waiting_for_a_thread_are_received_whole(server: LiveServer) -> None:
    """30 uploads at once, each sending its body over 3 s: at most 12 (2 workers x (8 - 2) threads)
    read in threads, the others wait unread and are then received whole, none refused."""
    bob = make_user(server, "queuebob")
    s3 = server.client("s3", bob)
    s3.create_bucket(Bucket="queued-uploads")
    rest = 100_000
    socks = []
    try:
        for i in range(30):
            url = urlsplit(s3.generate_presigned_url("put_object", Params={"Bucket": "queued-uploads", "Key": f"t{i}"},
                                                     ExpiresIn=600))
            sock = socket.create_connection(("127.0.0.1", server.s3_port), timeout=40)
            sock.sendall(f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                         f"Content-Length: {len(FAST) + rest}\r\nConnection: close\r\n\r\n".encode() + FAST)
            socks.append(sock)
        for _ in range(10):
            time.sleep(0.3)
            for sock in socks:
                sock.sendall(b"y" * (rest // 10))
        answers = []
        for sock in socks:
            answer = b""
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
            answers.append(answer.split(b"\r\n")[0])
    finally:
        for sock in socks:
            sock.close()
    assert answers == [b"HTTP/1.1 200 OK"] * 30, answers
    for i in range(30):
        assert s3.get_object(Bucket="queued-uploads", Key=f"t{i}")["Body"].read() == FAST + b"y" * rest
