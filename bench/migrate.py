"""Live migration benchmark: a running guest moved between two nodes through ec2gw, beside plain
`virsh migrate` with the same flags, in the same run.

Set-up: two simulated QEMU nodes (tests/netns.py, qemu+tcp, a private storage directory each), one
ec2gw server, the tiny guest of scripts/build-test-guest.sh as a t2.micro (1 GiB, of
which the guest touches little). Figures, medians of N moves each way alternating m1 -> m2 -> m1:
* ec2gw: `ec2gw admin instance migrate ID --to NODE` wall time (a Python start included) and the
  time the worker recorded for the move (preparing the destination included);
* virsh: a second guest defined from the same kind of domain (kernel, initrd, overlay on the
  same cached image, a NIC on the same network), moved with
  `virsh migrate --live --p2p --persistent --undefinesource --copy-storage-inc --migrate-disks vda
  --migrateuri tcp://DEST` after creating its empty overlay on the destination with `virsh vol-create-as`
  (what libvirt needs for incremental copies), wall time of that command alone.
At most two guests run at once. Run: .venv/bin/python bench/migrate.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import libvirt
from two_nodes import cli, two_nodes

from backends.base import DiskSpec, DomainSpec, NicSpec
from backends.libvirt.designer import domain_config
from ec2gw.compute import node_layout
from tests import netns
from tests.vmhost import wait_for

POOL = "none\nbm-a 10.99.14.10 10.99.14.1 10.99.14.255 255.255.255.0\n"
VIRSH_DOMAIN, VIRSH_MAC = "bench-virsh", "52:54:00:99:0e:c8"


def virsh(uri: str, *args: str, timeout: float = 600) -> float:
    t = time.perf_counter()
    res = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {res.stderr}")
    return time.perf_counter() - t


def image_path(conn: Any, prefix: str) -> str:
    pool = conn.storagePoolLookupByName(node_layout.IMAGES_POOL)
    pool.refresh(0)
    return str(next(v.path() for v in pool.listAllVolumes(0) if v.name().startswith(prefix)))


def run(runs: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ec2gw-bench-migrate-"))
    out: dict[str, Any] = {"runs": runs}
    with two_nodes(root, "bmnet", POOL) as nodes:
        server, ec2 = nodes.server, nodes.server.client("ec2")
        cli(server, "admin", "node", "update", "m2", "--inactive")
        iid = ec2.run_instances(ImageId=nodes.ami, MinCount=1, MaxCount=1, InstanceType="t2.micro")["Instances"][0]["InstanceId"]
        cli(server, "admin", "node", "update", "m2", "--active")
        wait_for("the guest ready", lambda: "EC2GW-READY" in str(ec2.get_console_output(InstanceId=iid).get("Output")), 180, 1)
        # the image reaches m2 with the first move; a warm-up move each way, not counted
        for to in ("m2", "m1"):
            cli(server, "admin", "instance", "migrate", iid, "--to", to)
        walls, recorded = [], []
        for i in range(runs):
            to = "m2" if i % 2 == 0 else "m1"
            t = time.perf_counter()
            moved = cli(server, "admin", "instance", "migrate", iid, "--to", to)
            walls.append(time.perf_counter() - t)
            recorded.append(float(moved["seconds"]))
        ec2.terminate_instances(InstanceIds=[iid])
        wait_for("terminated", lambda: ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
                 ["State"]["Name"] == "terminated", 60)
        out["virsh"] = virsh_runs(nodes.sim, runs)
        out["ec2gw_cli"], out["ec2gw_worker"] = walls, recorded
    for key in ("ec2gw_cli", "ec2gw_worker", "virsh"):
        out[f"{key}_median"] = statistics.median(out[key])
    out["ratio_cli"] = out["ec2gw_cli_median"] / out["virsh_median"]
    out["ratio_worker"] = out["ec2gw_worker_median"] / out["virsh_median"]
    return out


def virsh_runs(sim: netns.SimulatedNodes, runs: int) -> list[float]:
    """The same kind of guest moved with plain virsh, same flags, alternating nodes."""
    uris = [n.qemu_uri for n in sim.nodes]
    conns = [libvirt.open(u) for u in uris]
    try:
        kernel, initrd, base = (image_path(conns[0], p) for p in ("aki-", "ari-", "ami-"))
        ovl = f"{VIRSH_DOMAIN}.qcow2"
        vol_xml = (f"<volume><name>{ovl}</name><capacity>16777216</capacity><target><format type='qcow2'/></target>"
                   f"<backingStore><path>{base}</path><format type='raw'/></backingStore></volume>")
        path = conns[0].storagePoolLookupByName(node_layout.INSTANCES_POOL).createXML(vol_xml, 0).path()
        # by path, as libvirt 9.0 needs for incremental copies (ec2gw's destination XML does the same)
        spec = DomainSpec(name=VIRSH_DOMAIN, uuid=str(uuid.uuid4()), memory_mib=1024, vcpus=1,
                          disks=[DiskSpec(path=path, format="qcow2")],
                          nics=[NicSpec(mac=VIRSH_MAC, network="ec2gw-bmnet")], kernel=kernel, initrd=initrd,
                          cmdline="console=ttyS0")
        conns[0].defineXML(domain_config(spec, "qemu").to_xml()).create()
        time.sleep(15)  # let it boot before the first move
        times = []
        for i in range(runs + 2):
            src, dst = (0, 1) if i % 2 == 0 else (1, 0)
            conns[dst].storagePoolLookupByName(node_layout.INSTANCES_POOL).createXML(vol_xml, 0)
            dest_ip = uris[dst].split("//")[1].split("/")[0]
            took = virsh(uris[src], "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
                         "--copy-storage-inc", "--migrate-disks", "vda", VIRSH_DOMAIN, uris[dst],
                         "--migrateuri", f"tcp://{dest_ip}")
            pool = conns[src].storagePoolLookupByName(node_layout.INSTANCES_POOL)
            pool.storageVolLookupByName(ovl).delete(0)
            if i >= 2:  # the first two are the warm-up, as for ec2gw
                times.append(took)
        dom = conns[(runs + 2) % 2].lookupByName(VIRSH_DOMAIN)
        dom.destroy()
        dom.undefine()
        return times
    finally:
        for c in conns:
            c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = run(args.runs)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"live migration of a running guest between two nodes, medians of {args.runs}:")
    print(f"  ec2gw admin instance migrate (command wall time) {out['ec2gw_cli_median']:.2f} s")
    print(f"  ec2gw worker's recorded move time               {out['ec2gw_worker_median']:.2f} s")
    print(f"  virsh migrate --live --p2p --copy-storage-inc   {out['virsh_median']:.2f} s")
    print(f"  ratio ec2gw/virsh: {out['ratio_cli']:.2f}x (command), {out['ratio_worker']:.2f}x (worker)")


if __name__ == "__main__":
    main()
