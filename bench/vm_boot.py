"""VM boot benchmark: real QEMU guests through the EC2 API, beside the same guest started with virsh.

Figures (same run, same node, the tiny guest of scripts/build-test-guest.sh, one guest at a time):
  RunInstances -> DHCP lease on the console (GetConsoleOutput), median of N, and the same guest
  defined from the same domain XML and started with plain `virsh create` -> lease in its console
  log, median of N. Target: the API launch within 1.5x of virsh.
  Bytes copied to the node by a second launch of the same image: the image pool's growth (target
  0) and the instance's own new volumes (overlay and seed).
  Launch time for a 1 GiB image vs the 16 MiB one, both already cached on the node (target: equal
  within noise), and their first launches (which upload the image once).
Run: .venv/bin/python bench/vm_boot.py [--runs N] [--json]
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
from common import LiveServer

from backends.base import DiskSpec, DomainSpec, NicSpec
from backends.libvirt.designer import domain_config
from backends.seed import SeedData, build_seed_iso
from tests.vmhost import VmHost, build_guest, wait_for

POOL = "none\n" + "".join(f"b{i} 10.98.0.{10 + i} 10.98.0.1 10.98.0.255 255.255.255.0\n" for i in range(8))
LEASE = re.compile(r"EC2GW-LEASE ip=(\S+)")
VIRSH_MAC, VIRSH_IP = "52:54:00:98:00:c8", "10.98.0.200"


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.guest = build_guest()
        self.host = VmHost(root / "node")
        self.server = LiveServer(root / "data", env={"EC2GW_NODE_STORAGE_DIR": str(root / "node-storage"),
                                                     "EC2GW_WORKER_INTERVAL": "0.05", "EC2GW_STOP_TIMEOUT": "20"})

    def start(self) -> None:
        """The node, the service, a pool, the node registered and the guest's images in Cumulus."""
        self.host.start()
        self.server.start()
        self.ec2 = self.server.client("ec2")
        (self.root / "pool.txt").write_text(POOL)
        self.cli("admin", "pool", "add", "bench", str(self.root / "pool.txt"), "--network-mode", "isolated")
        self.cli("admin", "node", "add", "n1", "--uri", self.host.uri, "--domain-type", "qemu", "--pools", "bench",
                 "--memory", "8192", "--vcpus", "4")
        self.aki = self.cli("admin", "image", "import", "tiny-kernel", str(self.guest.kernel), "--kind", "kernel")["image_id"]
        self.ari = self.cli("admin", "image", "import", "tiny-initrd", str(self.guest.initrd), "--kind", "ramdisk")["image_id"]
        self.small = self.cli("admin", "image", "import", "disk16m", str(self.guest.disk), "--kernel", self.aki,
                              "--ramdisk", self.ari)["image_id"]

    def close(self) -> None:
        self.server.stop()
        self.host.stop()

    def full_log(self) -> str:
        assert self.server.log_path is not None
        return self.server.log_path.read_text(errors="replace")

    def cli(self, *args: str) -> Any:
        out = self.server.cli(*args, "--json", check=False, timeout=600)
        if out.returncode:
            raise RuntimeError(f"ec2gw {' '.join(args)}: {out.stderr}")
        return json.loads(out.stdout)

    def import_big(self, size: int) -> str:
        big = self.root / "disk1g.img"
        shutil.copyfile(self.guest.disk, big)
        with open(big, "r+b") as f:
            f.truncate(size)
        return str(self.cli("admin", "image", "import", "disk1g", str(big), "--kernel", self.aki,
                            "--ramdisk", self.ari)["image_id"])

    # -- the API path ------------------------------------------------------------------------
    def api_launch(self, image_id: str) -> tuple[float, str]:
        """Seconds from RunInstances to the lease on GetConsoleOutput; the instance id."""
        t0 = time.perf_counter()
        iid = self.ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t2.micro")[
            "Instances"][0]["InstanceId"]

        def leased() -> bool:
            out = self.ec2.get_console_output(InstanceId=iid).get("Output") or ""
            return bool(LEASE.search(out))
        wait_for(f"lease of {iid}", leased, 120, 0.2)
        return time.perf_counter() - t0, iid

    def terminate(self, iid: str) -> None:
        self.ec2.terminate_instances(InstanceIds=[iid])
        wait_for(f"{iid} terminated", lambda: self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0][
            "Instances"][0]["State"]["Name"] == "terminated", 60, 0.1)

    # -- the plain virsh path ----------------------------------------------------------------
    def virsh_setup(self) -> None:
        """Files for the virsh guest: the same kernel, initrd and disk, an overlay, a seed, a log dir."""
        d = self.root / "virsh"
        d.mkdir(exist_ok=True)
        shutil.copyfile(self.guest.disk, d / "base.img")
        (d / "seed.iso").write_bytes(build_seed_iso(SeedData("i-virsh", "virsh")))
        self.virsh("net-update", "ec2gw-bench", "add", "ip-dhcp-host",
                   f"<host mac='{VIRSH_MAC}' name='virsh' ip='{VIRSH_IP}'/>", "--live")

    def virsh(self, *args: str) -> None:
        subprocess.run(["virsh", "-q", "-c", self.host.uri, *args], check=True, capture_output=True, timeout=60)

    def virsh_launch(self, n: int) -> float:
        d = self.root / "virsh"
        overlay, log = d / f"overlay{n}.qcow2", d / f"console{n}.log"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(d / "base.img"), "-F", "raw", str(overlay)],
                       check=True, timeout=30)
        spec = DomainSpec(name=f"virsh-{n}", uuid=str(uuid.uuid4()), memory_mib=1024, vcpus=1, domain_type="qemu",
                          disks=[DiskSpec(path=str(overlay), format="qcow2", bus="virtio"),
                                 DiskSpec(path=str(d / "seed.iso"), format="raw", device="cdrom", bus="ide")],
                          nics=[NicSpec(mac=VIRSH_MAC, network="ec2gw-bench")], kernel=str(self.guest.kernel),
                          initrd=str(self.guest.initrd), cmdline="console=ttyS0 root=/dev/vda", console_log=str(log))
        xml = d / f"dom{n}.xml"
        xml.write_text(domain_config(spec, "qemu").to_xml())
        t0 = time.perf_counter()
        self.virsh("create", str(xml))
        wait_for("virsh guest lease", lambda: log.exists() and LEASE.search(log.read_text(errors="replace")), 120, 0.2)
        took = time.perf_counter() - t0
        self.virsh("destroy", f"virsh-{n}")
        overlay.unlink()
        return took

    def pool_bytes(self, pool: str) -> dict[str, int]:
        conn = libvirt.open(self.host.uri)
        try:
            p = conn.storagePoolLookupByName(pool)
            p.refresh(0)
            return {v.name(): v.info()[2] for v in p.listAllVolumes(0)}
        finally:
            conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ec2gw-vmbench-"))
    b = Bench(root)
    out: dict[str, Any] = {}
    try:
        b.start()
        first, iid = b.api_launch(b.small)  # warm-up: QEMU probe, image upload, network creation
        out["first_launch_16m_s"] = first
        b.terminate(iid)
        images_before = b.pool_bytes("ec2gw-images")
        uploads_before = b.full_log().count("cached on node")
        t, iid = b.api_launch(b.small)
        images_after = b.pool_bytes("ec2gw-images")
        own = {k: v for k, v in b.pool_bytes("ec2gw-instances").items() if k.startswith(iid)}
        out["second_launch_image_uploads"] = b.full_log().count("cached on node") - uploads_before
        copied = re.findall(rf"{iid}: provisioned on node n1 in [0-9.]+ s \((\d+) image bytes uploaded\)", b.full_log())
        out["second_launch_image_bytes_uploaded"] = int(copied[-1]) if copied else None
        out["second_launch_image_pool_growth_bytes"] = sum(images_after.values()) - sum(images_before.values())
        out["second_launch_image_pool_growth_by_volume"] = {
            k: v - images_before.get(k, 0) for k, v in images_after.items() if v != images_before.get(k, 0)}
        out["second_launch_instance_volumes_bytes"] = own
        b.terminate(iid)
        api: list[float] = []
        virsh: list[float] = []
        b.virsh_setup()
        for n in range(args.runs):  # alternated, so that load from elsewhere hits both alike
            t, iid = b.api_launch(b.small)
            api.append(t)
            b.terminate(iid)
            virsh.append(b.virsh_launch(n))
        out["api_launch_s"] = statistics.median(api)
        out["virsh_launch_s"] = statistics.median(virsh)
        out["api_over_virsh"] = out["api_launch_s"] / out["virsh_launch_s"]
        big = b.import_big(1 << 30)
        first_big, iid = b.api_launch(big)
        out["first_launch_1g_s"] = first_big
        b.terminate(iid)
        sizes: dict[str, list[float]] = {"16m": [], "1g": []}
        for _ in range(3):
            for label, image in (("16m", b.small), ("1g", big)):
                t, iid = b.api_launch(image)
                sizes[label].append(t)
                b.terminate(iid)
        out["cached_launch_16m_s"] = statistics.median(sizes["16m"])
        out["cached_launch_1g_s"] = statistics.median(sizes["1g"])
        out["runs"] = {"api": api, "virsh": virsh, **sizes}
        prep = [float(x) for x in re.findall(r"provisioned on node n1 in ([0-9.]+) s", b.full_log())]
        out["provisioning_median_s"] = statistics.median(prep) if prep else None
    finally:
        b.close()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"RunInstances -> lease (median of {args.runs}) {out['api_launch_s']:8.2f} s")
    print(f"virsh create -> lease (median of {args.runs}) {out['virsh_launch_s']:8.2f} s")
    print(f"  of which provisioning (median)     {out['provisioning_median_s'] or 0:8.2f} s (pools, cache check, overlay, "
          "seed, DHCP entry)")
    print(f"API / virsh                          {out['api_over_virsh']:8.2f} x   (target <= 1.5)")
    print(f"2nd launch: image bytes uploaded     {out['second_launch_image_bytes_uploaded']:8d} bytes (target 0; "
          f"{out['second_launch_image_uploads']} uploads)")
    print(f"2nd launch: image pool allocation    {out['second_launch_image_pool_growth_bytes']:+8d} bytes "
          f"{out['second_launch_image_pool_growth_by_volume'] or ''} (file system block accounting, no writes)")
    print(f"2nd launch: its own volumes          {out['second_launch_instance_volumes_bytes']}")
    print(f"first launch 16 MiB image            {out['first_launch_16m_s']:8.2f} s (QEMU probe, upload, network)")
    print(f"first launch 1 GiB image             {out['first_launch_1g_s']:8.2f} s (uploads 1 GiB once)")
    print(f"cached launch 16 MiB vs 1 GiB        {out['cached_launch_16m_s']:8.2f} s vs {out['cached_launch_1g_s']:.2f} s")


if __name__ == "__main__":
    main()
