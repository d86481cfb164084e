"""Images onto nodes: stream a Cumulus object into the node's image pool once, verify it, reuse it.

What: ensure(ctx, node, driver, image) returns the volume holding ``image`` on ``node``. On first
use the object is streamed through libvirt's volume upload (bounded chunks, works for remote
nodes without a shell); later launches find the NodeImage row and only check the volume is still
there with the recorded capacity, so a second launch copies nothing.
Verification of a new copy: exactly the object's size is sent; the MD5 of the bytes sent equals
the object's ETag (single-part uploads) and their SHA-256 its stored SHA-256 checksum when it has
one; the volume's capacity is what the bytes say (the size of a raw image, the virtual size in a
qcow2 header); with settings.image_cache_readback the volume is read back and its SHA-256
compared. Only then is the NodeImage row written.
A volume of the image's name without its row (an upload cut off when the node stopped answering,
or a copy made while the node was registered before: removing a node drops its rows) is never
overwritten blindly: it is read back and, if it holds exactly the object's bytes, recorded and
reused; otherwise it is replaced when no overlay on the node uses it as its backing store, and
left alone (the image is uploaded under another name) when one does.
Concurrency: one lock per (node, image) in the worker process, so two launches of a new image on
one node upload it once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy import delete

from backends.base import AlreadyExists, DriverError, NodeUnavailable, NotFound
from ec2gw.compute import node_layout
from ec2gw.compute.cumulus import QCOW2_MAGIC
from ec2gw.compute.image_models import NodeImage

if TYPE_CHECKING:
    from backends.base import Driver
    from ec2gw.compute.cumulus import Cumulus, ObjectInfo
    from ec2gw.compute.placement import NodeRef
    from ec2gw.config import Settings
    from ec2gw.db.session import Database

log = logging.getLogger("ec2gw.compute")
_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


class ImageUnavailable(Exception):
    """The image's object cannot be read from Cumulus, or its copy on the node failed verification."""


@dataclass(frozen=True)
class CacheEnv:
    """What ensure() uses: the settings, the database, and Cumulus (None: not given, no image
    can be read)."""

    settings: Settings
    db: Database
    cumulus: Cumulus | None


@dataclass(frozen=True)
class ImageRef:
    id: str
    location: str
    #: the image's owner, who must still be allowed to read its object at every use (launches
    #: always give it; None only where no user is involved)
    owner_id: int | None = None


@dataclass(frozen=True)
class CachedImage:
    pool: str
    volume: str
    path: str
    format: str
    capacity: int
    uploaded_bytes: int


class _Hashing:
    """A reader that hashes (MD5, SHA-256) and counts what passes and keeps the first 512 bytes."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.count = 0
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.md5.update(data)
        self.sha256.update(data)
        if len(self.head) < 512:
            self.head += data[: 512 - len(self.head)]
        self.count += len(data)
        return data


class _Sha256Sink:
    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return len(data)


def virtual_size(head: bytes, size: int) -> int:
    """The guest-visible size: a qcow2 header's virtual size, else the byte count (raw)."""
    if head[:4] == QCOW2_MAGIC and len(head) >= 32:
        return int.from_bytes(head[24:32], "big")
    return size


def lock_for(node: str, image: str) -> threading.Lock:
    """The lock held while (node, image)'s cached volume is uploaded or removed (image_gc)."""
    with _locks_guard:
        return _locks.setdefault((node, image), threading.Lock())


def _cumulus(app: CacheEnv) -> Cumulus:
    if app.cumulus is None:
        raise ImageUnavailable("no Cumulus was given to the compute worker; images cannot be read")
    return app.cumulus


def ensure(app: CacheEnv, node: NodeRef, driver: Driver, image: ImageRef) -> CachedImage:
    """The verified volume holding ``image`` on ``node``, uploading it on first use."""
    bucket, _, key = image.location.partition("/")
    info = _cumulus(app).object_info(bucket, key)
    if info is None:
        raise ImageUnavailable(f"image {image.id}: its Cumulus object {image.location} is missing; upload it again")
    if image.owner_id is not None and not _cumulus(app).can_read(image.owner_id, bucket, key):
        # checked again at every use, cached copy or not: the object's ACL may have changed
        raise ImageUnavailable(f"image {image.id}: its owner may no longer read its Cumulus object {image.location}")
    pool = node_layout.IMAGES_POOL
    with lock_for(node.name, image.id):
        with app.db.session() as s:
            row = s.get(NodeImage, (node.name, image.id))
            cached = None if row is None else (row.volume, row.size, row.etag, row.capacity, row.format)
        if cached is not None and cached[1] == info.size and cached[2] == info.etag:
            vol = driver.volumes.volume_info(pool, cached[0])
            if vol is not None and vol.capacity == cached[3]:
                return CachedImage(pool, vol.name, vol.path, cached[4], vol.capacity, 0)
            log.warning("image %s on node %s: volume %s is missing or changed; uploading it again",
                        image.id, node.name, cached[0])
        return _upload(app, node, driver, image, info)


def overlays_on(driver: Driver, pool: str, volume: str) -> list[str]:
    """Names of the instance volumes (overlays) on the node whose backing store is ``pool/volume``."""
    base = driver.volumes.volume_info(pool, volume)
    if base is None:
        return []
    try:
        vols = driver.volumes.list_volumes(node_layout.INSTANCES_POOL)
    except NotFound:  # no instances pool: no overlays
        return []
    return [v.name for v in vols if v.backing_path == base.path]


