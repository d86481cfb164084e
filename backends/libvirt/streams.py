"""Moving bytes through libvirt streams in bounded chunks, each chunk within the call timeout.

A whole image never sits in memory: at most one chunk is held at a time. Each blocking stream
call is one step bounded by Connection.bounded(), so a node that stops answering mid-transfer
raises NodeUnavailable instead of hanging the transfer forever.
"""

from __future__ import annotations

from typing import BinaryIO, Callable, TypeVar

import libvirt

from backends.base import DriverError

T = TypeVar("T")
Bounded = Callable[[Callable[[], T], str], T]


def send_from(stream: libvirt.virStream, source: BinaryIO, size: int, chunk_size: int,
              bounded: Bounded) -> None:
    """Send exactly ``size`` bytes read from ``source`` and finish the stream.

    DriverError if ``source`` ends early; the caller aborts the stream on any error.
    """
    remaining = size
    while remaining:
        chunk = source.read(min(chunk_size, remaining))
        if not chunk:
            raise DriverError(f"the source ended after {size - remaining} of {size} bytes")
        view = memoryview(chunk)
        while view:
            sent = bounded(lambda v=view: stream.send(bytes(v)), "sending a chunk")
            if sent < 0:
                raise DriverError("the stream refused data")
            view = view[sent:]
        remaining -= len(chunk)
    bounded(stream.finish, "finishing the upload")


def recv_into(stream: libvirt.virStream, sink: BinaryIO, chunk_size: int, bounded: Bounded) -> int:
    """Copy the stream into ``sink`` until its end, finish it, and return the byte count."""
    total = 0
    while True:
        data = bounded(lambda: stream.recv(chunk_size), "receiving a chunk")
        if isinstance(data, int):  # -2 only happens on non-blocking streams
            raise DriverError("unexpected non-blocking stream")
        if not data:
            break
        sink.write(data)
        total += len(data)
    bounded(stream.finish, "finishing the download")
    return total


def abort_quietly(stream: libvirt.virStream) -> None:
    """Abort a stream that failed half-way; errors from an already dead stream are ignored."""
    try:
        stream.abort()
    except libvirt.libvirtError:
        pass
