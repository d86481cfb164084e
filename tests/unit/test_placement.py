"""Placement: capacity, spreading, overcommit, zones, pools, and no overcommit under concurrency.

The concurrency tests run against SQLite (BEGIN IMMEDIATE) and a real PostgreSQL server (row
locks): many threads, each with its own connection, place and insert at once; no node may end up
over its capacity and every slot that fits must be used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ec2gw import ids
from ec2gw.compute import placement
from ec2gw.config import Settings
from ec2gw.db.models import Instance, Node, Reservation, User
from ec2gw.db.session import Database
from tests.pg import postgres_cluster, postgres_url  # noqa: F401  (fixtures)
from tests.unit.ec2_inprocess import error_of, make_world


def _db(url: str) -> Database:
    db = Database(url)
    db.create_schema()
    with db.session(write=True) as s:
        s.add(User(id=1, name="u", account_id="000000000001", access_key="AK", secret_key="SK"))
    return db


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = _db(f"sqlite:///{tmp_path / 'p.sqlite'}")
    yield d
    d.dispose()


@pytest.fixture
def pgdb(postgres_url: str) -> Iterator[Database]:  # noqa: F811
    d = _db(postgres_url)
    yield d
    d.dispose()


def add_node(db: Database, name: str, vcpus: int = 4, memory: int = 4096, zone: str = "us-east-1a", pools: str = "",
             active: bool = True, reachable: bool = True) -> None:
    with db.session(write=True) as s:
        s.add(Node(name=name, uri=f"test+tcp://{name}/default", vcpus=vcpus, memory_mib=memory, zone=zone, pools=pools,
                   domain_type="test", active=active, reachable=reachable))


def add_instances(s: Any, slots: list[placement.NodeRef], vcpus: int, memory: int, state: str = "pending") -> None:
    rid = ids.new_id("r")
    s.add(Reservation(id=rid, owner_id=1))
    s.flush()
    for node in slots:
        s.add(Instance(id=ids.new_id("i"), owner_id=1, reservation_id=rid, image_id="ami-1", instance_type="t",
                       vcpus=vcpus, memory_mib=memory, state=state, availability_zone=node.zone, node_name=node.name))


def place(db: Database, count: int, vcpus: int = 1, memory: int = 1024, zone: str | None = None,
          settings: Settings | None = None, pools: list[str] | None = None, insert: bool = True) -> list[str]:
    with db.session(write=True) as s:
        slots = placement.place(s, settings or Settings(), zone, count, vcpus, memory, pools)
        if insert:
            add_instances(s, slots, vcpus, memory)
    return [n.name for n in slots]


def test_implicit_local_node_when_none_registered(db: Database) -> None:
    assert place(db, 3) == ["local"] * 3
    assert place(db, 2, zone="us-east-1a") == ["local"] * 2
    assert place(db, 2, zone="us-east-1b") == []
    add_node(db, "n1", active=False)
    assert place(db, 1) == [], "a registered (even inactive) node replaces the implicit one"


def test_capacity_vcpus_and_memory(db: Database) -> None:
    add_node(db, "n1", vcpus=4, memory=4096)
    assert place(db, 10, vcpus=1, memory=1024) == ["n1"] * 4
    assert place(db, 1, vcpus=1, memory=1) == []
    add_node(db, "n2", vcpus=2, memory=65536)
    assert place(db, 5, vcpus=1, memory=512) == ["n2", "n2"], "vCPUs limit n2 although memory is plenty"


def test_spreads_by_load_over_nodes_of_any_size(db: Database) -> None:
    add_node(db, "a", vcpus=4, memory=4096)
    add_node(db, "b", vcpus=4, memory=4096)
    add_node(db, "c", vcpus=8, memory=8192)
    got = place(db, 8)
    assert sorted(got) == ["a", "a", "b", "b", "c", "c", "c", "c"]
    assert got[:3] == ["a", "b", "c"], "one per node before any node gets a second"


def test_overcommit_ratios_from_settings(db: Database) -> None:
    add_node(db, "n1", vcpus=2, memory=4096)
    settings = Settings()
    assert place(db, 10, vcpus=1, memory=512, settings=settings) == ["n1"] * 2
    settings.cpu_overcommit = 4.0  # type: ignore[attr-defined]
    assert len(place(db, 10, vcpus=1, memory=512, settings=settings)) == 6, "8 vCPUs now; memory allows 8 in all"
    settings.cpu_overcommit, settings.memory_overcommit = 8.0, 1.5  # type: ignore[attr-defined]
    assert len(place(db, 10, vcpus=1, memory=512, settings=settings)) == 4, "16 vCPUs, 6144 MiB: 12 x 512 in all"
    settings.cpu_overcommit = -1  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="must be positive"):
        place(db, 1, settings=settings)


def test_zone_pools_inactive_unreachable(db: Database) -> None:
    add_node(db, "a1", zone="us-east-1a", pools="public")
    add_node(db, "b1", zone="us-east-1b", pools="public,private")
    add_node(db, "b2", zone="us-east-1b", active=False)
    add_node(db, "b3", zone="us-east-1b", reachable=False)
    assert set(place(db, 2, zone="us-east-1b")) == {"b1"}
    assert place(db, 1, pools=["private"]) == ["b1"]
    assert sorted(place(db, 9, pools=["public"], insert=False)) == ["a1"] * 4 + ["b1"], "b1 has room for one more"
    assert place(db, 1, zone="us-east-1a", pools=["private"]) == []
    assert place(db, 1, zone="us-east-1c") == []


def test_stopped_instances_hold_their_share_terminated_free_it(db: Database) -> None:
    add_node(db, "n1", vcpus=2, memory=2048)
    assert place(db, 2) == ["n1", "n1"]
    with db.session(write=True) as s:
        rows = list(s.query(Instance).order_by(Instance.id))
        rows[0].state, rows[1].state = "stopped", "terminated"
    assert place(db, 2) == ["n1"]


def test_sqlite_placement_needs_the_write_lock(db: Database) -> None:
    add_node(db, "n1")
    with db.session() as s, pytest.raises(RuntimeError, match="write"):
        placement.place(s, Settings(), None, 1, 1, 1024)


def _race(db: Database, threads: int, per_thread: int, hold: float) -> list[str]:
    """Many launches at once, each in its own transaction; returns every node slot given out."""
    got: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def launch() -> None:
        try:
            barrier.wait(10)
            for _ in range(per_thread):
                with db.session(write=True) as s:
                    slots = placement.place(s, Settings(), None, 1, 1, 1024)
                    time.sleep(hold)  # widen the window between placing and committing
                    add_instances(s, slots, 1, 1024)
                with lock:
                    got.extend(n.name for n in slots)
        except Exception as exc:  # noqa: BLE001  (reported below, in the test's thread)
            errors.append(exc)

    workers = [threading.Thread(target=launch) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert not any(t.is_alive() for t in workers), "a launch hung"
    assert not errors, errors
    return got


def _assert_within_capacity(db: Database) -> dict[str, int]:
    with db.session() as s:
        nodes = {n.name: n for n in s.query(Node)}
        use = placement.usage(s, nodes)
    for name, (cpu, mem) in use.items():
        assert cpu <= nodes[name].vcpus and mem <= nodes[name].memory_mib, f"{name} over capacity: {cpu} vCPUs, {mem} MiB"
    return {name: cpu for name, (cpu, _) in use.items()}


def test_concurrent_launches_never_overcommit_sqlite(db: Database) -> None:
    for name in ("a", "b", "c"):
        add_node(db, name, vcpus=3, memory=8192)
    got = _race(db, threads=6, per_thread=3, hold=0.005)
    assert len(got) == 9
    assert _assert_within_capacity(db) == {"a": 3, "b": 3, "c": 3}


@pytest.mark.slow
def test_concurrent_launches_never_overcommit_postgresql(pgdb: Database) -> None:
    for name in ("a", "b", "c"):
        add_node(pgdb, name, vcpus=4, memory=8192)
    got = _race(pgdb, threads=8, per_thread=3, hold=0.02)
    assert len(got) == 12, "every slot that fits is used: retries find the room others left"
    assert _assert_within_capacity(pgdb) == {"a": 4, "b": 4, "c": 4}


@pytest.mark.slow
def test_postgresql_locks_only_the_chosen_nodes(pgdb: Database) -> None:
    """A launch holding zone a's node does not block one placing in zone b."""
    add_node(pgdb, "a1", zone="us-east-1a")
    add_node(pgdb, "b1", zone="us-east-1b")
    with pgdb.session(write=True) as s1:
        assert [n.name for n in placement.place(s1, Settings(), "us-east-1a", 1, 1, 1024)] == ["a1"]
        t0 = time.monotonic()
        with pgdb.session(write=True) as s2:
            s2.connection().exec_driver_sql("SET LOCAL lock_timeout = '3s'")
            assert [n.name for n in placement.place(s2, Settings(), "us-east-1b", 1, 1, 1024)] == ["b1"]
        assert time.monotonic() - t0 < 2


