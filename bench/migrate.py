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
With --volume-gib N (default 0: none), each guest also has an N GiB qcow2 volume in its node's
`ec2gw-volumes` pool, every byte of it random (a qcow2 file written once here, put into the
volume with `virsh vol-upload` before it is attached: the test guest cannot write much itself):
* ec2gw: CreateVolume on the guest's node, the bytes uploaded, AttachVolume until DescribeVolumes
  shows it `attached` and the guest has seen it (`EC2GW-BLK-ADD`); each move then copies it too;
* virsh: the like volume as the second guest's vdb, moved with `--migrate-disks vda,vdb` after
  creating an empty qcow2 volume of the same size on the destination beside the empty overlay;
plus the volume's bytes per second of each median; after the last move both volumes are compared
with the random file (`qemu-img compare`), so a move that lost bytes fails the run.
Beside each, libvirt's own figures of each move (the destination's completed migration job: time,
downtime and what else it reports), medians in --json ("ec2gw_job_median", "virsh_job_median").
At most two guests run at once. Run: .venv/bin/python bench/migrate.py [--runs N] [--volume-gib N] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import libvirt
from two_nodes import TwoNodes, cli, random_image, two_nodes

from backends.base import DiskSpec, DomainSpec, NicSpec
from backends.libvirt.designer import domain_config
from ec2gw.compute import node_layout, volume_store
from tests import netns
from tests.vmhost import wait_for

POOL = "none\nbm-a 10.99.14.10 10.99.14.1 10.99.14.255 255.255.255.0\n"
VIRSH_DOMAIN, VIRSH_MAC = "bench-virsh", "52:54:00:99:0e:c8"
VPOOL = volume_store.VOLUMES_POOL
VIRSH_VOLUME = "bench-virsh-vol.qcow2"
GIB = 1 << 30


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


