"""EBS volume benchmark: attach-to-visible time, and moving a 1 GiB volume between two nodes
through ec2gw, beside plain virsh doing the same on the same nodes, in the same run.

Set-up: two simulated QEMU nodes (tests/netns.py, qemu+tcp, a private storage directory each), one
ec2gw server, the tiny guest of scripts/build-test-guest.sh as a t2.micro on each node (two guests).
Figures, medians of N:
* attach-to-visible: AttachVolume of an empty 1 GiB volume on the guest's own node until the
  guest's `EC2GW-BLK-ADD` line shows in GetConsoleOutput (polled every 0.1 s); beside it
  `virsh attach-disk --persistent` of a volume of the same kind into the same guest until the same
  line (the same console read, so both carry its latency);
* moving 1 GiB: a volume holding 1 GiB of random bytes (qcow2, written with `virsh vol-upload`),
  detached from the guest on one node and attached to the guest on the other, alternately m1 -> m2
  -> m1: AttachVolume until DescribeVolumes shows the attachment `attached` (the move through
  ec2gw's download and upload streams and the hot-plug), in MiB/s of the volume's bytes; beside it the same bytes moved by
  `virsh vol-create-as` on the destination, `virsh -c SRC vol-download ... /dev/stdout | virsh -c DST
  vol-upload ... /dev/stdin` and `virsh vol-delete` on the source (no hot-plug).
Run: .venv/bin/python bench/volumes.py [--runs N] [--json]
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
from pathlib import Path
from typing import Any

from common import LiveServer
from two_nodes import cli, random_image, two_nodes

from ec2gw.compute import volume_store
from tests import netns
from tests.vmhost import wait_for

POOL = ("none\nbv-a 10.99.16.10 10.99.16.1 10.99.16.255 255.255.255.0\n"
        "bv-b 10.99.16.11 10.99.16.1 10.99.16.255 255.255.255.0\n")
VPOOL = volume_store.VOLUMES_POOL
FAST = {"Delay": 0.2, "MaxAttempts": 1500}  # waiters: at most five minutes


def virsh(uri: str, *args: str, timeout: float = 600) -> str:
    res = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {res.stderr}")
    return res.stdout


class Bench:
    def __init__(self, server: LiveServer, sim: netns.SimulatedNodes) -> None:
        self.server, self.sim = server, sim
        self.ec2 = server.client("ec2")
        self.uri = {f"m{n.index}": n.qemu_uri for n in sim.nodes}

    def console(self, iid: str) -> str:
        return str(self.ec2.get_console_output(InstanceId=iid, Latest=True).get("Output") or "")

    def until_console(self, iid: str, pattern: str, after: int, timeout: float = 120) -> float:
        """Poll the console every 0.1 s until ``pattern`` shows after offset ``after``; the moment it did."""
        rx = re.compile(pattern)
        wait_for(f"{pattern!r} on the console of {iid}", lambda: rx.search(self.console(iid), after), timeout, 0.1)
        return time.perf_counter()

    def waiter(self, name: str, **kw: Any) -> None:
        self.ec2.get_waiter(name).wait(WaiterConfig=FAST, **kw)

    def launch_on(self, node: str, ami: str) -> str:
        other = "m2" if node == "m1" else "m1"
        cli(self.server, "admin", "node", "update", other, "--inactive")
        try:
            iid = self.ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1,
                                         InstanceType="t2.micro")["Instances"][0]["InstanceId"]
        finally:
            cli(self.server, "admin", "node", "update", other, "--active")
        return str(iid)

    def volume_on(self, node: str, zone: str) -> str:
        """An empty 1 GiB volume made on ``node`` (the other node inactive meanwhile)."""
        other = "m2" if node == "m1" else "m1"
        cli(self.server, "admin", "node", "update", other, "--inactive")
        try:
            vid = str(self.ec2.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"])
        finally:
            cli(self.server, "admin", "node", "update", other, "--active")
        self.waiter("volume_available", VolumeIds=[vid])
        return vid

    def until_attached(self, vid: str, timeout: float = 600) -> None:
        """Poll DescribeVolumes every 0.05 s until the attachment is ``attached`` (the volume is in-use,
        attachment ``attaching``, from the AttachVolume call on: the waiter volume_in_use says nothing
        of the move)."""
        def attached() -> bool:
            vol = self.ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]
            if vol["State"] == "available":
                raise RuntimeError(f"{vid}: the attach failed: {vol}\n{self.server.log()[-3000:]}")
            return any(a["State"] == "attached" for a in vol.get("Attachments", []))
        wait_for(f"{vid} attached", attached, timeout, 0.05)

    def detach(self, vid: str, iid: str) -> None:
        mark = len(self.console(iid))
        self.ec2.detach_volume(VolumeId=vid)
        self.waiter("volume_available", VolumeIds=[vid])
        self.until_console(iid, r"EC2GW-BLK-DEL vd", mark)


def attach_runs(b: Bench, iid: str, vid: str, node: str, runs: int) -> tuple[list[float], list[float]]:
    """Attach-to-visible through ec2gw and through virsh attach-disk, alternating, into guest ``iid``."""
    uri = b.uri[node]
    peer = "bench-virsh-attach.qcow2"
    virsh(uri, "vol-create-as", VPOOL, peer, "1G", "--format", "qcow2")
    path = virsh(uri, "vol-path", "--pool", VPOOL, peer).strip()
    ours, theirs = [], []
    try:
        for _ in range(runs):
            mark = len(b.console(iid))
            t = time.perf_counter()
            b.ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
            ours.append(b.until_console(iid, r"EC2GW-BLK-ADD vd", mark) - t)
            b.waiter("volume_in_use", VolumeIds=[vid])
            b.detach(vid, iid)

            mark = len(b.console(iid))
            t = time.perf_counter()
            virsh(uri, "attach-disk", iid, path, "vdb", "--driver", "qemu", "--subdriver", "qcow2",
                  "--targetbus", "virtio", "--persistent")
            theirs.append(b.until_console(iid, r"EC2GW-BLK-ADD vd", mark) - t)
            mark = len(b.console(iid))
            virsh(uri, "detach-disk", iid, "vdb", "--persistent")
            b.until_console(iid, r"EC2GW-BLK-DEL vd", mark)
    finally:
        virsh(uri, "vol-delete", "--pool", VPOOL, peer)
    return ours, theirs


def fill(uri: str, name: str, image: Path) -> int:
    """Replace volume ``name``'s bytes by ``image`` (a qcow2 file); its size in bytes."""
    virsh(uri, "vol-upload", "--pool", VPOOL, name, str(image))
    virsh(uri, "pool-refresh", VPOOL)
    return image.stat().st_size


