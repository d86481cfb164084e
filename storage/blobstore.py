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
import fcntl
import hashlib
import io
import logging
import mmap
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
#: O_DIRECT needs the buffer's address, the file offset and the length to be multiples of the
#: device's logical block size: 4096 covers every common device
_DIRECT_ALIGN = 4096
#: buffers one large upload cycles through (the request thread fills one while the MD5 and the
#: writing threads work on others): at most this many CHUNKs of memory per upload, whatever its size
PIPELINE_DEPTH = 4
#: a GET of at least this many bytes is read with O_DIRECT (smaller ones are sent with sendfile())
DIRECT_READ_MIN = 4 * CHUNK
#: buffers one direct GET cycles through (one being sent, the others being read)
READ_AHEAD = 3


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
    `keep` idle buffers stay allocated per process. They are anonymous mappings, so page-aligned,
    as O_DIRECT writes need."""

    def __init__(self, size: int, keep: int) -> None:
        self.size, self.keep = size, keep
        self._idle: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # not shared across fork()

    def give(self, buffers: Iterable[mmap.mmap]) -> None:
        with self._lock:
            for buf in buffers:
                if len(self._idle) < self.keep and not any(idle is buf for idle in self._idle):
                    self._idle.append(buf)


_BUFFERS = _BufferPool(CHUNK, keep=32)


class _Handback:
    """Returns a buffer to `free` once every stage it was fed to is done with it."""

    def __init__(self, free: queue.SimpleQueue[mmap.mmap], users: int) -> None:
        self.free, self.users = free, users
        self._left: dict[int, int] = {}
        self._lock = threading.Lock()

    def __call__(self, buf: mmap.mmap) -> None:
        with self._lock:
            left = self._left.pop(id(buf), self.users) - 1
            if left:
                self._left[id(buf)] = left
                return
        self.free.put(buf)


class _Stage:
    """Runs `work` on each chunk the request thread has read, in order, on a thread of its own,
    and hands each buffer back (`done`) when finished with it.

    Two stages serve a large upload: the MD5 of the ETag (the slowest digest; hashlib releases
    the GIL on large buffers, so it runs on another CPU) and the write to disk (which waits for the
    device when the file is written with O_DIRECT). Meanwhile the request thread receives the
    next chunk and computes the other digests (x-amz-content-sha256, the CRC).
    """

    def __init__(self, name: str, work: Callable[[memoryview], None], done: Callable[[mmap.mmap], None]) -> None:
        self.work, self.done = work, done
        self.error: BaseException | None = None
        self._todo: queue.SimpleQueue[tuple[mmap.mmap, int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._todo.get()) is not None:
            buf, n = item
            if self.error is None:
                try:
                    with memoryview(buf) as whole, whole[:n] as view:
                        self.work(view)
                except BaseException as exc:  # noqa: BLE001  (re-raised in the request thread by close())
                    self.error = exc
            self.done(buf)

    def feed(self, buf: mmap.mmap, n: int) -> None:
        self._todo.put((buf, n))

    def close(self) -> None:
        """Wait until every chunk fed so far was handled; raise what went wrong, if anything."""
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

    def __init__(self, root: Path, direct_io: bool = True) -> None:
        self.root = Path(root)
        #: large bodies written and read with O_DIRECT where the file system allows it (see
        #: BlobWriter.copy_from and DirectChunks); False: through the page cache (setting
        #: cumulus_direct_io)
        self.direct_io = direct_io
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
        """Every blob on disk with its ctime (for the orphan sweep).

        ctime, not mtime: clone() hard-links the source's file, so the new name carries the old
        mtime, but link() (like rename()) sets the inode's ctime to now, so a fresh copy is young.
        """
        for sub in os.scandir(self.blobs):
            if sub.is_dir():
                for entry in os.scandir(sub.path):
                    if _ID_RE.match(entry.name):
                        try:
                            yield entry.name, entry.stat().st_ctime
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
        self._direct = False  # O_DIRECT on: writes go from the caller's buffer to the disk
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

    def _set_direct(self, on: bool) -> None:
        """Switch O_DIRECT on or off; stays off where the file system refuses it (tmpfs, some FUSE)."""
        assert self._fd is not None, "writer is closed"
        if _set_flag(self._fd, os.O_DIRECT, on):
            self._direct = on

    def _write_raw(self, data: bytes | memoryview) -> None:
        assert self._fd is not None, "writer is closed"
        view = memoryview(data)
        if self._direct and (len(view) | self.size) % _DIRECT_ALIGN:
            self._set_direct(False)  # the tail: O_DIRECT takes only whole blocks
        while view:
            try:
                n = os.write(self._fd, view)
            except OSError as exc:
                if not (self._direct and exc.errno == errno.EINVAL):
                    raise
                self._set_direct(False)  # a device with blocks larger than _DIRECT_ALIGN
                if self._direct:
                    raise
                continue
            view = view[n:]
        self.size += len(data)
        if self._direct:
            self._flushed = self.size
        elif _start_writeback is not None and self.size - self._flushed >= _WRITEBACK_WINDOW:
            _start_writeback(self._fd, self._flushed, self.size - self._flushed)
            self._flushed = self.size

    def copy_from(self, reader: Readable, limit: int | None = None, expected: int | None = None) -> int:
        """Read `reader` to its end (or `limit` bytes) into the blob; returns the bytes copied.

        Unless the body is known to fit in one CHUNK (`expected`, the announced size), it is read
        into recycled buffers (with readinto() when the reader has it: request bodies, files,
        SegmentReader). From the first full CHUNK on, two threads work beside this one (see
        _Stage): one computes the MD5, the other writes to disk, while this one receives the next
        CHUNK and computes the other digests, so one CPU does not have to do everything for a large
        upload.

        Such a body is written with O_DIRECT where the file system allows it: from the buffer
        straight to the device, not through the page cache. The page cache would copy every byte
        once more and, more costly, take fresh pages for every MiB written: on a virtual machine
        whose free memory goes back to the host (a balloon with free page reporting), the first
        touch of each page is a fault on the host, about 3.5 CPU-seconds per GiB here, three times
        what receiving and writing cost. Written directly, an upload uses the same few buffers
        from start to end. The tail (less than a block) is written through the page cache, the
        final fsync as before. Large GETs then read from the disk the same way (DirectChunks).
        Where memory is cheap to take and the same large objects are read again and again, the
        page cache may serve better: the setting cumulus_direct_io = false turns both off.
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
        free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        stages: list[_Stage] = []
        copied = 0
        ok = False
        try:
            buf = buffers[0]
            while limit is None or copied < limit:
                want = CHUNK if limit is None else min(CHUNK, limit - copied)
                n = _fill(readinto, memoryview(buf)[:want])
                if not n:
                    break
                if not stages and n == CHUNK:
                    # more may follow: from now on the MD5 and the disk writes run beside this thread
                    for _ in range(PIPELINE_DEPTH - 1):
                        spare = _BUFFERS.take()
                        buffers.append(spare)
                        free.put(spare)
                    if self.size == 0 and self.store.direct_io:
                        self._set_direct(True)
                    handback = _Handback(free, 2)
                    stages = [_Stage("cumulus-md5", self.md5.update, handback),
                              _Stage("cumulus-write", self._write_raw, handback)]
                for stage in stages:
                    stage.feed(buf, n)
                    if stage.error is not None:
                        raise stage.error
                with memoryview(buf) as whole, whole[:n] as view:
                    for c in self.checksums.values():
                        c.update(view)
                    if not stages:
                        self.md5.update(view)
                        self._write_raw(view)
                copied += n
                if n < want:
                    break  # the reader ended
                if stages:
                    buf = free.get()  # wait until both stages are done with one
            ok = True
        finally:
            error: BaseException | None = None
            for stage in stages:  # every one of them, whatever the others raise
                try:
                    stage.close()
                except BaseException as exc:  # noqa: BLE001  (the first one is raised below)
                    error = error or exc
            try:
                if self._direct:
                    self._set_direct(False)
            finally:
                _BUFFERS.give(buffers)
            if ok and error is not None:
                raise error
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

    def direct_chunks(self) -> DirectChunks | None:
        """The rest of the range as a WSGI body read with O_DIRECT (see DirectChunks), which owns
        this reader from then on and closes it; None when the store does not use direct I/O or the
        file system refuses it (the caller then sends the range as usual: sendfile)."""
        if not self.store.direct_io:
            return None
        first = next(self.file_ranges(), None)
        if first is None or not _try_direct(first[0]):
            return None
        return DirectChunks(self)

    def file_ranges(self) -> Iterator[tuple[int, int, int]]:
        """(file descriptor, first byte, end) within each blob of the rest of the range, in order."""
        pos = self._pos
        for i, (_, seg_off, n) in enumerate(self._plan):
            if pos >= self.end:
                return
            if seg_off + n <= pos:
                continue
            end = min(self.end, seg_off + n)
            yield self._file(i).fileno(), pos - seg_off, end - seg_off
            pos = end

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


