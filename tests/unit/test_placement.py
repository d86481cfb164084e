"""Placement: capacity, spreading, overcommit, zones, pools, and no overcommit under concurrency.

The concurrency tests run against SQLite (BEGIN IMMEDIATE) and a real PostgreSQL server (row
locks): many threads, each with its own connection, place and insert at once; no node may end up
over its capacity and every slot that fits must be used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ec2gw import ids
from ec2gw.compute import placement
from ec2gw.config import Settings
from ec2gw.db.models import Instance, Node, Reservation, User
from ec2gw.db.session import Database
from tests.pg import postgres_cluster, postgres_url  # noqa: F401  (fixtures)
from tests.unit.ec2_inprocess import at_once, error_of, make_world


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


@pytest.mark.slow
def test_concurrent_starts_cannot_overcommit_stopped_instances_keep_their_share_postgresql(
        tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    """StartInstances takes no capacity: a stopped instance's domain stays defined on its node and
    its share stays counted, so a node full of stopped instances refuses launches, and starting
    them all at once, in parallel transactions, keeps the node within its capacity."""
    from backends.libvirt.testing import make_test_node_uri
    from ec2gw.compute import nodes

    w = make_world(tmp_path / "data", database_url=postgres_url)
    ami = w.add_image("alice", "img", public=True)
    (tmp_path / "n1").mkdir()
    with w.app.db.session(write=True) as s:
        nodes.add_node(s, name="n1", uri=make_test_node_uri(tmp_path / "n1"), zone="us-east-1a", memory_mib=2048, vcpus=2)
    launched = w.a.run_instances(ImageId=ami, MinCount=2, MaxCount=2, InstanceType="t2.micro")["Instances"]
    ids_ = [i["InstanceId"] for i in launched]
    with w.app.db.session(write=True) as s:  # no compute worker here: as it leaves them once stopped
        for inst in s.query(Instance).filter(Instance.id.in_(ids_)):
            inst.state, inst.task = "stopped", None
    code, _ = error_of(w.b.run_instances, ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro")
    assert code == "InsufficientInstanceCapacity", "the stopped instances hold the node"
    def start(iid: str) -> Callable[[Any], str]:
        return lambda client: client.start_instances(InstanceIds=[iid])["StartingInstances"][0]["CurrentState"]["Name"]

    outcomes = at_once(w, w.alice, [start(iid) for iid in ids_], timeout=60)
    assert outcomes == ["pending", "pending"]
    assert _assert_within_capacity(w.app.db) == {"n1": 2}
    w.app.db.dispose()


# -- ModifyInstanceAttribute: a stopped instance changing type keeps its node within capacity -----

def _node_world(tmp_path: Path, vcpus: int, memory: int, **settings: Any) -> Any:
    """An in-process world with one registered test-driver node n1 of the given capacity."""
    from backends.libvirt.testing import make_test_node_uri
    from ec2gw.compute import nodes

    w = make_world(tmp_path / "data", **settings)
    (tmp_path / "n1").mkdir()
    with w.app.db.session(write=True) as s:
        nodes.add_node(s, name="n1", uri=make_test_node_uri(tmp_path / "n1"), zone="us-east-1a", memory_mib=memory,
                       vcpus=vcpus)
    return w


def _stop(w: Any, iid: str) -> None:
    with w.app.db.session(write=True) as s:  # no compute worker here: as it leaves the instance once stopped
        inst = s.get(Instance, iid)
        inst.state, inst.task = "stopped", None


def _size(w: Any, iid: str) -> tuple[str, int, int]:
    with w.app.db.session() as s:
        inst = s.get(Instance, iid)
        return inst.instance_type, inst.vcpus, inst.memory_mib


def test_resizing_a_stopped_instance_needs_room_on_its_node(tmp_path: Path) -> None:
    w = _node_world(tmp_path, vcpus=2, memory=8192)
    ami = w.add_image("alice", "img", public=True)
    stopped, running = (i["InstanceId"] for i in w.a.run_instances(
        ImageId=ami, MinCount=2, MaxCount=2, InstanceType="t2.micro")["Instances"])
    _stop(w, stopped)

    # t2.medium wants 2 vCPUs: 1 more than the stopped t2.micro holds, and the running one holds the other
    code, msg = error_of(w.a.modify_instance_attribute, InstanceId=stopped, InstanceType={"Value": "t2.medium"})
    assert code == "InsufficientInstanceCapacity"
    assert stopped in msg and "t2.medium" in msg and "smaller type" in msg and "n1" not in msg, msg
    code, _ = error_of(w.a.modify_instance_attribute, InstanceId=stopped, Attribute="instanceType", Value="m1.large")
    assert code == "InsufficientInstanceCapacity", "the Attribute/Value form is checked too"
    assert _size(w, stopped) == ("t2.micro", 1, 1024), "a refused resize leaves the instance as it was"
    assert w.a.describe_instance_attribute(InstanceId=stopped, Attribute="instanceType")["InstanceType"]["Value"] == "t2.micro"
    code, _ = error_of(w.a.modify_instance_attribute, InstanceId=stopped, InstanceType={"Value": "t2.medium"}, DryRun=True)
    assert code == "InsufficientInstanceCapacity", "as RunInstances: capacity is checked before DryRun answers"

    # t2.small grows memory only (1024 -> 2048 MiB of 8192): there is room
    w.a.modify_instance_attribute(InstanceId=stopped, InstanceType={"Value": "t2.small"})
    assert _size(w, stopped) == ("t2.small", 1, 2048)

    # once the running one is gone its vCPU is free, and t2.medium fits
    w.a.terminate_instances(InstanceIds=[running])
    with w.app.db.session(write=True) as s:
        s.get(Instance, running).state = "terminated"
    w.a.modify_instance_attribute(InstanceId=stopped, Attribute="instanceType", Value="t2.medium")
    assert _size(w, stopped) == ("t2.medium", 2, 4096)
    assert _assert_within_capacity(w.app.db) == {"n1": 2}

    # the node is full now: a launch is refused, and starting the resized instance keeps it within capacity
    code, _ = error_of(w.a.run_instances, ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro")
    assert code == "InsufficientInstanceCapacity"
    w.a.start_instances(InstanceIds=[stopped])
    assert _assert_within_capacity(w.app.db) == {"n1": 2}


def test_shrinking_a_stopped_instance_is_always_allowed(tmp_path: Path) -> None:
    from ec2gw.compute import nodes

    w = _node_world(tmp_path, vcpus=4, memory=16384)
    ami = w.add_image("alice", "img", public=True)
    iid = w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="m1.xlarge")["Instances"][0]["InstanceId"]
    _stop(w, iid)
    with w.app.db.session(write=True) as s:  # the administrator lowered the capacity below what is there
        nodes.update_node(s, "n1", vcpus=1, memory_mib=512)
    w.a.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "m1.large"})
    assert _size(w, iid) == ("m1.large", 2, 7680)
    w.a.modify_instance_attribute(InstanceId=iid, Attribute="instanceType", Value="t2.micro")
    assert _size(w, iid) == ("t2.micro", 1, 1024)
    w.a.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t2.micro"})  # no change at all
    code, _ = error_of(w.a.modify_instance_attribute, InstanceId=iid, InstanceType={"Value": "t2.small"})
    assert code == "InsufficientInstanceCapacity", "growing memory on the over-full node is refused"
    assert _size(w, iid) == ("t2.micro", 1, 1024)


def test_resizing_counts_overcommit_and_the_implicit_node_has_no_limit(tmp_path: Path) -> None:
    w = _node_world(tmp_path / "over", vcpus=1, memory=2048, cpu_overcommit=2.0)
    ami = w.add_image("alice", "img", public=True)
    iid = w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro")["Instances"][0]["InstanceId"]
    _stop(w, iid)
    w.a.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t2.small"})
    code, _ = error_of(w.a.modify_instance_attribute, InstanceId=iid, InstanceType={"Value": "t2.medium"})
    assert code == "InsufficientInstanceCapacity", "2 vCPUs fit the overcommitted 1, 4096 MiB do not fit 2048"
    assert _size(w, iid) == ("t2.small", 1, 2048)

    # no node registered: the implicit node `local` takes any size, as before
    w = make_world(tmp_path / "local")
    iid = w.add_instance("alice", state="stopped")
    w.a.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "m1.xlarge"})
    assert _size(w, iid) == ("m1.xlarge", 4, 15360)


@pytest.mark.slow
def test_resize_and_launch_share_the_node_lock_postgresql(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    """On PostgreSQL a resize takes the node's row lock as a launch does: whichever comes second
    waits for the first to commit, then sees its instance (or its new size) and finds no room."""
    from werkzeug.test import Client

    from tests.unit.ec2_inprocess import InProcess

    w = _node_world(tmp_path, vcpus=2, memory=8192, database_url=postgres_url)
    ami = w.add_image("alice", "img", public=True)
    iid = w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro")["Instances"][0]["InstanceId"]
    _stop(w, iid)

    def in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
        outcome: list[Any] = []

        def run() -> None:
            client = InProcess(w.app, Client(w.app.wsgi)).ec2(w.alice)
            try:
                outcome.append(call(client))
            except Exception as exc:  # noqa: BLE001  (the outcome is what we look at)
                outcome.append(getattr(exc, "response", {}).get("Error", {}).get("Code", repr(exc)))

        t = threading.Thread(target=run)
        t.start()
        return t, outcome

    # a launch holds n1 (placed, its instance inserted, not committed yet): the resize waits for it
    with w.app.db.session(write=True) as s:
        slots = placement.place(s, w.app.settings, None, 1, 1, 1024)
        assert [n.name for n in slots] == ["n1"]
        add_instances(s, slots, 1, 1024)
        s.flush()
        t, outcome = in_thread(lambda c: c.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t2.medium"}))
        time.sleep(1.0)
        assert t.is_alive() and not outcome, f"the resize did not wait for the launch holding the node: {outcome}"
    t.join(30)
    assert not t.is_alive(), "the resize hung"
    assert outcome == ["InsufficientInstanceCapacity"]
    assert _size(w, iid) == ("t2.micro", 1, 1024)
    assert _assert_within_capacity(w.app.db) == {"n1": 2}

    # the launched instance goes: now a resize holds n1 (grown, not committed yet) and a launch waits for it
    with w.app.db.session(write=True) as s:
        s.query(Instance).filter(Instance.id != iid).update({"state": "terminated"})
    with w.app.db.session(write=True) as s:
        inst = s.get(Instance, iid)
        assert placement.room_to_grow(s, w.app.settings, inst.node_name, 1, 3072)
        inst.instance_type, inst.vcpus, inst.memory_mib = "t2.medium", 2, 4096
        s.flush()
        t, outcome = in_thread(lambda c: c.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro"))
        time.sleep(1.0)
        assert t.is_alive() and not outcome, f"the launch did not wait for the resize holding the node: {outcome}"
    t.join(30)
    assert not t.is_alive(), "the launch hung"
    assert outcome == ["InsufficientInstanceCapacity"]
    assert _assert_within_capacity(w.app.db) == {"n1": 2}
    w.app.db.dispose()
