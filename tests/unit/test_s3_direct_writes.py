"""Large bodies are written with O_DIRECT (no page cache), on a writing thread of their own, with a
buffered tail; a file system that refuses O_DIRECT gets ordinary writes; a failing disk write stops
the upload early and leaves nothing. Large GETs read with O_DIRECT on a thread of their own: every
range of one or several blobs exactly, a truncated blob an error, a body closed early no hang."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from storage import blobstore
from storage.blobstore import CHUNK, BlobStore, SegmentReader


class Body:
    """A request body of `data`, read in pieces; `probe(n)` runs before the n-th read."""

    def __init__(self, data: bytes, probe: Any = None) -> None:
        self.data, self.pos, self.reads, self.probe = data, 0, 0, probe

    def readinto(self, buf: Any) -> int:
        self.reads += 1
        if self.probe is not None:
            self.probe(self.reads)
        piece = self.data[self.pos: self.pos + len(buf)]
        memoryview(buf)[: len(piece)] = piece
        self.pos += len(piece)
        return len(piece)

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        return bytes(buf[: self.readinto(buf)])


def _require_o_direct(directory: Path) -> None:
    """Skip unless the file system of `directory` takes O_DIRECT (tmpfs before Linux 6.6 does not):
    a property of the machine the tests run on, not of Cumulus, which falls back to ordinary I/O
    there (the tests below with a refusing fcntl show that)."""
    probe = directory / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        pytest.skip(f"the file system of {directory} refuses O_DIRECT; run the tests with TMPDIR on ext4 or xfs")
    os.close(fd)
    probe.unlink()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    s = BlobStore(tmp_path / "cumulus")
    _require_o_direct(s.tmp)
    return s


@pytest.mark.parametrize("size", [2 * CHUNK, 3 * CHUNK + 5, 2 * CHUNK + 4096, 5 * CHUNK - 1])
def test_large_bodies_go_to_disk_with_o_direct_and_keep_every_byte(store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    seen: list[bool] = []
    with store.writer({"sha": hashlib.sha256()}) as w:
        def probe(n: int) -> None:
            if n == 2:  # the first CHUNK is in: the writer has switched the file to O_DIRECT
                seen.append(bool(fcntl.fcntl(w._fd, fcntl.F_GETFL) & os.O_DIRECT))

        assert w.copy_from(Body(data, probe)) == size
        assert not fcntl.fcntl(w._fd, fcntl.F_GETFL) & os.O_DIRECT  # off again once the body is in
        blob = w.commit()
    assert seen == [True]
    assert w.etag == hashlib.md5(data).hexdigest()
    assert w.checksums["sha"].digest() == hashlib.sha256(data).digest()
    assert store.path(blob).read_bytes() == data


def test_small_bodies_are_written_through_the_page_cache(store: BlobStore) -> None:
    flags: list[int] = []
    real = blobstore.BlobWriter._set_direct
    with store.writer() as w:
        w._set_direct = lambda on: (flags.append(on), real(w, on))  # type: ignore[method-assign]
        w.copy_from(Body(b"x" * 1000), expected=1000)
        w.copy_from(Body(b"y" * (CHUNK - 1)))  # an unannounced size under one CHUNK: one buffer, no threads
        blob = w.commit()
    assert flags == []
    assert store.path(blob).read_bytes() == b"x" * 1000 + b"y" * (CHUNK - 1)


def test_a_file_system_that_refuses_o_direct_gets_ordinary_writes(store: BlobStore,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real_fcntl = fcntl.fcntl

    def refusing(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(blobstore.fcntl, "fcntl", refusing)
    data = os.urandom(3 * CHUNK + 77)
    with store.writer() as w:
        assert w.copy_from(Body(data)) == len(data)
        assert not w._direct
        blob = w.commit()
    assert store.path(blob).read_bytes() == data and w.etag == hashlib.md5(data).hexdigest()


def test_direct_writes_can_be_turned_off(store: BlobStore) -> None:
    store.direct_io = False
    seen: list[int] = []
    data = os.urandom(3 * CHUNK)
    with store.writer() as w:
        assert w.copy_from(Body(data, lambda n: seen.append(fcntl.fcntl(w._fd, fcntl.F_GETFL) & os.O_DIRECT))) \
            == len(data)
        blob = w.commit()
    assert not any(seen) and store.path(blob).read_bytes() == data


def test_a_failing_disk_write_stops_the_upload_early_and_leaves_nothing(store: BlobStore) -> None:
    w = store.writer()
    real = w._write_raw
    calls = {"n": 0}

    def failing(data: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(data)

    w._write_raw = failing  # type: ignore[method-assign]
    body = Body(os.urandom(64 * CHUNK))
    with pytest.raises(OSError) as err, w:
        w.copy_from(body)
        w.commit()
    assert err.value.errno == errno.ENOSPC
    assert body.reads < 16, f"read {body.reads} of 64 chunks after the disk failed"
    assert not [p for p in store.root.rglob("*") if p.is_file()]


def _blobs(store: BlobStore, sizes: list[int]) -> tuple[bytes, list[tuple[str, int]]]:
    data, segments = b"", []
    for size in sizes:
        part = os.urandom(size)
        with store.writer() as w:
            w.copy_from(Body(part))
            segments.append((w.commit(), size))
        data += part
    return data, segments


@pytest.mark.parametrize("start,end", [(0, None), (1, 5 * CHUNK + 3), (4095, 4097), (CHUNK + 4096, 2 * CHUNK),
                                       (3 * CHUNK - 1, 3 * CHUNK + 1), (7 * CHUNK + 100, None)])
def test_direct_reads_give_every_range_of_one_or_several_blobs_exactly(store: BlobStore, start: int,
                                                                      end: int | None) -> None:
    data, segments = _blobs(store, [3 * CHUNK, 2 * CHUNK + 4096, 3 * CHUNK + 777])
    body = SegmentReader(store, segments, start, end).direct_chunks()
    assert body is not None
    try:
        got = b"".join(body)
    finally:
        body.close()
    assert got == data[start:end]
    assert body.direct_files >= 1


def test_a_direct_read_closed_early_stops_its_thread(store: BlobStore) -> None:
    _, segments = _blobs(store, [16 * CHUNK])
    body = SegmentReader(store, segments).direct_chunks()
    assert body is not None
    first = next(iter(body))
    assert len(first) == CHUNK
    body.close()
    assert not body._thread.is_alive()


def test_without_direct_io_large_gets_are_left_to_sendfile(store: BlobStore) -> None:
    _, segments = _blobs(store, [5 * CHUNK])
    store.direct_io = False
    reader = SegmentReader(store, segments)
    assert reader.direct_chunks() is None
    reader.close()


def test_the_gateway_reads_large_gets_directly_and_small_ones_not(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Through boto3 and the real gateway (in process): GETs of at least DIRECT_READ_MIN bytes are
    sent from DirectChunks, smaller ranges are not, and every byte comes back either way."""
    from tests.unit.test_s3_usage import S3World

    _require_o_direct(tmp_path)
    bodies: list[Any] = []
    real = SegmentReader.direct_chunks

    def spy(self: SegmentReader) -> Any:
        body = real(self)
        bodies.append(body)
        return body

    monkeypatch.setattr(SegmentReader, "direct_chunks", spy)
    world = S3World(tmp_path / "data")
    try:
        s3 = world.s3("alice")
        s3.create_bucket(Bucket="direct")
        data = os.urandom(6 * CHUNK + 5)
        s3.put_object(Bucket="direct", Key="big", Body=data)
        assert s3.get_object(Bucket="direct", Key="big")["Body"].read() == data
        assert len(bodies) == 1 and bodies[0].direct_files == 1
        first, last = 4095, 4095 + blobstore.DIRECT_READ_MIN - 1
        assert s3.get_object(Bucket="direct", Key="big", Range=f"bytes={first}-{last}")["Body"].read() \
            == data[first:last + 1]
        assert len(bodies) == 2
        assert s3.get_object(Bucket="direct", Key="big", Range=f"bytes={first}-{last - 1}")["Body"].read() \
            == data[first:last]
        assert len(bodies) == 2, "a range under DIRECT_READ_MIN goes the ordinary way"
    finally:
        world.app.db.dispose()


