"""Simulated VMM nodes: one libvirtd per network namespace, reachable over TCP (test+tcp://).

What /work/shared/virt/NOTES.md measured, as a fixture: each node gets a network namespace the
tests create, a veth into a host bridge (a /24 under 10.77.0.0/16 nobody else uses), private copies
of /etc/libvirt, /var/lib/libvirt, /run/libvirt, /var/log/libvirt and /var/cache/libvirt bind-mounted
in its own mount namespace, and `libvirtd -d -l` listening on its address only, without
authentication (test hosts only). Clients reach node i at ``test+tcp://10.77.X.i/default``; with
``qemu=True`` the nodes also run QEMU guests at ``qemu+tcp://10.77.X.i/system`` (virtlogd for
serial logs, a private /dev/kvm node as NOTES.md asks).

stop() leaves nothing behind: every daemon is stopped by its pid file, whatever still runs in a
namespace is killed by pid, namespaces, veths and the bridge are deleted. A watchdog process does
the same if the test process dies without cleaning up. Traffic only ever goes to the bridge's own
subnet.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import libvirt

from tests.pg import start_watchdog, stop_watchdog

_START = """#!/bin/sh
set -e
R={root}
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/lock
for d in etc:/etc/libvirt lib:/var/lib/libvirt log:/var/log/libvirt cache:/var/cache/libvirt run:/run/libvirt; do
  mkdir -p "${{d#*:}}"
  mount --bind "$R/${{d%%:*}}" "${{d#*:}}"
