"""When the server's poller hands a request to a thread: headers complete, and a small body (or the
first PREREAD bytes of a large one) arrived."""

from __future__ import annotations

import pytest
from gunicorn.http import errors

from ec2gw.cli.http_worker import (
    PREREAD,
    body_left,
    busy_answer,
    chunked_body_complete,
    parse_error_answer,
    request_ready,
)

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


class _Cfg:
    limit_request_line = 8190
    limit_request_field_size = 8190
    limit_request_fields = 300


@pytest.mark.parametrize("exc, ec2, status, code, word", [
    (errors.LimitRequestLine(20000, 8190), False, b"414", b"InvalidURI", b"8190 bytes"),
    (errors.LimitRequestLine(20000, 8190), True, b"414", b"InvalidParameterValue", b"POST body"),
    (errors.LimitRequestHeaders("limit request headers fields"), False, b"400", b"RequestHeaderSectionTooLarge",
     b"at most 300 headers"),
    (errors.LimitRequestHeaders("limit request headers fields size"), True, b"431", b"InvalidParameterValue",
     b"8190 bytes"),
    (errors.InvalidRequestMethod("G(T"), False, b"400", b"BadRequest", b"method"),
    (errors.InvalidHeaderName("Bad<Name>"), True, b"400", b"InvalidParameterValue", b"Bad&lt;Name&gt;"),
    (errors.InvalidChunkSize(b"zz"), False, b"400", b"IncompleteBody", b"chunk"),
])
def test_parse_error_answer(exc: Exception, ec2: bool, status: bytes, code: bytes, word: bytes) -> None:
    """What gunicorn's parser refuses is answered in the endpoint's own error document."""
    answer = parse_error_answer(ec2, exc, _Cfg())
    assert answer is not None
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status + b" ") and b"Content-Type: application/xml" in head
    assert b"<Code>" + code + b"</Code>" in body and word in body
    assert (b"<RequestID>" if ec2 else b"<RequestId>") in body
    assert body.startswith(b"<?xml") and (b"<Response><Errors>" in body) == ec2
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)


def test_other_errors_stay_gunicorns() -> None:
    assert parse_error_answer(False, RuntimeError("boom"), _Cfg()) is None
