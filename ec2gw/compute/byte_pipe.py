"""A bounded in-memory pipe between two threads: one writes what a volume download streams, the
other reads it into an upload, so a volume moves between nodes in one pass, without staging.

At most ``depth`` chunks wait in it. The writer blocks while it is full and fails (BrokenPipeError)
once the reader closed it; the reader gets b"" at the writer's end. Neither side can be left
blocked by the other's failure as long as the writer calls ``end`` and the reader ``close``.
"""

from __future__ import annotations

import queue


class BytePipe:
    def __init__(self, depth: int = 8) -> None:
        self._q: queue.Queue[bytes | None] = queue.Queue(depth)
        self._buf = memoryview(b"")
        self._closed = False
        self._ended = False

    # -- the writer (a download's sink) -------------------------------------------------------
    def write(self, data: bytes) -> int:
        self._put(bytes(data))
        return len(data)

    def end(self) -> None:
        """No more data: the reader gets b"" once it has read what is queued."""
        if not self._ended:
            self._ended = True
            try:
                self._put(None)
            except BrokenPipeError:
                pass

    def _put(self, item: bytes | None) -> None:
        while True:
            if self._closed:
                raise BrokenPipeError("the reading side of the pipe is closed")
            try:
                self._q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    # -- the reader (an upload's source) ------------------------------------------------------
    def read(self, size: int, /) -> bytes:
        while not self._buf:
            if self._closed:
                return b""
            item = self._q.get()
            if item is None:
                self._closed = True
                return b""
            self._buf = memoryview(item)
        out, self._buf = self._buf[:size], self._buf[size:]
        return bytes(out)

    def close(self) -> None:
        """The reader is done (or failed): a blocked or later write fails."""
        self._closed = True
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
