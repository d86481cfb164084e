"""The NoCloud seed an instance gets, built from the database and read back from the ISO."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from backends.seed import build_seed_iso, read_seed_iso
from ec2gw.compute import launch_context
from ec2gw.compute.placement import NodeRef
from ec2gw.config import Settings
from ec2gw.db.models import Image, Instance, KeyPair, Reservation, User
from ec2gw.db.session import Database
from ec2gw.network import pools, selection

POOL = """10.0.0.2
web1 10.40.0.10 10.40.0.1 10.40.0.255 255.255.255.0 52:54:00:40:00:10
"""


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    d.create_schema()
    with d.session(write=True) as s:
        s.add(User(id=1, name="alice", account_id="123456789012", access_key="AK", secret_key="SK"))
        s.flush()
        s.add(Image(id="ami-11111111", owner_id=1, name="disk", location="Repo/VMS/alice/disk"))
        s.add(Image(id="aki-22222222", owner_id=1, name="kernel", kind="kernel", location="Repo/VMS/alice/kernel"))
        s.add(KeyPair(id="key-1", owner_id=1, name="mykey", fingerprint="f", public_key="ssh-ed25519 AAAAC3Nz"))
        s.add(Reservation(id="r-1", owner_id=1))
        dns, entries = pools.parse_pool_file(POOL)
        pools.add_pool(s, "private", dns, entries, network_mode="isolated")
    return d


def _launch(db: Database, user_data: str | None, key: str | None = "mykey") -> str:
    inst = Instance(id="i-0123456789abcdef0", owner_id=1, reservation_id="r-1", image_id="ami-11111111",
                    kernel_id="aki-22222222", instance_type="m1.small", vcpus=1, memory_mib=256, key_name=key,
                    availability_zone="z", user_data=user_data)
    node = NodeRef("n1", "qemu:///system", "qemu", "z", ("private",))
    with db.session(write=True) as s:
        selection.assign(s, Settings(), [inst], [node])
        s.add(inst)
    return inst.id


def test_seed_has_identity_keys_user_data_and_network(db: Database) -> None:
    iid = _launch(db, base64.b64encode(b"#cloud-config\nruncmd: [touch /ok]\n").decode())
    ctx = launch_context.load(db, iid)
    assert ctx.image.location == "Repo/VMS/alice/disk" and ctx.kernel and ctx.kernel.id == "aki-22222222"
    seed = read_seed_iso(build_seed_iso(ctx.seed()))
    assert seed.label == "cidata"
    assert seed.meta_data() == {"instance-id": iid, "local-hostname": "web1",
                                "public-keys": ["ssh-ed25519 AAAAC3Nz mykey"]}
    assert seed.files["user-data"] == b"#cloud-config\nruncmd: [touch /ok]\n"
    assert seed.network_config() == {"version": 1, "config": [
        {"type": "physical", "name": "eth0", "mac_address": "52:54:00:40:00:10",
         "subnets": [{"type": "static", "address": "10.40.0.10", "netmask": "255.255.255.0",
                      "gateway": "10.40.0.1", "dns_nameservers": ["10.0.0.2"]}]},
        {"type": "nameserver", "address": ["10.0.0.2"]}]}


def test_seed_without_key_or_user_data_still_has_an_empty_user_data(db: Database) -> None:
    iid = _launch(db, None, key=None)
    seed = read_seed_iso(build_seed_iso(launch_context.load(db, iid).seed()))
    assert "public-keys" not in seed.meta_data()
    assert seed.files["user-data"] == b""


def test_a_missing_image_is_a_clear_launch_error(db: Database) -> None:
    iid = _launch(db, None)
    with db.session(write=True) as s:
        s.delete(s.get(Image, "aki-22222222"))
    with pytest.raises(launch_context.LaunchError, match="kernel image aki-22222222 no longer exists"):
        launch_context.load(db, iid)
