"""Reconciliation rules (ec2gw/compute/reconcile.py) against scripted nodes, one rule per assertion.

The nodes are fakes of the Driver interface whose answers the tests set: a list of domains, a
refusal (NodeUnavailable), or a call that hangs until released. The functional side (real
libvirtd nodes killed and restarted) is tests/functional/test_nodes_cluster.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.base import DomainInfo, DomainSpec, NodeUnavailable, PowerState
from ec2gw import ids
from ec2gw.compute import reconcile
from ec2gw.compute.node_models import UnknownDomain
from ec2gw.compute.placement import NodeRef
from ec2gw.compute.worker import ComputeWorker
from ec2gw.compute.zones import list_zones
from ec2gw.config import Settings
from ec2gw.db.models import Instance, Node, Reservation, User
from ec2gw.db.session import Database


class FakeNode:
    domain_type = "test"

    def __init__(self) -> None:
        self.domains: dict[str, PowerState] = {}
        self.down: str | None = None
        self.hang: threading.Event | None = None
        self.on_list: Callable[[], None] | None = None
        self.spawned: list[str] = []

    def list_domains(self) -> list[DomainInfo]:
        if self.hang is not None:
            self.hang.wait(30)
        if self.down:
            raise NodeUnavailable(self.down)
        if self.on_list:
            self.on_list()
        return [DomainInfo(n, st) for n, st in sorted(self.domains.items())]

    def spawn(self, spec: DomainSpec) -> DomainInfo:
        self.domains[spec.name] = PowerState.RUNNING
        self.spawned.append(spec.name)
        return DomainInfo(spec.name, PowerState.RUNNING)

    def close(self) -> None:
        pass


class FakePool:
    def __init__(self) -> None:
        self.nodes: dict[str, FakeNode] = {}

    def get(self, node: NodeRef) -> FakeNode:
        return self.nodes.setdefault(node.uri, FakeNode())

    def close(self) -> None:
        pass


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ComputeWorker, FakePool]]:
    db = Database(f"sqlite:///{tmp_path / 'r.sqlite'}")
    db.create_schema()
    with db.session(write=True) as s:
        s.add(User(id=1, name="u", account_id="000000000001", access_key="AK", secret_key="SK"))
        s.flush()
        s.add(Reservation(id="r-1", owner_id=1))
        s.add(Node(name="n1", uri="test+tcp://n1/default", vcpus=8, memory_mib=8192, zone="us-east-1a", domain_type="test"))
        s.add(Node(name="v1", uri=f"test://{tmp_path}/node.xml", vcpus=8, memory_mib=8192, zone="us-east-1a",
                   domain_type="test"))
    pool = FakePool()
    worker = ComputeWorker(Settings(data_dir=tmp_path), db, drivers=pool)  # type: ignore[arg-type]
    yield worker, pool
    worker.pool.shutdown()
    db.dispose()


def fake(pool: FakePool, worker: ComputeWorker, name: str) -> FakeNode:
    with worker.db.session() as s:
        node = s.get(Node, name)
        assert node is not None
        return pool.get(NodeRef(node.name, node.uri, "test", node.zone, ()))


def add(worker: ComputeWorker, node: str, state: str = "running", behaviour: str = "stop", task: str | None = None) -> str:
    iid = ids.new_id("i")
    with worker.db.session(write=True) as s:
        s.add(Instance(id=iid, owner_id=1, reservation_id="r-1", image_id="ami-1", instance_type="t2.micro", vcpus=1,
                       memory_mib=512, state=state, task=task, shutdown_behavior=behaviour, availability_zone="us-east-1a",
                       node_name=node, mac="52:54:00:00:00:01"))
    return iid


def row(worker: ComputeWorker, iid: str) -> Instance:
    with worker.db.session() as s:
        inst = s.get(Instance, iid)
        assert inst is not None
        return inst


def node_row(worker: ComputeWorker, name: str) -> Node:
    with worker.db.session() as s:
        n = s.get(Node, name)
        assert n is not None
        return n


def check(worker: ComputeWorker) -> None:
    reconcile.check_nodes(worker, wait=10)


def test_rules_on_a_node_that_answers(world: tuple[ComputeWorker, FakePool]) -> None:
    worker, pool = world
    node = fake(pool, worker, "n1")
    ok = add(worker, "n1")
    off_stop, off_term = add(worker, "n1"), add(worker, "n1", behaviour="terminate")
    gone_stop, gone_term = add(worker, "n1"), add(worker, "n1", behaviour="terminate")
    stopped_gone = add(worker, "n1", state="stopped")
    launching = add(worker, "n1", state="pending", task="spawn")
    busy = add(worker, "n1")
    elsewhere = add(worker, "v1")
    worker.in_flight.add(busy)
    node.domains = {ok: PowerState.RUNNING, off_stop: PowerState.SHUTOFF, off_term: PowerState.CRASHED,
                    "test": PowerState.RUNNING, elsewhere: PowerState.SHUTOFF}
    check(worker)

    assert row(worker, ok).state == "running"
    assert (row(worker, off_stop).state, row(worker, off_stop).state_reason_code) == ("stopped", "Client.InstanceInitiatedShutdown")
    assert (row(worker, off_term).state, row(worker, off_term).task) == ("shutting-down", "terminate")
    r = row(worker, gone_stop)
    assert (r.state, r.state_reason_code) == ("stopped", "Server.InternalError") and "vanished from node n1" in (r.state_reason_message or "")
    assert (row(worker, gone_term).state, row(worker, gone_term).task) == ("shutting-down", "terminate")
    assert row(worker, stopped_gone).state == "stopped"
    assert (row(worker, launching).state, row(worker, launching).task) == ("pending", "spawn"), "the worker's job decides"
    assert row(worker, busy).state == "running", "an instance the worker is busy with is left alone"
    with worker.db.session() as s:
        unknown = {u.domain: u.state for u in s.query(UnknownDomain).filter_by(node_name="n1")}
    assert unknown == {"test": "running", elsewhere: "shutoff"}, "not ours on this node: reported"
    assert node.domains["test"] is PowerState.RUNNING and node.spawned == [], "never destroyed, nothing created"

    del node.domains["test"]
    check(worker)
    with worker.db.session() as s:
        assert [u.domain for u in s.query(UnknownDomain)] == [elsewhere], "gone domains leave the report"


def test_a_paused_domain_is_recorded_and_never_taken_for_a_dead_one(world: tuple[ComputeWorker, FakePool]) -> None:
    worker, pool = world
    node = fake(pool, worker, "n1")
    paused, stopped = add(worker, "n1"), add(worker, "n1", state="stopped")
    node.domains = {paused: PowerState.PAUSED, stopped: PowerState.PAUSED}
    check(worker)
    r = row(worker, paused)
    assert (r.state, r.task, r.state_reason_code) == ("running", None, None) and r.paused_at is not None
    assert row(worker, stopped).paused_at is None, "only running instances record a pause"
    node.domains[paused] = PowerState.RUNNING
    check(worker)
    assert (row(worker, paused).state, row(worker, paused).paused_at) == ("running", None)
    node.domains[paused] = PowerState.PAUSED
    check(worker)
    node.domains[paused] = PowerState.SHUTOFF  # shut down while paused: stopped, no longer paused
    check(worker)
    assert (row(worker, paused).state, row(worker, paused).paused_at) == ("stopped", None)


def test_volatile_test_driver_node_gets_its_domains_back(world: tuple[ComputeWorker, FakePool]) -> None:
    worker, pool = world
    node = fake(pool, worker, "v1")
    gone, stopped = add(worker, "v1"), add(worker, "v1", state="stopped")
    check(worker)
    assert node.spawned == [gone] and row(worker, gone).state == "running"
    assert row(worker, stopped).state == "stopped"


def test_an_instance_that_changed_meanwhile_is_left_for_the_next_check(world: tuple[ComputeWorker, FakePool]) -> None:
    worker, pool = world
    node = fake(pool, worker, "n1")
    iid = add(worker, "n1")

    def relaunched() -> None:  # the instance changes between reading it and listing the node
        with worker.db.session(write=True) as s:
            s.query(Instance).filter_by(id=iid).update({"state_transition_reason": "touched"})
        node.on_list = None

    node.on_list = relaunched
    check(worker)
    assert row(worker, iid).state == "running"
    check(worker)
    assert row(worker, iid).state == "stopped"


def test_unreachable_node_is_impaired_not_changed(world: tuple[ComputeWorker, FakePool]) -> None:
    worker, pool = world
    node = fake(pool, worker, "n1")
    iid = add(worker, "n1")
    node.down = "connection refused"
    check(worker)
    n = node_row(worker, "n1")
    assert (n.reachable, n.last_error) == (False, "connection refused")
    assert row(worker, iid).state == "running", "a node that does not answer changes no instance"
    with worker.db.session() as s:
        assert [(z.name, z.state) for z in list_zones(s, worker.settings)] == [("us-east-1a", "impaired")]
    node.down = None
    node.domains = {iid: PowerState.RUNNING}
    check(worker)
    assert node_row(worker, "n1").reachable and row(worker, iid).state == "running"


def test_a_hung_node_never_holds_up_the_worker(world: tuple[ComputeWorker, FakePool], monkeypatch: Any) -> None:
    worker, pool = world
    monkeypatch.setattr(reconcile, "SLOW_CHECK", 0.3)
    node = fake(pool, worker, "n1")
    iid = add(worker, "n1")
    node.domains = {iid: PowerState.RUNNING}
    node.hang = threading.Event()
    t0 = time.monotonic()
    reconcile.sync_power_states(worker)
    assert time.monotonic() - t0 < 0.5, "the periodic pass does not wait for nodes"
    assert node_row(worker, "n1").reachable, "not yet: the check is young"
    time.sleep(0.4)
    reconcile.sync_power_states(worker)
    n = node_row(worker, "n1")
    assert not n.reachable and "no answer" in n.last_error
    node.hang.set()
    node.hang = None
    deadline = time.monotonic() + 10
    while not node_row(worker, "n1").reachable and time.monotonic() < deadline:
        time.sleep(0.02)
    assert node_row(worker, "n1").reachable, "the answer, when it comes, counts"
    assert row(worker, iid).state == "running"