def _free_name(driver: Driver, pool: str, name: str) -> str:
    """``name`` with the first suffix (-2, -3, ...) no volume of ``pool`` has."""
    taken = {v.name for v in driver.volumes.list_volumes(pool)}
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def _adopt(app: CacheEnv, node: NodeRef, driver: Driver, image: ImageRef, info: ObjectInfo, vol: Any) -> CachedImage | None:
    """The unrecorded volume ``vol`` as the image's cached copy if it holds exactly the object's
    bytes (read back from the node and compared, whatever settings.image_cache_readback says)."""
    bucket, _, key = image.location.partition("/")
    handle, size = _cumulus(app).open_object(bucket, key)
    reader = _Hashing(handle)
    try:
        while reader.read(1 << 20):
            pass
    finally:
        handle.close()
    try:
        _verify(app.settings, driver, image, info, reader, vol, readback=True)
    except NodeUnavailable:
        raise
    except (ImageUnavailable, DriverError) as exc:
        log.info("image %s on node %s: unrecorded volume %s/%s is not a copy of it (%s)", image.id, node.name,
                 vol.pool, vol.name, exc)
        return None
    with app.db.session(write=True) as s:
        s.merge(NodeImage(node_name=node.name, image_id=image.id, pool=vol.pool, volume=vol.name, size=size,
                          etag=info.etag, sha256=reader.sha256.hexdigest(), capacity=vol.capacity, format=vol.format))
    log.info("image %s on node %s: unrecorded volume %s/%s holds the image; reused", image.id, node.name, vol.pool,
             vol.name)
    return CachedImage(vol.pool, vol.name, vol.path, vol.format, vol.capacity, 0)


def _upload(app: CacheEnv, node: NodeRef, driver: Driver, image: ImageRef, info: ObjectInfo) -> CachedImage:
    pool = node_layout.IMAGES_POOL
    name = node_layout.image_volume_name(image.id, info.etag)
    with app.db.session(write=True) as s:
        s.execute(delete(NodeImage).where(NodeImage.node_name == node.name, NodeImage.image_id == image.id))
    found = driver.volumes.volume_info(pool, name)
    if found is not None:  # no row names it: never overwritten unchecked (see the module doc)
        adopted = _adopt(app, node, driver, image, info, found)
        if adopted is not None:
            return adopted
        users = overlays_on(driver, pool, name)
        if users:
            kept, name = name, _free_name(driver, pool, name)
            log.warning("image %s on node %s: volume %s/%s is not a copy of the image but backs %s; it is left "
                        "alone and the image goes to %s", image.id, node.name, pool, kept, ", ".join(users), name)
        else:
            driver.volumes.delete_volume(pool, name)  # a cut-off earlier upload, never recorded
    bucket, _, key = image.location.partition("/")
    handle, size = _cumulus(app).open_object(bucket, key)
    reader = _Hashing(handle)
    try:
        vol = driver.volumes.upload_volume(pool, name, reader, size)  # type: ignore[arg-type]
    except AlreadyExists:  # pragma: no cover - deleted just above; another service raced us
        raise ImageUnavailable(f"image {image.id}: volume {name} appeared on node {node.name} during the upload") from None
    finally:
        handle.close()
    try:
        _verify(app.settings, driver, image, info, reader, vol)
    except (ImageUnavailable, DriverError):
        driver.volumes.delete_volume(pool, name)
        raise
    with app.db.session(write=True) as s:
        s.merge(NodeImage(node_name=node.name, image_id=image.id, pool=pool, volume=name, size=size,
                          etag=info.etag, sha256=reader.sha256.hexdigest(), capacity=vol.capacity, format=vol.format))
    log.info("image %s cached on node %s as %s/%s (%d bytes)", image.id, node.name, pool, name, size)
    return CachedImage(pool, name, vol.path, vol.format, vol.capacity, reader.count)


def _verify(settings: Settings, driver: Driver, image: ImageRef, info: ObjectInfo, reader: _Hashing, vol: Any,
            readback: bool = False) -> None:
    what = f"image {image.id} on the node"
    if reader.count != info.size:
        raise ImageUnavailable(f"{what}: {reader.count} bytes were sent, the object has {info.size}")
    if "-" not in info.etag and len(info.etag) == 32 and reader.md5.hexdigest() != info.etag:
        raise ImageUnavailable(f"{what}: the bytes read from Cumulus do not match the object's ETag; "
                               "the stored object is damaged, upload the image again")
    whole_sha256 = (info.checksum_algorithm or "").upper() == "SHA256" and (info.checksum_type or "FULL_OBJECT") == "FULL_OBJECT"
    if whole_sha256 and base64.b64encode(reader.sha256.digest()).decode() != info.checksum_value:
        raise ImageUnavailable(f"{what}: the bytes read from Cumulus do not match the object's SHA-256 checksum")
    if vol.backing_path:
        raise ImageUnavailable(f"{what}: it is a qcow2 image with a backing file ({vol.backing_path}), which could "
                               "expose the node's files; flatten it (qemu-img convert -O qcow2) and upload it again")
    expected = virtual_size(reader.head, info.size)
    if vol.capacity != expected:
        raise ImageUnavailable(f"{what}: the node reports {vol.capacity} bytes of capacity, the image has {expected}")
    if readback or settings.image_cache_readback:
        sink = _Sha256Sink()
        driver.volumes.download_volume(vol.pool, vol.name, sink)  # type: ignore[arg-type]
        if sink.sha256.hexdigest() != reader.sha256.hexdigest():
            raise ImageUnavailable(f"{what}: the copy read back from the node differs from what was sent")
