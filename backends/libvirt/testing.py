"""Test helpers: private libvirt nodes that leave nothing behind. Never imported by the service.

* make_test_node_uri(): an in-process test-driver node with its own fresh state (test:///PATH/node.xml).
* tiny_kernel(): a few dozen bytes of x86 code that QEMU boots directly (multiboot) and that
  prints a line on the serial console, once or forever: a real QEMU guest without any image.
* PrivateLibvirtd: a real libvirtd in its own mount and network namespace, its configuration and
  state in a temporary directory (as /work/shared/virt/NOTES.md describes for simulated nodes), so
  bridges, dnsmasq and firewall rules never touch the machine's own namespace. Its unix socket is
  reachable from outside the namespace. stop() removes every domain and network it ran and kills
  any process still left in its mount namespace (QEMU, dnsmasq, virtlogd), by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path
from typing import Self

import libvirt

_NODE_XML = """<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>{cpus}</active><nodes>1</nodes><sockets>1</sockets>
    <cores>{cpus}</cores><threads>1</threads></cpu>
  <memory>{kib}</memory>
</node>
"""

_START = """#!/bin/sh
set -e
R={root}
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/libvirt /run/lock
for d in etc:/etc/libvirt lib:/var/lib/libvirt log:/var/log/libvirt cache:/var/cache/libvirt run:/run/libvirt; do
  mount --bind "$R/${{d%%:*}}" "${{d#*:}}"
done
if [ -e "$R/kvm" ]; then mount --bind "$R/kvm" /dev/kvm; fi
ip link set lo up 2>/dev/null || true
{virtlogd}
exec libvirtd
"""


def make_test_node_uri(directory: Path, memory_mib: int = 8192, cpus: int = 4) -> str:
    """Write a <node> file into ``directory``; its test:/// URI gives each connection a fresh node."""
    path = Path(directory, "node.xml").absolute()
    path.write_text(_NODE_XML.format(cpus=cpus, kib=memory_mib * 1024))
    return f"test://{path}"


def tiny_kernel(message: bytes, *, repeat: bool = False, delay_loops: int = 20_000_000) -> bytes:
    """A multiboot kernel (the a.out kludge: load address in the header) printing ``message``
    on COM1, then halting, or with ``repeat`` printing it again after a busy delay, forever.

    The halting guest idles (no CPU use); the repeating one keeps one host core busy. Neither
    reacts to ACPI, so power_off() always ends in a hard stop for it.
    """
    base, header_len = 0x100000, 32
    magic, flags = 0x1BADB002, 0x00010000
    code = bytearray(b"\xBE\0\0\0\0")  # mov esi, message
    code += b"\x66\xBA\xF8\x03"  # mov dx, 0x3f8
    again = len(code)
    code += b"\xAC\x84\xC0\x74\x03"  # lodsb; test al, al; jz +3
    code += b"\xEE\xEB" + struct.pack("b", again - (len(code) + 3))  # out dx, al; jmp again
    if repeat:
        code += b"\xB9" + struct.pack("<I", delay_loops)  # mov ecx, delay_loops
        spin = len(code)
        code += b"\x49\x75" + struct.pack("b", spin - (len(code) + 3))  # dec ecx; jnz spin
        code += b"\xEB" + struct.pack("b", -(len(code) + 2))  # jmp start
    else:
        code += b"\xFA\xF4\xEB\xFD"  # cli; hlt; jmp hlt
    code[1:5] = struct.pack("<I", base + header_len + len(code))
    header = struct.pack("<8I", magic, flags, (-(magic + flags)) & 0xFFFFFFFF, base, base, 0, 0,
                         base + header_len)
    return header + bytes(code) + message + b"\0"


def qemu_unavailable_reason() -> str | None:
    """Why QEMU guests cannot run in a PrivateLibvirtd here (None if they can)."""
    return unavailable_reason() or (None if shutil.which("qemu-system-x86_64") else
                                    "qemu-system-x86_64 is not installed")