# -- RunInstances ----------------------------------------------------------------------------------

def test_run_instances_min_count_and_partial_launch(tmp_path: Path) -> None:
    from backends.libvirt.testing import make_test_node_uri
    from ec2gw.compute import nodes
    from ec2gw.network import pools

    w = make_world(tmp_path)
    ami = w.add_image("alice", "img", public=True)
    with w.app.db.session(write=True) as s:
        entries = [pools.Entry(f"h{i}", f"10.5.0.{i}", "none", "none", "none", None) for i in range(1, 30)]
        pools.add_pool(s, "small", "none", entries, network_mode="none")
        for i, zone in enumerate(("us-east-1a", "us-east-1b")):
            d = tmp_path / f"node{i}"
            d.mkdir()
            nodes.add_node(s, name=f"n{i}", uri=make_test_node_uri(d), zone=zone, memory_mib=4096, vcpus=4,
                           pools=["small"])
    code, msg = error_of(w.a.run_instances, ImageId=ami, MinCount=9, MaxCount=9, InstanceType="t2.micro")
    assert code == "InsufficientInstanceCapacity" and "ask for fewer" in msg
    with w.app.db.session() as s:
        assert s.query(Instance).count() == 0, "a refused launch leaves nothing behind"
    resp = w.a.run_instances(ImageId=ami, MinCount=2, MaxCount=6, InstanceType="t2.micro",
                             Placement={"AvailabilityZone": "us-east-1b"})
    assert len(resp["Instances"]) == 4, "partial launch: 4 fit in us-east-1b, at least MinCount=2"
    assert {i["Placement"]["AvailabilityZone"] for i in resp["Instances"]} == {"us-east-1b"}
    code, _ = error_of(w.a.run_instances, ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro",
                       Placement={"AvailabilityZone": "us-east-1b"})
    assert code == "InsufficientInstanceCapacity"
    resp = w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=10, InstanceType="t2.micro")
    assert len(resp["Instances"]) == 4 and {i["Placement"]["AvailabilityZone"] for i in resp["Instances"]} == {"us-east-1a"}
