"""Images onto nodes: uploaded once per (image, node) from Cumulus, verified, reused, replaced."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest

from ec2gw.compute import image_cache
from ec2gw.compute.placement import NodeRef
from storage import images as store
from tests.unit.ec2_inprocess import World, make_world
from tests.unit.fake_node import FakeVolumes

NODE = NodeRef("n1", "qemu:///system", "qemu", "z", ())


class FakeDriver:
    domain_type = "qemu"

    def __init__(self) -> None:
        self.volumes = FakeVolumes()


@pytest.fixture()
def world(tmp_path: Path) -> World:
    return make_world(tmp_path / "data")


def put(world: World, key: str, data: bytes) -> image_cache.ImageRef:
    store.put_file(world.app, world.user_id("admin"), "Repo", key, io.BytesIO(data), len(data))
    return image_cache.ImageRef("ami-" + key.rsplit("/", 1)[-1], f"Repo/{key}")


def app(world: World, **settings: Any) -> image_cache.CacheEnv:
    for k, v in settings.items():
        setattr(world.app.settings, k, v)
    return image_cache.CacheEnv(world.app.settings, world.app.db, world.app.cumulus)


def test_first_use_uploads_then_reuses_without_copying(world: World) -> None:
    img = put(world, "VMS/admin/a1", b"x" * 3_000_000)
    drv = FakeDriver()
    first = image_cache.ensure(app(world), NODE, drv, img)  # type: ignore[arg-type]
    assert first.uploaded_bytes == 3_000_000 and first.capacity == 3_000_000 and first.format == "raw"
    again = image_cache.ensure(app(world), NODE, drv, img)  # type: ignore[arg-type]
    assert again.uploaded_bytes == 0 and again.volume == first.volume
    assert drv.volumes.uploaded == 3_000_000
    other = NodeRef("n2", "qemu+tcp://h/system", "qemu", "z", ())
    assert image_cache.ensure(app(world), other, FakeDriver(), img).uploaded_bytes == 3_000_000  # type: ignore[arg-type]


def test_a_vanished_volume_or_a_rewritten_object_is_uploaded_anew(world: World) -> None:
    img = put(world, "VMS/admin/a2", b"y" * 1000)
    drv = FakeDriver()
    first = image_cache.ensure(app(world), NODE, drv, img)  # type: ignore[arg-type]
    drv.volumes.delete_volume(first.pool, first.volume)  # the administrator cleaned the node
    assert image_cache.ensure(app(world), NODE, drv, img).uploaded_bytes == 1000  # type: ignore[arg-type]
    put(world, "VMS/admin/a2", b"z" * 2000)  # same key, new content
    newer = image_cache.ensure(app(world), NODE, drv, img)  # type: ignore[arg-type]
    assert newer.uploaded_bytes == 2000 and newer.volume != first.volume
    assert drv.volumes.volume_info(first.pool, first.volume) is not None  # old base kept for its overlays


def test_qcow2_capacity_is_its_virtual_size(world: World) -> None:
    header = b"QFI\xfb" + b"\0\0\0\x03" + b"\0" * 16 + (1 << 30).to_bytes(8, "big")
    img = put(world, "VMS/admin/q1", header.ljust(4096, b"\0"))
    got = image_cache.ensure(app(world), NODE, FakeDriver(), img)  # type: ignore[arg-type]
    assert got.format == "qcow2" and got.capacity == 1 << 30


def test_verification_failures_delete_the_copy(world: World) -> None:
    img = put(world, "VMS/admin/v1", b"v" * 5000)
    drv = FakeDriver()
    drv.volumes.lie_capacity = 512
    with pytest.raises(image_cache.ImageUnavailable, match="capacity"):
        image_cache.ensure(app(world), NODE, drv, img)  # type: ignore[arg-type]
    assert drv.volumes.vols == {}
    drv.volumes.lie_capacity, drv.volumes.backing = 0, "/etc/shadow"
    with pytest.raises(image_cache.ImageUnavailable, match="backing file"):
        image_cache.ensure(app(world), NODE, drv, img)  # type: ignore[arg-type]
    assert drv.volumes.vols == {}
    drv.volumes.backing = None
    assert image_cache.ensure(app(world), NODE, drv, img).uploaded_bytes == 5000  # type: ignore[arg-type]


def test_readback_compares_what_the_node_holds(world: World) -> None:
    img = put(world, "VMS/admin/r1", b"r" * 4000)
    drv = FakeDriver()
    original = drv.volumes.download_volume
    drv.volumes.download_volume = lambda p, n, sink, c=1 << 20: sink.write(b"R" * 4000) or 4000  # type: ignore[method-assign]
    with pytest.raises(image_cache.ImageUnavailable, match="read back"):
        image_cache.ensure(app(world, image_cache_readback=True), NODE, drv, img)  # type: ignore[arg-type]
    drv.volumes.download_volume = original  # type: ignore[method-assign]
    assert image_cache.ensure(app(world, image_cache_readback=True), NODE, drv, img).uploaded_bytes == 4000  # type: ignore[arg-type]


def test_a_missing_object_is_reported(world: World) -> None:
    with pytest.raises(image_cache.ImageUnavailable, match="missing"):
        image_cache.ensure(app(world), NODE, FakeDriver(), image_cache.ImageRef("ami-x", "Repo/VMS/admin/none"))  # type: ignore[arg-type]


def test_concurrent_launches_upload_once(world: World) -> None:
    img = put(world, "VMS/admin/c1", b"c" * (4 << 20))
    drv = FakeDriver()
    drv.volumes.slow = 0.01
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(
        image_cache.ensure(app(world), NODE, drv, img).uploaded_bytes)) for _ in range(4)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [0, 0, 0, 4 << 20] and drv.volumes.uploaded == 4 << 20


def _forget(world: World) -> None:
    from sqlalchemy import delete

    from ec2gw.compute.image_models import NodeImage

    with world.app.db.session(write=True) as s:
        s.execute(delete(NodeImage))


def test_a_volume_without_its_record_is_reused_only_when_it_holds_the_image(world: World) -> None:
    img = put(world, "VMS/admin/u1", b"u" * 5000)
    drv = FakeDriver()
    first = image_cache.ensure(app(world), NODE, drv, img)  # type: ignore[arg-type]
    _forget(world)  # e.g. the node was removed and added again
    again = image_cache.ensure(app(world), NODE, drv, img)  # type: ignore[arg-type]
    assert (again.volume, again.uploaded_bytes) == (first.volume, 0), "read back, same bytes: reused and recorded"
    assert image_cache.ensure(app(world), NODE, drv, img).uploaded_bytes == 0  # type: ignore[arg-type]
    _forget(world)  # an upload cut off half-way: part of the bytes under the image's name, nothing backed by it
    drv.volumes.delete_volume(first.pool, first.volume)
    drv.volumes.upload_volume(first.pool, first.volume, io.BytesIO(b"u" * 1000), 1000)
    third = image_cache.ensure(app(world), NODE, drv, img)  # type: ignore[arg-type]
    assert (third.volume, third.uploaded_bytes) == (first.volume, 5000), "replaced in place"
    assert drv.volumes.data[(first.pool, first.volume)] == b"u" * 5000


def test_every_use_checks_the_owner_may_still_read_the_object(world: World) -> None:
    """A cached copy on the node is no excuse: the image's owner must be allowed to read its
    object at every use (issue 12, item 1; the live reproduction is tests/security/test_image_bytes.py)."""
    store.put_file(world.app, world.user_id("alice"), "Repo", "VMS/alice/own", io.BytesIO(b"o" * 1000), 1000)
    drv = FakeDriver()
    mine = image_cache.ImageRef("ami-own", "Repo/VMS/alice/own", world.user_id("alice"))
    assert image_cache.ensure(app(world), NODE, drv, mine).uploaded_bytes == 1000  # type: ignore[arg-type]
    # the same image (and its copy on the node) as bob's: bob may not read alice's prefix
    theirs = image_cache.ImageRef("ami-own", "Repo/VMS/alice/own", world.user_id("bob"))
    with pytest.raises(image_cache.ImageUnavailable, match="may no longer read"):
        image_cache.ensure(app(world), NODE, drv, theirs)  # type: ignore[arg-type]
