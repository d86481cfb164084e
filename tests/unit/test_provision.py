"""Provisioning on a QEMU node (in memory): image cache, overlay, seed, console log, NIC, DHCP entry,
and the clean-up. The same steps against a real libvirtd run in tests/functional/test_vm_*."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backends.seed import read_seed_iso
from ec2gw.compute import node_layout, provision
from ec2gw.compute.filter_sync import FilterSync
from ec2gw.compute.placement import NodeRef
from ec2gw.config import Settings
from ec2gw.db.models import Instance, Reservation
from ec2gw.network import pools, selection
from storage import images as store
from tests.unit.ec2_inprocess import World, make_world
from tests.unit.fake_node import FakeNode

NODE = NodeRef("n1", "qemu+tcp://10.0.0.9/system", "qemu", "z", ("private",))
POOL = "none\nvm1 10.70.0.10 10.70.0.1 10.70.0.255 255.255.255.0\n"


@dataclass
class Job:
    instance_id: str
    task: str
    node: NodeRef
    vcpus: int = 1
    memory_mib: int = 256
    mac: str | None = None
    force: bool = False


class Drivers:
    def __init__(self, drv: FakeNode) -> None:
        self.drv = drv

    def get(self, node: NodeRef) -> FakeNode:
        return self.drv


@dataclass
class Worker:
    settings: Settings
    db: Any
    drivers: Drivers
    cumulus: Any = None

    def __post_init__(self) -> None:
        self.filters = FilterSync(self)  # type: ignore[arg-type]


@pytest.fixture()
def world(tmp_path: Path) -> World:
    w = make_world(tmp_path / "data", node_storage_dir="/srv/ec2gw")
    with w.app.db.session(write=True) as s:
        dns, entries = pools.parse_pool_file(POOL)
        pools.add_pool(s, "private", dns, entries, network_mode="isolated")
    return w


def _upload(world: World, name: str, data: bytes, kind: str = "machine", **kw: Any) -> str:
    store.put_file(world.app, world.user_id("alice"), "Repo", f"VMS/alice/{name}", io.BytesIO(data), len(data))
    from ec2gw.images import Registration, register

    return register(world.app, world.user_id("alice"), Registration(name=name, location=f"Repo/VMS/alice/{name}",
                                                                    kind=kind, **kw)).id


def _instance(world: World, image: str, kernel: str | None = None) -> str:
    inst = Instance(id="i-00000000000000001", owner_id=world.user_id("alice"), reservation_id="r-1", image_id=image,
                    kernel_id=kernel, instance_type="m1.small", vcpus=1, memory_mib=256, availability_zone="z")
    with world.app.db.session(write=True) as s:
        s.add(Reservation(id="r-1", owner_id=world.user_id("alice")))
        selection.assign(s, world.app.settings, [inst], [NODE])
        s.add(inst)
    return inst.id


def test_prepare_then_cleanup(world: World) -> None:
    kernel = _upload(world, "vmlinuz", b"K" * 3000, kind="kernel")
    image = _upload(world, "disk", b"D" * 8192, kernel_id=kernel)
    iid = _instance(world, image, kernel)
    node = FakeNode()
    worker = Worker(world.app.settings, world.app.db, cumulus=world.app.cumulus, drivers=Drivers(node))
    job = Job(iid, "spawn", NODE)
    spec = provision.prepare(worker, job)  # type: ignore[arg-type]
    vols = node.volumes
    assert set(vols.pools) == {node_layout.IMAGES_POOL, node_layout.INSTANCES_POOL, node_layout.CONSOLE_POOL}
    root, seed = spec.disks
    assert (root.pool, root.volume, root.format) == ("ec2gw-instances", f"{iid}.qcow2", "qcow2")
    assert vols.vols[("ec2gw-instances", f"{iid}.qcow2")].backing_path.startswith("/srv/ec2gw/images/" + image)  # type: ignore[union-attr]
    assert (seed.device, seed.bus, seed.volume) == ("cdrom", "ide", f"{iid}-seed.iso")
    assert read_seed_iso(vols.data[("ec2gw-instances", f"{iid}-seed.iso")]).meta_data()["instance-id"] == iid
    assert spec.kernel is not None and spec.kernel.startswith("/srv/ec2gw/images/" + kernel)
    assert spec.initrd is None and spec.cmdline == "console=ttyS0 root=/dev/vda"
    assert spec.console_log == f"/srv/ec2gw/console/{iid}.log"
    assert ("ec2gw-console", f"{iid}.log") in vols.vols
    (nic,) = spec.nics
    net = node.networks.nets["ec2gw-private"]
    assert (net.mode, net.address, nic.network) == ("isolated", "10.70.0.1", "ec2gw-private")
    assert node.networks.hosts["ec2gw-private"][nic.mac].ip == "10.70.0.10"
    # the NIC goes through the instance's filter (anti-spoofing for its address, its groups), defined first
    assert (nic.filter, nic.filter_params) == (f"ec2gw-i-{iid}", {"IP": "10.70.0.10"})
    mine = node.filters.filters[f"ec2gw-i-{iid}"]
    (group,) = [r for r in mine.refs if r.startswith("ec2gw-sg-")]
    assert mine.refs[0] == "clean-traffic" and group in node.filters.filters
    uploaded = vols.uploaded

    vols.data[("ec2gw-instances", f"{iid}.qcow2")] = b"the guest wrote here"
    again = provision.prepare(worker, job)  # type: ignore[arg-type]  # the domain vanished: spawned again
    assert again.disks[0].volume == root.volume and vols.uploaded == uploaded + len(vols.data[(
        "ec2gw-instances", f"{iid}-seed.iso")])  # no image upload, only a fresh seed
    assert vols.data[("ec2gw-instances", f"{iid}.qcow2")] == b"the guest wrote here"  # the disk is kept

    provision.cleanup(worker, job)  # type: ignore[arg-type]
    assert [v for (p, v) in vols.vols if p != node_layout.IMAGES_POOL] == []
    assert node.networks.hosts["ec2gw-private"] == {}
    assert len([v for (p, v) in vols.vols if p == node_layout.IMAGES_POOL]) == 2  # the cache stays
    provision.cleanup(worker, job)  # type: ignore[arg-type]  # again: nothing left to remove is fine


def test_whole_disk_image_boots_from_its_disk(world: World) -> None:
    iid = _instance(world, _upload(world, "whole", b"\xeb\x3c" + b"\0" * 510))
    node = FakeNode()
    spec = provision.prepare(Worker(world.app.settings, world.app.db, cumulus=world.app.cumulus, drivers=Drivers(node)), Job(iid, "spawn", NODE))  # type: ignore[arg-type]
    assert spec.kernel is None and spec.initrd is None and spec.cmdline is None


def test_a_deleted_image_object_fails_with_its_reason(world: World) -> None:
    iid = _instance(world, _upload(world, "gone", b"G" * 100))
    from sqlalchemy import delete

    from storage.models import Object

    with world.app.db.session(write=True) as s:  # deleted behind the image's back
        s.execute(delete(Object).where(Object.key == "VMS/alice/gone"))
    with pytest.raises(provision.ProvisionFailed, match="Cumulus object Repo/VMS/alice/gone is missing"):
        provision.prepare(Worker(world.app.settings, world.app.db, cumulus=world.app.cumulus, drivers=Drivers(FakeNode())), Job(iid, "spawn", NODE))  # type: ignore[arg-type]
