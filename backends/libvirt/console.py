"""Reading a domain's serial console, local or remote, without an interactive session.

Preferred source is the serial log file (virtlogd writes every byte since the domain started),
preceded by the file of the same name plus CONSOLE_EARLIER_SUFFIX when there is one (what the
console printed on the node the domain was migrated from):
read directly when the node is this machine, or, for a remote node, through the storage API when
the log lives in a directory that is a storage pool (the log then appears as a volume that can be
downloaded from an offset). Without a readable log, the live console is opened with
VIR_DOMAIN_CONSOLE_FORCE and read without blocking for a short window; that only sees what the
guest prints during the window, since a pty keeps no history.
"""

from __future__ import annotations

import io
import os
import time

import libvirt

from backends.base import CONSOLE_EARLIER_SUFFIX
from backends.libvirt.config import GuestDomain, GuestSerial
from backends.libvirt.config_storage import StoragePool
from backends.libvirt.streams import abort_quietly, recv_into

CHUNK = 65536


def log_path(dom: libvirt.virDomain) -> str | None:
    """The log file of the domain's first serial port, if it has one."""
    serials = GuestDomain.from_xml(dom.XMLDesc(0)).find(GuestSerial)
    return next((s.log_file for s in serials if isinstance(s, GuestSerial) and s.log_file), None)


def tail_file(path: str, max_bytes: int) -> bytes | None:
    """The last ``max_bytes`` of a local file, or None if it cannot be read here."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read(max_bytes)
    except OSError:
        return None


def tail_via_pool(conn: libvirt.virConnect, path: str, max_bytes: int) -> bytes | None:
    """The last ``max_bytes`` of ``path`` via the volume download API, or None if no active pool
    has the file's directory as its target."""
    directory, name = os.path.split(os.path.normpath(path))
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        if os.path.normpath(StoragePool.from_xml(pool.XMLDesc(0)).path) != directory:
            continue
        try:
            pool.refresh(0)
            vol = pool.storageVolLookupByName(name)
            size = vol.info()[1]
            offset = max(0, size - max_bytes)
            stream = conn.newStream(0)
            try:
                vol.download(stream, offset, size - offset, 0)
                sink = io.BytesIO()
                recv_into(stream, sink, CHUNK, lambda fn, what: fn())
            except BaseException:
                abort_quietly(stream)
                raise
            return sink.getvalue()[-max_bytes:]
        except libvirt.libvirtError:
            return None
    return None


def read_live(conn: libvirt.virConnect, dom: libvirt.virDomain, max_bytes: int, wait: float) -> bytes:
    """What the running guest prints on its console during ``wait`` seconds (non-blocking reads)."""
    stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
    buf = bytearray()
    try:
        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            data = stream.recv(CHUNK)
            if isinstance(data, int):  # -2: nothing available yet
                time.sleep(0.05)
                continue
            if not data:
                break
            buf += data
            del buf[:-max_bytes]
    finally:
        abort_quietly(stream)
    return bytes(buf)


def _tail(conn: libvirt.virConnect, path: str, max_bytes: int, local: bool) -> bytes | None:
    data = tail_file(path, max_bytes) if local else None
    return data if data is not None else tail_via_pool(conn, path, max_bytes)


def read_console(conn: libvirt.virConnect, dom: libvirt.virDomain, max_bytes: int, *,
                 local: bool, wait: float) -> bytes:
    """The latest ``max_bytes`` of console output, from the best source available (see module)."""
    path = log_path(dom)
    if path:
        data = _tail(conn, path, max_bytes, local)
        if data is not None:
            if len(data) < max_bytes:
                earlier = _tail(conn, path + CONSOLE_EARLIER_SUFFIX, max_bytes - len(data), local)
                data = (earlier or b"") + data
            return data
    if not dom.isActive():
        return b""
    try:
        return read_live(conn, dom, max_bytes, wait)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_INVALID):
            return b""
        raise
