"""What the EC2 side uses of Cumulus, as an interface: image objects read, checked and written.

Cumulus sits above compute in the layers (ARCHITECTURE.md), so compute, the image rules
(ec2gw.images) and the EC2 providers never import it: the application builds Cumulus's Python
API (storage.service.CumulusService) and hands it in, to the App's providers as `app.cumulus`
and to the compute worker when it is built. Plain rules about image objects that need no store
(key layout, format sniffing) live here, and Cumulus uses them too.
"""

from __future__ import annotations

import os
import threading
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from ec2gw.config import Settings

QCOW2_MAGIC = b"QFI\xfb"


class ObjectInfo(Protocol):
    """An object's metadata as the image code reads it."""

    @property
    def size(self) -> int: ...

    @property
    def etag(self) -> str:
        """hex MD5 of the bytes, without quotes ("<md5>-N" for multipart uploads)"""
        ...

    @property
    def checksum_algorithm(self) -> str | None: ...

    @property
    def checksum_value(self) -> str | None: ...

    @property
    def checksum_type(self) -> str | None: ...


class Cumulus(Protocol):
    """The object store, by bucket and key, with Cumulus's own rules (owner, ACL, quota)."""

    def object_info(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's metadata; None if there is no such object or bucket."""
        ...

    def can_read(self, user_id: int, bucket: str, key: str) -> bool:
        """Whether the user may read the object, by the rules of an S3 GET."""
        ...

    def open_object(self, bucket: str, key: str) -> tuple[BinaryIO, int]:
        """A readable, seekable stream of the object's bytes and its size; the caller closes it.
        FileNotFoundError when there is no such object."""
        ...

    def put_file(self, owner_user_id: int, bucket: str, key: str,
                 path_or_stream: str | os.PathLike[str] | IO[bytes], size: int) -> ObjectInfo:
        """Store a local file (or `size` bytes of a stream) as `bucket/key`, as an S3 PUT by the
        owner would (the owner's rights and storage quota apply)."""
        ...

    def delete_object(self, bucket: str, key: str) -> None:
        """Remove `bucket/key` (written by the service, e.g. a snapshot's bytes); a missing object
        is fine. No access check: the caller decided."""
        ...

    def sweep_orphans(self, stop: threading.Event | None = None) -> int:
        """Remove blobs no object or part references (what a crash leaves); returns how many.
        Reads every row: the compute worker runs it now and then, never per request."""
        ...


def user_image_key(settings: Settings, username: str, name: str) -> str:
    return f"{settings.image_prefix}/{username}/{name}"


def common_image_key(settings: Settings, name: str) -> str:
    return f"{settings.image_prefix}/common/{name}"


def reserved_user_names(settings: Settings) -> frozenset[str]:
    """Names no user may have: the shared area's (`<image_prefix>/common/` is where a user named
    "common" would own a prefix) and the repository's own bucket and prefix names."""
    return frozenset({"common", settings.image_prefix.lower(), settings.image_bucket.lower()})


def detect_format(first_bytes: bytes) -> str:
    """"qcow2" when the bytes start with QEMU's magic, else "raw"."""
    return "qcow2" if first_bytes[:4] == QCOW2_MAGIC else "raw"
