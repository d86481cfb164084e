"""Requests naming hundreds of instances stay within SQLite's bound-parameter limit, which some
builds keep at 999: launches, DescribeInstances by id and TerminateInstances are chunked."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event

from tests.unit.ec2_inprocess import make_world


def test_seven_hundred_instances_under_a_999_parameter_limit(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    engine = w.app.db.engine

    @event.listens_for(engine, "connect")
    def _limit(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    engine.dispose()  # every connection from now on has the limit
    image = w.add_image("alice", "many-ids")
    launched = w.a.run_instances(ImageId=image, MinCount=700, MaxCount=700, InstanceType="t2.micro")["Instances"]
    ids = [i["InstanceId"] for i in launched]
    assert len(set(ids)) == 700 and len({i["PrivateIpAddress"] for i in launched}) == 700
    listed = [i["InstanceId"] for r in w.a.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
    assert listed == sorted(ids)
    ending = w.a.terminate_instances(InstanceIds=ids)["TerminatingInstances"]
    assert {c["CurrentState"]["Name"] for c in ending} == {"shutting-down"} and len(ending) == 700
