"""Leases: asked for with lease:hours, shown as lease:end, renewed with CreateTags, reaped exactly once."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select, update

from ec2gw.compute import leases
from ec2gw.db.models import Instance
from ec2gw.db.session import Database
from tests.pg import postgres_cluster, postgres_url  # noqa: F401  (fixtures)
from tests.unit.ec2_inprocess import World, error_of, make_world


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> World:
    """One world for the module (setting one up is slow); every test makes its own instances."""
    return make_world(tmp_path_factory.mktemp("leases"), lease_default_hours=24.0, lease_max_hours=48.0)


_names = itertools.count()


def lease_tags(hours: str) -> list[dict[str, Any]]:
    return [{"ResourceType": "instance", "Tags": [{"Key": "lease:hours", "Value": hours}]}]


def tags_of(client: Any, iid: str) -> dict[str, str]:
    inst = client.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return {t["Key"]: t["Value"] for t in inst.get("Tags") or []}


def lease_end(client: Any, iid: str) -> datetime:
    return datetime.strptime(tags_of(client, iid)["lease:end"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def close_to(when: datetime, hours: float) -> bool:
    return abs((when - datetime.now(UTC)).total_seconds() - hours * 3600) < 60


def launch(w: World, **kw: Any) -> str:
    ami = w.add_image("alice", f"disk-{next(_names)}")
    return str(w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1, **kw)["Instances"][0]["InstanceId"])


def test_default_and_asked_leases_show_as_lease_end(w: World) -> None:
    default = launch(w)
    assert close_to(lease_end(w.a, default), 24)
    asked = launch(w, TagSpecifications=lease_tags("2.5"))
    assert close_to(lease_end(w.a, asked), 2.5)
    assert tags_of(w.a, asked)["lease:hours"] == "2.5"
    ami = w.add_image("alice", f"disk-{next(_names)}")
    resp = w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=lease_tags("1"))
    assert any(t["Key"] == "lease:end" for t in resp["Instances"][0]["Tags"])  # already in RunInstances' answer


@pytest.mark.parametrize("hours, words", [("49", "maximum lease is 48 hours"), ("0", "above 0"), ("-3", "above 0"),
                                           ("soon", "above 0"), ("inf", "above 0")])
def test_bad_leases_are_refused_and_create_nothing(w: World, hours: str, words: str) -> None:
    ami = w.add_image("alice", f"disk-{next(_names)}")
    code, message = error_of(w.a.run_instances, ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=lease_tags(hours))
    assert code == "InvalidParameterValue" and words in message
    with w.app.db.session() as s:
        assert s.scalar(select(func.count(Instance.id)).where(Instance.image_id == ami)) == 0


def test_lease_end_cannot_be_set_by_clients(w: World) -> None:
    ami = w.add_image("alice", f"disk-{next(_names)}")
    spec = [{"ResourceType": "instance", "Tags": [{"Key": "lease:end", "Value": "2999-01-01T00:00:00Z"}]}]
    assert error_of(w.a.run_instances, ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=spec)[0] == "InvalidParameterValue"
    iid = launch(w)
    before = lease_end(w.a, iid)
    code, message = error_of(w.a.create_tags, Resources=[iid], Tags=[{"Key": "lease:end", "Value": "2999-01-01T00:00:00Z"}])
    assert code == "InvalidParameterValue" and "lease:hours" in message
    assert lease_end(w.a, iid) == before


def test_create_tags_renews_up_to_the_maximum(w: World) -> None:
    iid = launch(w, TagSpecifications=lease_tags("1"))
    w.a.create_tags(Resources=[iid], Tags=[{"Key": "lease:hours", "Value": "48"}])
    assert close_to(lease_end(w.a, iid), 48) and tags_of(w.a, iid)["lease:hours"] == "48"
    code, message = error_of(w.a.create_tags, Resources=[iid], Tags=[{"Key": "lease:hours", "Value": "60"}, {"Key": "x"}])
    assert code == "InvalidParameterValue" and "48" in message
    assert close_to(lease_end(w.a, iid), 48) and "x" not in tags_of(w.a, iid)  # all or nothing
    w.a.create_tags(Resources=[iid], Tags=[{"Key": "lease:hours", "Value": "0.5"}])  # shortening is allowed
    assert close_to(lease_end(w.a, iid), 0.5)
    # other users cannot touch the lease
    assert error_of(w.b.create_tags, Resources=[iid], Tags=[{"Key": "lease:hours", "Value": "1"}])[0] == "InvalidInstanceID.NotFound"


def test_finished_instances_cannot_be_renewed(w: World) -> None:
    iid = launch(w)
    w.a.terminate_instances(InstanceIds=[iid])
    code, message = error_of(w.a.create_tags, Resources=[iid], Tags=[{"Key": "lease:hours", "Value": "1"}])
    assert code == "IncorrectInstanceState" and "shutting-down" in message


def _expire(w: World, *iids: str, ago: float = 60) -> None:
    with w.app.db.session(write=True) as s:
        s.execute(update(Instance).where(Instance.id.in_(iids)).values(lease_end=datetime.now(UTC) - timedelta(seconds=ago)))


def test_expired_leases_terminate_once_with_a_reason(w: World) -> None:
    expired, live, stopped = launch(w), launch(w), launch(w)
    with w.app.db.session(write=True) as s:
        s.execute(update(Instance).where(Instance.id == stopped).values(state="stopped", task=None, disable_api_termination=True))
    _expire(w, expired, stopped)
    assert sorted(leases.expire_leases(w.app.db)) == sorted([expired, stopped])
    assert leases.expire_leases(w.app.db) == []  # nothing twice
    for iid in (expired, stopped):
        inst = w.a.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        assert inst["State"]["Name"] == "shutting-down"
        assert inst["StateReason"]["Code"] == "Client.LeaseExpired"
        assert "lease ended" in inst["StateReason"]["Message"]
        assert inst["StateTransitionReason"].startswith("Lease expired")
    assert w.a.describe_instances(InstanceIds=[live])["Reservations"][0]["Instances"][0]["State"]["Name"] == "pending"
    with w.app.db.session() as s:
        assert s.get(Instance, expired).task == "terminate"  # type: ignore[union-attr]


def test_a_renewal_that_lands_first_wins(w: World) -> None:
    iid = launch(w)
    _expire(w, iid)
    w.a.create_tags(Resources=[iid], Tags=[{"Key": "lease:hours", "Value": "1"}])
    assert leases.expire_leases(w.app.db) == []


def test_concurrent_reapers_terminate_each_instance_exactly_once(w: World) -> None:
    iids = [launch(w) for _ in range(30)]
    _expire(w, *iids)
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def reaper() -> None:
        db = Database(w.app.settings.db_url)  # its own engine, as another service process has
        try:
            barrier.wait(10)
            got: list[str] = []
            for _ in range(3):
                got += leases.expire_leases(db, limit=7)
            results.append(got)
        except BaseException as exc:  # noqa: BLE001  (the main thread reports it)
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=reaper) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 4
    reaped = [i for r in results for i in r]
    assert sorted(reaped) == sorted(iids)  # every one, none twice


def test_the_worker_hook_runs_every_lease_check_seconds(w: World) -> None:
    worker = SimpleNamespace(settings=SimpleNamespace(lease_check_seconds=3600), db=w.app.db)
    first, second = launch(w), launch(w)
    _expire(w, first)
    assert leases.reap_expired(worker) == [first]
    _expire(w, second)
    assert leases.reap_expired(worker) == []  # not yet time for another pass
    assert leases.reap_expired(SimpleNamespace(settings=worker.settings, db=w.app.db)) == [second]


@pytest.mark.slow
def test_concurrent_reapers_exactly_once_postgresql(postgres_url: str) -> None:  # noqa: F811
    """PostgreSQL runs the reapers' transactions truly at once (SQLite serialises writers)."""
    from ec2gw import ids
    from ec2gw.db.models import Reservation, User

    setup = Database(postgres_url)
    setup.create_schema()
    ended = datetime.now(UTC) - timedelta(minutes=1)
    with setup.session(write=True) as s:
        s.add(User(id=1, name="u", account_id="000000000001", access_key="AK", secret_key="SK"))
        s.flush()
        s.add(Reservation(id="r-00000001", owner_id=1))
        s.flush()
        iids = [ids.new_id("i") for _ in range(60)]
        s.add_all(Instance(id=i, owner_id=1, reservation_id="r-00000001", image_id="ami-1", instance_type="t", vcpus=1,
                           memory_mib=1, state="running", availability_zone="z", lease_end=ended) for i in iids)
    setup.dispose()
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def reaper() -> None:
        db = Database(postgres_url)
        try:
            barrier.wait(30)
            results.append(leases.expire_leases(db) + leases.expire_leases(db))
        except BaseException as exc:  # noqa: BLE001  (the main thread reports it)
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=reaper) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 6
    assert sorted(i for r in results for i in r) == sorted(iids)
