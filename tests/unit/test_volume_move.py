"""volume_store.move between two in-memory nodes (tests/unit/fake_node.py): the download streamed
straight into the upload when the source reports the file's length, staged otherwise; a failure on
either side leaves the volume where it was, nothing on the destination and no thread blocked."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from backends.base import DriverError
from backends.volumes import VolumeInfo
from ec2gw.compute import volume_store
from tests.unit.fake_node import FakeVolumes

POOL = volume_store.VOLUMES_POOL
VID = "vol-0123456789abcdef0"
NAME = volume_store.volume_name(VID)
DATA = b"QFI\xfb" + os.urandom((12 << 20) + 12345)  # more than the pipe holds


class Volumes(FakeVolumes):
    """The fake node, with the real upload's keyword and a download in chunks that can fail."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_download_after: int | None = None
        self.fail_upload_after: int | None = None

    def upload_volume(self, pool: str, name: str, source: Any, size: int, chunk_size: int = 1 << 20,
                      expect_format: str | None = None) -> VolumeInfo:
        if self.fail_upload_after is not None:
            source.read(self.fail_upload_after)
            raise DriverError("the destination refused the upload")
        try:
            return super().upload_volume(pool, name, source, size, chunk_size)
        except AssertionError:  # the fake's own check that the source did not end early
            raise DriverError("the source ended early") from None

    def download_volume(self, pool: str, name: str, sink: Any, chunk_size: int = 1 << 20) -> int:
        data = self.data[(pool, name)]
        for at in range(0, len(data), chunk_size):
            if self.fail_download_after is not None and at >= self.fail_download_after:
                raise DriverError("the source node stopped answering")
            sink.write(data[at:at + chunk_size])
        return len(data)


def _nodes(physical: int | None) -> tuple[Any, Any, Any]:
    src, dst = SimpleNamespace(volumes=Volumes(), domain_type="qemu"), SimpleNamespace(volumes=Volumes(), domain_type="qemu")
    src.volumes.ensure_pool(POOL, "/src")
    src.volumes.vols[(POOL, NAME)] = VolumeInfo(POOL, NAME, f"/src/{NAME}", "qcow2", 1 << 30, len(DATA),
                                                physical=physical)
    src.volumes.data[(POOL, NAME)] = DATA
    settings = SimpleNamespace(node_storage_dir="/var/lib/ec2gw", data_dir="/tmp")
    return src, dst, settings


@pytest.mark.parametrize("physical", [len(DATA), None], ids=["streamed", "staged"])
def test_a_move_copies_every_byte_and_removes_the_source(physical: int | None) -> None:
    src, dst, settings = _nodes(physical)
    threads = threading.active_count()
    moved = volume_store.move(src, dst, settings, VID)
    assert moved.name == NAME and dst.volumes.data[(POOL, NAME)] == DATA
    assert (POOL, NAME) not in src.volumes.vols
    assert threading.active_count() == threads


def test_a_download_failing_half_way_leaves_the_volume_where_it_was() -> None:
    src, dst, settings = _nodes(len(DATA))
    src.volumes.fail_download_after = 2 << 20
    with pytest.raises(DriverError, match="stopped answering"):
        volume_store.move(src, dst, settings, VID)
    assert (POOL, NAME) in src.volumes.vols and (POOL, NAME) not in dst.volumes.vols


def test_an_upload_refused_ends_the_download_too() -> None:
    src, dst, settings = _nodes(len(DATA))
    dst.volumes.fail_upload_after = 1 << 20
    threads = threading.active_count()
    with pytest.raises(DriverError, match="refused the upload"):
        volume_store.move(src, dst, settings, VID)
    assert (POOL, NAME) in src.volumes.vols and (POOL, NAME) not in dst.volumes.vols
    assert threading.active_count() == threads, "the download thread ended (its writes failed)"


@pytest.mark.parametrize(("physical", "why"), [(len(DATA) - 100, "announced"), (len(DATA) + 100, "ended early")],
                         ids=["more-than-announced", "less-than-announced"])
def test_a_download_of_another_length_than_announced_fails_the_move(physical: int, why: str) -> None:
    src, dst, settings = _nodes(physical)
    with pytest.raises(DriverError, match=why):
        volume_store.move(src, dst, settings, VID)
    assert (POOL, NAME) in src.volumes.vols and (POOL, NAME) not in dst.volumes.vols
