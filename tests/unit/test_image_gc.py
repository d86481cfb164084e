"""Cached image volumes leave a node once their image is deregistered and no instance needs them.

The node is a private libvirtd (backends.libvirt.testing.PrivateLibvirtd, QEMU driver, real dir
storage pools, no guests; skipped where it cannot start); images come from Cumulus through
image_cache like a launch's, the instance's overlay is a real qcow2 volume backed by the cached
image, and DeregisterImage goes through the EC2 API. The compute worker's own pass
(ComputeWorker.run_once) does the removal.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from backends.base import NotFound
from backends.libvirt.testing import PrivateLibvirtd
from ec2gw.compute import image_cache, node_layout, nodes, provision
from ec2gw.compute import worker as worker_mod
from ec2gw.compute.image_models import NodeImage
from ec2gw.compute.placement import NodeRef
from ec2gw.compute.worker import ComputeWorker
from ec2gw.db.models import Instance, Node, Reservation
from ec2gw.images import Registration, register
from storage import images as store
from tests.unit.ec2_inprocess import World, make_world

IMAGES = node_layout.IMAGES_POOL


@pytest.fixture()
def setup(tmp_path: Path, libvirtd: PrivateLibvirtd, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[World, ComputeWorker, NodeRef]]:
    world = make_world(tmp_path / "data", node_storage_dir=str(tmp_path / "node"))
    node = NodeRef("n1", libvirtd.uri("qemu"), "qemu", "us-east-1a", ())
    with world.app.db.session(write=True) as s:
        s.add(Node(name=node.name, uri=node.uri, memory_mib=4096, vcpus=2, zone=node.zone, pools="", domain_type="qemu",
                   active=True, reachable=True, last_error=""))
    monkeypatch.setattr(worker_mod, "IMAGE_GC_SECONDS", 0.0)  # look on every pass
    worker = ComputeWorker(world.app.settings, world.app.db, cumulus=world.app.cumulus)
    worker.images.recheck = 0.0
    try:
        yield world, worker, node
    finally:
        worker.pool.shutdown(wait=True)
        drv = worker.drivers.get(node)
        for pool in (IMAGES, node_layout.INSTANCES_POOL, node_layout.CONSOLE_POOL):  # the next test starts empty
            try:
                for v in drv.volumes.list_volumes(pool):
                    drv.volumes.delete_volume(pool, v.name)
            except NotFound:
                continue
            drv.volumes.delete_pool(pool)
        worker.drivers.close()


def _image(world: World, name: str, data: bytes, kind: str = "machine", **kw: Any) -> str:
    store.put_file(world.app, world.user_id("alice"), "Repo", f"VMS/alice/{name}", io.BytesIO(data), len(data))
    return register(world.app, world.user_id("alice"), Registration(name=name, location=f"Repo/VMS/alice/{name}",
                                                                    kind=kind, **kw)).id


def _cache(world: World, worker: ComputeWorker, node: NodeRef, image_id: str) -> image_cache.CachedImage:
    drv = worker.drivers.get(node)
    node_layout.ensure_pools(drv, world.app.settings)
    return image_cache.ensure(image_cache.CacheEnv(world.app.settings, world.app.db, world.app.cumulus), node, drv,
                              image_cache.ImageRef(image_id, f"Repo/VMS/alice/{_name(world, image_id)}"))


def _name(world: World, image_id: str) -> str:
    from ec2gw.db.models import Image

    with world.app.db.session() as s:
        return str(s.scalar(select(Image.name).where(Image.id == image_id)))


def _instance(world: World, image: str, kernel: str | None, node: str) -> str:
    with world.app.db.session(write=True) as s:
        s.add(Reservation(id="r-gc", owner_id=world.user_id("alice")))
        s.flush()
        s.add(Instance(id="i-0000000000000gc01", owner_id=world.user_id("alice"), reservation_id="r-gc", image_id=image,
                       kernel_id=kernel, instance_type="m1.small", vcpus=1, memory_mib=256, state="stopped",
                       availability_zone="us-east-1a", node_name=node))
    return "i-0000000000000gc01"


def _volumes(worker: ComputeWorker, node: NodeRef, pool: str = IMAGES) -> list[str]:
    return [v.name for v in worker.drivers.get(node).volumes.list_volumes(pool)]


def _rows(world: World) -> set[str]:
    with world.app.db.session() as s:
        return set(s.scalars(select(NodeImage.image_id)))


def _set(world: World, iid: str, **values: Any) -> None:
    with world.app.db.session(write=True) as s:
        s.execute(update(Instance).where(Instance.id == iid).values(**values))


def _pass(worker: ComputeWorker) -> None:
    worker.run_once()
    assert worker.wait_idle(30)


def test_volumes_wait_for_the_instance_then_go_on_the_next_pass(setup: tuple[World, ComputeWorker, NodeRef]) -> None:
    world, worker, node = setup
    kernel = _image(world, "gc-kernel", b"K" * 4096, kind="kernel")
    image = _image(world, "gc-disk", b"D" * 65536, kernel_id=kernel)
    kept = _image(world, "gc-kept", b"S" * 8192)
    base = _cache(world, worker, node, image)
    kcache = _cache(world, worker, node, kernel)
    kept_vol = _cache(world, worker, node, kept).volume
    iid = _instance(world, image, kernel, node.name)
    overlay = provision.overlay(worker.drivers.get(node), iid, base)  # backed by the cached image
    everything = sorted([base.volume, kcache.volume, kept_vol])
    assert _volumes(worker, node) == everything

    world.a.deregister_image(ImageId=image)
    world.a.deregister_image(ImageId=kernel)
    _pass(worker)
    assert _volumes(worker, node) == everything, "a stopped instance still needs its image and kernel"
    assert _rows(world) == {image, kernel, kept}

    _set(world, iid, state="shutting-down", task="terminate")  # TerminateInstances, not carried out yet
    assert worker.images.run() == 0 and _volumes(worker, node) == everything, "waits for the clean-up"
    _pass(worker)  # the terminate job removes the domain and overlay and clears the task
    with world.app.db.session() as s:
        assert s.execute(select(Instance.state, Instance.task).where(Instance.id == iid)).one() == ("terminated", None)
    assert overlay.name not in _volumes(worker, node, node_layout.INSTANCES_POOL)
    _pass(worker)
    assert _volumes(worker, node) == [kept_vol], "deregistered and unused: gone; still registered: kept"
    assert _rows(world) == {kept}


def test_an_overlay_left_on_the_node_keeps_its_base(setup: tuple[World, ComputeWorker, NodeRef]) -> None:
    world, worker, node = setup
    kernel = _image(world, "gc-kernel", b"K" * 4096, kind="kernel")
    image = _image(world, "gc-disk", b"D" * 65536, kernel_id=kernel)
    base = _cache(world, worker, node, image)
    _cache(world, worker, node, kernel)
    iid = _instance(world, image, kernel, node.name)
    overlay = provision.overlay(worker.drivers.get(node), iid, base)
    world.a.deregister_image(ImageId=image)
    world.a.deregister_image(ImageId=kernel)
    _set(world, iid, state="terminated", task=None)  # terminated, but its overlay was left behind
    _pass(worker)
    assert _volumes(worker, node) == [base.volume], "the kernel went; the overlay's base stays"
    assert _rows(world) == {image}
    worker.drivers.get(node).volumes.delete_volume(overlay.pool, overlay.name)
    _pass(worker)
    assert _volumes(worker, node) == [] and _rows(world) == set()


def test_records_of_nodes_no_longer_registered_are_dropped(setup: tuple[World, ComputeWorker, NodeRef]) -> None:
    world, worker, _node = setup
    with world.app.db.session(write=True) as s:
        s.add(NodeImage(node_name="gone", image_id="ami-00000000000000001", pool=IMAGES, volume="ami-1-x", size=1,
                        etag="x", sha256="0" * 64, capacity=1, format="raw"))
    _pass(worker)
    assert _rows(world) == set()


# -- a node removed with --force and added again -----------------------------------------------------

def _spy_deletes(worker: ComputeWorker, node: NodeRef, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every volume deleted on ``node`` from now on."""
    vols = worker.drivers.get(node).volumes
    real = vols.delete_volume
    deleted: list[tuple[str, str]] = []

    def delete_volume(pool: str, name: str) -> None:
        deleted.append((pool, name))
        real(pool, name)

    monkeypatch.setattr(vols, "delete_volume", delete_volume)
    return deleted


