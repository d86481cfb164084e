"""Many nodes, two service processes, one PostgreSQL: the scale-out issue end to end. SLOW (~1 min).

Set-up (module scope, everything stopped by PID at the end):
* three simulated VMM nodes: libvirtd with the test driver in network namespaces of their own,
  reached at test+tcp://10.77.X.i/default (tests/netns.py);
* a real PostgreSQL server in a temp dir on a loopback port (tests/pg.py);
* two `ec2gw serve` processes on that database (each with its compute worker; one holds the lease).

node1 is in us-east-1a, node2 and node3 in us-east-1b; each takes four t2.micro (1 vCPU, 1 GiB).
The tests run in file order: later ones start from the state earlier ones leave.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import libvirt
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from ec2gw.cli import admin as _admin  # noqa: F401  (registers the commands)
from ec2gw.cli.main import cli
from tests import netns
from tests.live import Creds, LiveServer
from tests.pg import PostgresCluster, postgres_cluster  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TYPE = "t2.micro"
TEST_DOMAIN = "<domain type='test'><name>{name}</name><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"


def admin_cli(server: LiveServer, *args: str) -> Any:
    """`ec2gw admin ... --json` in this process (saves a Python start per command); JSON output."""
    res = CliRunner().invoke(cli, ["--data-dir", str(server.data_dir), *server.global_args, "admin", *args, "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, f"{args}: {res.output}"
    return json.loads(res.stdout)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout} s (last value {value!r})")
        time.sleep(every)


@dataclass
class Cluster:
    sim: netns.SimulatedNodes
    a: LiveServer
    b: LiveServer
    url: str
    ec2a: Any
    ec2b: Any
    image_id: str
    added: dict[str, Any]

    def node(self, name: str) -> netns.SimNode:
        return self.sim.nodes[int(name[-1]) - 1]

    def placement_of(self) -> dict[str, str]:
        """instance id -> node name, for instances that are not terminated (from the shared database)."""
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT id, node_name FROM instances WHERE state <> 'terminated'"))
                return {r[0]: r[1] for r in rows}
        finally:
            engine.dispose()

    def admin(self, *args: str) -> Any:
        return admin_cli(self.a, "node", *args)

    def instances(self, **kw: Any) -> list[dict[str, Any]]:
        return [i for r in self.ec2a.describe_instances(**kw)["Reservations"] for i in r["Instances"]]

    def states(self, ids: list[str]) -> dict[str, str]:
        return {i["InstanceId"]: i["State"]["Name"] for i in self.instances(InstanceIds=ids)}

    def terminate_all(self) -> None:
        ids = [i["InstanceId"] for i in self.instances() if i["State"]["Name"] != "terminated"]
        if ids:
            self.ec2a.terminate_instances(InstanceIds=ids)
            wait_for("all terminated", lambda: set(self.states(ids).values()) == {"terminated"})


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[netns.SimulatedNodes]:
    reason = netns.unavailable_reason()
    if reason:
        pytest.fail(reason)
    nodes = netns.SimulatedNodes(3, tmp_path_factory.mktemp("nodes")).start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def cluster(sim: netns.SimulatedNodes, postgres_cluster: PostgresCluster,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    url = postgres_cluster.create_database("cluster")
    root = tmp_path_factory.mktemp("servers")
    a = LiveServer(root / "a", global_args=["--database-url", url])
    b = LiveServer(root / "b", global_args=["--database-url", url])
    try:
        a.start()
        b.start()
        pool_file = root / "lab.pool"
        pool_file.write_text("none\n" + "".join(f"lab{i} 10.99.0.{i} 10.99.0.254 10.99.0.255 255.255.255.0\n"
                                                for i in range(1, 61)))
        admin_cli(a, "pool", "add", "lab", str(pool_file), "--network-mode", "isolated")
        # node1 through the installed binary, its capacity read from the node; then set to 4 x 1 GiB
        added = {"node1": json.loads(a.cli("admin", "node", "add", "node1", "--uri", sim.nodes[0].uri, "--zone",
                                           "us-east-1a", "--pools", "lab", "--json").stdout)}
        admin_cli(a, "node", "update", "node1", "--vcpus", "4", "--memory", "4096")
        for n in sim.nodes[1:]:
            added[f"node{n.index}"] = admin_cli(a, "node", "add", f"node{n.index}", "--uri", n.uri, "--zone", "us-east-1b",
                                                "--pools", "lab", "--vcpus", "4", "--memory", "4096")
        img = root / "img.raw"
        img.write_bytes(b"\0" * 65536)
        image_id = admin_cli(a, "image", "import", "base", str(img), "--public")["image_id"]
        carol = admin_cli(a, "user", "add", "carol")
        creds = Creds("carol", carol["access_key_id"], carol["secret_access_key"])
        yield Cluster(sim, a, b, url, a.client("ec2", creds), b.client("ec2", creds), image_id, added)
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(LiveServer.stop, (a, b)))


def test_capacity_is_read_from_the_nodes(cluster: Cluster) -> None:
    info = libvirt.open(cluster.sim.nodes[0].uri)
    try:
        _model, memory, cpus, *_ = info.getInfo()
    finally:
        info.close()
    data = cluster.added["node1"]
    assert (data["vcpus"], data["memory_mib"], data["domain_type"]) == (cpus, memory, "test")
    assert (cluster.added["node2"]["vcpus"], cluster.added["node2"]["memory_mib"]) == (4, 4096)
    listed = {n["name"]: n for n in cluster.admin("list")}
    assert {n: (v["zone"], v["vcpus"], v["memory_mib"], v["pools"]) for n, v in listed.items()} == {
        "node1": ("us-east-1a", 4, 4096, ["lab"]), "node2": ("us-east-1b", 4, 4096, ["lab"]),
        "node3": ("us-east-1b", 4, 4096, ["lab"])}


def test_zones_are_the_nodes_zones(cluster: Cluster) -> None:
    for ec2 in (cluster.ec2a, cluster.ec2b):
        zones = ec2.describe_availability_zones()["AvailabilityZones"]
        assert [(z["ZoneName"], z["State"]) for z in zones] == [("us-east-1a", "available"), ("us-east-1b", "available")]


def test_client_token_is_idempotent_across_processes(cluster: Cluster) -> None:
    """The same ClientToken sent to both processes at once makes one reservation."""
    def launch(i: int) -> Any:
        ec2 = cluster.ec2a if i % 2 else cluster.ec2b
        try:
            return ec2.run_instances(ImageId=cluster.image_id, MinCount=1, MaxCount=1, InstanceType=TYPE,
                                     ClientToken="token-across")["ReservationId"]
        except ClientError as exc:
            return exc.response["Error"]["Code"], exc.response["Error"]["Message"]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(launch, range(6)))
    reservations = {r for r in results if isinstance(r, str)}
    assert len(reservations) == 1, results
    for r in results:
        assert isinstance(r, str) or (r[0] == "IdempotentParameterMismatch" and "retry" in r[1]), r
    again = cluster.ec2b.run_instances(ImageId=cluster.image_id, MinCount=1, MaxCount=1, InstanceType=TYPE,
                                       ClientToken="token-across")
    assert again["ReservationId"] in reservations
    assert len(cluster.placement_of()) == 1
    cluster.terminate_all()


def test_twenty_concurrent_launches_on_two_processes(cluster: Cluster) -> None:
    """12 t2.micro fit on the three nodes; 20 single launches race through both processes."""
    barrier = threading.Barrier(20)

    def launch(i: int) -> Any:
        ec2 = cluster.ec2a if i % 2 else cluster.ec2b
        barrier.wait(30)
        try:
            return ec2.run_instances(ImageId=cluster.image_id, MinCount=1, MaxCount=1, InstanceType=TYPE)["Instances"][0]
        except ClientError as exc:
            return exc.response["Error"]["Code"]

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(launch, range(20)))
    launched = [r for r in results if isinstance(r, dict)]
    assert Counter(r for r in results if not isinstance(r, dict)) == {"InsufficientInstanceCapacity": 8}, results
    ids = [r["InstanceId"] for r in launched]
    assert len(ids) == 12 and len(set(ids)) == 12, "distinct instance ids"

    where = cluster.placement_of()
    assert Counter(where.values()) == {"node1": 4, "node2": 4, "node3": 4}, "no node over capacity, none left empty"
    for v in cluster.admin("list"):
        assert v["used_vcpus"] <= v["vcpus"] and v["used_memory_mib"] <= v["memory_mib"], v

    wait_for("all 12 running", lambda: set(cluster.states(ids).values()) == {"running"})
    described = cluster.instances(InstanceIds=ids)
    ips = [i["PrivateIpAddress"] for i in described]
    assert len(set(ips)) == 12 and all(ip.startswith("10.99.0.") for ip in ips), "no address twice"
    macs = {i["NetworkInterfaces"][0]["MacAddress"] if i.get("NetworkInterfaces") else i["InstanceId"] for i in described}
    assert len(macs) == 12
    for n in cluster.sim.nodes:  # each node runs exactly the domains the database placed there
        conn = libvirt.open(n.uri)
        try:
            domains = {d.name() for d in conn.listAllDomains() if d.name().startswith("i-")}
        finally:
            conn.close()
        assert domains == {i for i, node in where.items() if node == f"node{n.index}"}


def test_capacity_errors_partial_launch_and_zone(cluster: Cluster) -> None:
    with pytest.raises(ClientError) as err:
        cluster.ec2b.run_instances(ImageId=cluster.image_id, MinCount=1, MaxCount=1, InstanceType=TYPE)
    assert err.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert "ask for fewer" in err.value.response["Error"]["Message"]
    cluster.terminate_all()

    with pytest.raises(ClientError) as err:
        cluster.ec2a.run_instances(ImageId=cluster.image_id, MinCount=5, MaxCount=8, InstanceType=TYPE,
                                   Placement={"AvailabilityZone": "us-east-1a"})
    assert err.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert cluster.placement_of() == {}, "nothing launched when MinCount does not fit"
    resp = cluster.ec2a.run_instances(ImageId=cluster.image_id, MinCount=2, MaxCount=8, InstanceType=TYPE,
                                      Placement={"AvailabilityZone": "us-east-1a"})
    assert len(resp["Instances"]) == 4, "partial launch: what fits, as MinCount is met"
    assert {i["Placement"]["AvailabilityZone"] for i in resp["Instances"]} == {"us-east-1a"}
    assert set(cluster.placement_of().values()) == {"node1"}

    stop = cluster.ec2b.run_instances(ImageId=cluster.image_id, MinCount=4, MaxCount=4, InstanceType=TYPE,
                                      Placement={"AvailabilityZone": "us-east-1b"})
    term = cluster.ec2b.run_instances(ImageId=cluster.image_id, MinCount=2, MaxCount=2, InstanceType=TYPE,
                                      Placement={"AvailabilityZone": "us-east-1b"},
                                      InstanceInitiatedShutdownBehavior="terminate")
    ids = [i["InstanceId"] for r in (resp, stop, term) for i in r["Instances"]]
    where = cluster.placement_of()
    assert Counter(where.values()) == {"node1": 4, "node2": 3, "node3": 3}, "spread over the zone's nodes"
    wait_for("all running", lambda: set(cluster.states(ids).values()) == {"running"})


def test_node_failure_and_return(cluster: Cluster) -> None:
    """node3's libvirtd dies: API responsive, its instances impaired, zone impaired; it returns:
    vanished domains -> stopped / terminated per shutdown behaviour; unknown domains reported, kept."""
    where = cluster.placement_of()
    on3 = sorted(i for i, n in where.items() if n == "node3")
    others = sorted(i for i, n in where.items() if n != "node3")
    behaviour = {i["InstanceId"]: i for i in cluster.instances(InstanceIds=on3)}
    term3 = [i for i in on3 if cluster.ec2a.describe_instance_attribute(
        InstanceId=i, Attribute="instanceInitiatedShutdownBehavior")["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"]
    stop3 = [i for i in on3 if i not in term3]
    assert behaviour and term3 and stop3, (on3, term3)

    # a domain the service does not know, defined by hand on node1: reported, never destroyed
    own = libvirt.open(cluster.node("node1").uri)
    try:
        own.defineXML(TEST_DOMAIN.format(name="admin-vm")).create()
        cluster.node("node3").kill()
        latencies = []

        def impaired() -> bool:
            t0 = time.monotonic()
            st = cluster.ec2b.describe_instance_status(InstanceIds=on3 + others)["InstanceStatuses"]
            latencies.append(time.monotonic() - t0)
            status = {s["InstanceId"]: s["InstanceStatus"]["Status"] for s in st}
            return all(status[i] == "impaired" for i in on3) and all(status[i] == "ok" for i in others)

        wait_for("node3's instances impaired, the others ok", impaired, timeout=30)
        assert max(latencies) < 2.0, f"the API waited for the dead node: {max(latencies):.2f} s"
        zones = cluster.ec2a.describe_availability_zones()["AvailabilityZones"]
        assert [(z["ZoneName"], z["State"]) for z in zones] == [("us-east-1a", "available"), ("us-east-1b", "impaired")]
        assert set(cluster.states(on3).values()) == {"running"}, "states wait for the node to answer"
        node3 = next(n for n in cluster.admin("list") if n["name"] == "node3")
        assert node3["reachable"] is False and node3["last_error"]

        # placement skips the dead node: zone b has room on node2 only (one slot)
        more = cluster.ec2a.run_instances(ImageId=cluster.image_id, MinCount=1, MaxCount=3, InstanceType=TYPE,
                                          Placement={"AvailabilityZone": "us-east-1b"})
        assert len(more["Instances"]) == 1 and cluster.placement_of()[more["Instances"][0]["InstanceId"]] == "node2"

        shown = wait_for("unknown domains on node1 reported",
                         lambda: {u["domain"] for u in cluster.admin("show", "node1")["unknown_domains"]} >= {"admin-vm", "test"}
                         and cluster.admin("show", "node1"))
        assert not ({i["id"] for i in shown["instance_ids"]} & {u["domain"] for u in shown["unknown_domains"]})

        cluster.node("node3").start()
        def reconciled() -> bool:
            st = cluster.states(on3)
            return all(st[i] == "stopped" for i in stop3) and all(st[i] == "terminated" for i in term3)

        wait_for("node3 reconciled", reconciled, timeout=30)
        for inst in cluster.instances(InstanceIds=stop3):
            assert "vanished from node node3" in inst["StateReason"]["Message"]
        assert next(n for n in cluster.admin("list") if n["name"] == "node3")["reachable"] is True
        zones = cluster.ec2a.describe_availability_zones()["AvailabilityZones"]
        assert {z["State"] for z in zones} == {"available"}
        assert set(cluster.states(others).values()) == {"running"}, "the other nodes' instances are untouched"
        assert own.lookupByName("admin-vm").isActive(), "unknown domains are never destroyed"

        # a stopped instance whose domain vanished starts again on its node
        cluster.ec2a.start_instances(InstanceIds=stop3[:1])
        wait_for("restarted on node3", lambda: cluster.states(stop3[:1])[stop3[0]] == "running")
        conn = libvirt.open(cluster.node("node3").uri)
        try:
            assert conn.lookupByName(stop3[0]).isActive()
        finally:
            conn.close()
    finally:
        own.close()


def test_hung_node_never_blocks_the_api(cluster: Cluster) -> None:
    """node2's libvirtd is frozen (SIGSTOP: connections stay open, nothing answers). The API answers
    at once throughout; node2's instances turn impaired; once it thaws it is reachable again and
    each of its instances follows the rules (domain still there: running; gone: stopped)."""
    where = cluster.placement_of()
    on2 = sorted(i for i, n in where.items() if n == "node2")
    running2 = [i for i, st in cluster.states(on2).items() if st == "running"]
    assert running2
    node2 = cluster.node("node2")
    node2.pause()
    try:
        latencies = []

        def impaired() -> bool:
            t0 = time.monotonic()
            st = cluster.ec2a.describe_instance_status(InstanceIds=running2)["InstanceStatuses"]
            cluster.ec2b.describe_instances(InstanceIds=running2)
            latencies.append(time.monotonic() - t0)
            return all(s["InstanceStatus"]["Status"] == "impaired" for s in st)

        wait_for("node2's instances impaired while it hangs", impaired, timeout=45, every=1.0)
        assert max(latencies) < 2.0, f"the API waited for the hung node: {max(latencies):.2f} s"
        resp = cluster.ec2a.run_instances(ImageId=cluster.image_id, MinCount=1, MaxCount=1, InstanceType=TYPE,
                                          Placement={"AvailabilityZone": "us-east-1b"})
        new = resp["Instances"][0]["InstanceId"]
        assert cluster.placement_of()[new] == "node3", "placement skips the hung node"
        wait_for("launching elsewhere goes on", lambda: cluster.states([new])[new] == "running")
    finally:
        node2.resume()
    wait_for("node2 reachable again", lambda: next(n for n in cluster.admin("list") if n["name"] == "node2")["reachable"],
             timeout=60, every=1.0)

    conn = libvirt.open(node2.uri)
    try:
        present = {d.name() for d in conn.listAllDomains()}
    finally:
        conn.close()

    def consistent() -> bool:  # kept domains: still running; lost ones (test driver state): stopped
        st = cluster.states(running2)
        return all((st[i] == "running") == (i in present) and st[i] in ("running", "stopped") for i in running2)

    wait_for("node2's instances reconciled with what it still has", consistent)
