"""GetConsoleOutput when the node answers but cannot hand out the log: an EC2 error, never a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.base import DriverError
from tests.unit.ec2_inprocess import error_of, make_world


class _BrokenConsole:
    def console_output(self, name: str, max_bytes: int = 65536) -> bytes:
        raise DriverError("Couldn't create lock file /var/lock/LCK..pts")


def test_a_console_the_node_cannot_read_is_service_unavailable(tmp_path: Path, monkeypatch: Any) -> None:
    w = make_world(tmp_path)
    iid = w.add_instance("alice")
    monkeypatch.setattr(w.app.drivers, "get", lambda node: _BrokenConsole())
    code, message = error_of(w.a.get_console_output, InstanceId=iid)
    assert code == "ServiceUnavailable"
    assert iid in message and "try again" in message
    assert "lock file" not in message  # the node's own words go to the service log, not to the tenant
