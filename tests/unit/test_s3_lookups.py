"""The hot-path lookups of Cumulus: bucket and object in one query (GET/HEAD), the caller looked up
on every request (a removed key stops at once), and the large-body upload path (socket reads, MD5
on a thread)."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ec2gw import accounts
from storage.blobstore import CHUNK, BlobStore
from tests.unit.test_s3_usage import S3World


@pytest.fixture
def w(tmp_path: Path) -> Any:
    world = S3World(tmp_path)
    yield world
    world.app.db.dispose()


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_object_acl_and_owner_are_the_objects_not_the_buckets(w: S3World) -> None:
    a, b = w.s3("alice"), w.s3("bob")
    a.create_bucket(Bucket="acl-mix")
    a.put_object(Bucket="acl-mix", Key="open", Body=b"o", ACL="public-read")
    a.put_object(Bucket="acl-mix", Key="closed", Body=b"c")
    assert b.get_object(Bucket="acl-mix", Key="open")["Body"].read() == b"o"
    with pytest.raises(ClientError) as err:
        b.get_object(Bucket="acl-mix", Key="closed")
    assert _code(err) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        b.get_object(Bucket="acl-mix", Key="missing")  # bob may not list: AccessDenied, not NoSuchKey
    assert _code(err) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        a.get_object(Bucket="acl-mix", Key="missing")
    assert _code(err) == "NoSuchKey"
    with pytest.raises(ClientError) as err:
        a.head_object(Bucket="no-such-bucket", Key="x")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    a.create_bucket(Bucket="drop-box", ACL="public-read-write")
    b.put_object(Bucket="drop-box", Key="from-bob", Body=b"b")  # bob's object in alice's bucket
    assert a.head_object(Bucket="drop-box", Key="from-bob")["ContentLength"] == 1


def test_gateway_refuses_a_removed_key_at_once(w: S3World) -> None:
    b = w.s3("bob")
    for _ in range(3):
        b.list_buckets()
    with w.app.db.session(write=True) as s:
        accounts.remove_user(s, "bob")
    with pytest.raises(ClientError) as err:
        b.list_buckets()
    assert _code(err) == "InvalidAccessKeyId"


class Trickle(io.RawIOBase):
    """A body that arrives in small uneven pieces, as a socket gives it."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.n = data, 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        self.n += 1
        step = 1 + (self.n * 7919) % 70000
        piece = self.data[self.pos: self.pos + min(step, len(buf))]
        memoryview(buf)[: len(piece)] = piece
        self.pos += len(piece)
        return len(piece)


@pytest.mark.parametrize("size", [CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 12345])
def test_pipelined_copy_hashes_and_writes_every_byte(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    store = BlobStore(tmp_path / "cumulus")
    sha = hashlib.sha256()
    with store.writer({"sha": sha}) as writer:
        assert writer.copy_from(Trickle(data)) == size
        blob = writer.commit()
    assert writer.etag == hashlib.md5(data).hexdigest() and sha.digest() == hashlib.sha256(data).digest()
    assert store.path(blob).read_bytes() == data
    with store.writer() as writer:  # a limit stops it exactly there
        assert writer.copy_from(Trickle(data), limit=size // 2) == size // 2
    assert writer.etag == hashlib.md5(data[: size // 2]).hexdigest()


def test_md5_thread_error_reaches_the_request_and_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cumulus")

    class Broken:
        def update(self, data: Any) -> None:
            raise RuntimeError("hash failed")

        def hexdigest(self) -> str:
            return ""

    writer = store.writer()
    writer.md5 = Broken()  # type: ignore[assignment]
    with pytest.raises(RuntimeError), writer:
        writer.copy_from(io.BytesIO(os.urandom(3 * CHUNK)))
        writer.commit()
    assert not [p for p in (tmp_path / "cumulus").rglob("*") if p.is_file()]


def _gunicorn_body(sent: bytes, length: int, read_ahead: bytes = b"") -> tuple[Any, Any, Any]:
    """gunicorn's request body stack on one end of a socket pair, the other end already sent
    `sent`; `read_ahead` is what gunicorn read past the headers."""
    import socket

    from gunicorn.http.body import Body, LengthReader
    from gunicorn.http.unreader import SocketUnreader

    ours, peer = socket.socketpair()

    def send() -> None:
        peer.sendall(sent)
        peer.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)  # more than a socket buffer holds
    sender.start()

    def close() -> None:
        sender.join(10)
        ours.close()
        peer.close()

    unreader = SocketUnreader(ours)
    if read_ahead:
        unreader.unread(read_ahead)
    return Body(LengthReader(unreader, length)), unreader, close


@pytest.mark.parametrize("ahead", [0, 10, 5000])
def test_socket_reads_use_read_ahead_and_stop_at_the_body_end(ahead: int) -> None:
    """recv_into() straight from gunicorn's socket: the bytes read with the headers come first,
    nothing past Content-Length is consumed (the next request on the connection stays intact)."""
    from storage.upload import _BodyStream

    body = os.urandom(3 * CHUNK + 77)
    following = b"GET /next HTTP/1.1\r\n\r\n"
    stream = body[ahead:] + following
    wsgi_input, unreader, close = _gunicorn_body(stream, len(body), body[:ahead])
    try:
        reader = _BodyStream(wsgi_input, len(body))
        assert reader._direct is not None  # the fast path applies to gunicorn's exact stack
        got = bytearray()
        buf = bytearray(CHUNK)
        while n := reader.readinto(buf):
            got += buf[:n]
        assert bytes(got) == body
        assert wsgi_input.read(100) == b""  # gunicorn sees the body as consumed
        assert unreader.read(len(following)) == following  # and the next request untouched
    finally:
        close()


def test_socket_reads_report_a_cut_off_body() -> None:
    from ec2gw.errors import ServiceError
    from storage.upload import _BodyStream

    wsgi_input, _, close = _gunicorn_body(b"x" * 1000, 5000)
    try:
        reader = _BodyStream(wsgi_input, 5000)
        buf = bytearray(CHUNK)
        with pytest.raises(ServiceError) as err:
            while reader.readinto(buf):
                pass
        assert err.value.code == "IncompleteBody"
    finally:
        close()