def move_runs(b: Bench, guests: dict[str, str], vid: str, runs: int) -> list[float]:
    """AttachVolume to the guest on the other node until in-use, alternately m1 -> m2 -> m1."""
    times = []
    at = "m1"
    for _ in range(runs):
        to = "m2" if at == "m1" else "m1"
        mark = len(b.console(guests[to]))
        t = time.perf_counter()
        b.ec2.attach_volume(VolumeId=vid, InstanceId=guests[to], Device="/dev/sdf")
        b.until_attached(vid)
        times.append(time.perf_counter() - t)
        b.until_console(guests[to], r"EC2GW-BLK-ADD vd", mark)  # seen before it is detached again
        name = volume_store.volume_name(vid)
        if name in virsh(b.uri[at], "vol-list", VPOOL) or name not in virsh(b.uri[to], "vol-list", VPOOL):
            raise RuntimeError(f"{vid} did not move from {at} to {to}")
        b.detach(vid, guests[to])
        at = to
    return times


def virsh_move_runs(b: Bench, image: Path, runs: int) -> list[float]:
    """The same bytes moved between the nodes with plain virsh, alternately m1 -> m2 -> m1."""
    name, size = "bench-virsh-move.qcow2", image.stat().st_size
    virsh(b.uri["m1"], "vol-create-as", VPOOL, name, str(size), "--format", "raw")
    fill(b.uri["m1"], name, image)
    times = []
    at = "m1"
    for _ in range(runs):
        to = "m2" if at == "m1" else "m1"
        src, dst = b.uri[at], b.uri[to]
        t = time.perf_counter()
        virsh(dst, "vol-create-as", VPOOL, name, str(size), "--format", "raw")
        pipe = (f"virsh -c {src} vol-download --pool {VPOOL} {name} /dev/stdout | "
                f"virsh -c {dst} vol-upload --pool {VPOOL} {name} /dev/stdin")
        res = subprocess.run(["bash", "-o", "pipefail", "-c", pipe], capture_output=True, text=True, timeout=600,
                             check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{pipe}: {res.stderr}")
        virsh(src, "vol-delete", "--pool", VPOOL, name)
        times.append(time.perf_counter() - t)
        at = to
    got = virsh(b.uri[at], "vol-info", "--pool", VPOOL, name, "--bytes")
    virsh(b.uri[at], "vol-delete", "--pool", VPOOL, name)
    if str(size) not in got and "1073741824" not in got:
        raise RuntimeError(f"virsh's copy is not the volume it moved: {got}")
    return times


def run(runs: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ec2gw-bench-volumes-"))
    image = random_image(root, 1)
    out: dict[str, Any] = {"runs": runs, "bytes": image.stat().st_size}
    try:
        with two_nodes(root, "bvnet", POOL) as nodes:
            b = Bench(nodes.server, nodes.sim)
            guests = {node: b.launch_on(node, nodes.ami) for node in ("m1", "m2")}
            for iid in guests.values():
                wait_for(f"{iid} ready", lambda iid=iid: "EC2GW-READY" in b.console(iid), 300, 1)
            zone = b.ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]

            small = b.volume_on("m1", zone)
            out["attach_ec2gw"], out["attach_virsh"] = attach_runs(b, guests["m1"], small, "m1", runs)
            b.ec2.delete_volume(VolumeId=small)

            big = b.volume_on("m1", zone)
            fill(b.uri["m1"], volume_store.volume_name(big), image)
            # the first attach is on m1 itself (no move): the guest there then sees the filled volume
            mark = len(b.console(guests["m1"]))
            b.ec2.attach_volume(VolumeId=big, InstanceId=guests["m1"], Device="/dev/sdf")
            b.waiter("volume_in_use", VolumeIds=[big])
            b.until_console(guests["m1"], r"EC2GW-BLK-ADD vd", mark)
            b.detach(big, guests["m1"])
            out["move_ec2gw"] = move_runs(b, guests, big, runs)
            out["move_virsh"] = virsh_move_runs(b, image, runs)

            b.ec2.terminate_instances(InstanceIds=list(guests.values()))
            b.waiter("instance_terminated", InstanceIds=list(guests.values()))
            b.waiter("volume_available", VolumeIds=[big])
            b.ec2.delete_volume(VolumeId=big)
            b.waiter("volume_deleted", VolumeIds=[big])
    finally:
        shutil.rmtree(root, ignore_errors=True)  # the image, the nodes' volumes, the server's data
    mib = out["bytes"] / (1 << 20)
    for key in ("attach_ec2gw", "attach_virsh", "move_ec2gw", "move_virsh"):
        out[f"{key}_median"] = statistics.median(out[key])
    out["move_ec2gw_mib_s"] = mib / out["move_ec2gw_median"]
    out["move_virsh_mib_s"] = mib / out["move_virsh_median"]
    out["ratio_attach"] = out["attach_ec2gw_median"] / out["attach_virsh_median"]
    out["ratio_move"] = out["move_ec2gw_median"] / out["move_virsh_median"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = run(args.runs)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"EBS volumes on two QEMU nodes, medians of {args.runs}:")
    print(f"  attach to visible (EC2GW-BLK-ADD)  ec2gw AttachVolume {out['attach_ec2gw_median']:.2f} s, "
          f"virsh attach-disk {out['attach_virsh_median']:.2f} s, ratio {out['ratio_attach']:.2f}x")
    print(f"  moving {out['bytes'] / (1 << 20):.0f} MiB between the nodes  "
          f"ec2gw AttachVolume until attached {out['move_ec2gw_median']:.2f} s ({out['move_ec2gw_mib_s']:.0f} MiB/s), "
          f"virsh vol-download | vol-upload {out['move_virsh_median']:.2f} s ({out['move_virsh_mib_s']:.0f} MiB/s), "
          f"ratio {out['ratio_move']:.2f}x")


if __name__ == "__main__":
    main()
