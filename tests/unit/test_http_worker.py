"""When the server's poller hands a request to a thread: headers complete, and a small body (or the
first PREREAD bytes of a large one) arrived."""

from __future__ import annotations

import pytest

from ec2gw.cli.http_worker import PREREAD, body_left, busy_answer, chunked_body_complete, request_ready

HEAD = b"PUT /b/k HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("buf, ready", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n", False),  # the headers go on
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"\r\nGET / HTTP/1.1\r\nHost: x\r\n", False),  # an empty line before the request is no end of headers
    (b"GET / HTTP/1.1\nHost: x\n\n", True),
    (HEAD + b"Content-Length: 5\r\n\r\nabc", False),
    (HEAD + b"Content-Length: 5\r\n\r\nabcde", True),
    (HEAD + b"content-length:  0\r\n\r\n", True),
    (HEAD + b"Content-Length: 1000000\r\n\r\n" + b"x" * (PREREAD - 1), False),
    (HEAD + b"Content-Length: 1000000\r\n\r\n" + b"x" * PREREAD, True),  # the rest is read by a thread
    (HEAD + b"Content-Length: nonsense\r\n\r\n", True),  # gunicorn's parser answers these
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", True),  # broken framing: answered at once
])
def test_request_ready(buf: bytes, ready: bool) -> None:
    assert request_ready(buf) == (ready, False)


def test_expect_continue() -> None:
    small = HEAD + b"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n"
    assert request_ready(small) == (False, True)  # the poller sends 100 Continue and reads the body
    assert request_ready(small + b"x" * 100) == (True, False)
    large = HEAD + b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
    assert request_ready(large) == (True, False)  # the application decides on it before the body


def test_announced_body_over_the_endpoint_limit_goes_at_once() -> None:
    buf = HEAD + b"Content-Length: 3000000\r\n\r\nAction="
    assert request_ready(buf) == (False, False)
    assert request_ready(buf, limit=2 * 1024 * 1024) == (True, False)


def test_chunked_body_complete_with_trailers() -> None:
    assert not chunked_body_complete(b"0\r\nX-T: 1\r\n", 0)
    assert chunked_body_complete(b"0\r\nX-T: 1\r\n\r\n", 0)
    assert chunked_body_complete(b"3;ext=1\r\nabc\r\n0\r\n\r\n", 0)


@pytest.mark.parametrize("buf, left", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),
    (HEAD + b"Content-Length: 5\r\n\r\nabcde", False),  # all in memory
    (HEAD + b"Content-Length: 1000000\r\n\r\n" + b"x" * PREREAD, True),  # the thread reads the rest
    (HEAD + b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n", True),
    (HEAD + b"Content-Length: 3000000\r\n\r\n", False),  # over the limit below: refused unread
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"x" * PREREAD, True),
    (HEAD + b"Content-Length: nonsense\r\n\r\n", False),
])
def test_body_left(buf: bytes, left: bool) -> None:
    assert body_left(buf, limit=2 * 1024 * 1024) is left


def test_busy_answer_is_a_retryable_aws_error() -> None:
    assert busy_answer(False).startswith(b"HTTP/1.1 503 ")
    assert b"<Code>SlowDown</Code>" in busy_answer(False)
    assert b"<Code>RequestLimitExceeded</Code>" in busy_answer(True)
