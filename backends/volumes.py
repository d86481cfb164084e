"""Storage on a node: directory pools and their volumes, reachable without file access to the node.

Images reach a node by streaming them through the hypervisor's storage API; each instance gets a
copy-on-write qcow2 overlay whose backing store is the image volume; image saving streams a volume
back. Everything moves in bounded chunks, never a whole image in memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

from backends.base import NotSupported

CHUNK_SIZE = 1 << 20


class Readable(Protocol):
    """Where uploads read from: an open file, a socket file, an HTTP body stream."""

    def read(self, size: int, /) -> bytes: ...


class Writable(Protocol):
    """Where downloads write to."""

    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """One volume. ``capacity`` is the guest-visible size, ``allocation`` the bytes used on disk."""

    pool: str
    name: str
    path: str
    format: str
    capacity: int
    allocation: int
    backing_path: str | None = None
    #: the bytes a download of the volume streams (its file's length), when the node reports it
    physical: int | None = None


class VolumeDriver(ABC):
    """Pools and volumes of one node. A missing pool or volume raises base.NotFound unless stated."""

    @abstractmethod
    def ensure_pool(self, name: str, path: str) -> None:
        """Make sure a directory pool ``name`` at ``path`` exists, is built, started and autostarts.

        Idempotent. An existing pool of that name is started if needed and otherwise left as is.
        """

    @abstractmethod
    def delete_pool(self, name: str) -> None:
        """Stop and undefine the pool (its directory and volumes stay). Missing pool: success."""

    @abstractmethod
    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """Every volume in the pool, sorted by name."""

    @abstractmethod
    def volume_info(self, pool: str, name: str) -> VolumeInfo | None:
        """The volume, or None if the pool has no such volume."""

    @abstractmethod
    def create_volume(self, pool: str, name: str, capacity: int, format: str = "qcow2") -> VolumeInfo:
        """Create an empty volume (a blank data disk) of ``capacity`` bytes, raw or qcow2.

        An existing volume of that name: base.AlreadyExists.
        """

    @abstractmethod
    def upload_volume(self, pool: str, name: str, source: Readable, size: int,
                      chunk_size: int = CHUNK_SIZE, expect_format: str | None = None,
                      backing_path: str | None = None) -> VolumeInfo:
        """Create volume ``name`` and fill it with exactly ``size`` bytes read from ``source``.

        The bytes are streamed in chunks of at most ``chunk_size`` (memory stays bounded). The
        format is detected by the node from the content (raw, qcow2; 'iso' for an ISO image,
        which a DiskSpec attaches with format raw) and is final when this returns. Content that
        refers to a backing file other than ``backing_path`` (any backing file when it is None;
        an instance's overlay moved between nodes names its image volume's path), or whose format
        is not ``expect_format`` (when given), is deleted again and refused with base.InvalidSpec. If the source ends early
        or anything fails, the half-written volume is deleted and the error raised; only when the
        node stops answering (NodeUnavailable) may a partial volume remain, for delete_volume()
        to remove later. An existing volume of that name: base.AlreadyExists.
        """

    @abstractmethod
    def create_overlay(self, pool: str, name: str, backing_pool: str, backing_name: str,
                       capacity: int | None = None) -> VolumeInfo:
        """Create a qcow2 volume whose backing store is volume ``backing_name``.

        ``capacity`` None means the backing volume's size; a smaller one is refused.
        """

    @abstractmethod
    def delete_volume(self, pool: str, name: str) -> None:
        """Delete the volume. A missing volume (or pool) is success."""

    @abstractmethod
    def download_volume(self, pool: str, name: str, sink: Writable,
                        chunk_size: int = CHUNK_SIZE) -> int:
        """Write the volume's bytes to ``sink`` in bounded chunks; returns the number written."""

    def resize_volume(self, pool: str, name: str, capacity: int) -> VolumeInfo:
        """Grow the volume to ``capacity`` bytes (its content stays; the new space reads as zeros).
        A smaller capacity is refused with InvalidSpec. The volume must not be in use by a running
        guest (grow that one with Driver.resize_disk). NotSupported where the node cannot
        (libvirt's test driver)."""
        raise NotSupported(f"{type(self).__name__} cannot resize volumes")

    def copy_volume(self, pool: str, name: str, source_pool: str, source_name: str, format: str = "qcow2",
                    timeout: float = 3600.0) -> VolumeInfo:
        """Create volume ``name`` as a flattened copy of ``source_name``: the source's whole content
        (its backing chain merged in) converted to ``format``, with no backing store of its own.

        Done on the node (a stopped instance's overlay becomes a self-contained image without its
        bytes crossing the network); ``timeout`` bounds the copy. The source must not be in use
        by a running guest. An existing volume of that name: base.AlreadyExists.
        """
        raise NotSupported(f"{type(self).__name__} cannot copy volumes")
