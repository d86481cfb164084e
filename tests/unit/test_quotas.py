"""Quotas: user over group over defaults; RunInstances refusals that create nothing; Cumulus bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ec2gw import quotas
from ec2gw.db.models import Instance, Reservation
from ec2gw.errors import ServiceError
from storage import usage
from storage.access import check_storage_quota
from tests.pg import postgres_cluster, postgres_url  # noqa: F401  (fixtures)
from tests.unit.ec2_inprocess import World, at_once, error_of, make_world


@pytest.fixture
def w(tmp_path: Path) -> World:
    return make_world(tmp_path)


def set_quota(w: World, target: str, **values: object) -> None:
    with w.app.db.session(write=True) as s:
        quotas.set_quota(s, target, **values)  # type: ignore[arg-type]


def limits(w: World, name: str) -> quotas.Limits:
    from ec2gw import accounts

    with w.app.db.session() as s:
        u = accounts.get_user(s, name)
        return quotas.limits_for(s, w.app.settings, u.name, u.group)


def row_counts(w: World) -> tuple[int, int]:
    with w.app.db.session() as s:
        return s.scalar(select(func.count(Instance.id))) or 0, s.scalar(select(func.count(Reservation.id))) or 0


def test_user_quota_beats_group_quota_beats_defaults(w: World) -> None:
    assert limits(w, "alice") == quotas.Limits(20000, None, None, None, 5)  # settings' defaults
    set_quota(w, "users", vcpus=8, memory_mib=4096, storage_bytes=quotas.GIB)  # alice and bob are in group users
    set_quota(w, "alice", vcpus=2, storage_bytes=quotas.UNLIMITED)
    assert limits(w, "alice") == quotas.Limits(20000, 2, 4096, None, 5)
    assert limits(w, "bob") == quotas.Limits(20000, 8, 4096, quotas.GIB, 5)
    set_quota(w, "alice", vcpus="default")  # falls back to the group again
    assert limits(w, "alice").vcpus == 8


def test_settings_defaults_apply_without_quotas(tmp_path: Path) -> None:
    w = make_world(tmp_path, max_instances_per_user=5, quota_vcpus=3, quota_memory_mb=2048, quota_storage_gb=0.5)
    assert limits(w, "alice") == quotas.Limits(5, 3, 2048, quotas.GIB // 2, 5)


def test_targets_resolve_to_users_or_groups(w: World) -> None:
    with w.app.db.session(write=True) as s:
        assert quotas.resolve_target(s, "alice") == ("user", "alice")
        assert quotas.resolve_target(s, "users") == ("group", "users")
        assert quotas.resolve_target(s, "group:newcomers") == ("group", "newcomers")
        with pytest.raises(quotas.QuotaError, match="no user or group named 'ghost'"):
            quotas.resolve_target(s, "ghost")
        with pytest.raises(quotas.QuotaError, match="no user named 'ghost'"):
            quotas.resolve_target(s, "user:ghost")
    w.ip.make_user("staff", group="alice")  # a group named like a user
    with w.app.db.session() as s, pytest.raises(quotas.QuotaError, match="both a user and a group"):
        quotas.resolve_target(s, "alice")


@pytest.mark.parametrize("text, scale, expected", [
    ("4", 1, 4), ("0", 1, 0), ("unlimited", 1, -1), ("default", 1, "default"), (None, 1, None),
    ("0.5", quotas.GIB, quotas.GIB // 2),
])
def test_parse_limit(text: str | None, scale: int, expected: object) -> None:
    assert quotas.parse_limit(text, "x", scale) == expected


@pytest.mark.parametrize("text", ["-1", "lots", "1.5", "nan"])
def test_parse_limit_refuses(text: str) -> None:
    with pytest.raises(quotas.QuotaError, match="--x"):
        quotas.parse_limit(text, "x")


def test_instance_quota_refuses_and_creates_nothing(w: World) -> None:
    ami = w.add_image("alice", "disk")
    set_quota(w, "alice", instances=2)
    code, message = error_of(w.a.run_instances, ImageId=ami, MinCount=3, MaxCount=3)
    assert code == "InstanceLimitExceeded" and "allows running 2 instances" in message
    assert row_counts(w) == (0, 0)
    got = w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=5)["Instances"]  # as many as allowed
    assert len(got) == 2
    assert error_of(w.a.run_instances, ImageId=ami, MinCount=1, MaxCount=1)[0] == "InstanceLimitExceeded"
    attrs = w.a.describe_account_attributes(AttributeNames=["max-instances"])["AccountAttributes"]
    assert attrs[0]["AttributeValues"][0]["AttributeValue"] == "2"
    # bob is not limited by alice's quota
    assert len(w.b.run_instances(ImageId=w.add_image("bob", "disk"), MinCount=3, MaxCount=3)["Instances"]) == 3


def test_vcpu_and_memory_quotas_give_vcpu_limit_exceeded(w: World) -> None:
    ami = w.add_image("alice", "disk")
    set_quota(w, "users", vcpus=4)
    code, message = error_of(w.a.run_instances, ImageId=ami, MinCount=3, MaxCount=3, InstanceType="t2.medium")
    assert code == "VcpuLimitExceeded" and "6 vCPUs" in message and "of 4" in message
    assert row_counts(w) == (0, 0)
    assert len(w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=9, InstanceType="t2.medium")["Instances"]) == 2
    assert error_of(w.a.run_instances, ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro")[0] == "VcpuLimitExceeded"
    set_quota(w, "bob", memory_mib=3000)
    bob_ami = w.add_image("bob", "disk")
    code, message = error_of(w.b.run_instances, ImageId=bob_ami, MinCount=2, MaxCount=2, InstanceType="t2.small")
    assert code == "VcpuLimitExceeded" and "memory" in message and "4096 MiB" in message
    assert len(w.b.run_instances(ImageId=bob_ami, MinCount=1, MaxCount=2, InstanceType="t2.small")["Instances"]) == 1


def test_terminated_instances_free_their_quota(w: World) -> None:
    ami = w.add_image("alice", "disk")
    set_quota(w, "alice", instances=1, vcpus=1)
    iid = w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro")["Instances"][0]["InstanceId"]
    assert error_of(w.a.run_instances, ImageId=ami, MinCount=1, MaxCount=1)[0] == "InstanceLimitExceeded"
    with w.app.db.session(write=True) as s:
        s.get(Instance, iid).state = "terminated"  # type: ignore[union-attr]
    assert w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro")["Instances"]


def _set_state(w: World, iid: str, state: str) -> None:
    with w.app.db.session(write=True) as s:  # no compute worker here: as it leaves the instance
        inst = s.get(Instance, iid)
        inst.state, inst.task = state, None  # type: ignore[union-attr]


def _size(w: World, iid: str) -> tuple[str, int, int]:
    with w.app.db.session() as s:
        inst = s.get(Instance, iid)
        return inst.instance_type, inst.vcpus, inst.memory_mib  # type: ignore[union-attr]


def _stopped_and_running(w: World, instance_type: str) -> tuple[str, str]:
    ami = w.add_image("alice", "disk")
    stopped, running = (i["InstanceId"] for i in w.a.run_instances(
        ImageId=ami, MinCount=2, MaxCount=2, InstanceType=instance_type)["Instances"])
    _set_state(w, stopped, "stopped")
    return stopped, running


def test_resizing_a_stopped_instance_must_fit_the_vcpu_quota(w: World) -> None:
    """Stopped instances count in the quota, so growing one is checked as a launch is."""
    set_quota(w, "alice", vcpus=2)
    stopped, running = _stopped_and_running(w, "t2.micro")  # 1 vCPU each: 2 of 2 in use

    code, message = error_of(w.a.modify_instance_attribute, InstanceId=stopped, InstanceType={"Value": "t2.medium"})
    assert code == "VcpuLimitExceeded", message
    assert stopped in message and "t2.medium" in message and "1 more vCPUs" in message and "2 of 2" in message
    assert "Terminate other instances" in message and "larger quota" in message
    code, _ = error_of(w.a.modify_instance_attribute, InstanceId=stopped, Attribute="instanceType", Value="m1.large")
    assert code == "VcpuLimitExceeded", "the Attribute/Value form is checked too"
    code, _ = error_of(w.a.modify_instance_attribute, InstanceId=stopped, InstanceType={"Value": "t2.medium"}, DryRun=True)
    assert code == "VcpuLimitExceeded", "as RunInstances: the quota is checked before DryRun answers"
    assert _size(w, stopped) == ("t2.micro", 1, 1024), "a refused resize leaves the instance as it was"
    assert w.a.describe_instance_attribute(InstanceId=stopped, Attribute="instanceType")["InstanceType"]["Value"] == "t2.micro"

    # more memory, no more vCPUs: within the quota
    w.a.modify_instance_attribute(InstanceId=stopped, InstanceType={"Value": "t2.small"})
    assert _size(w, stopped) == ("t2.small", 1, 2048)

    # bob's instances are not alice's, and terminating her other one frees its vCPU
    assert w.b.run_instances(ImageId=w.add_image("bob", "disk"), MinCount=2, MaxCount=2, InstanceType="t2.medium")
    _set_state(w, running, "terminated")
    w.a.modify_instance_attribute(InstanceId=stopped, InstanceType={"Value": "t2.medium"})
    assert _size(w, stopped) == ("t2.medium", 2, 4096)
    with w.app.db.session() as s:
        assert quotas.report(s, w.app.settings, "alice")["usage"]["vcpus"] == 2


def test_resizing_a_stopped_instance_must_fit_the_memory_quota(w: World) -> None:
    set_quota(w, "users", memory_mib=2048)  # alice's group
    stopped, running = _stopped_and_running(w, "t2.micro")  # 1024 MiB each: 2048 of 2048 in use

    code, message = error_of(w.a.modify_instance_attribute, InstanceId=stopped, InstanceType={"Value": "t2.small"})
    assert code == "VcpuLimitExceeded", message
    assert "memory" in message and stopped in message and "1024 more MiB" in message and "2048 of 2048" in message
    assert _size(w, stopped) == ("t2.micro", 1, 1024)

    _set_state(w, running, "terminated")
    w.a.modify_instance_attribute(InstanceId=stopped, InstanceType={"Value": "t2.small"})
    assert _size(w, stopped) == ("t2.small", 1, 2048)
    code, _ = error_of(w.a.modify_instance_attribute, InstanceId=stopped, InstanceType={"Value": "t2.medium"})
    assert code == "VcpuLimitExceeded", "4096 MiB do not fit 2048"
    assert _size(w, stopped) == ("t2.small", 1, 2048)


def test_shrinking_or_keeping_the_size_is_never_refused_by_quotas(w: World) -> None:
    ami = w.add_image("alice", "disk")
    iid = w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="m1.xlarge")["Instances"][0]["InstanceId"]
    w.a.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t2.micro")
    _set_state(w, iid, "stopped")
    set_quota(w, "alice", instances=1, vcpus=1, memory_mib=512)  # the administrator lowered it below her usage
    w.a.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "m1.large"})  # fewer vCPUs and memory
    assert _size(w, iid) == ("m1.large", 2, 7680)
    w.a.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "m1.large"})  # no change at all
    w.a.modify_instance_attribute(InstanceId=iid, Attribute="instanceType", Value="t2.medium")
    assert _size(w, iid) == ("t2.medium", 2, 4096)
    w.a.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t2.micro"})
    assert _size(w, iid) == ("t2.micro", 1, 1024)
    # the instance count is over the quota too, but a resize adds no instance: only growth is refused
    code, message = error_of(w.a.modify_instance_attribute, InstanceId=iid, InstanceType={"Value": "t2.small"})
    assert code == "VcpuLimitExceeded" and "memory" in message
    assert _size(w, iid) == ("t2.micro", 1, 1024)


def _store(w: World, owner: str, size: int, key: str) -> None:
    from storage.models import Bucket, Object

    uid = w.user_id(owner)
    with w.app.db.session(write=True) as s:
        bucket = s.scalar(select(Bucket).where(Bucket.name == f"b-{owner}"))
        if bucket is None:
            bucket = Bucket(name=f"b-{owner}", owner_id=uid)
            s.add(bucket)
            s.flush()
        s.add(Object(bucket_id=bucket.id, key=key, owner_id=uid, size=size, etag="x", segments_json="[]"))


def test_storage_quota_counts_objects_and_refuses_with_403(w: World) -> None:
    set_quota(w, "alice", storage_bytes=1000)
    alice = w.user_id("alice")
    check_storage_quota(w.app, alice, 1000)  # exactly the quota is fine
    _store(w, "alice", 600, "a")
    _store(w, "bob", 10**9, "b")  # bob's bytes are not alice's
    check_storage_quota(w.app, alice, 400)
    with pytest.raises(ServiceError) as err:
        check_storage_quota(w.app, alice, 401)
    assert err.value.code == "QuotaExceeded" and err.value.status == 403
    assert "1000 bytes" in err.value.message and "600 bytes are in use" in err.value.message
    check_storage_quota(w.app, w.user_id("bob"), 10**12)  # no quota for bob
    with w.app.db.session() as s:
        assert quotas.report(s, w.app.settings, "alice", usage.total)["usage"]["storage_bytes"] == 600


@pytest.mark.slow
def test_concurrent_launches_never_pass_the_quota_postgresql(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    """Launches by one user at the same moment, in parallel transactions, still stop at the quota."""
    w = make_world(tmp_path, database_url=postgres_url)
    w.b.run_instances(ImageId=w.add_image("bob", "warm-up"), MinCount=1, MaxCount=1)  # creates the address pool
    ami = w.add_image("alice", "disk")
    set_quota(w, "alice", instances=3)

    def launch(client: Any) -> str:
        client.run_instances(ImageId=ami, MinCount=1, MaxCount=1)
        return "ok"

    outcomes = at_once(w, w.alice, [launch] * 8)
    assert sorted(outcomes) == ["InstanceLimitExceeded"] * 5 + ["ok"] * 3
    with w.app.db.session() as s:
        assert s.scalar(select(func.count(Instance.id)).where(Instance.owner_id == w.user_id("alice"))) == 3
    w.app.db.dispose()


@pytest.mark.slow
def test_concurrent_resizes_never_pass_the_quota_postgresql(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    """Resizes of different stopped instances of one user, in parallel transactions, still stop at the quota."""
    w = make_world(tmp_path, database_url=postgres_url)
    ami = w.add_image("alice", "disk")
    stopped = [i["InstanceId"] for i in w.a.run_instances(
        ImageId=ami, MinCount=4, MaxCount=4, InstanceType="t2.micro")["Instances"]]
    for iid in stopped:
        _set_state(w, iid, "stopped")
    set_quota(w, "alice", vcpus=6)  # 4 in use: room for two t2.micro to become t2.medium

    def resize(iid: str) -> Callable[[Any], str]:
        def call(client: Any) -> str:
            client.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t2.medium"})
            return "ok"

        return call

    outcomes = at_once(w, w.alice, [resize(iid) for iid in stopped])
    assert sorted(outcomes) == ["VcpuLimitExceeded"] * 2 + ["ok"] * 2
    with w.app.db.session() as s:
        assert quotas.usage_of(s, w.user_id("alice")).vcpus == 6
    w.app.db.dispose()


def test_admin_quota_commands(tmp_path: Path) -> None:
    """`ec2gw admin quota set|list|show`, in process, including the mistakes an operator can make."""
    import json

    from click.testing import CliRunner

    from ec2gw.cli import admin, serve  # noqa: F401  (registers the commands)
    from ec2gw.cli.main import cli

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--data-dir", str(tmp_path), *args])

    assert run("admin", "user", "add", "kim", "--group", "lab").exit_code == 0
    res = run("admin", "quota", "set", "lab", "--instances", "4", "--memory", "2048", "--storage", "1.5", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"kind": "group", "name": "lab", "instances": 4, "vcpus": "default",
                                      "memory_mib": 2048, "storage_bytes": 3 * quotas.GIB // 2, "addresses": "default",
                                      "volumes": "default", "volume_bytes": "default"}
    assert run("admin", "quota", "set", "kim", "--vcpus", "unlimited").exit_code == 0
    shown = json.loads(run("admin", "quota", "show", "kim", "--json").output)
    assert shown["limits"] == {"instances": 4, "vcpus": "unlimited", "memory_mib": 2048, "storage_bytes": 3 * quotas.GIB // 2,
                               "addresses": 5, "volumes": "unlimited", "volume_bytes": "unlimited"}
    assert shown["usage"] == {"instances": 0, "vcpus": 0, "memory_mib": 0, "storage_bytes": 0, "addresses": 0, "volumes": 0,
                              "volume_bytes": 0}
    res = run("admin", "quota", "set", "kim", "--volumes", "3", "--volume-gb", "10", "--json")
    assert res.exit_code == 0, res.output
    assert (json.loads(res.output)["volumes"], json.loads(res.output)["volume_bytes"]) == (3, 10 * quotas.GIB)
    shown = json.loads(run("admin", "quota", "show", "kim", "--json").output)
    assert (shown["limits"]["volumes"], shown["limits"]["volume_bytes"]) == (3, 10 * quotas.GIB)
    res = run("admin", "quota", "set", "kim", "--volume-gb", "lots")
    assert res.exit_code == 1 and "--volume-gb takes a number" in res.output
    assert [r["name"] for r in json.loads(run("admin", "quota", "list", "--json").output)] == ["lab", "kim"]
    res = run("admin", "quota", "set", "no-such-anything", "--instances", "1")
    assert res.exit_code == 1 and "no user or group named 'no-such-anything'" in res.output and "group:" in res.output
    res = run("admin", "quota", "set", "lab", "--vcpus", "many")
    assert res.exit_code == 1 and "--vcpus takes a number" in res.output
    res = run("admin", "quota", "set", "lab")
    assert res.exit_code == 2 and "at least one of" in res.output
    res = run("admin", "quota", "show", "nobody")
    assert res.exit_code == 1 and "no user named 'nobody'" in res.output