def _node_rows(world: World) -> list[tuple[str, str, str]]:
    with world.app.db.session() as s:
        return [tuple(r) for r in s.execute(select(NodeImage.node_name, NodeImage.image_id, NodeImage.volume))]


def test_a_node_added_again_after_a_forced_removal_reuses_the_base_its_leftover_overlays_use(
        setup: tuple[World, ComputeWorker, NodeRef], monkeypatch: pytest.MonkeyPatch) -> None:
    world, worker, node = setup
    image = _image(world, "gc-disk", b"D" * 65536)
    base = _cache(world, worker, node, image)
    iid = _instance(world, image, None, node.name)
    overlay = provision.overlay(worker.drivers.get(node), iid, base)
    with world.app.db.session(write=True) as s:
        assert nodes.remove_node(s, node.name, force=True) == [iid]  # the guest and its overlay stay on the node
    assert _node_rows(world) == [], "the removed node's cache records go with it"
    with world.app.db.session(write=True) as s:
        nodes.add_node(s, name=node.name, uri=node.uri, zone=node.zone, memory_mib=4096, vcpus=2, domain_type="qemu")
    deleted = _spy_deletes(worker, node, monkeypatch)
    again = _cache(world, worker, node, image)
    assert (again.volume, again.uploaded_bytes) == (base.volume, 0), "the volume holds the image's bytes: reused"
    assert deleted == [], "nothing on the node was replaced"
    assert _node_rows(world) == [(node.name, image, base.volume)]
    drv = worker.drivers.get(node)
    assert drv.volumes.volume_info(node_layout.INSTANCES_POOL, overlay.name).backing_path == base.path


def test_an_unrecorded_volume_other_than_the_image_is_left_to_the_overlays_it_backs(
        setup: tuple[World, ComputeWorker, NodeRef], monkeypatch: pytest.MonkeyPatch) -> None:
    world, worker, node = setup
    image = _image(world, "gc-disk", b"D" * 65536)
    base = _cache(world, worker, node, image)
    drv = worker.drivers.get(node)
    with world.app.db.session(write=True) as s:  # the record is gone and the volume of its name holds other bytes
        s.execute(delete(NodeImage))
    drv.volumes.delete_volume(IMAGES, base.volume)
    drv.volumes.upload_volume(IMAGES, base.volume, io.BytesIO(b"E" * 65536), 65536)
    overlay = provision.overlay(drv, _instance(world, image, None, node.name), base)
    deleted = _spy_deletes(worker, node, monkeypatch)
    got = _cache(world, worker, node, image)
    assert got.volume != base.volume and got.uploaded_bytes == 65536, "uploaded under another name"
    assert deleted == [] and _node_rows(world) == [(node.name, image, got.volume)]
    kept = io.BytesIO()
    drv.volumes.download_volume(IMAGES, base.volume, kept)
    assert kept.getvalue() == b"E" * 65536, "the overlay's base is untouched"
    assert drv.volumes.volume_info(node_layout.INSTANCES_POOL, overlay.name).backing_path == base.path