def same_bytes(image: Path, path: str, what: str) -> None:
    """Fail unless the qcow2 file ``path`` (read while its guest runs) holds the bytes of ``image``."""
    res = subprocess.run(["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2", str(image), path],
                         capture_output=True, text=True, timeout=600, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{what} ({path}) is not the volume that was moved: {res.stdout}{res.stderr}")


def volume_path(uri: str, name: str) -> str:
    """The file of volume ``name`` of the volumes pool, as the node sees it."""
    conn = libvirt.open(uri)
    try:
        pool = conn.storagePoolLookupByName(VPOOL)
        pool.refresh(0)
        return str(pool.storageVolLookupByName(name).path())
    finally:
        conn.close()


def host_path(node: netns.SimNode, name: str) -> str:
    """The file of volume ``name`` as this host sees it (the node's /var/lib/libvirt is its root/lib)."""
    return str(node.root / "lib" / Path(volume_path(node.qemu_uri, name)).relative_to("/var/lib/libvirt"))


def job_stats(uri: str, name: str) -> dict[str, float]:
    """libvirt's figures of the migration that brought domain ``name`` to node ``uri`` (its completed
    job there): seconds, downtime in ms, and every other number that job reports, by libvirt's name."""
    conn = libvirt.open(uri)
    try:
        got = conn.lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    finally:
        conn.close()
    numbers = {k: float(v) for k, v in got.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {"seconds": numbers.get("time_elapsed", 0) / 1000, "downtime_ms": numbers.get("downtime", 0), **numbers}


def job_medians(jobs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure all of ``jobs`` report."""
    return {key: statistics.median(j[key] for j in jobs) for key in jobs[0] if all(key in j for j in jobs)}


def launch(nodes: TwoNodes, image: Path | None) -> tuple[str, str | None]:
    """The guest on m1 (m2 inactive meanwhile), with a volume holding ``image``'s bytes attached
    when there is one; its instance and volume ids."""
    server, ec2 = nodes.server, nodes.server.client("ec2")
    cli(server, "admin", "node", "update", "m2", "--inactive")
    try:
        inst = ec2.run_instances(ImageId=nodes.ami, MinCount=1, MaxCount=1, InstanceType="t2.micro")["Instances"][0]
        vid = None
        if image is not None:
            zone = inst["Placement"]["AvailabilityZone"]
            vid = str(ec2.create_volume(Size=image_size(image) // GIB, AvailabilityZone=zone)["VolumeId"])
    finally:
        cli(server, "admin", "node", "update", "m2", "--active")
    iid = str(inst["InstanceId"])
    console = lambda: str(ec2.get_console_output(InstanceId=iid, Latest=True).get("Output") or "")  # noqa: E731
    wait_for("the guest ready", lambda: "EC2GW-READY" in console(), 180, 1)
    if vid is None or image is None:
        return iid, None
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})
    m1 = nodes.sim.nodes[0].qemu_uri
    virsh(m1, "vol-upload", "--pool", VPOOL, volume_store.volume_name(vid), str(image))
    virsh(m1, "pool-refresh", VPOOL)
    mark = len(console())
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")

    def attached() -> bool:
        vol = ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]
        if vol["State"] == "available":
            raise RuntimeError(f"{vid}: the attach failed: {vol}\n{server.log()[-3000:]}")
        return any(a["State"] == "attached" for a in vol.get("Attachments", []))
    wait_for(f"{vid} attached", attached, 120, 0.2)
    wait_for("the guest seeing the volume", lambda: "EC2GW-BLK-ADD vdb" in console()[mark:], 60, 0.5)
    return iid, vid


def phases(nodes: TwoNodes, iid: str, runs: int) -> tuple[list[float], list[float]]:
    """The worker's split of the last ``runs`` moves of ``iid``, from the server's log: seconds
    preparing the destination, seconds in the migration call."""
    path = nodes.server.log_path
    text = path.read_text(errors="replace") if path else ""
    found = re.findall(rf"{iid}: destination m\d prepared in ([\d.]+) s, guest migrated in ([\d.]+) s", text)[-runs:]
    if len(found) != runs:
        raise RuntimeError(f"the server's log shows {len(found)} of the {runs} moves' times: {text[-3000:]}")
    return [float(p) for p, _ in found], [float(m) for _, m in found]


def run(runs: int, volume_gib: int = 0) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ec2gw-bench-migrate-"))
    out: dict[str, Any] = {"runs": runs, "volume_gib": volume_gib}
    try:
        image = random_image(root, volume_gib) if volume_gib else None
        with two_nodes(root, "bmnet", POOL) as nodes:
            server, ec2 = nodes.server, nodes.server.client("ec2")
            iid, vid = launch(nodes, image)
            # the image reaches m2 with the first move; a warm-up move each way, not counted
            for to in ("m2", "m1"):
                cli(server, "admin", "instance", "migrate", iid, "--to", to)
            walls, recorded, jobs = [], [], []
            to = "m1"
            for i in range(runs):
                to = "m2" if i % 2 == 0 else "m1"
                t = time.perf_counter()
                moved = cli(server, "admin", "instance", "migrate", iid, "--to", to)
                walls.append(time.perf_counter() - t)
                recorded.append(float(moved["seconds"]))
                jobs.append(job_stats(nodes.sim.nodes[int(to[1:]) - 1].qemu_uri, iid))
            out["ec2gw_prepare"], out["ec2gw_migrate"] = phases(nodes, iid, runs)
            if vid is not None and image is not None:
                att = ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["Attachments"]
                if [(a["InstanceId"], a["State"]) for a in att] != [(iid, "attached")]:
                    raise RuntimeError(f"{vid} is no longer attached to {iid} after the moves: {att}")
                node = nodes.sim.nodes[int(to[1:]) - 1]
                same_bytes(image, host_path(node, volume_store.volume_name(vid)), f"{vid} on {to}")
            ec2.terminate_instances(InstanceIds=[iid])
            wait_for("terminated", lambda: ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
                     ["State"]["Name"] == "terminated", 60)
            if vid is not None:
                ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})
                ec2.delete_volume(VolumeId=vid)
            out["virsh"], virsh_jobs = virsh_runs(nodes.sim, runs, image)
            out["ec2gw_job_median"], out["virsh_job_median"] = job_medians(jobs), job_medians(virsh_jobs)
            out["ec2gw_cli"], out["ec2gw_worker"] = walls, recorded
    finally:
        shutil.rmtree(root, ignore_errors=True)  # the random volume image, the server's data
    for key in ("ec2gw_cli", "ec2gw_worker", "ec2gw_prepare", "ec2gw_migrate", "virsh"):
        out[f"{key}_median"] = statistics.median(out[key])
    out["ratio_cli"] = out["ec2gw_cli_median"] / out["virsh_median"]
    out["ratio_worker"] = out["ec2gw_worker_median"] / out["virsh_median"]
    if volume_gib:
        out["volume_bytes"] = volume_gib * GIB
        for key in ("ec2gw_cli", "ec2gw_worker", "ec2gw_migrate", "virsh"):
            out[f"{key}_volume_mib_s"] = volume_gib * 1024 / out[f"{key}_median"]
    return out


def virsh_runs(sim: netns.SimulatedNodes, runs: int, image: Path | None) -> tuple[list[float], list[dict[str, float]]]:
    """The same kind of guest moved with plain virsh, same flags, alternating nodes; with a volume
    holding ``image``'s bytes as its vdb when there is one."""
    uris = [n.qemu_uri for n in sim.nodes]
    conns = [libvirt.open(u) for u in uris]
    try:
        kernel, initrd, base = (image_path(conns[0], p) for p in ("aki-", "ari-", "ami-"))
        ovl = f"{VIRSH_DOMAIN}.qcow2"
        vol_xml = (f"<volume><name>{ovl}</name><capacity>16777216</capacity><target><format type='qcow2'/></target>"
                   f"<backingStore><path>{base}</path><format type='raw'/></backingStore></volume>")
        path = conns[0].storagePoolLookupByName(node_layout.INSTANCES_POOL).createXML(vol_xml, 0).path()
        # by path, as libvirt 9.0 needs for incremental copies (ec2gw's destination XML does the same)
        disks = [DiskSpec(path=path, format="qcow2")]
        data_xml = ""
        if image is not None:
            size = image_size(image)
            data_xml = (f"<volume><name>{VIRSH_VOLUME}</name><capacity>{size}</capacity>"
                        f"<target><format type='qcow2'/></target></volume>")
            conns[0].storagePoolLookupByName(VPOOL).createXML(data_xml, 0)
            virsh(uris[0], "vol-upload", "--pool", VPOOL, VIRSH_VOLUME, str(image))
            virsh(uris[0], "pool-refresh", VPOOL)
            disks.append(DiskSpec(path=volume_path(uris[0], VIRSH_VOLUME), format="qcow2"))
        spec = DomainSpec(name=VIRSH_DOMAIN, uuid=str(uuid.uuid4()), memory_mib=1024, vcpus=1, disks=disks,
                          nics=[NicSpec(mac=VIRSH_MAC, network="ec2gw-bmnet")], kernel=kernel, initrd=initrd,
                          cmdline="console=ttyS0")
        conns[0].defineXML(domain_config(spec, "qemu").to_xml()).create()
        time.sleep(15)  # let it boot before the first move
        times, jobs = [], []
        for i in range(runs + 2):
            src, dst = (0, 1) if i % 2 == 0 else (1, 0)
            conns[dst].storagePoolLookupByName(node_layout.INSTANCES_POOL).createXML(vol_xml, 0)
            if data_xml:
                conns[dst].storagePoolLookupByName(VPOOL).createXML(data_xml, 0)
            dest_ip = uris[dst].split("//")[1].split("/")[0]
            took = virsh(uris[src], "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
                         "--copy-storage-inc", "--migrate-disks", "vda,vdb" if data_xml else "vda", VIRSH_DOMAIN,
                         uris[dst], "--migrateuri", f"tcp://{dest_ip}")
            conns[src].storagePoolLookupByName(node_layout.INSTANCES_POOL).storageVolLookupByName(ovl).delete(0)
            if data_xml:
                conns[src].storagePoolLookupByName(VPOOL).storageVolLookupByName(VIRSH_VOLUME).delete(0)
            if i >= 2:  # the first two are the warm-up, as for ec2gw
                times.append(took)
                jobs.append(job_stats(uris[dst], VIRSH_DOMAIN))
        last = (runs + 2) % 2
        if image is not None:
            same_bytes(image, host_path(sim.nodes[last], VIRSH_VOLUME), f"virsh's {VIRSH_VOLUME}")
        dom = conns[last].lookupByName(VIRSH_DOMAIN)
        dom.destroy()
        dom.undefine()
        if image is not None:
            conns[last].storagePoolLookupByName(VPOOL).storageVolLookupByName(VIRSH_VOLUME).delete(0)
        return times, jobs
    finally:
        for c in conns:
            c.close()


def image_size(image: Path) -> int:
    """The virtual size of the qcow2 file ``image``, in bytes."""
    info = subprocess.run(["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    return int(json.loads(info)["virtual-size"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--volume-gib", type=int, default=0, metavar="N",
                    help="attach an N GiB EBS volume of random bytes to each guest (default 0: none)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.volume_gib < 0:
        ap.error(f"--volume-gib must be 0 (no volume) or a positive number of GiB, not {args.volume_gib}")
    out = run(args.runs, args.volume_gib)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    with_volume = f" with a {args.volume_gib} GiB EBS volume of random bytes" if args.volume_gib else ""
    print(f"live migration of a running guest{with_volume} between two nodes, medians of {args.runs}:")
    print(f"  ec2gw admin instance migrate (command wall time) {out['ec2gw_cli_median']:.2f} s")
    print(f"  ec2gw worker's recorded move time               {out['ec2gw_worker_median']:.2f} s")
    print(f"  virsh migrate --live --p2p --copy-storage-inc   {out['virsh_median']:.2f} s")
    print(f"  ratio ec2gw/virsh: {out['ratio_cli']:.2f}x (command), {out['ratio_worker']:.2f}x (worker)")
    if args.volume_gib:
        print(f"  the worker's move: preparing the destination {out['ec2gw_prepare_median']:.2f} s, "
              f"the migration call {out['ec2gw_migrate_median']:.2f} s")
        for who in ("ec2gw", "virsh"):
            job = out[f"{who}_job_median"]
            print(f"  libvirt's migration job ({who}, on the destination): {job['seconds']:.2f} s, "
                  f"downtime {job['downtime_ms']:.0f} ms")
        print(f"  volume bytes per second: ec2gw {out['ec2gw_worker_volume_mib_s']:.0f} MiB/s (worker), "
              f"{out['ec2gw_cli_volume_mib_s']:.0f} MiB/s (command), {out['ec2gw_migrate_volume_mib_s']:.0f} MiB/s "
              f"(migration call); virsh {out['virsh_volume_mib_s']:.0f} MiB/s")


if __name__ == "__main__":
    main()