def _refuse_direct(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """os.<name> answering EINVAL on descriptors in O_DIRECT mode, as on a device whose blocks are
    larger than the alignment Cumulus uses; the refusals are counted."""
    real = getattr(os, name)
    refused: list[int] = []

    def call(fd: int, *args: Any) -> Any:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, *args)

    monkeypatch.setattr(os, name, call)
    return refused


def test_writes_refused_in_o_direct_mode_go_on_through_the_page_cache(store: BlobStore,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    refused = _refuse_direct(monkeypatch, "write")
    data = os.urandom(3 * CHUNK + 5)
    with store.writer() as w:
        assert w.copy_from(Body(data)) == len(data)
        blob = w.commit()
    monkeypatch.undo()
    assert refused and store.path(blob).read_bytes() == data and w.etag == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("start", [0, 5000])
def test_reads_refused_in_o_direct_mode_go_on_through_the_page_cache(store: BlobStore,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     start: int) -> None:
    data, segments = _blobs(store, [3 * CHUNK + 11, 2 * CHUNK])
    refused = _refuse_direct(monkeypatch, "preadv")
    body = SegmentReader(store, segments, start).direct_chunks()
    assert body is not None
    try:
        got = b"".join(body)
    finally:
        body.close()
    assert len(refused) == 2 and got == data[start:]


@pytest.mark.parametrize("sizes,kept", [([4 * CHUNK], CHUNK + 10), ([4 * CHUNK], 4 * CHUNK - 10),
                                        ([4 * CHUNK, 4 * CHUNK], 4 * CHUNK - 10)])
def test_direct_reads_report_a_blob_cut_short(store: BlobStore, sizes: list[int], kept: int) -> None:
    """The first blob keeps only `kept` bytes (far from its end, or in its last MiB): the body stops
    there with EIO, never goes on with the next blob's bytes in their place."""
    data, segments = _blobs(store, sizes)
    reader = SegmentReader(store, segments)  # opens the blob, as a GET does before it answers
    os.truncate(store.path(segments[0][0]), kept)
    body = reader.direct_chunks()  # starts reading at once
    assert body is not None
    got = bytearray()
    with pytest.raises(OSError) as err:
        for piece in body:
            got += piece
    body.close()
    assert err.value.errno == errno.EIO and bytes(got) == data[:kept]


def test_a_stage_failing_at_the_end_leaves_no_thread_behind(store: BlobStore) -> None:
    class FailsLast:
        def __init__(self) -> None:
            self.n = 0

        def update(self, data: Any) -> None:
            self.n += 1
            if self.n == 4:
                raise RuntimeError("hash failed")

        def hexdigest(self) -> str:
            return ""

    w = store.writer()
    w.md5 = FailsLast()  # type: ignore[assignment]
    with pytest.raises(RuntimeError), w:
        w.copy_from(Body(os.urandom(4 * CHUNK)))
    import threading

    assert not [t.name for t in threading.enumerate() if t.name.startswith("cumulus-")]
    assert not [p for p in store.root.rglob("*") if p.is_file()]


def test_closing_a_direct_read_twice_gives_its_buffers_back_once(store: BlobStore) -> None:
    _, segments = _blobs(store, [5 * CHUNK])
    body = SegmentReader(store, segments).direct_chunks()
    assert body is not None
    b"".join(body)
    body.close()
    body.close()
    idle = blobstore._BUFFERS._idle
    assert len({id(b) for b in idle}) == len(idle)


def test_a_file_system_refusing_direct_reads_keeps_sendfile(store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _, segments = _blobs(store, [5 * CHUNK])
    monkeypatch.setattr(blobstore, "_try_direct", lambda fd: False)
    reader = SegmentReader(store, segments)
    assert reader.direct_chunks() is None
    reader.close()
