"""CreateImage through the API with the compute worker on libvirt's test driver (no disk to copy:
the new image's object is a copy of the source image's object). Real disks: tests/functional/test_vm_*."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from ec2gw.compute.image_models import ImageTask
from ec2gw.compute.worker import ComputeWorker
from storage import images as store
from tests.unit.ec2_inprocess import World, error_of, make_world


@pytest.fixture()
def world(tmp_path: Path) -> World:
    return make_world(tmp_path / "data", default_node_uri=f"test://{tmp_path / 'node.xml'}")


@pytest.fixture()
def worker(world: World, tmp_path: Path) -> ComputeWorker:
    from backends.libvirt.testing import make_test_node_uri

    make_test_node_uri(tmp_path)
    return ComputeWorker(world.app.settings, world.app.db, cumulus=world.app.cumulus)


def settle(worker: ComputeWorker, passes: int = 60) -> None:
    """Run worker passes until no instance task and no image task is left (at most ``passes``)."""
    from ec2gw.db.models import Instance

    for _ in range(passes):
        worker.run_once()
        assert worker.wait_idle(10)
        with worker.db.session() as s:
            if not s.query(ImageTask).count() and not s.query(Instance).filter(Instance.task.is_not(None)).count():
                return
    raise AssertionError(f"the worker still has work after {passes} passes")


def image_of(world: World, data: bytes) -> str:
    store.put_file(world.app, world.user_id("alice"), "Repo", "VMS/alice/base", io.BytesIO(data), len(data))
    return str(world.a.register_image(Name="base", ImageLocation="Repo/VMS/alice/base")["ImageId"])


def state(world: World, iid: str) -> str:
    return str(world.a.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"])


def test_create_image_stops_saves_and_restarts_a_running_instance(world: World, worker: ComputeWorker) -> None:
    ami = image_of(world, b"QFI\xfb" + b"\0" * 4092)
    iid = world.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    settle(worker)
    assert state(world, iid) == "running"
    new = world.a.create_image(InstanceId=iid, Name="saved", Description="from a running one",
                               TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "k", "Value": "v"}]}])["ImageId"]
    img = world.a.describe_images(ImageIds=[new])["Images"][0]
    assert img["State"] == "pending" and state(world, iid) == "stopping"
    assert img["Tags"] == [{"Key": "k", "Value": "v"}]
    settle(worker)
    img = world.a.describe_images(ImageIds=[new])["Images"][0]
    assert img["State"] == "available" and img["Name"] == "saved"
    assert state(world, iid) == "running"  # stopped for the copy, started again
    handle, size = store.open_object(world.app, "Repo", "VMS/alice/saved")
    with handle:
        assert size == 4096 and handle.read(4) == b"QFI\xfb"
    with world.app.db.session() as s:
        assert s.query(ImageTask).count() == 0
    again = world.a.run_instances(ImageId=new, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    settle(worker)
    assert state(world, again) == "running"


def test_no_reboot_and_stopped_instances_stay_as_they_are(world: World, worker: ComputeWorker) -> None:
    ami = image_of(world, b"raw disk" * 100)
    iid = world.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    settle(worker)
    new = world.a.create_image(InstanceId=iid, Name="live", NoReboot=True)["ImageId"]
    assert state(world, iid) == "running"
    settle(worker)
    assert world.a.describe_images(ImageIds=[new])["Images"][0]["State"] == "available"
    world.a.stop_instances(InstanceIds=[iid])
    settle(worker)
    new2 = world.a.create_image(InstanceId=iid, Name="cold")["ImageId"]
    settle(worker)
    assert world.a.describe_images(ImageIds=[new2])["Images"][0]["State"] == "available"
    assert state(world, iid) == "stopped"


def test_refusals(world: World, worker: ComputeWorker) -> None:
    ami = image_of(world, b"d" * 512)
    iid = world.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    settle(worker)
    assert error_of(world.a.create_image, InstanceId=iid, Name="base")[0] == "InvalidAMIName.Duplicate"
    assert error_of(world.a.create_image, InstanceId=iid, Name="bad*name")[0] == "InvalidAMIName.Malformed"
    assert error_of(world.b.create_image, InstanceId=iid, Name="bobs")[0] == "InvalidInstanceID.NotFound"
    assert error_of(world.a.create_image, InstanceId=iid, Name="dry", DryRun=True)[0] == "DryRunOperation"
    world.a.create_image(InstanceId=iid, Name="one", NoReboot=True)
    assert error_of(world.a.create_image, InstanceId=iid, Name="two")[0] == "IncorrectInstanceState"
    world.a.terminate_instances(InstanceIds=[iid])
    settle(worker)
    assert error_of(world.a.create_image, InstanceId=iid, Name="three")[0] == "IncorrectInstanceState"


def test_terminating_before_the_copy_fails_the_image(world: World, worker: ComputeWorker) -> None:
    ami = image_of(world, b"d" * 512)
    iid = world.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    settle(worker)
    new = world.a.create_image(InstanceId=iid, Name="doomed")["ImageId"]
    world.a.terminate_instances(InstanceIds=[iid])
    settle(worker)
    img: dict[str, Any] = world.a.describe_images(ImageIds=[new])["Images"][0]
    assert img["State"] == "failed"
    assert "terminated before its disk was copied" in img["StateReason"]["Message"]


def test_starting_before_the_copy_fails_the_image_and_names_are_checked_in_cumulus(
        world: World, worker: ComputeWorker) -> None:
    ami = image_of(world, b"d" * 512)
    iid = world.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    settle(worker)
    world.a.stop_instances(InstanceIds=[iid])
    settle(worker)
    store.put_file(world.app, world.user_id("alice"), "Repo", "VMS/alice/taken", io.BytesIO(b"x"), 1)
    assert error_of(world.a.create_image, InstanceId=iid, Name="taken")[0] == "InvalidAMIName.Duplicate"
    new = world.a.create_image(InstanceId=iid, Name="raced")["ImageId"]
    world.a.start_instances(InstanceIds=[iid])  # before the worker copied the disk
    settle(worker)
    img = world.a.describe_images(ImageIds=[new])["Images"][0]
    assert img["State"] == "failed" and "started again before its disk was copied" in img["StateReason"]["Message"]
    assert state(world, iid) == "running"
