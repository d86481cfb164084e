"""Point-in-time copies of a running QEMU guest's disk (LibvirtDriver.backup_disk), in a private
libvirtd: the copy is a standalone qcow2 volume holding the disk's bytes, made while the guest runs.

libvirt's test driver has no virDomainBackupBegin (nor volume upload or download); the last test
checks that the driver says so instead of pretending.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import driver_for
from backends.base import (
    AlreadyExists,
    DiskSpec,
    DomainSpec,
    InvalidState,
    NotFound,
    NotSupported,
    PowerState,
)
from backends.libvirt.backup import DomainBackup
from backends.libvirt.driver import LibvirtDriver
from backends.libvirt.testing import PrivateLibvirtd, make_test_node_uri, qemu_unavailable_reason, tiny_kernel

POOL = "ec2gw"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LibvirtDriver, Path]]:
    reason = qemu_unavailable_reason() or (None if shutil.which("qemu-img") else "qemu-img is not installed")
    if reason:
        pytest.skip(f"QEMU in a private libvirtd: {reason}")
    root = tmp_path_factory.mktemp("backup")
    (root / "kernel").write_bytes(tiny_kernel(b"backup-test\r\n"))
    with PrivateLibvirtd(root / "libvirtd", virtlogd=True) as daemon:
        drv = driver_for(daemon.uri("qemu"), "qemu", timeout=30)
        assert isinstance(drv, LibvirtDriver)
        drv.volumes.ensure_pool(POOL, str(root / "pool"))
        yield drv, root
        for dom in drv.list_domains():
            drv.destroy(dom.name)
        drv.close()


def _guest(drv: LibvirtDriver, root: Path, name: str, volumes: list[str]) -> None:
    disks = [DiskSpec(pool=POOL, volume=v, format="qcow2" if v.endswith(".qcow2") else "raw") for v in volumes]
    info = drv.spawn(DomainSpec(name=name, uuid=str(uuid.uuid4()), memory_mib=32, vcpus=1,
                                kernel=str(root / "kernel"), disks=disks))
    assert info.state is PowerState.RUNNING


def _content(size: int, seed: int) -> bytes:
    block = bytes((i * 7 + seed) % 251 for i in range(4096))
    data = bytearray(size)  # zeros, with a pattern in some places: a disk with holes
    for offset in range(0, size, 5 * 65536):
        data[offset:offset + 4096] = block
    return bytes(data)


@pytest.mark.vm
def test_copy_of_an_attached_disk_of_a_running_guest(node: tuple[LibvirtDriver, Path]) -> None:
    drv, root = node
    size = 8 << 20
    (root / "data.raw").write_bytes(_content(size, 1))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(root / "data.raw"),
                    str(root / "data.qcow2")], check=True)  # as volumes are: thin qcow2
    drv.volumes.upload_volume(POOL, "root.img", io.BytesIO(_content(size, 2)), size)
    with open(root / "data.qcow2", "rb") as f:
        drv.volumes.upload_volume(POOL, "data.qcow2", f, (root / "data.qcow2").stat().st_size, expect_format="qcow2")
    _guest(drv, root, "i-backup", ["root.img", "data.qcow2"])
    seen: list[tuple[int, int]] = []
    copy = drv.backup_disk("i-backup", POOL, "data.qcow2", "data-copy.qcow2", timeout=120,
                           progress=lambda done, total: seen.append((done, total)))
    assert drv.info("i-backup").state is PowerState.RUNNING  # the guest ran on
    assert (copy.format, copy.capacity, copy.backing_path) == ("qcow2", size, None)
    pool = root / "pool"
    same = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(root / "data.raw"),
                           str(pool / "data-copy.qcow2")], capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    # the copy streams out through the storage API: a compact qcow2 (the holes stay holes)
    sink = io.BytesIO()
    sent = drv.volumes.download_volume(POOL, "data-copy.qcow2", sink)
    assert sink.getvalue()[:4] == b"QFI\xfb" and sent < size // 2, sent
    with pytest.raises(AlreadyExists):
        drv.backup_disk("i-backup", POOL, "data.qcow2", "data-copy.qcow2", timeout=60)
    with pytest.raises(NotFound, match="not a disk"):
        drv.backup_disk("i-backup", POOL, "data-copy.qcow2", "other.qcow2", timeout=60)
    assert drv.volumes.volume_info(POOL, "other.qcow2") is None
    drv.power_off("i-backup")
    with pytest.raises(InvalidState):
        drv.backup_disk("i-backup", POOL, "data.qcow2", "stopped.qcow2", timeout=60)
    drv.destroy("i-backup")
    with pytest.raises(NotFound):
        drv.backup_disk("i-backup", POOL, "data.qcow2", "gone.qcow2", timeout=60)
    for vol in ("root.img", "data.qcow2", "data-copy.qcow2"):
        drv.volumes.delete_volume(POOL, vol)
    assert not os.path.exists(pool / "stopped.qcow2")


def test_backup_document_lists_every_disk() -> None:
    xml = DomainBackup(copies={"vdb": "/p/c.qcow2"}, skipped=["vda", "vdc"]).to_xml()
    back = DomainBackup.from_xml(xml)
    assert back.copies == {"vdb": "/p/c.qcow2"} and back.skipped == ["vda", "vdc"]
    assert "mode=\"push\"" in xml and "<driver type=\"qcow2\"/>" in xml


def test_the_test_driver_cannot_copy_a_running_disk(tmp_path: Path) -> None:
    drv = driver_for(make_test_node_uri(tmp_path), "test")
    try:
        with pytest.raises(NotSupported, match="test driver"):
            drv.backup_disk("i-x", POOL, "v.qcow2", "c.qcow2")
    finally:
        drv.close()
