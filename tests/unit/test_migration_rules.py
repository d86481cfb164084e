"""compute/migration.py: where a move may go, and the room it reserves on its destination.

The destination's room counts the moving instance from the moment the move is recorded until it
is done or failed, so a launch meanwhile cannot take it (compute/placement.usage).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from ec2gw.compute import migration, placement
from ec2gw.compute.migration_models import InstanceMigration
from ec2gw.config import Settings
from ec2gw.db.models import Instance, Node
from ec2gw.db.session import Database
from ec2gw.db.volume_models import Volume
from tests.unit.test_placement import _db, add_instances, add_node


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = _db(f"sqlite:///{tmp_path / 'm.sqlite'}")
    for name in ("a", "b"):
        add_node(d, name, vcpus=4, memory=4096)
    with d.session(write=True) as s:
        add_instances(s, [placement.NodeRef("a", "test+tcp://a/default", "test", "us-east-1a", ())], 1, 3072,
                      state="stopped")
    yield d
    d.dispose()


def _iid(db: Database) -> str:
    with db.session() as s:
        return str(s.query(Instance.id).scalar())


def test_a_recorded_move_reserves_its_room_until_it_ends(db: Database) -> None:
    iid = _iid(db)
    with db.session(write=True) as s:
        req = migration.request(s, Settings(), iid)
    assert (req.source, req.destination, req.kind) == ("a", "b", "cold")
    with db.session(write=True) as s:
        assert s.get(Instance, iid).task == "migrate"
        assert placement.usage(s, ["a", "b"]) == {"a": (1, 3072), "b": (1, 3072)}
        assert placement.place(s, Settings(), None, 1, 1, 2048) == [], "1024 MiB left on each node"
        assert "busy (migrate)" in str(pytest.raises(migration.MigrationError, migration.request, s, Settings(), iid).value)
        assert migration.active_moves(s, [iid]) == {iid: "b"}
    with db.session(write=True) as s:  # what the worker records when the move is done
        s.execute(update(InstanceMigration).values(state="done"))
        s.execute(update(Instance).values(node_name="b", task=None))
        assert placement.usage(s, ["a", "b"]) == {"b": (1, 3072)}
        assert migration.active_moves(s, [iid]) == {}


def test_refusals(db: Database) -> None:
    iid = _iid(db)

    def refused(to: str | None = None) -> str:
        with db.session(write=True) as s:
            with pytest.raises(migration.MigrationError) as exc:
                migration.request(s, Settings(), iid, to)
            return str(exc.value)

    assert "already runs on node a" in refused("a")
    add_node(db, "c", zone="us-east-1b")
    assert "node c is in zone us-east-1b" in refused("c")
    with db.session(write=True) as s:
        s.execute(update(Node).where(Node.name == "b").values(memory_mib=2048))
    assert "node b has no room" in refused("b") and "no other node can take" in refused()
    with db.session(write=True) as s:
        s.execute(update(Node).where(Node.name == "b").values(memory_mib=4096, domain_type="qemu"))
    assert "moves only between nodes of the same domain type" in refused("b")
    with db.session(write=True) as s:
        s.execute(update(Instance).values(hibernated=True))
    assert "is hibernated" in refused("b")
    with db.session(write=True) as s:
        s.execute(update(Instance).values(hibernated=False, state="pending"))
    assert "is pending" in refused("b")
    with db.session(write=True) as s:
        s.execute(update(Instance).values(state="running", node_name=None))
    assert "implicit node 'local'" in refused()


def _volume(db: Database, iid: str, vid: str, size: int, **kw: object) -> None:
    with db.session(write=True) as s:
        values: dict[str, object] = {"node_name": "a", "state": "in-use", "instance_id": iid, "attach_state": "attached",
                                     "storage": "pool", **kw}
        s.add(Volume(id=vid, owner_id=s.get(Instance, iid).owner_id, availability_zone="us-east-1a", size_gib=size,
                     **values))


def test_volumes_move_with_their_instance_where_there_is_room_for_them(db: Database) -> None:
    """An EBS root volume and a data volume go with the instance: the destination needs room for
    them in its volume storage, whether named or chosen; one being attached, detached or modified
    keeps the instance where it is until that is done."""
    iid = _iid(db)
    _volume(db, iid, "vol-0000000000000000a", 3, device="/dev/sda1", target="vda", is_root=True)
    _volume(db, iid, "vol-0000000000000000b", 2, device="/dev/sdf", target="vdb")
    add_node(db, "c", vcpus=4, memory=4096)
    with db.session(write=True) as s:
        s.execute(update(Node).where(Node.name == "b").values(volume_gb=4))
        s.execute(update(Node).where(Node.name == "c").values(volume_gb=5))
    with db.session(write=True) as s:
        with pytest.raises(migration.MigrationError) as exc:
            migration.request(s, Settings(), iid, "b")
    assert "no room for the 5 GiB of" in str(exc.value) and "--volume-gb" in str(exc.value)
    with db.session(write=True) as s:
        s.execute(update(Volume).where(Volume.id == "vol-0000000000000000b").values(task="detach",
                                                                                 attach_state="detaching"))
    with db.session(write=True) as s:
        with pytest.raises(migration.MigrationError) as exc:
            migration.request(s, Settings(), iid, "c")
    assert "volume vol-0000000000000000b is busy (detach)" in str(exc.value)
    with db.session(write=True) as s:
        s.execute(update(Volume).values(task=None, attach_state="attached"))
    with db.session(write=True) as s:  # b lacks volume room, c has it: the chosen node is c
        req = migration.request(s, Settings(), iid)
    assert (req.destination, req.kind) == ("c", "cold")


def test_an_overlay_root_volume_counts_only_when_it_stays(db: Database) -> None:
    """A root volume that is the instance's overlay needs volume room only when it outlives the
    instance (DeleteOnTermination false), as volume storage counts it."""
    iid = _iid(db)
    _volume(db, iid, "vol-0000000000000000a", 8, device="/dev/sda1", target="vda", is_root=True, storage="overlay",
            delete_on_termination=True)
    with db.session(write=True) as s:
        s.execute(update(Node).where(Node.name == "b").values(volume_gb=4))
    with db.session(write=True) as s:
        assert migration.request(s, Settings(), iid, "b").destination == "b"
    with db.session(write=True) as s:
        s.execute(update(InstanceMigration).values(state="failed"))  # its room is free again
        s.execute(update(Instance).values(task=None))
        s.execute(update(Volume).values(delete_on_termination=False))
    with db.session(write=True) as s:
        with pytest.raises(migration.MigrationError) as exc:
            migration.request(s, Settings(), iid, "b")
    assert "no room for the 8 GiB" in str(exc.value)
