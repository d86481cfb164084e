"""The set-up the two-node benchmarks (migrate.py, volumes.py) share: one ec2gw server over two
simulated QEMU nodes m1 and m2 (tests/netns.py, qemu+tcp, a private storage directory each) on an
isolated network of their own, with the tiny guest of scripts/build-test-guest.sh imported as an image.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import LiveServer

from tests import netns
from tests.vmhost import build_guest


def cli(server: LiveServer, *args: str, timeout: float = 600) -> Any:
    """`ec2gw ARGS --json` against the server's data, its answer as JSON; a failure raises with the server's log."""
    out = server.cli(*args, "--json", check=False, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"ec2gw {' '.join(args)}: {out.stderr}\n{server.log()[-3000:]}")
    return json.loads(out.stdout)


def random_image(root: Path, gib: int) -> Path:
    """A qcow2 file ``root``/fill.qcow2 of ``gib`` GiB virtual size, every byte written (random)."""
    raw, image = root / "fill.raw", root / "fill.qcow2"
    with open(raw, "wb") as f:
        for _ in range(gib << 10):
            f.write(os.urandom(1 << 20))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True, timeout=600)
    raw.unlink()
    return image


@dataclass(frozen=True)
class TwoNodes:
    server: LiveServer
    sim: netns.SimulatedNodes
    #: the guest's machine image (with its kernel and ramdisk)
    ami: str


@contextmanager
def two_nodes(root: Path, network: str, pool: str) -> Iterator[TwoNodes]:
    """Start the nodes and the server (its data in root/data), add the address pool `network` (the
    lines of `pool`) and the nodes m1 and m2 on it, import the guest; stop both at the end."""
    guest = build_guest()
    sim = netns.SimulatedNodes(2, root / "nodes", qemu=True)
    storage = f"/var/lib/libvirt/ec2gw-{sim.token}"
    server = LiveServer(root / "data", env={"EC2GW_NODE_STORAGE_DIR": storage, "EC2GW_WORKER_INTERVAL": "0.1",
                                            "EC2GW_STOP_TIMEOUT": "5"})
    try:
        sim.start()
        server.start()
        (root / "pool.txt").write_text(pool)
        cli(server, "admin", "pool", "add", network, str(root / "pool.txt"), "--network-mode", "isolated")
        for n in sim.nodes:
            cli(server, "admin", "node", "add", f"m{n.index}", "--uri", n.qemu_uri, "--domain-type", "qemu", "--pools",
                network, "--memory", "4096", "--vcpus", "2")
        aki = cli(server, "admin", "image", "import", "b-kernel", str(guest.kernel), "--kind", "kernel")["image_id"]
        ari = cli(server, "admin", "image", "import", "b-initrd", str(guest.initrd), "--kind", "ramdisk")["image_id"]
        ami = cli(server, "admin", "image", "import", "b-disk", str(guest.disk), "--kernel", aki, "--ramdisk", ari)["image_id"]
        yield TwoNodes(server, sim, str(ami))
    finally:
        server.stop()
        sim.stop()