done
{qemu}
exec libvirtd -d -l -p "$R/libvirtd.pid" -f "$R/etc/libvirtd.conf"
"""
#: QEMU nodes: the private /dev/kvm node (backends.libvirt.testing.prepare_qemu) and virtlogd for serial logs
_QEMU = """if [ -e "$R/kvm" ]; then mount --bind "$R/kvm" /dev/kvm; fi
virtlogd -d -p "$R/virtlogd.pid"
"""


def unavailable_reason() -> str | None:
    """Why simulated nodes cannot run here (None if they can)."""
    if os.geteuid() != 0:
        return "simulated nodes need root (network and mount namespaces)"
    for tool in ("ip", "libvirtd", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-deps.sh installs it)"
    return None


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res


def _free_subnet() -> int:
    """A third octet X such that 10.77.X.0/24 is not on any interface of this machine."""
    used = {int(m) for m in re.findall(r"inet 10\.77\.(\d+)\.", _run("ip", "-o", "-4", "addr").stdout)}
    free = [x for x in range(1, 255) if x not in used]
    if not free:
        raise RuntimeError("every 10.77.X.0/24 subnet is in use; delete leftover test bridges")
    return free[secrets.randbelow(len(free))]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class SimNode:
    """One simulated node: a namespace, an address and a libvirtd that can be killed and restarted."""

    index: int
    netns: str
    address: str
    root: Path
    qemu: bool = False

    @property
    def uri(self) -> str:
        return f"test+tcp://{self.address}/default"

    @property
    def qemu_uri(self) -> str:
        """The node's QEMU driver over TCP (guests run only on nodes made with ``qemu=True``)."""
        return f"qemu+tcp://{self.address}/system"

    @property
    def pid_file(self) -> Path:
        return self.root / "libvirtd.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def prepare(self) -> None:
        for sub in ("etc", "lib", "log/qemu", "cache", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree("/etc/libvirt", self.root / "etc", dirs_exist_ok=True)
        conf = self.root / "etc" / "libvirtd.conf"
        conf.write_text(
            conf.read_text()
            + f'\nlisten_tcp = 1\nlisten_tls = 0\nlisten_addr = "{self.address}"\nauth_tcp = "none"\n'
            + 'auth_unix_rw = "none"\nunix_sock_group = "root"\nkeepalive_interval = 2\n'
        )
        if self.qemu:
            from backends.libvirt.testing import prepare_qemu

            prepare_qemu(self.root)
        script = self.root / "start.sh"
        script.write_text(_START.format(root=self.root, qemu=_QEMU if self.qemu else ""))
        script.chmod(0o755)

    def start(self, timeout: float = 20.0) -> None:
        """Start the daemon and wait until it answers on its TCP address."""
        if self.pid() is not None:
            return
        self.pid_file.unlink(missing_ok=True)
        with open(self.root / "start.log", "ab") as log:
            res = subprocess.run(["ip", "netns", "exec", self.netns, str(self.root / "start.sh")], stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"libvirtd of {self.netns} did not start: {(self.root / 'start.log').read_text()[-2000:]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                libvirt.open(self.uri).close()
                return
            except libvirt.libvirtError:
                time.sleep(0.05)
        raise RuntimeError(f"libvirtd of {self.netns} does not answer on {self.uri} after {timeout} s")

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Stop the daemon by its pid file (SIGKILL by default: a node that dies)."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.02)

    def pause(self) -> None:
        """SIGSTOP the daemon: connections stay open but nothing answers (a hung node)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)


@dataclass
class SimulatedNodes:
    """``count`` nodes on a private bridge; use as a context manager or call start()/stop()."""

    count: int
    root: Path
    #: nodes that run QEMU guests too (virtlogd, a private /dev/kvm; see SimNode.qemu_uri)
    qemu: bool = False
    token: str = field(default_factory=lambda: secrets.token_hex(2))
    nodes: list[SimNode] = field(default_factory=list)
    subnet: int = 0
    _watchdog: subprocess.Popen[bytes] | None = None

    @property
    def bridge(self) -> str:
        return f"e2gwbr{self.token}"

    def start(self) -> SimulatedNodes:
        try:
            self._network()
            self._watchdog = start_watchdog(self._cleanup_script())
            for node in self.nodes:
                node.prepare()
                node.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _network(self) -> None:
        self.subnet = _free_subnet()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"10.77.{self.subnet}.254/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i in range(1, self.count + 1):
            ns, host_end = f"e2gwns{self.token}{i}", f"e2gwvh{self.token}{i}"
            node = SimNode(i, ns, f"10.77.{self.subnet}.{i}", Path(self.root, f"node{i}").absolute(), self.qemu)
            _run("ip", "netns", "add", ns)
            self.nodes.append(node)
            _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _run("ip", "link", "set", host_end, "master", self.bridge, "up")
            _run("ip", "-n", ns, "addr", "add", f"{node.address}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")

    def _cleanup_script(self) -> str:
        """stop() in shell, for the watchdog."""
        steps = []
        for n in self.nodes:
            steps.append(f"kill -CONT $(cat '{n.pid_file}') 2>/dev/null; kill -TERM $(cat '{n.pid_file}') 2>/dev/null")
        steps.append("sleep 2")
        for n in self.nodes:
            steps.append(f"ip netns pids {n.netns} | xargs -r kill -KILL; ip netns del {n.netns}")
            steps.append(f"ip link del e2gwvh{self.token}{n.index} 2>/dev/null")
        steps.append(f"ip link del {self.bridge}")
        return "; ".join(steps)

    def stop(self) -> None:
        """Stop every daemon by pid file, kill what is left in the namespaces, delete the network."""
        stop_watchdog(self._watchdog)
        self._watchdog = None
        for node in self.nodes:
            node.resume()
            node.kill(signal.SIGTERM)
            for _ in range(50):
                res = _run("ip", "netns", "pids", node.netns, check=False)
                pids = [int(p) for p in res.stdout.split()]
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if not pids:
                    break
                time.sleep(0.1)
            _run("ip", "netns", "del", node.netns, check=False)
            _run("ip", "link", "del", f"e2gwvh{self.token}{node.index}", check=False)
        self.nodes.clear()
        _run("ip", "link", "del", self.bridge, check=False)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
