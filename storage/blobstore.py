"""Object bodies on disk: immutable files named by opaque ids, written atomically.

What: `BlobWriter` streams a body into `<root>/tmp/`, hashing it (MD5 for the ETag plus any
requested checksums) as it goes; `commit()`, called only after the caller's checks passed, moves
it to `<root>/blobs/<xx>/<id>` and fsyncs the file and the directory before the caller commits the
row that makes it an object. A writer that is not committed (error, cut-off body, exception)
removes its temp file. `SegmentReader`
reads an object made of several blobs (a completed multipart upload) as one stream.

Why: names come from uuid4, never from bucket or key, so no key (`..`, `//`, a leading `/`, any
UTF-8) can reach outside the store. Blobs are never modified after the rename: an overwrite is a
new blob plus a row update in the database, so a reader that has opened the old file keeps
reading consistent bytes until it is done (POSIX keeps unlinked open files alive).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import io
import logging
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, Self

log = logging.getLogger("ec2gw.cumulus")

CHUNK = 1024 * 1024
_ID_RE = re.compile(r"^[0-9a-f]{32}$")
#: start writeback every this many bytes, so the final fsync only waits for the tail
_WRITEBACK_WINDOW = 16 * CHUNK
#: buffers one large upload cycles through (the request thread fills one while the MD5 thread
#: hashes another): at most this many CHUNKs of memory per upload, whatever its size
PIPELINE_DEPTH = 3


class Readable(Protocol):
    """Anything with read(n) -> bytes (b"" at the end): request bodies, files, other readers."""

    def read(self, n: int = -1, /) -> bytes:
        """Up to n bytes."""


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def start_writeback(fd: int, offset: int, nbytes: int) -> None:
        fn(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE: queue the range for writeback, don't wait

    return start_writeback


_start_writeback = _load_sync_file_range()


class _BufferPool:
    """Reusable CHUNK-sized buffers: a fresh 1 MiB allocation costs page faults and zeroing every
    time (glibc maps and unmaps blocks that large), so large uploads recycle their buffers. At most
    `keep` idle buffers stay allocated per process."""

    def __init__(self, size: int, keep: int) -> None:
        self.size, self.keep = size, keep
        self._idle: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return bytearray(self.size)

    def give(self, buffers: Iterable[bytearray]) -> None:
        with self._lock:
            for buf in buffers:
                if len(self._idle) < self.keep:
                    self._idle.append(buf)


_BUFFERS = _BufferPool(CHUNK, keep=4 * PIPELINE_DEPTH)


class _DigestThread:
    """Feeds one digest, on a thread of its own, with the chunks the request thread has read, in
    order, and hands each buffer back (`free`) when done with it.

    hashlib releases the GIL while it hashes a large buffer, so the MD5 of the ETag (the slowest
    digest) runs on another CPU while the request thread receives the next chunk, computes the
    other digests (x-amz-content-sha256, the CRC) and writes to disk.
    """

    def __init__(self, digest: Any, free: queue.SimpleQueue[bytearray]) -> None:
        self.digest, self.free = digest, free
        self.error: BaseException | None = None
        self._todo: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="cumulus-md5", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._todo.get()) is not None:
            buf, n = item
            if self.error is None:
                try:
                    self.digest.update(memoryview(buf)[:n])
                except BaseException as exc:  # noqa: BLE001  (re-raised in the request thread by close())
                    self.error = exc
            self.free.put(buf)

    def feed(self, buf: bytearray, n: int) -> None:
        self._todo.put((buf, n))

    def close(self) -> None:
        """Wait until every chunk fed so far was hashed; raise what went wrong, if anything."""
        self._todo.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error


def _readinto_of(reader: Readable) -> Callable[[memoryview], int]:
    """reader.readinto, or one made of reader.read (for readers that only implement read)."""
    readinto = getattr(reader, "readinto", None)
    if readinto is not None and getattr(type(reader), "readinto", None) is not io.RawIOBase.readinto:
        return readinto  # type: ignore[no-any-return]

    def via_read(view: memoryview) -> int:
        data = reader.read(len(view))
        view[: len(data)] = data
        return len(data)

    return via_read


def _fill(readinto: Callable[[memoryview], int], view: memoryview) -> int:
    """Read into `view` until it is full or the reader ends; the bytes read."""
    pos, size = 0, len(view)
    while pos < size:
        got = readinto(view[pos:])
        if not got:
            break
        pos += got
    return pos


class BlobStore:
    """The directory tree holding blobs (`blobs/`) and uploads in progress (`tmp/`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.blobs.mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        if not _ID_RE.match(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.blobs / blob_id[:2] / blob_id

    def writer(self, checksums: dict[str, Any] | None = None) -> BlobWriter:
        """A writer for one new blob; `checksums` maps names to objects with update()."""
        return BlobWriter(self, checksums or {})

    def open(self, blob_id: str) -> BinaryIO:
        """The blob's file, unbuffered (FileNotFoundError if it is gone)."""
        return open(self.path(blob_id), "rb", buffering=0)

    def size(self, blob_id: str) -> int:
        return self.path(blob_id).stat().st_size

    def delete(self, blob_ids: Iterable[str]) -> None:
        """Remove blobs; missing ones are fine (a concurrent delete or a crash got there first)."""
        for blob_id in blob_ids:
            try:
                self.path(blob_id).unlink()
            except FileNotFoundError:
                pass
            except OSError:
                log.exception("could not remove blob %s", blob_id)

    def clone(self, blob_id: str) -> str:
        """A new blob with the same bytes: a hard link (blobs are immutable), else a copy."""
        new_id = uuid.uuid4().hex
        target = self.path(new_id)
        target.parent.mkdir(exist_ok=True)
        try:
            os.link(self.path(blob_id), target)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise
            tmp = self.tmp / f"{new_id}.clone"
            try:
                shutil.copyfile(self.path(blob_id), tmp)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return new_id

    def sweep_tmp(self, older_than: float = 24 * 3600) -> int:
        """Remove temp files left by a crashed process (live uploads are younger than this)."""
        removed = 0
        cutoff = time.time() - older_than
        for entry in os.scandir(self.tmp):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                pass
        return removed

    def all_blob_ids(self) -> Iterator[tuple[str, float]]:
        """Every blob on disk with its mtime (for the orphan sweep)."""
        for sub in os.scandir(self.blobs):
            if sub.is_dir():
                for entry in os.scandir(sub.path):
                    if _ID_RE.match(entry.name):
                        try:
                            yield entry.name, entry.stat().st_mtime
                        except OSError:
                            pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """One new blob: write or copy_from, then commit() or abort(). A context manager aborts on exit
    unless committed, so a body that fails a check (or is cut off) leaves nothing behind."""

    def __init__(self, store: BlobStore, checksums: dict[str, Any]) -> None:
        self.store = store
        self.blob_id = uuid.uuid4().hex
        self.tmp_path = store.tmp / f"{self.blob_id}.part"
        self._fd: int | None = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self.md5 = hashlib.md5()
        self.checksums = checksums
        self.size = 0
        self._flushed = 0  # bytes already queued for writeback
        self.committed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.abort()

    @property
    def etag(self) -> str:
        return self.md5.hexdigest()

    def write(self, data: bytes | memoryview) -> None:
        self.md5.update(data)
        for c in self.checksums.values():
            c.update(data)
        self._write_raw(data)

    def _write_raw(self, data: bytes | memoryview) -> None:
        assert self._fd is not None, "writer is closed"
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.size += len(data)
        if _start_writeback is not None and self.size - self._flushed >= _WRITEBACK_WINDOW:
            _start_writeback(self._fd, self._flushed, self.size - self._flushed)
            self._flushed = self.size

    def copy_from(self, reader: Readable, limit: int | None = None, expected: int | None = None) -> int:
        """Read `reader` to its end (or `limit` bytes) into the blob; returns the bytes copied.

        Unless the body is known to fit in one CHUNK (`expected`, the announced size), it is read
        into recycled buffers (with readinto() when the reader has it: request bodies, files,
        SegmentReader), and from the second CHUNK on the MD5 is computed on another thread while
        this one reads, computes the other digests and writes (see _DigestThread), so one CPU
        does not have to do everything for a large upload.
        """
        if expected is None or expected > CHUNK:
            return self._copy_pipelined(_readinto_of(reader), limit)
        copied = 0
        while limit is None or copied < limit:
            data = reader.read(CHUNK if limit is None else min(CHUNK, limit - copied))
            if not data:
                break
            self.write(data)
            copied += len(data)
        return copied

    def _copy_pipelined(self, readinto: Callable[[memoryview], int], limit: int | None) -> int:
        buffers = [_BUFFERS.take()]
        free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        md5_thread: _DigestThread | None = None
        copied = 0
        ok = False
        try:
            buf = buffers[0]
            while limit is None or copied < limit:
                want = CHUNK if limit is None else min(CHUNK, limit - copied)
                n = _fill(readinto, memoryview(buf)[:want])
                if not n:
                    break
                view = memoryview(buf)[:n]
                if md5_thread is None and n == CHUNK:
                    # more may follow: from now on the MD5 runs beside this thread
                    for _ in range(PIPELINE_DEPTH - 1):
                        spare = _BUFFERS.take()
                        buffers.append(spare)
                        free.put(spare)
                    md5_thread = _DigestThread(self.md5, free)
                if md5_thread is not None:
                    md5_thread.feed(buf, n)
                else:
                    self.md5.update(view)
                for c in self.checksums.values():
                    c.update(view)
                self._write_raw(view)
                del view
                copied += n
                if n < want:
                    break  # the reader ended
                buf = free.get() if md5_thread is not None else buf  # wait until MD5 is done with one
            ok = True
        finally:
            if md5_thread is not None:
                try:
                    md5_thread.close()
                except BaseException:
                    if ok:
                        raise
            _BUFFERS.give(buffers)
        return copied

    def commit(self) -> str:
        """Rename into blobs/, then fsync the file and the directory; returns the blob id.

        Call it only after every check passed. The blob is not part of any object until the
        caller's database commit, which comes after both fsyncs, so renaming first is safe (a crash
        in between leaves an unreferenced file for sweep_orphans) and lets journaling file systems
        (ext4, xfs) make the data and the new name durable in one journal commit instead of two.
        """
        assert self._fd is not None, "writer is closed"
        target = self.store.path(self.blob_id)
        try:
            os.replace(self.tmp_path, target)
        except FileNotFoundError:
            target.parent.mkdir(exist_ok=True)
            os.replace(self.tmp_path, target)
        self.committed = True
        try:
            os.fsync(self._fd)
            _fsync_dir(target.parent)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        finally:
            os.close(self._fd)
            self._fd = None
        return self.blob_id

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.tmp_path.unlink(missing_ok=True)


class SegmentReader(io.RawIOBase):
    """The bytes `[start, end)` of an object stored as consecutive blobs, as one readable stream.

    Segments are opened when the reader is built (up to `eager` of them), so an overwrite or delete
    that happens while the object is being read does not cut the stream short; segments beyond
    that are opened when reached.
    """

    def __init__(self, store: BlobStore, segments: list[tuple[str, int]], start: int = 0,
                 end: int | None = None, eager: int = 256) -> None:
        self.store = store
        total = sum(n for _, n in segments)
        self.start, self.end = start, total if end is None else end
        self._pos = start
        self._plan: list[tuple[str, int, int]] = []  # (blob id, object offset of the segment, size)
        offset = 0
        for blob_id, n in segments:
            if offset + n > start and offset < self.end and n:
                self._plan.append((blob_id, offset, n))
            offset += n
        self._files: dict[int, BinaryIO] = {}
        try:
            for i, (blob_id, _, _) in enumerate(self._plan[:eager]):
                self._files[i] = store.open(blob_id)
        except BaseException:
            self.close()
            raise
        self._index = 0

    @property
    def length(self) -> int:
        return self.end - self.start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos - self.start

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self.length}[whence]
        self._pos = self.start + max(0, min(self.length, base + offset))
        self._index = 0
        return self.tell()

    def take_single_file(self) -> BinaryIO | None:
        """When the whole range lies in one blob: that file, positioned at the range's start and
        handed over to the caller (who closes it), so the server can sendfile() it."""
        if len(self._plan) == 1 and 0 in self._files:
            _, seg_off, _ = self._plan[0]
            f = self._files.pop(0)
            f.seek(self._pos - seg_off)
            return f
        return None

    def _file(self, i: int) -> BinaryIO:
        f = self._files.get(i)
        if f is None:
            f = self._files[i] = self.store.open(self._plan[i][0])
        return f

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.end - self._pos)
        if want <= 0:
            return 0
        while self._index < len(self._plan):
            _, seg_off, n = self._plan[self._index]
            if seg_off <= self._pos < seg_off + n:
                break
            self._index += 1
        else:
            return 0
        _, seg_off, n = self._plan[self._index]
        want = min(want, seg_off + n - self._pos)
        got = os.preadv(self._file(self._index).fileno(), [view[:want]], self._pos - seg_off)
        if got <= 0:
            raise OSError(errno.EIO, "blob is shorter than recorded")
        self._pos += got
        return got

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (never across a segment boundary); b"" at the end."""
        if size is None or size < 0:
            size = self.end - self._pos
        want = min(size, self.end - self._pos)
        if want <= 0:
            return b""
        while self._index < len(self._plan):
            _, seg_off, n = self._plan[self._index]
            if seg_off <= self._pos < seg_off + n:
                break
            self._index += 1
        else:
            return b""
        _, seg_off, n = self._plan[self._index]
        data = os.pread(self._file(self._index).fileno(), min(want, seg_off + n - self._pos), self._pos - seg_off)
        if not data:
            raise OSError(errno.EIO, "blob is shorter than recorded")
        self._pos += len(data)
        return data

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The remaining bytes in pieces of at most `size` (the WSGI response body)."""
        while data := self.read(size):
            yield data

    def close(self) -> None:
        for f in self._files.values():
            try:
                f.close()
            except OSError:
                pass
        self._files.clear()
        super().close()
