"""Leases on a live server with seconds-long leases; the admin's instance views and terminate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.tools import (
    add_user,
    cloud_client,
    failed,
    image_file,
    instance,
    ok,
    rows,
    tags,
    wait_for,
)
from tests.live import Creds, LiveServer

#: 0.002 h = 7.2 s by default, at most 0.01 h = 36 s; the reaper looks every 0.3 s
CONFIG = "[ec2gw]\nlease_default_hours = 0.002\nlease_max_hours = 0.01\nlease_check_seconds = 0.3\n"


@pytest.fixture(scope="module")
def lease_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cfg = tmp_path_factory.mktemp("lease-cfg") / "ec2gw.toml"
    cfg.write_text(CONFIG)
    srv = LiveServer(tmp_path_factory.mktemp("lease-server"), global_args=["--config", str(cfg)]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def user(lease_server: LiveServer) -> tuple[Creds, Path]:
    return add_user(lease_server, "lease-fay")


@pytest.fixture(scope="module")
def image(lease_server: LiveServer, user: tuple[Creds, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    src = image_file(tmp_path_factory.mktemp("img") / "lease.img", 64 * 1024)
    return ok(cloud_client(user[1] / "cloud.conf", "--transfer", "--sourcefile", str(src))).split()[-1]


def lease(hours: str) -> list[dict[str, Any]]:
    return [{"ResourceType": "instance", "Tags": [{"Key": "lease:hours", "Value": hours}]}]


def end_of(inst: dict[str, Any]) -> datetime:
    return datetime.strptime(tags(inst)["lease:end"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def launch(ec2: Any, image: str, **kw: Any) -> str:
    return str(ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, **kw)["Instances"][0]["InstanceId"])


def test_short_leases_expire_and_renewed_ones_do_not(lease_server: LiveServer, user: tuple[Creds, Path], image: str) -> None:
    ec2 = lease_server.client("ec2", user[0])
    conf = user[1] / "cloud.conf"
    launched = ok(cloud_client(conf, "--run", "--name", "lease.img", "--hours", "0.0005"))  # 1.8 s
    short = rows(launched.split("\nlaunched")[0])[0][0]
    assert tags(instance(ec2, short))["lease:hours"] == "0.0005"
    default = launch(ec2, image)  # 7.2 s
    renewed = launch(ec2, image)
    ec2.create_tags(Resources=[renewed], Tags=[{"Key": "lease:hours", "Value": "0.01"}])  # 36 s from now
    assert end_of(instance(ec2, renewed)) > end_of(instance(ec2, default))
    for iid in (short, default):
        inst = wait_for(f"{iid} terminated by its lease",
                        lambda iid=iid: (i := instance(ec2, iid))["State"]["Name"] == "terminated" and i, timeout=40)
        assert inst["StateReason"]["Code"] == "Client.LeaseExpired"
        assert "lease ended at" in inst["StateReason"]["Message"]
        assert datetime.now(UTC) >= end_of(inst)
    assert instance(ec2, renewed)["State"]["Name"] == "running"
    row = rows(ok(cloud_client(conf, "--status", "--handle", short)))[0]
    assert row[1] == "terminated" and row[-1] == "Client.LeaseExpired"
    ec2.terminate_instances(InstanceIds=[renewed])


def test_leases_longer_than_the_maximum_are_refused(lease_server: LiveServer, user: tuple[Creds, Path], image: str) -> None:
    ec2 = lease_server.client("ec2", user[0])
    before = {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    with pytest.raises(ClientError) as err:
        launch(ec2, image, TagSpecifications=lease("1"))
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "maximum lease is 0.01 hours" in err.value.response["Error"]["Message"]
    assert {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]} == before
    failed(cloud_client(user[1] / "cloud.conf", "--run", "--name", "lease.img", "--hours", "2"), "maximum lease is 0.01 hours")
    iid = launch(ec2, image)
    with pytest.raises(ClientError) as err:
        ec2.create_tags(Resources=[iid], Tags=[{"Key": "lease:hours", "Value": "0.5"}])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    ec2.terminate_instances(InstanceIds=[iid])


def test_admin_lists_and_terminates_any_instance(lease_server: LiveServer, user: tuple[Creds, Path], image: str) -> None:
    ec2 = lease_server.client("ec2", user[0])
    iid = launch(ec2, image, TagSpecifications=lease("0.01"))
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    inst = instance(ec2, iid)
    listed = json.loads(lease_server.cli("admin", "instance", "list", "--user", "lease-fay", "--json").stdout)
    mine = {r["instance_id"]: r for r in listed}
    assert {r["user"] for r in listed} == {"lease-fay"}
    assert mine[iid]["state"] == "running" and mine[iid]["node"] == "local"
    assert mine[iid]["lease_end"] == tags(inst)["lease:end"] and mine[iid]["private_ip"] == inst["PrivateIpAddress"]
    text = lease_server.cli("admin", "instance", "list").stdout
    assert "LEASE END" in text and iid in text and inst["PrivateIpAddress"] in text
    out = json.loads(lease_server.cli("admin", "instance", "terminate", iid, "--json").stdout)
    assert (out["previous_state"], out["current_state"]) == ("running", "shutting-down")
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert instance(ec2, iid)["StateReason"]["Code"] == "Server.AdministratorTerminated"
    missing = lease_server.cli("admin", "instance", "terminate", "i-0123456789abcdef0", check=False)
    assert missing.returncode == 1 and "admin instance list" in missing.stderr
