"""`ec2gw admin node add|list|show|update|remove` against a fresh data directory (SQLite).

Nodes here are libvirt's in-process test driver with private state (test:///ABS/node.xml), so
capacity is really read from a node, and, for pool networks (which test-driver nodes do without),
a private libvirtd in namespaces of its own (backends.libvirt.testing.PrivateLibvirtd, QEMU driver,
no guests); the cluster tests (test_nodes_cluster.py) use nodes behind libvirtd over TCP. Commands run through click's runner in this process (each one opens the data
directory like the real binary does); one test runs the installed `ec2gw` binary.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import libvirt
import pytest
from click.testing import CliRunner

from backends.libvirt.testing import PrivateLibvirtd, make_test_node_uri
from ec2gw import ids
from ec2gw.cli import admin, serve  # noqa: F401  (registers the commands)
from ec2gw.cli.main import cli
from ec2gw.db.models import Instance, Reservation, User
from ec2gw.db.session import Database
from tests.live import EC2GW


class Admin:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.runner = CliRunner()

    def run(self, *args: str, ok: bool = True) -> Any:
        res = self.runner.invoke(cli, ["--data-dir", str(self.data_dir), "admin", "node", *args], catch_exceptions=False)
        if ok:
            assert res.exit_code == 0, f"{args}: {res.output}"
        else:
            assert res.exit_code != 0, f"{args} should have failed: {res.output}"
        return res

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def error(self, *args: str) -> str:
        return str(self.run(*args, ok=False).stderr)


@pytest.fixture
def adm(tmp_path: Path) -> Admin:
    return Admin(tmp_path / "data")


def node_uri(tmp_path: Path, name: str, memory: int = 4096, cpus: int = 4) -> str:
    d = tmp_path / name
    d.mkdir()
    return make_test_node_uri(d, memory, cpus)


def test_add_reads_capacity_from_the_node(adm: Admin, tmp_path: Path) -> None:
    data = adm.json("add", "n1", "--uri", node_uri(tmp_path, "n1", 6144, 6))
    assert (data["vcpus"], data["memory_mib"], data["zone"], data["domain_type"]) == (6, 6144, "us-east-1a", "test")
    data = adm.json("add", "n2", "--uri", node_uri(tmp_path, "n2"), "--memory", "1000", "--zone", "us-east-1b")
    assert (data["vcpus"], data["memory_mib"], data["zone"]) == (4, 1000, "us-east-1b"), "given memory, read vCPUs"
    listed = adm.json("list")
    assert [n["name"] for n in listed] == ["n1", "n2"]
    assert all(n["active"] and n["reachable"] and n["instances"] == 0 for n in listed)
    text = adm.run("list").stdout
    assert "n1" in text and "vcpus 0/6" in text and "memory 0/6144 MiB" in text


def test_add_refuses_what_cannot_work(adm: Admin, tmp_path: Path) -> None:
    uri = node_uri(tmp_path, "n1")
    adm.json("add", "n1", "--uri", uri)
    assert "not a libvirt URI" in adm.error("add", "x", "--uri", "http://example/")
    assert "names no host" in adm.error("add", "x", "--uri", "qemu+ssh:///system")
    assert "already exists" in adm.error("add", "n1", "--uri", node_uri(tmp_path, "other"))
    assert "already has URI" in adm.error("add", "n9", "--uri", uri)
    assert "implicit node" in adm.error("add", "local", "--uri", node_uri(tmp_path, "l"))
    assert "not valid" in adm.error("add", "bad name", "--uri", node_uri(tmp_path, "b"))
    assert "runs only 'test' domains" in adm.error("add", "t", "--uri", node_uri(tmp_path, "t"), "--domain-type", "kvm")
    assert "pool add nope" in adm.error("add", "p", "--uri", node_uri(tmp_path, "p"), "--pools", "nope")
    assert "positive" in adm.error("add", "z", "--uri", node_uri(tmp_path, "z"), "--memory", "0", "--vcpus", "1")
    assert [n["name"] for n in adm.json("list")] == ["n1"], "nothing half-registered"


def test_unreachable_node_needs_its_capacity_given(adm: Admin) -> None:
    uri = "test+tcp://127.0.0.1:1/default"  # nothing listens on port 1: refused at once
    err = adm.error("add", "far", "--uri", uri)
    assert "does not answer" in err and "--memory and --vcpus" in err
    data = adm.json("add", "far", "--uri", uri, "--memory", "2048", "--vcpus", "2")
    assert (data["vcpus"], data["memory_mib"]) == (2, 2048)
    data = adm.json("add", "kvm1", "--uri", "qemu+tcp://127.0.0.1:1/system", "--memory", "2048", "--vcpus", "2",
                    "--domain-type", "kvm")
    assert data["domain_type"] == "kvm"
    data = adm.json("add", "qemu1", "--uri", "qemu+ssh://root@127.0.0.1:1/system", "--memory", "1", "--vcpus", "1")
    assert data["domain_type"] == "qemu", "never detected: qemu unless the administrator says kvm"



def test_xen_nodes(adm: Admin) -> None:
    """Xen hosts (libvirt's libxl driver): xen domains, given or implied by the URI; nothing else mixes."""
    data = adm.json("add", "xen1", "--uri", "xen+tcp://127.0.0.1:1/system", "--memory", "2048", "--vcpus", "2",
                    "--domain-type", "xen")
    assert data["domain_type"] == "xen"
    data = adm.json("add", "xen2", "--uri", "xen+ssh://root@127.0.0.1:1/system", "--memory", "1024", "--vcpus", "1")
    assert data["domain_type"] == "xen"
    err = adm.error("add", "x3", "--uri", "qemu+tcp://127.0.0.1:1/system", "--memory", "1", "--vcpus", "1",
                    "--domain-type", "xen")
    assert "needs a Xen node's URI" in err
    err = adm.error("add", "x4", "--uri", "xen+tcp://127.0.0.1:2/system", "--memory", "1", "--vcpus", "1",
                    "--domain-type", "kvm")
    assert "runs only 'xen' domains" in err

def _instance_on(data_dir: Path, node: str) -> str:
    db = Database(f"sqlite:///{data_dir / 'ec2gw.sqlite'}")
    iid, rid = ids.new_id("i"), ids.new_id("r")
    with db.session(write=True) as s:
        uid = s.query(User.id).order_by(User.id).limit(1).scalar()
        if uid is None:
            s.add(User(name="u", account_id="000000000009", access_key="AKX", secret_key="SK"))
            s.flush()
            uid = s.query(User.id).order_by(User.id).limit(1).scalar()
        s.add(Reservation(id=rid, owner_id=uid))
        s.flush()
        s.add(Instance(id=iid, owner_id=uid, reservation_id=rid, image_id="ami-1", instance_type="t2.micro", vcpus=1,
                       memory_mib=1024, state="running", availability_zone="us-east-1a", node_name=node))
    db.dispose()
    return iid


def test_update_show_and_remove(adm: Admin, tmp_path: Path) -> None:
    adm.json("add", "n1", "--uri", node_uri(tmp_path, "n1"))
    adm.json("add", "n2", "--uri", node_uri(tmp_path, "n2"))
    data = adm.json("update", "n1", "--inactive", "--memory", "2048")
    assert (data["active"], data["memory_mib"], data["vcpus"]) == (False, 2048, 4)
    assert adm.json("update", "n1", "--active", "--vcpus", "2")["active"] is True
    assert "there is no node 'nx'" in adm.error("update", "nx", "--inactive")
    iid = _instance_on(adm.data_dir, "n1")
    shown = adm.json("show", "n1")
    assert shown["instance_ids"] == [{"id": iid, "state": "running", "type": "t2.micro"}]
    assert (shown["used_vcpus"], shown["used_memory_mib"], shown["instances"]) == (1, 1024, 1)
    err = adm.error("remove", "n1")
    assert "still has 1 instance(s)" in err and iid in err and "--force" in err
    assert [n["name"] for n in adm.json("list")] == ["n1", "n2"]
    assert adm.json("remove", "n2") == {"name": "n2", "removed": True, "terminated_instances": []}
    assert adm.json("remove", "n1", "--force")["terminated_instances"] == [iid]
    assert adm.json("list") == []
    db = Database(f"sqlite:///{adm.data_dir / 'ec2gw.sqlite'}")
    with db.session() as s:
        inst = s.get(Instance, iid)
        assert inst is not None and inst.state == "terminated" and "removed by the administrator" in (inst.state_reason_message or "")
    db.dispose()


def test_remove_drops_the_nodes_image_cache_records(adm: Admin, tmp_path: Path) -> None:
    """Its cached-image records describe volumes of a node no longer registered: a node added again
    under that name must not take them for verified copies."""
    from ec2gw.compute.image_models import NodeImage

    adm.json("add", "n1", "--uri", node_uri(tmp_path, "n1"))
    adm.json("add", "n2", "--uri", node_uri(tmp_path, "n2"))
    iid = _instance_on(adm.data_dir, "n1")
    db = Database(f"sqlite:///{adm.data_dir / 'ec2gw.sqlite'}")
    with db.session(write=True) as s:
        for node in ("n1", "n2"):
            s.add(NodeImage(node_name=node, image_id="ami-00000000000000001", pool="ec2gw-images", volume="ami-1-x",
                            size=1, etag="x", sha256="0" * 64, capacity=1, format="raw"))
    assert adm.json("remove", "n1", "--force")["terminated_instances"] == [iid]
    with db.session() as s:
        assert [r.node_name for r in s.query(NodeImage)] == ["n2"]
    db.dispose()


def test_installed_binary_has_the_documented_surface(tmp_path: Path) -> None:
    """The fixed command surface of the design's CLI.md, through the real console script."""
    out = subprocess.run([EC2GW, "--data-dir", str(tmp_path), "admin", "node", "add", "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    for flag in ("--uri", "--memory", "--vcpus", "--zone", "--pools", "--domain-type", "--json", "qemu|kvm|xen"):
        assert flag in out
    out = subprocess.run([EC2GW, "--data-dir", str(tmp_path), "admin", "node", "update", "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "--active / --inactive" in out and "--memory" in out
    res = subprocess.run([EC2GW, "--data-dir", str(tmp_path), "admin", "node", "remove", "ghost"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode != 0 and "there is no node 'ghost'" in res.stderr


# --- pools' networks appear on a node when it is added ------------------------------------------

POOL_FILE = "none\n{n}-a 10.98.{x}.10 10.98.{x}.1 10.98.{x}.255 255.255.255.0\n{n}-b 10.98.{x}.11 10.98.{x}.1 10.98.{x}.255 255.255.255.0\n"


def _networks(uri: str) -> dict[str, bool]:
    """Network name -> active, straight from libvirt."""
    conn = libvirt.open(uri)
    try:
        return {n.name(): bool(n.isActive()) for n in conn.listAllNetworks(0)}
    finally:
        conn.close()


def _pools(adm: Admin, tmp_path: Path, *names: str) -> None:
    for x, name in enumerate(names, 3):  # one subnet each: a node refuses two networks on one subnet
        f = tmp_path / f"{name}.pool"
        f.write_text(POOL_FILE.format(n=name, x=x))
        res = adm.runner.invoke(cli, ["--data-dir", str(adm.data_dir), "admin", "pool", "add", name, str(f),
                                      "--network-mode", "isolated"], catch_exceptions=False)
        assert res.exit_code == 0, res.output


def test_add_creates_the_pools_networks_on_the_node(adm: Admin, tmp_path: Path, libvirtd: PrivateLibvirtd) -> None:
    uri = libvirtd.uri("qemu")
    _pools(adm, tmp_path, "blue", "green")
    assert not {"ec2gw-blue", "ec2gw-green"} & set(_networks(uri))
    res = adm.run("add", "q1", "--uri", uri, "--domain-type", "qemu", "--pools", "blue,green", "--memory", "2048",
                  "--vcpus", "2", "--json")
    data = json.loads(res.stdout)
    assert data["network_errors"] == {} and data["reachable"] is True and res.stderr == ""
    nets = _networks(uri)
    assert nets.get("ec2gw-blue") is True and nets.get("ec2gw-green") is True, f"before any launch: {nets}"
    adm.run("remove", "q1")


def test_add_registers_a_silent_node_and_says_when_its_networks_come(adm: Admin, tmp_path: Path) -> None:
    _pools(adm, tmp_path, "blue")
    uri = "qemu+tcp://127.0.0.1:1/system"  # nothing listens on port 1: refused at once
    res = adm.run("add", "far", "--uri", uri, "--pools", "blue", "--memory", "2048", "--vcpus", "2", "--json")
    assert "warning: node far is registered but does not answer" in res.stderr
    assert "networks of pools blue will be created when it answers" in res.stderr
    data = json.loads(res.stdout)
    assert list(data["network_errors"]) == ["blue"] and "does not answer" in data["network_errors"]["blue"]
    listed = adm.json("list")
    assert [(n["name"], n["pools"], n["reachable"]) for n in listed] == [("far", ["blue"], False)]
    assert "cannot connect" in listed[0]["last_error"]


def _samples(data_dir: Path, node: str, rows: list[tuple[str, float | None, float | None, float]]) -> None:
    """Samples as the compute worker stores them: (instance, CPUUtilization %, memory MiB, age in seconds)."""
    from ec2gw.compute.metric_models import MetricSample

    db = Database(f"sqlite:///{data_dir / 'ec2gw.sqlite'}")
    now = datetime.now(UTC)
    with db.session(write=True) as s:
        for iid, cpu, mib, age in rows:
            s.add(MetricSample(instance_id=iid, node_name=node, sampled_at=now - timedelta(seconds=age),
                               interval_seconds=60.0, cpu_utilization=cpu, network_in=0, network_out=0,
                               network_packets_in=0, network_packets_out=0, disk_read_bytes=0, disk_write_bytes=0,
                               disk_read_ops=0, disk_write_ops=0, memory_used_mib=mib, vcpus=1))
    db.dispose()


def test_show_adds_live_utilisation(adm: Admin, tmp_path: Path) -> None:
    """`node show`: vCPUs and memory committed (the instances' sizes) against used (their latest samples)."""
    adm.json("add", "n1", "--uri", node_uri(tmp_path, "n1"))
    a, b = _instance_on(adm.data_dir, "n1"), _instance_on(adm.data_dir, "n1")
    use = adm.json("show", "n1")["utilisation"]
    assert (use["sampled"], use["vcpus_used"], use["vcpus_committed"], use["memory_committed_mib"]) == (0, None, 2, 2048)
    assert "no recent samples" in adm.run("show", "n1").stdout
    # a's latest sample (75 %, 300 MiB) counts, not its earlier one; b's is too old to be live
    _samples(adm.data_dir, "n1", [(a, 10.0, 100.0, 90), (a, 75.0, 300.0, 30), (b, 100.0, 900.0, 600)])
    use = adm.json("show", "n1")["utilisation"]
    assert (use["sampled"], use["vcpus_used"], use["memory_used_mib"]) == (1, 0.75, 300)
    _samples(adm.data_dir, "n1", [(b, 50.0, 200.0, 20)])
    use = adm.json("show", "n1")["utilisation"]
    assert (use["sampled"], use["vcpus_used"], use["memory_used_mib"]) == (2, 1.25, 500)
    text = adm.run("show", "n1").stdout
    assert "utilisation: vcpus used 1.25 of 2 committed, memory used 500 MiB of 2048 MiB committed" in text


def test_show_says_whether_the_node_enforces_security_groups(adm: Admin, tmp_path: Path) -> None:
    """Test-driver nodes keep rules without filtering traffic, and say so; QEMU/KVM nodes enforce them."""
    assert "does not enforce security groups" in adm.run("list").stdout  # only the implicit test-driver node
    adm.json("add", "t1", "--uri", node_uri(tmp_path, "t1"))
    assert adm.json("show", "t1")["enforces_security_groups"] is False
    assert "security groups: NOT enforced (libvirt's test driver has no network filters)" in adm.run("show", "t1").stdout
    # a QEMU node that does not answer (nothing listens on port 1): registered with its capacity given
    adm.json("add", "q1", "--uri", "qemu+tcp://127.0.0.1:1/system", "--domain-type", "qemu", "--memory", "1024",
             "--vcpus", "1")
    assert adm.json("show", "q1")["enforces_security_groups"] is True
    assert "security groups: enforced (libvirt network filters" in adm.run("show", "q1").stdout
    assert [n["enforces_security_groups"] for n in adm.json("list")] == [True, False]
