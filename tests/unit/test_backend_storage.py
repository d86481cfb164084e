"""Storage pools and volumes (backends.libvirt.storage) and their XML objects.

The test driver keeps pools and volumes in memory but has no upload/download; those run against
the real storage driver of a private libvirtd (skipped where it cannot start).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
import pytest

from backends import driver_for
from backends.base import AlreadyExists, DriverError, InvalidSpec, NodeUnavailable, NotFound, NotSupported
from backends.libvirt import console
from backends.libvirt.config_storage import StoragePool, StorageVolume
from backends.libvirt.driver import LibvirtDriver
from backends.libvirt.testing import PrivateLibvirtd, make_test_node_uri
from backends.volumes import CHUNK_SIZE

MiB = 1 << 20


class CountingReader(io.RawIOBase):
    """A file object over ``data`` that records the largest read asked of it."""

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self.data, self.pos, self.largest, self.fail_after = data, 0, 0, fail_after

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        self.largest = max(self.largest, n)
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise OSError("injected read error")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk


class CountingWriter(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.largest = max(self.largest, len(b))
        return super().write(b)


@pytest.mark.parametrize("obj", [
    StoragePool(name="images", path="/var/lib/ec2gw/images"),
    StorageVolume(name="a.img", capacity=10 * MiB, allocation=0, format="raw"),
    StorageVolume(name="i-1.qcow2", capacity=MiB, format="qcow2", path="/p/i-1.qcow2",
                  backing_path="/p/base.img", backing_format="raw"),
], ids=lambda o: type(o).__name__)
def test_storage_xml_round_trip(obj: StoragePool | StorageVolume) -> None:
    assert type(obj).from_xml(obj.to_xml()) == obj


def test_overlay_volume_xml() -> None:
    xml = StorageVolume(name="o", capacity=5, format="qcow2", backing_path="/b", backing_format="qcow2").to_xml()
    assert "<backingStore>" in xml and "<path>/b</path>" in xml and "<format type=\"qcow2\"/>" in xml


# --- libvirt's test driver (in process) -------------------------------------------------------

@pytest.fixture
def test_driver(tmp_path: Path) -> Iterator[LibvirtDriver]:
    drv = driver_for(make_test_node_uri(tmp_path), timeout=5)
    assert isinstance(drv, LibvirtDriver)
    yield drv
    drv.close()


def test_ensure_pool_is_idempotent(test_driver: LibvirtDriver) -> None:
    vols = test_driver.volumes
    vols.ensure_pool("images", "/var/lib/ec2gw/images")
    vols.ensure_pool("images", "/var/lib/ec2gw/images/")
    with pytest.raises(AlreadyExists, match="exists at /var/lib/ec2gw/images"):
        vols.ensure_pool("images", "/elsewhere")
    assert vols.list_volumes("images") == []
    vols.delete_pool("images")
    vols.delete_pool("images")
    with pytest.raises(NotFound):
        vols.list_volumes("images")


def test_ensure_pool_called_at_once_by_many_threads(test_driver: LibvirtDriver) -> None:
    """Volumes made at the same moment each ensure the volume pool: the one whose define comes
    second finds the pool the other made (it failed with "already exists" and lost the volume)."""
    vols = test_driver.volumes
    for round_ in range(15):
        name = f"raced{round_}"
        start = threading.Barrier(8)

        def ensure(name: str = name, start: threading.Barrier = start) -> None:
            start.wait(10)
            vols.ensure_pool(name, f"/var/lib/ec2gw/{name}")

        with ThreadPoolExecutor(8) as pool:
            for fut in [pool.submit(ensure) for _ in range(8)]:
                fut.result(30)
        assert vols.list_volumes(name) == []
        vols.delete_pool(name)


def test_overlay_and_delete_on_the_test_driver(test_driver: LibvirtDriver) -> None:
    vols = test_driver.volumes
    vols.ensure_pool("images", "/images")
    vols.ensure_pool("instances", "/instances")
    base = vols.create_volume("images", "base.img", 4 * MiB, "raw")
    assert (base.path, base.format, base.capacity) == ("/images/base.img", "raw", 4 * MiB)
    with pytest.raises(AlreadyExists):
        vols.create_volume("images", "base.img", MiB)
    over = vols.create_overlay("instances", "i-1.qcow2", "images", "base.img")
    assert (over.format, over.capacity, over.backing_path) == ("qcow2", 4 * MiB, "/images/base.img")
    bigger = vols.create_overlay("instances", "i-2.qcow2", "images", "base.img", capacity=8 * MiB)
    assert bigger.capacity == 8 * MiB
    with pytest.raises(InvalidSpec, match="smaller"):
        vols.create_overlay("instances", "i-3.qcow2", "images", "base.img", capacity=MiB)
    with pytest.raises(AlreadyExists):
        vols.create_overlay("instances", "i-1.qcow2", "images", "base.img")
    with pytest.raises(NotFound):
        vols.create_overlay("instances", "i-4.qcow2", "images", "missing.img")
    assert [v.name for v in vols.list_volumes("instances")] == ["i-1.qcow2", "i-2.qcow2"]
    vols.delete_volume("instances", "i-1.qcow2")
    vols.delete_volume("instances", "i-1.qcow2")
    vols.delete_volume("no-such-pool", "x")
    assert vols.volume_info("instances", "i-1.qcow2") is None
    assert vols.volume_info("instances", "i-2.qcow2") == bigger
    with pytest.raises(InvalidSpec):
        vols.create_volume("images", "x.vmdk", MiB, "vmdk")


def test_streams_are_not_supported_by_the_test_driver(test_driver: LibvirtDriver) -> None:
    vols = test_driver.volumes
    vols.ensure_pool("images", "/images")
    with pytest.raises(NotSupported, match="virStorageVolUpload"):
        vols.upload_volume("images", "up.img", io.BytesIO(b"x" * 100), 100)
    assert vols.list_volumes("images") == []  # the half-made volume was deleted
    vols.create_volume("images", "v.img", MiB, "raw")
    with pytest.raises(NotSupported, match="virStorageVolDownload"):
        vols.download_volume("images", "v.img", io.BytesIO())


# --- the real storage driver of a private libvirtd ---------------------------------------------

@pytest.fixture
def node(libvirtd: PrivateLibvirtd, tmp_path: Path) -> Iterator[tuple[LibvirtDriver, Path]]:
    drv = driver_for(libvirtd.uri("qemu"), "qemu", timeout=5)
    assert isinstance(drv, LibvirtDriver)
    pool_dir = tmp_path / "pool"
    drv.volumes.ensure_pool("p", str(pool_dir))
    yield drv, pool_dir
    drv.volumes.delete_pool("p")
    drv.close()


def qemu_img(*args: str) -> str:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("chunk_size", [64 * 1024, CHUNK_SIZE])
def test_upload_and_download_raw_in_bounded_chunks(node: tuple[LibvirtDriver, Path], chunk_size: int) -> None:
    drv, pool_dir = node
    data = os.urandom(3 * MiB + 12345)
    source = CountingReader(data)
    info = drv.volumes.upload_volume("p", "image.raw", source, len(data), chunk_size=chunk_size)
    assert source.largest == chunk_size
    assert (info.format, info.capacity, info.path) == ("raw", len(data), str(pool_dir / "image.raw"))
    assert (pool_dir / "image.raw").read_bytes() == data
    sink = CountingWriter()
    assert drv.volumes.download_volume("p", "image.raw", sink, chunk_size=100_000) == len(data)
    assert sink.getvalue() == data
    assert 0 < sink.largest <= 256 * 1024  # libvirt's stream packets: never the whole image
    with pytest.raises(AlreadyExists):
        drv.volumes.upload_volume("p", "image.raw", io.BytesIO(data), len(data))


def test_upload_qcow2_then_overlay(node: tuple[LibvirtDriver, Path], tmp_path: Path) -> None:
    drv, pool_dir = node
    image = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(image), "64M")
    with open(image, "rb") as f:
        base = drv.volumes.upload_volume("p", "base.qcow2", f, image.stat().st_size, expect_format="qcow2")
    assert (base.format, base.capacity) == ("qcow2", 64 * MiB)  # detected from the content
    over = drv.volumes.create_overlay("p", "i-1.qcow2", "p", "base.qcow2")
    assert over.backing_path == base.path and over.capacity == 64 * MiB
    info = qemu_img("info", "-U", str(pool_dir / "i-1.qcow2"))
    assert "file format: qcow2" in info
    assert f"backing file: {base.path}" in info and "backing file format: qcow2" in info
    drv.volumes.delete_volume("p", "i-1.qcow2")
    assert not (pool_dir / "i-1.qcow2").exists()


def test_uploads_that_are_not_what_they_claim_are_refused(node: tuple[LibvirtDriver, Path],
                                                          tmp_path: Path) -> None:
    drv, pool_dir = node
    image = tmp_path / "disguised.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(image), "1M")
    with open(image, "rb") as f, pytest.raises(InvalidSpec, match="is qcow2, not raw"):
        drv.volumes.upload_volume("p", "claims-raw.img", f, image.stat().st_size, expect_format="raw")
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"s" * 4096)
    linked = tmp_path / "linked.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(linked))
    with open(linked, "rb") as f, pytest.raises(InvalidSpec, match="backing file"):
        drv.volumes.upload_volume("p", "linked.qcow2", f, linked.stat().st_size)
    assert drv.volumes.list_volumes("p") == []
    assert sorted(p.name for p in pool_dir.iterdir()) == []


@pytest.mark.parametrize("source,error", [
    (CountingReader(b"x" * 1000), "ended after 1000 of 5000 bytes"),
    (CountingReader(b"x" * 5000, fail_after=2000), "injected read error")])
def test_a_failed_upload_leaves_no_volume(node: tuple[LibvirtDriver, Path], source: CountingReader,
                                          error: str) -> None:
    drv, pool_dir = node
    with pytest.raises((DriverError, OSError), match=error):
        drv.volumes.upload_volume("p", "broken.img", source, 5000, chunk_size=1000)
    assert drv.volumes.list_volumes("p") == []
    assert not (pool_dir / "broken.img").exists()


def test_upload_to_a_node_that_stops_answering(libvirtd: PrivateLibvirtd, tmp_path: Path) -> None:
    drv = driver_for(libvirtd.uri("qemu"), "qemu", timeout=1.0)
    drv.volumes.ensure_pool("hang", str(tmp_path / "hang"))

    class PausingReader(CountingReader):
        def read(self, n: int = -1) -> bytes:
            if self.pos >= 4096:
                libvirtd.pause()
            return super().read(n)
    try:
        started = time.monotonic()
        with pytest.raises(NodeUnavailable, match="no answer within 1 s"):
            drv.volumes.upload_volume("hang", "v.img", PausingReader(b"y" * 64 * 1024), 64 * 1024,
                                      chunk_size=4096)
        assert time.monotonic() - started < 3
    finally:
        libvirtd.resume()
    drv.volumes.delete_volume("hang", "v.img")  # the partial volume, on the reconnected node
    assert drv.volumes.list_volumes("hang") == []
    drv.volumes.delete_pool("hang")
    drv.close()


def test_console_log_tail_through_a_pool(node: tuple[LibvirtDriver, Path]) -> None:
    """A remote node's serial log is read with the volume download API from an offset."""
    drv, pool_dir = node
    log = pool_dir / "i-1.console.log"
    log.write_bytes(b"".join(b"line %04d\n" % i for i in range(1000)))
    conn = libvirt.open(drv.uri)
    try:
        assert console.tail_via_pool(conn, str(log), 20) == b"line 0998\nline 0999\n"
        assert console.tail_via_pool(conn, str(log), 10**6) == log.read_bytes()
        assert console.tail_via_pool(conn, "/not/a/pool/dir/x.log", 20) is None
    finally:
        conn.close()