def unavailable_reason() -> str | None:
    """Why a PrivateLibvirtd cannot run here (None if it can): root, unshare and libvirtd needed."""
    if os.geteuid() != 0:
        return "needs root (mount and network namespaces)"
    for tool in ("unshare", "libvirtd", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def prepare_qemu(root: Path) -> None:
    """What a private libvirtd under ``root`` needs to run QEMU guests: a qemu.conf that runs them
    as root without a security driver (guests read kernels and logs under pytest's 0700
    temporary directories), and ``root/kvm``, a /dev/kvm node owned by group kvm, mode 0660, for
    the daemon's start script to bind over /dev/kvm in its mount namespace (NOTES.md: otherwise
    libvirt re-probes QEMU on every call) without changing the machine's own device."""
    with open(root / "etc" / "qemu.conf", "a") as conf:
        conf.write('\nuser = "root"\ngroup = "root"\nsecurity_driver = "none"\n')
    if os.path.exists("/dev/kvm"):
        kvm = root / "kvm"
        if not kvm.exists():
            st = os.stat("/dev/kvm")
            os.mknod(kvm, 0o660 | (st.st_mode & 0o170000), st.st_rdev)
        try:
            import grp
            os.chown(kvm, 0, grp.getgrnam("kvm").gr_gid)
        except KeyError:
            pass
        os.chmod(kvm, 0o660)


class PrivateLibvirtd:
    """A libvirtd with private /etc/libvirt, /var/lib/libvirt, /run/libvirt, ... under ``root``.

    ``virtlogd`` also starts virtlogd (needed for QEMU serial log files). /dev/kvm is replaced in
    the namespace by a copy owned by group kvm, mode 0660, so that libvirt does not re-probe QEMU
    on every call (see NOTES.md) without changing the machine's own /dev/kvm.
    """

    def __init__(self, root: Path, *, virtlogd: bool = False) -> None:
        self.root = Path(root).absolute()
        self.virtlogd = virtlogd
        self.process: subprocess.Popen[bytes] | None = None
        self._namespace: str | None = None

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt-sock"

    def uri(self, driver: str = "qemu", path: str = "/system") -> str:
        """A URI reaching this daemon, e.g. uri('test', '/default') or uri('qemu')."""
        return f"{driver}+unix://{path}?socket={self.socket}"

    def start(self, timeout: float = 20.0) -> None:
        for sub in ("etc", "lib", "log/qemu", "cache", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree("/etc/libvirt", self.root / "etc", dirs_exist_ok=True)
        prepare_qemu(self.root)
        logd = 'virtlogd >"$R/virtlogd.log" 2>&1 & echo $! >"$R/virtlogd.pid"' if self.virtlogd else ""
        script = self.root / "start.sh"
        script.write_text(_START.format(root=self.root, virtlogd=logd))
        script.chmod(0o755)
        log = open(self.root / "libvirtd.log", "wb")  # noqa: SIM115 (handed to the child)
        self.process = subprocess.Popen(["unshare", "--mount", "--net", str(script)], stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"libvirtd exited: {(self.root / 'libvirtd.log').read_text()[-2000:]}")
            if self.socket.exists():
                try:
                    libvirt.open(self.uri("test", "/default")).close()
                    self._namespace = os.readlink(f"/proc/{self.process.pid}/ns/mnt")
                    return
                except libvirt.libvirtError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"libvirtd did not answer within {timeout} s")

    def pause(self) -> None:
        """SIGSTOP the daemon: it keeps its sockets but answers nothing (a hung node)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def _clean_guests(self) -> None:
        try:
            conn = libvirt.open(self.uri("qemu"))
        except libvirt.libvirtError:
            return
        try:
            for dom in conn.listAllDomains(0):
                try:
                    if dom.isActive():
                        dom.destroy()
                except libvirt.libvirtError:
                    pass
            for net in conn.listAllNetworks(0):
                try:
                    if net.isActive():
                        net.destroy()
                except libvirt.libvirtError:
                    pass
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop guests, networks and the daemon; kill whatever still runs in its namespace."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.resume()
            self._clean_guests()
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for _ in range(50):  # helpers forked around the daemon's exit may appear a moment later
            left = _pids_in_namespace(self._namespace) if self._namespace else []
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not left:
                break
            time.sleep(0.1)
        self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pids_in_namespace(namespace: str) -> list[int]:
    """Processes whose mount namespace is ``namespace`` (all of them started by the daemon)."""
    pids: list[int] = []
    own = os.readlink("/proc/self/ns/mnt")
    if namespace == own:
        return pids
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == namespace:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids
