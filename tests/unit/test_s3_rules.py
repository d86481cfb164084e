"""Pure rules of Cumulus: the listing walk, ranges and conditions, multipart checksums, request bodies."""

from __future__ import annotations

import base64
import bisect
import hashlib
import io
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from ec2gw.errors import ServiceError
from storage import checksums
from storage.conditions import evaluate, parse_range
from storage.listing import successor, walk
from storage.upload import UploadBody, stored_content_encoding


def fake_fetch(keys: list[str]) -> Any:
    keys = sorted(keys, key=lambda k: k.encode("utf-8", "surrogatepass"))

    def fetch(after: str | None, tie: str | None, inclusive: bool, n: int) -> list[tuple[str, None, str]]:
        enc = [k.encode("utf-8", "surrogatepass") for k in keys]
        if after is None:
            i = 0
        elif inclusive:
            i = bisect.bisect_left(enc, after.encode("utf-8", "surrogatepass"))
        else:
            i = bisect.bisect_right(enc, after.encode("utf-8", "surrogatepass"))
        return [(k, None, k) for k in keys[i:i + n]]

    return fetch


def reference(keys: list[str], prefix: str, delimiter: str | None, after: str | None) -> list[str]:
    """Every entry of a full listing, computed the obvious way."""
    out: list[str] = []
    for k in sorted(keys, key=lambda k: k.encode()):
        if not k.startswith(prefix) or (after is not None and k.encode() <= after.encode()):
            continue
        if delimiter and delimiter in k[len(prefix):]:
            cp = k[: k.index(delimiter, len(prefix)) + len(delimiter)]
            if after is not None and cp.encode() <= after.encode():
                continue
            if cp not in out:
                out.append(cp)
        else:
            out.append(k)
    return out


keys_strategy = st.lists(st.text(alphabet="ab/é", min_size=1, max_size=6), unique=True, max_size=25)


@settings(max_examples=150, deadline=None)
@given(keys=keys_strategy, prefix=st.sampled_from(["", "a", "a/", "b/a"]),
       delimiter=st.sampled_from([None, "/", "b"]), page=st.integers(1, 4))
def test_walk_pages_match_a_full_listing(keys: list[str], prefix: str, delimiter: str | None, page: int) -> None:
    fetch = fake_fetch([k for k in keys if k.startswith(prefix)])
    got: list[str] = []
    after = None
    for _ in range(100):
        p = walk(fetch, prefix, delimiter, after, None, page)
        entries = sorted([*p.rows, *p.prefixes], key=lambda k: k.encode())
        assert len(entries) <= page
        got += entries
        if not p.truncated:
            break
        after = p.last
    assert got == reference(keys, prefix, delimiter, None)


def test_successor() -> None:
    assert successor("a/") == "a0"
    assert successor("") is None
    assert successor("a\U0010ffff") == "b"
    assert successor("\ud7ff") == "\ue000"


def test_ranges() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == (0, 1)
    assert parse_range("bytes=3-", 10) == (3, 10)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=-30", 10) == (0, 10)
    assert parse_range("bytes=5-100", 10) == (5, 10)
    for ignored in ("bytes=5-2", "items=0-1", "bytes=0-1,3-4", "bytes=x-"):
        assert parse_range(ignored, 10) is None
    for bad in ("bytes=10-", "bytes=10-20", "bytes=-0"):
        with pytest.raises(ServiceError) as e:
            parse_range(bad, 10)
        assert e.value.status == 416 and e.value.headers["Content-Range"] == "bytes */10"
    with pytest.raises(ServiceError):
        parse_range("bytes=-1", 0)


def test_ranges_with_numbers_longer_than_int_takes() -> None:
    """Python's int() refuses more than 4,300 digits (ValueError): such a position is simply huge."""
    huge = "9" * 5000
    assert parse_range(f"bytes=0-{huge}", 10) == (0, 10)
    assert parse_range(f"bytes=-{huge}", 10) == (0, 10)
    assert parse_range(f"bytes=3-{'0' * 5000}7", 10) == (3, 8)  # leading zeros are not magnitude
    assert parse_range(f"bytes={huge}-5", 10) is None  # last < first: ignored, as before
    assert parse_range(f"bytes={huge}8-{huge}", 10) is None
    with pytest.raises(ServiceError) as e:
        parse_range(f"bytes={huge}-", 10)
    assert e.value.status == 416
    with pytest.raises(ServiceError) as e:
        parse_range(f"bytes={huge}-{huge}", 10)
    assert e.value.status == 416
    # only ASCII digits are range digits
    assert parse_range("bytes=\u0661-\u0662", 10) is None


