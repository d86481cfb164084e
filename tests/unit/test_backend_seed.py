"""NoCloud seed ISOs (backends.seed): built with pycdlib, read back, delivered as a volume."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pycdlib
import pytest

from backends import driver_for
from backends.libvirt.testing import PrivateLibvirtd, unavailable_reason
from backends.seed import LABEL, SeedData, build_seed_iso, read_seed_iso

NETWORK = {"version": 2, "ethernets": {"eth0": {"match": {"macaddress": "52:54:00:00:00:01"},
                                                "addresses": ["10.99.0.42/24"], "gateway4": "10.99.0.1"}}}
USER_DATA = b"#cloud-config\nruncmd:\n  - [sh, -c, 'echo \xc3\xa9t\xc3\xa9 > /tmp/x']\n"


def seed(**overrides: object) -> SeedData:
    fields: dict[str, object] = {"instance_id": "i-0123456789abcdef0", "hostname": "ip-10-99-0-42",
                                     "public_keys": ["ssh-ed25519 AAAAC3Nza alice@example", "ssh-rsa AAAAB3 bob"],
                                     "user_data": USER_DATA, "network_config": NETWORK}
    fields.update(overrides)
    return SeedData(**fields)  # type: ignore[arg-type]


def test_round_trip() -> None:
    contents = read_seed_iso(build_seed_iso(seed()))
    assert contents.label == LABEL == "cidata"
    assert sorted(contents.files) == ["meta-data", "network-config", "user-data"]
    assert contents.meta_data() == {"instance-id": "i-0123456789abcdef0", "local-hostname": "ip-10-99-0-42",
                                    "public-keys": ["ssh-ed25519 AAAAC3Nza alice@example", "ssh-rsa AAAAB3 bob"]}
    assert contents.files["user-data"] == USER_DATA  # byte for byte
    assert contents.network_config() == NETWORK


def test_meta_data_and_network_config_are_yaml_for_cloud_init() -> None:
    yaml = pytest.importorskip("yaml")
    contents = read_seed_iso(build_seed_iso(seed(extra_meta_data={"availability-zone": "zone-a: 1"})))
    meta = yaml.safe_load(contents.files["meta-data"])
    assert meta["instance-id"] == "i-0123456789abcdef0" and meta["availability-zone"] == "zone-a: 1"
    assert yaml.safe_load(contents.files["network-config"]) == NETWORK


def test_minimal_seed() -> None:
    contents = read_seed_iso(build_seed_iso(seed(public_keys=[], user_data=None, network_config=None)))
    assert sorted(contents.files) == ["meta-data", "user-data"]
    assert contents.files["user-data"] == b""  # NoCloud needs the file even when empty
    assert "public-keys" not in contents.meta_data()
    assert contents.network_config() is None
    assert read_seed_iso(build_seed_iso(seed(user_data="#!/bin/sh\necho hi\n"))).files["user-data"] == \
        b"#!/bin/sh\necho hi\n"


def test_joliet_names_for_other_readers() -> None:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(build_seed_iso(seed())))
    try:
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, joliet_path="/meta-data")
        assert b'"instance-id": "i-0123456789abcdef0"' in out.getvalue()
        assert iso.has_rock_ridge() and iso.has_joliet()
    finally:
        iso.close()


def test_blkid_sees_the_cidata_label(tmp_path: Path) -> None:
    if shutil.which("blkid") is None:
        pytest.skip("blkid is not installed")
    image = tmp_path / "seed.iso"
    image.write_bytes(build_seed_iso(seed()))
    out = subprocess.run(["blkid", "-p", "-o", "export", str(image)], capture_output=True, text=True,
                         check=True).stdout
    assert "LABEL=cidata" in out.splitlines() and "TYPE=iso9660" in out.splitlines()


def test_seed_delivered_as_a_volume(tmp_path: Path) -> None:
    """Upload to a node's pool and download again: what the guest's cdrom will hold."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"private libvirtd: {reason}")
    image = build_seed_iso(seed())
    with PrivateLibvirtd(tmp_path / "libvirtd") as daemon:
        drv = driver_for(daemon.uri("qemu"), "qemu", timeout=10)
        drv.volumes.ensure_pool("seeds", str(tmp_path / "seeds"))
        info = drv.volumes.upload_volume("seeds", "i-0123456789abcdef0.iso", io.BytesIO(image), len(image))
        assert info.format == "iso" and info.capacity == len(image)  # probed; attach it as raw
        back = io.BytesIO()
        drv.volumes.download_volume("seeds", "i-0123456789abcdef0.iso", back)
        assert read_seed_iso(back.getvalue()).meta_data()["local-hostname"] == "ip-10-99-0-42"
        drv.volumes.delete_pool("seeds")
        drv.close()
