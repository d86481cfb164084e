"""Placement benchmark: launch 100, 1,000 and 5,000 instances across 10 simulated VMM nodes.

Each size starts from an empty database (SQLite, as `ec2gw serve` has by default, or with
--postgres a throw-away PostgreSQL server, where placement takes row locks) with ten
nodes on libvirt's test driver, each with a private in-process state (test:///ABS/nodeN.xml),
one address pool big enough, and a user. Instances are launched through the whole EC2 path
(botocore signs, the gateway parses, authenticates and dispatches RunInstances, which checks
quotas, places capacity-aware, allocates addresses and writes rows) in calls of --batch
instances; then the compute worker creates every domain on its node until all are running.

Figures per size: the launch calls, the worker's spawning, the total, the cost per instance,
and the cost of one placement decision (place() for one instance) with the database that full.
Linear growth means a flat cost per instance; the last column compares it with the smallest size.
Run: .venv/bin/python bench/placement.py [--sizes 100,1000,5000] [--batch 10] [--postgres]
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.libvirt.testing import make_test_node_uri
from ec2gw.compute import nodes, placement
from ec2gw.compute.worker import ComputeWorker
from ec2gw.db.models import Instance
from ec2gw.network import pools
from tests.unit.ec2_inprocess import make_world

NODES = 10
TYPE = "t2.micro"  # 1 vCPU, 1 GiB


def setup(root: Path, size: int, database_url: str) -> tuple[Any, str]:
    """A fresh world: ten nodes with room for ``size`` instances, a pool with an address each."""
    world = make_world(root / "data", max_instances_per_user=size + 10, database_url=database_url)
    per_node = -(-size // NODES)
    net = ipaddress.ip_network("10.64.0.0/16")
    entries = [pools.Entry(f"b{i}", str(ip), "none", "none", "none", None)
               for i, ip in zip(range(size + 10), net.hosts(), strict=False)]
    with world.app.db.session(write=True) as s:
        pools.add_pool(s, "bench", "none", entries, network_mode="isolated")
        for i in range(NODES):
            d = root / f"node{i}"
            d.mkdir()
            nodes.add_node(s, name=f"node{i:02d}", uri=make_test_node_uri(d, 1024 * per_node, per_node),
                           zone="us-east-1a", vcpus=per_node, memory_mib=1024 * per_node, pools=["bench"])
    return world, world.add_image("alice", "bench-image", public=True)


def count(world: Any, state: str) -> int:
    with world.app.db.session() as s:
        return int(s.query(Instance).filter(Instance.state == state).count())


def place_once(world: Any) -> float:
    """Seconds for one placement decision (one instance) against the current database."""
    with world.app.db.session(write=True) as s:
        t = time.perf_counter()
        placement.place(s, world.app.settings, None, 1, 1, 1024)
        dt = time.perf_counter() - t
        s.rollback()
    return dt


def run(size: int, batch: int, pg: Any = None) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="ec2gw-bench-placement-"))
    try:
        world, image = setup(root, size, pg.create_database("bench") if pg else "")
        empty_place = min(place_once(world) for _ in range(5))
        t0 = time.perf_counter()
        left = size
        while left:
            n = min(batch, left)
            resp = world.a.run_instances(ImageId=image, MinCount=n, MaxCount=n, InstanceType=TYPE)
            left -= len(resp["Instances"])
        t1 = time.perf_counter()
        worker = ComputeWorker(world.app.settings, world.app.db, world.app.drivers, cumulus=world.app.cumulus)
        deadline = time.monotonic() + 600
        while count(world, "running") < size:
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start {size} instances within 600 s")
            worker.run_once()
            worker.wait_idle(60)
        t2 = time.perf_counter()
        full_place = min(place_once(world) for _ in range(5))
        with world.app.db.session() as s:
            per_node = [v.instances for v in nodes.list_nodes(s)]
        worker.pool.shutdown()
        world.app.drivers.close()
        world.app.db.dispose()
        return {"size": size, "launch": t1 - t0, "spawn": t2 - t1, "total": t2 - t0, "spread": max(per_node) - min(per_node),
                "place_empty": empty_place, "place_full": full_place}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", default="100,1000,5000", help="instance counts, comma-separated")
    ap.add_argument("--batch", type=int, default=10, help="instances per RunInstances call")
    ap.add_argument("--postgres", action="store_true", help="a throw-away PostgreSQL server instead of SQLite")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    sizes = [int(x) for x in args.sizes.split(",")]
    pg = None
    if args.postgres:
        from tests.pg import PostgresCluster

        pg = PostgresCluster().start()
    try:
        report(sizes, args.batch, pg)
    finally:
        if pg is not None:
            pg.stop()


def report(sizes: list[int], batch: int, pg: Any) -> None:
    run(50, batch, pg)  # warm-up, not reported: imports, first connections, caches
    print(f"{NODES} nodes (libvirt test driver, in-process private states), {'PostgreSQL' if pg else 'SQLite'};"
          f" RunInstances of {batch}"
          f" {TYPE} per call (launch), then the compute worker until all run (spawn)")
    print(f"{'instances':>9} {'launch s':>9} {'spawn s':>8} {'total s':>8} {'ms/inst':>8} {'vs first':>8} "
          f"{'spread':>6} {'place() ms empty/full':>22}")
    base = None
    for size in sizes:
        r = run(size, batch, pg)
        per = r["total"] / size * 1000
        base = base or per
        print(f"{size:>9} {r['launch']:>9.2f} {r['spawn']:>8.2f} {r['total']:>8.2f} {per:>8.2f} {per / base:>7.2f}x "
              f"{int(r['spread']):>6} {r['place_empty'] * 1000:>10.2f} / {r['place_full'] * 1000:<8.2f}", flush=True)
    print("spread: instances on the fullest node minus the emptiest; place(): one placement decision")

if __name__ == "__main__":
    main()
