"""What `ec2gw serve` writes to its log on a first and a second start: no secret, the credentials'
path, one line per applied migration and none of Alembic's chatter."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.live import LiveServer


def test_first_start_logs_no_secret_and_migrations_once(tmp_path: Path) -> None:
    srv = LiveServer(tmp_path / "data")
    try:
        srv.start()
        creds = srv.admin
        assert srv.client("ec2").describe_regions()["Regions"]  # the credentials in the file work
    finally:
        srv.stop()
    assert srv.log_path is not None
    first = srv.log_path.read_text()
    path = srv.data_dir / "admin.credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert creds.secret_key not in first
    assert str(path.resolve()) in first
    assert creds.access_key in first  # the key id is no secret and tells which key the file holds
    assert [ln for ln in first.splitlines() if "alembic" in ln] == []
    applied = [ln for ln in first.splitlines() if "database schema: applied migration" in ln]
    assert len(applied) == len({ln.split("applied migration ")[1] for ln in applied}) >= 3, first
    assert "applied migration 0001: baseline" in first

    size = len(first)
    try:
        srv.start()
        assert srv.client("ec2").describe_regions()["Regions"]
    finally:
        srv.stop()
    second = srv.log_path.read_text()[size:]
    assert "Listening at" in second  # the second start did log
    assert [ln for ln in second.splitlines() if "alembic" in ln or "database schema" in ln] == [], second
    assert creds.secret_key not in second