def test_conditions() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
    later, earlier = now + timedelta(hours=1), now - timedelta(hours=1)
    assert evaluate("e", now, '"e"', None, None, None) is None
    assert evaluate("e", now, "*", None, None, None) is None
    with pytest.raises(ServiceError):
        evaluate("e", now, '"x", "y"', None, None, None)
    assert evaluate("e", now, None, 'W/"e"', None, None) == 304
    assert evaluate("e", now, None, '"x"', now.replace(microsecond=0), None) is None  # INM decides
    assert evaluate("e", now, None, None, now.replace(microsecond=0), None) == 304
    assert evaluate("e", now, None, None, earlier, None) is None
    assert evaluate("e", now, None, None, "not a date", None) is None
    with pytest.raises(ServiceError) as e:
        evaluate("e", now, None, None, None, earlier)
    assert e.value.status == 412
    assert evaluate("e", now, '"e"', None, None, earlier) is None  # If-Match wins
    assert evaluate("e", now, None, None, None, later) is None
    with pytest.raises(ServiceError) as e:
        evaluate("e", now, None, '"e"', None, None, copy_source=True)
    assert e.value.status == 412


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME"])
def test_full_object_crc_combination(algorithm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ec2gw.aws.chunked import new_checksum

    parts = [b"abc" * 1000, b"", b"\x00\xff" * 77, b"tail"]
    values = []
    for p in parts:
        h = new_checksum(algorithm.lower())
        h.update(p)
        values.append((h.b64digest(), len(p)))
    whole = new_checksum(algorithm.lower())
    whole.update(b"".join(parts))
    assert checksums.full_object(algorithm, values) == whole.b64digest()
    # the pure-Python fallback agrees with awscrt
    monkeypatch.setitem(__import__("sys").modules, "awscrt", None)
    assert checksums.full_object(algorithm, values) == whole.b64digest()


def test_composite_checksum() -> None:
    a, b = base64.b64encode(zlib.crc32(b"a").to_bytes(4, "big")).decode(), base64.b64encode(b"\0\0\0\1").decode()
    raw = base64.b64decode(a) + base64.b64decode(b)
    assert checksums.composite("CRC32", [a, b]) == base64.b64encode(zlib.crc32(raw).to_bytes(4, "big")).decode() + "-2"


def _body(data: bytes, **headers: str) -> UploadBody:
    h = Headers({"Content-Length": str(len(data)), **headers})
    return UploadBody.from_request(io.BytesIO(data), h, None)


class _ChunkedInput:
    """A WSGI input as gunicorn's for Transfer-Encoding: chunked: it raises on bad framing."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def read(self, n: int = -1) -> bytes:
        raise self.exc


@pytest.mark.parametrize("exc, code", [
    ("InvalidChunkSize", "InvalidRequest"), ("ChunkMissingTerminator", "InvalidRequest"),
    ("NoMoreData", "IncompleteBody"), (ConnectionResetError(104, "reset"), "IncompleteBody"),
    (TimeoutError("timed out"), "RequestTimeout"),
])
def test_server_input_errors_are_client_errors(exc: Any, code: str) -> None:
    from gunicorn.http import errors

    if isinstance(exc, str):
        exc = getattr(errors, exc)(b"zz") if exc != "NoMoreData" else errors.NoMoreData(b"")
    chunked = UploadBody.from_request(_ChunkedInput(exc), Headers({"Transfer-Encoding": "chunked"}), None)
    with pytest.raises(ServiceError) as e:
        chunked.read_all(100)
    assert (e.value.code, e.value.status) == (code, 400)
    sized = UploadBody.from_request(_ChunkedInput(exc), Headers({"Content-Length": "9"}), None)
    with pytest.raises(ServiceError) as e:
        sized.read_all(100)
    assert (e.value.code, e.value.status) == (code, 400)


def test_upload_body_checks() -> None:
    data = b"some body"
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    body = _body(data, **{"Content-MD5": md5})
    assert body.read_all(100) == data
    with pytest.raises(ServiceError) as e:
        _body(data, **{"Content-MD5": base64.b64encode(b"x" * 16).decode()}).read_all(100)
    assert e.value.code == "BadDigest"
    with pytest.raises(ServiceError) as e:
        _body(data, **{"Content-MD5": "short"})
    assert e.value.code == "InvalidDigest"
    with pytest.raises(ServiceError) as e:
        _body(data, **{"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha1": "x"})
    assert e.value.code == "InvalidRequest"
    with pytest.raises(ServiceError) as e:
        _body(data, **{"x-amz-checksum-sha256": "AAAAAA=="})  # wrong length for SHA-256
    assert e.value.code == "InvalidRequest"
    with pytest.raises(ServiceError) as e:
        UploadBody.from_request(io.BytesIO(b""), Headers(), None)
    assert e.value.code == "MissingContentLength" and e.value.status == 411
    with pytest.raises(ServiceError) as e:
        _body(data[:3], **{"Content-Length": "9"}).read_all(100)
    assert e.value.code == "IncompleteBody"
    with pytest.raises(ServiceError) as e:
        _body(data).read_all(4)
    assert e.value.code == "MaxMessageLengthExceeded"


def test_stored_content_encoding() -> None:
    assert stored_content_encoding("aws-chunked") is None
    assert stored_content_encoding("aws-chunked, gzip") == "gzip"
    assert stored_content_encoding("gzip") == "gzip"
    assert stored_content_encoding(None) is None


def test_aws_chunked_trailers_are_bounded() -> None:
    """The aws-chunked reader keeps every trailer line in memory: gigabytes of them (with a
    matching Content-Length) grew the server by as much; more than MAX_TRAILER_BYTES is refused."""
    from storage.upload import MAX_TRAILER_BYTES

    crc = base64.b64encode(zlib.crc32(b"abc").to_bytes(4, "big")).decode()
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "3",
               "x-amz-trailer": "x-amz-checksum-crc32"}

    def body(extra: bytes) -> UploadBody:
        data = b"3\r\nabc\r\n0\r\n" + extra + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
        return UploadBody.from_request(io.BytesIO(data), Headers({"Content-Length": str(len(data)), **headers}),
                                       "STREAMING-UNSIGNED-PAYLOAD-TRAILER")

    assert body(b"x-other:1\r\n").read_all(100) == b"abc"
    flood = b"".join(b"x-t%08d:%s\r\n" % (i, b"v" * 1000) for i in range(2 * MAX_TRAILER_BYTES // 1000))
    with pytest.raises(ServiceError) as e:
        body(flood).read_all(100)
    assert (e.value.code, e.value.status) == ("InvalidRequest", 400)
