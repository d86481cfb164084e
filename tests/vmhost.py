"""A QEMU VMM node for the vm tests and bench/vm_boot.py, and the tiny guest they boot.

VmHost is a libvirtd (with virtlogd, for serial console logs) that the tests start in a mount
and network namespace of their own (backends.libvirt.testing.PrivateLibvirtd: `unshare --mount
--net`, private /etc/libvirt, /var/lib/libvirt, /run/libvirt, ... under a temporary directory),
so bridges, dnsmasq and firewall rules never touch the machine's own namespace; its unix socket
is reachable from outside. /dev/kvm is replaced inside that namespace by a node owned by
root:kvm, mode 0660, which is what ../shared/virt/NOTES.md asks for before libvirtd starts
(without it every define re-probes QEMU for 30-45 s), without changing the machine's own
device. stop() destroys guests and networks and kills every process left in the namespace
(QEMU, dnsmasq, virtlogd) by pid.

build_guest() runs scripts/build-test-guest.sh (cached in tests/.guest/) and returns its files;
the script's header lists the guest's console markers and the CGI scripts it serves on port 80.
VmHost.http() reaches those from the node's network namespace, as the node's host side would.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import libvirt

from backends.libvirt.testing import PrivateLibvirtd, qemu_unavailable_reason

ROOT = Path(__file__).resolve().parent.parent
GUEST_DIR = ROOT / "tests" / ".guest"

libvirt.registerErrorHandler(lambda *_a: None, None)


@dataclass(frozen=True)
class GuestFiles:
    kernel: Path
    initrd: Path
    disk: Path


def build_guest(timeout: float = 300.0) -> GuestFiles:
    """The tiny test guest (kernel, initramfs, 16 MiB disk), built from Debian packages once."""
    proc = subprocess.run([str(ROOT / "scripts" / "build-test-guest.sh")], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/build-test-guest.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    files = GuestFiles(GUEST_DIR / "vmlinuz", GUEST_DIR / "initrd.img", GUEST_DIR / "disk.img")
    for f in (files.kernel, files.initrd, files.disk):
        if not f.is_file() or f.stat().st_size == 0:
            raise RuntimeError(f"scripts/build-test-guest.sh did not produce {f}")
    return files


def unavailable_reason() -> str | None:
    """Why a VmHost cannot run here (root, unshare, libvirtd and QEMU are needed), or None."""
    return qemu_unavailable_reason()


class VmHost:
    """A private libvirtd running QEMU guests; ``uri`` is what `ec2gw admin node add --uri` takes."""

    def __init__(self, root: Path) -> None:
        self.daemon = PrivateLibvirtd(Path(root), virtlogd=True)

    @property
    def uri(self) -> str:
        return self.daemon.uri("qemu")

    def start(self) -> Self:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(f"cannot run QEMU guests here: {reason} (scripts/install-system-deps.sh installs them)")
        self.daemon.start()
        return self

    def stop(self) -> None:
        self.daemon.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the tests look at, straight from libvirt ---------------------------------------
    def _conn(self) -> Any:
        return libvirt.open(self.uri)

    def domains(self) -> dict[str, int]:
        """Domain name -> libvirt state number."""
        conn = self._conn()
        try:
            return {d.name(): d.state()[0] for d in conn.listAllDomains(0)}
        finally:
            conn.close()

    def volumes(self, pool: str) -> list[str]:
        """Names of the volumes in ``pool`` (refreshed first); [] when the pool does not exist."""
        conn = self._conn()
        try:
            try:
                p = conn.storagePoolLookupByName(pool)
            except libvirt.libvirtError:
                return []
            p.refresh(0)
            return sorted(v.name() for v in p.listAllVolumes(0))
        finally:
            conn.close()

    def read_volume(self, pool: str, name: str) -> bytes:
        conn = self._conn()
        try:
            vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
            stream = conn.newStream(0)
            vol.download(stream, 0, 0, 0)
            out = bytearray()
            while True:
                data = stream.recv(1 << 20)
                if not data:
                    break
                out += data
            stream.finish()
            return bytes(out)
        finally:
            conn.close()

    def in_netns(self, *cmd: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the node's network namespace, where its networks' bridges (and their
        gateway addresses) are: how a test reaches a guest as the node's host side does."""
        assert self.daemon.process is not None, "the node is not running"
        return subprocess.run(["nsenter", f"--net=/proc/{self.daemon.process.pid}/ns/net", *cmd],
                              capture_output=True, text=True, timeout=timeout + 5, check=False)

    def http(self, ip: str, path: str = "/", timeout: float = 5.0) -> str | None:
        """GET http://ip/path from the node's network namespace (the test guest serves port 80):
        the body of a 200 answer, or None when nothing answered within ``timeout`` seconds."""
        proc = self.in_netns("curl", "-s", "-m", str(timeout), "-w", "\n%{http_code}", f"http://{ip}{path}",
                             timeout=timeout)
        body, _, code = proc.stdout.rpartition("\n")
        return body if proc.returncode == 0 and code == "200" else None

    def qemu_pid(self, name: str) -> int | None:
        """The pid of the QEMU process running domain ``name`` on this node, or None."""
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        args = f.read().split(b"\0")
                except OSError:
                    continue
                if f"guest={name},".encode() in b" ".join(args) and b"-name" in args:
                    return int(entry)
        return None

    def dhcp_hosts(self, network: str) -> list[str]:
        """The MACs with a static DHCP entry on ``network``."""
        from backends.libvirt.config_network import Network

        conn = self._conn()
        try:
            net = conn.networkLookupByName(network)
            return [h.mac for h in Network.from_xml(net.XMLDesc(0)).hosts]
        finally:
            conn.close()


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.25) -> Any:
    """Poll ``check()`` until it returns something truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what}: not reached within {timeout} s (last value: {last!r})")