class DirectChunks:
    """A SegmentReader's remaining bytes as a WSGI body, read with O_DIRECT where the file system
    allows it, on a thread of its own (one CHUNK ahead of the one being sent), into recycled
    page-aligned buffers.

    Why not sendfile() from the page cache for a large GET: the first read of a blob (which large
    PUTs write with O_DIRECT, see BlobWriter.copy_from) would bring every page of it into the page
    cache, on fresh memory, at the cost described there; read directly, a GET of any size cycles
    through READ_AHEAD buffers. A read that meets the end of a blob early (a truncated file)
    raises OSError(EIO): the response is then cut short, and the client sees fewer bytes than
    Content-Length announced.
    """

    def __init__(self, reader: SegmentReader) -> None:
        self.reader = reader
        self._free: queue.SimpleQueue[mmap.mmap | None] = queue.SimpleQueue()
        self._ready: queue.SimpleQueue[tuple[mmap.mmap, int, int] | BaseException | None] = queue.SimpleQueue()
        self._buffers = [_BUFFERS.take() for _ in range(READ_AHEAD)]
        for buf in self._buffers:
            self._free.put(buf)
        self._stopping = self._closed = False
        self.direct_files = 0  # blobs read with O_DIRECT so far
        self._thread = threading.Thread(target=self._run, name="cumulus-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for fd, start, end in self.reader.file_ranges():
                direct = _try_direct(fd)
                self.direct_files += direct
                pos = start - start % _DIRECT_ALIGN if direct else start
                while pos < end:
                    buf = self._free.get()
                    if buf is None or self._stopping:
                        return
                    want = CHUNK if direct else min(CHUNK, end - pos)
                    try:
                        got = os.preadv(fd, [memoryview(buf)[:want]], pos)
                    except OSError as exc:
                        if not (direct and exc.errno == errno.EINVAL):
                            raise
                        # a device with blocks larger than _DIRECT_ALIGN: the rest without O_DIRECT
                        _set_flag(fd, os.O_DIRECT, False)
                        direct, pos = False, max(pos, start)
                        self._free.put(buf)
                        continue
                    need = min(want, end - pos)  # the bytes up to the range's end in this blob
                    lo, hi = max(start - pos, 0), min(got, need)
                    if hi > lo:
                        self._ready.put((buf, lo, hi))
                    else:
                        self._free.put(buf)
                    if got < need:  # the file ends before the range does: send what is there, then fail
                        raise OSError(errno.EIO, "blob is shorter than recorded")
                    pos += want
            self._ready.put(None)
        except BaseException as exc:  # noqa: BLE001  (raised in the thread that sends the body)
            self._ready.put(exc)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            buf, lo, hi = item
            data = buf[lo:hi]
            self._free.put(buf)
            yield data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = self._stopping = True
        self._free.put(None)
        self._thread.join(30)
        if self._thread.is_alive():  # stuck in a read: it keeps its buffers and the files it reads
            log.warning("a direct read of %d blob(s) did not stop within 30 s; its files stay open",
                        len(self.reader._plan))
            return
        _BUFFERS.give(self._buffers)
        self.reader.close()


def _try_direct(fd: int) -> bool:
    """Switch an open blob to O_DIRECT reads; False where the file system refuses it."""
    return _set_flag(fd, os.O_DIRECT, True)


def _set_flag(fd: int, flag: int, on: bool) -> bool:
    """Set or clear a file status flag (F_SETFL); False where that is refused."""
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | flag if on else flags & ~flag)
    except OSError:
        return False
    return True
