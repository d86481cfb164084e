"""Moving bytes through libvirt streams in bounded chunks, each chunk within the call timeout.

A whole image never sits in memory: at most one chunk is held at a time. Each blocking stream
call is one step bounded by Connection.bounded(), so a node that stops answering mid-transfer
raises NodeUnavailable instead of hanging the transfer forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import libvirt

from backends.base import DriverError
from backends.volumes import Readable, Writable

T = TypeVar("T")
Bounded = Callable[[Callable[[], T], str], T]


def send_from(stream: libvirt.virStream, source: Readable, size: int, chunk_size: int,
              bounded: Bounded) -> None:
    """Send exactly ``size`` bytes read from ``source`` and finish the stream.

    DriverError if ``source`` ends early; the caller aborts the stream on any error.
    """
    remaining = size
    while remaining:
        chunk = source.read(min(chunk_size, remaining))
        if not chunk:
            raise DriverError(f"the source ended after {size - remaining} of {size} bytes")
        remaining -= len(chunk)
        while chunk:
            sent = bounded(lambda data=chunk: stream.send(data), "sending a chunk")  # type: ignore[misc]
            if sent < 0:
                raise DriverError("the stream refused data")
            chunk = chunk[sent:]
    bounded(stream.finish, "finishing the upload")


def recv_into(stream: libvirt.virStream, sink: Writable, chunk_size: int, bounded: Bounded) -> int:
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
