"""The compute worker's elastic-address pass (compute/elastic_nics.py) on test-driver nodes.

Moves: the NIC travels with the domain, so the record of where it is follows a finished move
(compute/moves.py), and an unplug waits while the move runs; otherwise a disassociation after a
move would unplug the NIC from the source, where the domain no longer is, and leave the guest
holding the address on its new node. One address that cannot be brought in line does not hold up
the others."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

from ec2gw.compute import elastic_nics, moves
from ec2gw.compute.migration_models import InstanceMigration
from ec2gw.config import Settings
from ec2gw.db.models import Instance
from ec2gw.db.session import Database
from ec2gw.network.models import Address, Pool
from tests.unit.test_migration_rules import _iid
from tests.unit.test_migration_rules import db as db  # noqa: F401  (the fixture: nodes a and b, an instance on a)


class _Drivers:
    def get(self, _node: Any) -> Any:
        return SimpleNamespace(domain_type="test")  # no node call is made for test-driver nodes


def _worker(db: Database) -> Any:
    return SimpleNamespace(db=db, settings=Settings(), drivers=_Drivers())


@pytest.fixture
def plugged(db: Database) -> Iterator[tuple[Database, str, int]]:  # noqa: F811
    """An elastic address whose NIC is in the instance's domain on node a, and a move to b."""
    iid = _iid(db)
    with db.session(write=True) as s:
        s.add(Pool(name="pub", network_mode="isolated", role="public"))
        s.flush()
        s.add(Address(pool="pub", hostname="pub0", ip="198.51.100.5", mac="52:54:00:00:00:05", gateway="198.51.100.1",
                      netmask="255.255.255.0", broadcast="198.51.100.255",
                      allocation_id="eipalloc-0123456789abcdef0", owner_id=1, instance_id=iid,
                      association_id="eipassoc-0123456789abcdef0", plugged_into=iid, plugged_node="a"))
        mig = InstanceMigration(instance_id=iid, source="a", destination="b", kind="cold", state="running")
        s.add(mig)
        s.execute(update(Instance).where(Instance.id == iid).values(task="migrate"))
        s.flush()
        mig_id = mig.id
    yield db, iid, mig_id


def _where(db: Database) -> tuple[str | None, str | None]:
    with db.session() as s:
        row = s.query(Address).one()
        return row.plugged_into, row.plugged_node


def _end_move(db: Database, iid: str, mig_id: int, state: str) -> None:
    moves._record(_worker(db), mig_id, SimpleNamespace(instance_id=iid), state, None, 1.0)


def test_a_finished_move_records_the_nic_on_the_destination(plugged: tuple[Database, str, int]) -> None:
    db, iid, mig_id = plugged
    _end_move(db, iid, mig_id, "done")
    assert _where(db) == (iid, "b")
    with db.session() as s:
        inst = s.get(Instance, iid)
        assert inst is not None and (inst.node_name, inst.task) == ("b", None)


def test_a_failed_move_leaves_it_where_it_was(plugged: tuple[Database, str, int]) -> None:
    db, iid, mig_id = plugged
    _end_move(db, iid, mig_id, "failed")
    assert _where(db) == (iid, "a")


def test_a_disassociation_during_a_move_is_carried_out_after_it(plugged: tuple[Database, str, int]) -> None:
    db, iid, mig_id = plugged
    with db.session(write=True) as s:  # DisassociateAddress while the move runs
        s.execute(update(Address).values(instance_id=None, association_id=None))
    worker = _worker(db)
    assert elastic_nics.sync(worker) == 0 and _where(db) == (iid, "a"), "no unplug while the domain moves"
    _end_move(db, iid, mig_id, "done")
    assert elastic_nics.sync(worker) == 1 and _where(db) == (None, None)


def test_one_address_in_trouble_does_not_hold_up_the_others(plugged: tuple[Database, str, int]) -> None:
    db, iid, mig_id = plugged
    _end_move(db, iid, mig_id, "done")
    with db.session(write=True) as s:  # a pool whose entries share no gateway: its network cannot be made
        s.add(Pool(name="broken", network_mode="isolated", role="public"))
        s.flush()
        s.add(Address(id=0, pool="broken", hostname="br0", ip="192.0.2.7", mac="52:54:00:00:00:07",
                      allocation_id="eipalloc-0123456789abcdef1", owner_id=1, instance_id=iid,
                      association_id="eipassoc-0123456789abcdef1"))
        s.execute(update(Address).where(Address.pool == "pub").values(instance_id=None, association_id=None))
    worker = _worker(db)
    assert [r.pool for r in elastic_nics.out_of_line(worker)] == ["broken", "pub"]  # the broken one first
    assert elastic_nics.sync(worker) == 1  # the broken one fails, the other is unplugged
    with db.session() as s:
        rows = {r.pool: (r.plugged_into, r.plugged_node) for r in s.query(Address)}
    assert rows == {"pub": (None, None), "broken": (None, None)}
