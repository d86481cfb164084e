"""Cumulus's Python API for the EC2 side: image objects read, checked and written, blobs swept.

The application builds one (ec2gw.app) and hands it to whatever needs objects below Cumulus's
layer: the EC2 providers (RegisterImage, CreateImage), the image rules, the compute worker (image
cache, CreateImage copies, the sweep of orphaned blobs). It implements ec2gw.compute.cumulus.Cumulus
with the functions of storage/images.py and storage/maintenance.py, so the same rules hold as for
an S3 request.
"""

from __future__ import annotations

import os
import threading
from typing import IO, TYPE_CHECKING, BinaryIO

from storage import images, maintenance
from storage.blobstore import BlobStore
from storage.records import ObjectInfo

if TYPE_CHECKING:
    from storage.host import Host


class CumulusService:
    def __init__(self, host: Host, store: BlobStore | None = None) -> None:
        self.host = host
        self.store = store or BlobStore(host.settings.data_dir / "cumulus", host.settings.cumulus_direct_io)

    def object_info(self, bucket: str, key: str) -> ObjectInfo | None:
        return images.object_info(self.host, bucket, key)

    def can_read(self, user_id: int, bucket: str, key: str) -> bool:
        return images.can_read(self.host, user_id, bucket, key)

    def open_object(self, bucket: str, key: str) -> tuple[BinaryIO, int]:
        return images.open_object(self.host, bucket, key)

    def put_file(self, owner_user_id: int, bucket: str, key: str,
                 path_or_stream: str | os.PathLike[str] | IO[bytes], size: int) -> ObjectInfo:
        return images.put_file(self.host, owner_user_id, bucket, key, path_or_stream, size)

    def delete_object(self, bucket: str, key: str) -> None:
        images.delete_object(self.host, bucket, key)

    def sweep_orphans(self, stop: threading.Event | None = None) -> int:
        return maintenance.sweep_orphans(self.host.db, self.store, stop=stop)
