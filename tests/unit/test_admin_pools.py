"""`ec2gw admin pool add|list|show|remove` in process (click's runner), with a test-driver node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ec2gw.cli import admin  # noqa: F401  (registers the admin commands)
from ec2gw.cli.main import cli

POOL = """10.0.0.2
a1 10.60.0.10 10.60.0.1 10.60.0.255 255.255.255.0
a2 10.60.0.11 10.60.0.1 10.60.0.255 255.255.255.0 52:54:00:60:00:0b
"""


@pytest.fixture()
def run(tmp_path: Path) -> Any:
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> Any:
        res = runner.invoke(cli, ["--data-dir", str(tmp_path / "data"), *args], catch_exceptions=False)
        assert (res.exit_code == 0) == ok, res.output
        return res
    return invoke


def test_add_list_show_remove(run: Any, tmp_path: Path) -> None:
    f = tmp_path / "pool.txt"
    f.write_text(POOL)
    added = json.loads(run("admin", "pool", "add", "private", str(f), "--network-mode", "isolated", "--json").output)
    assert added["network_mode"] == "isolated" and added["subnet"] == "10.60.0.0/24" and added["free"] == 2
    listed = json.loads(run("admin", "pool", "list", "--json").output)
    assert [p["name"] for p in listed] == ["private"]
    assert "private" in run("admin", "pool", "list").output
    shown = json.loads(run("admin", "pool", "show", "private", "--json").output)
    assert [e["ip"] for e in shown["entries"]] == ["10.60.0.10", "10.60.0.11"]
    assert shown["entries"][1]["mac"] == "52:54:00:60:00:0b" and shown["entries"][0]["mac"].startswith("52:54:00:")
    removed = json.loads(run("admin", "pool", "remove", "private", "--json").output)
    assert removed["removed"] is True
    assert json.loads(run("admin", "pool", "list", "--json").output) == []


def test_errors_say_what_to_do(run: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("none\nh1 10.0.0.300 none none none\n")
    out = run("admin", "pool", "add", "p", str(bad), ok=False).output
    assert "line 2: address '10.0.0.300' is not an IP address" in out
    good = tmp_path / "pool.txt"
    good.write_text(POOL)
    assert "network mode" in run("admin", "pool", "add", "p", str(good), "--network-mode", "wifi", ok=False).output
    nogw = tmp_path / "nogw.txt"
    nogw.write_text("none\nh1 10.0.0.5 none none 255.255.255.0\n")
    assert "one gateway" in run("admin", "pool", "add", "q", str(nogw), ok=False).output
    assert json.loads(run("admin", "pool", "list", "--json").output) == []  # nothing half-added
    assert "bridge:br0" in run("admin", "pool", "add", "q", str(nogw), "--network-mode", "bridge:br0").output
    run("admin", "pool", "add", "p", str(good))
    assert "already exists" in run("admin", "pool", "add", "p", str(good), ok=False).output
    assert "no pool 'zz'" in run("admin", "pool", "show", "zz", ok=False).output
    assert "no pool 'zz'" in run("admin", "pool", "remove", "zz", ok=False).output


def test_removing_a_pool_takes_it_off_its_nodes(run: Any, tmp_path: Path) -> None:
    from backends.libvirt.testing import make_test_node_uri

    f = tmp_path / "pool.txt"
    f.write_text(POOL)
    run("admin", "pool", "add", "private", str(f))
    uri = make_test_node_uri(tmp_path)
    run("admin", "node", "add", "n1", "--uri", uri, "--pools", "private", "--memory", "1024", "--vcpus", "2")
    shown = json.loads(run("admin", "pool", "show", "private", "--json").output)
    assert shown["nodes"] == ["n1"]
    removed = json.loads(run("admin", "pool", "remove", "private", "--json").output)
    assert removed["nodes"] == ["n1"]
    nodes = json.loads(run("admin", "node", "list", "--json").output)
    assert nodes[0]["pools"] == []
