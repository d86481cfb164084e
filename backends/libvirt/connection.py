"""A libvirt connection that never blocks its caller past a deadline and heals after breaking.

libvirt calls block in C until the node answers; a node that stops answering (network cut,
libvirtd stopped with SIGSTOP, a hung storage backend) would block a compute worker forever. Every
call therefore runs in its own short-lived daemon thread and the caller waits at most ``timeout``
seconds for it; on expiry the caller gets NodeUnavailable and the connection is dropped (the
abandoned thread ends when libvirt gives up, which keepalive makes happen for daemon URIs).
A dropped or dead connection is re-opened on the next call.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar
from urllib.parse import urlsplit

import libvirt

from backends.base import NodeUnavailable

T = TypeVar("T")

_event_loop_lock = threading.Lock()
_event_loop_started = False
_error_handler_lock = threading.Lock()
_error_handler_set = False

# Errors that mean "the connection or the node is gone", as opposed to "the request was refused".
_CONNECTION_ERRORS = {libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_RPC,
                      libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_UNAVAILABLE}
_CONNECTION_DOMAINS = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE}


def silence_libvirt_errors() -> None:
    """Stop libvirt printing every error to stderr; errors still arrive as libvirtError."""
    global _error_handler_set
    with _error_handler_lock:
        if not _error_handler_set:
            libvirt.registerErrorHandler(lambda *a: None, None)
            _error_handler_set = True


def ensure_event_loop() -> None:
    """Register libvirt's default event loop once per process and run it in a daemon thread.

    Keepalive (the client side noticing a dead peer) needs an event loop. libvirt has one event
    loop implementation per process, hence the module-level guard: this is process state by
    libvirt's design, not ours.
    """
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except libvirt.libvirtError:
                    time.sleep(0.1)

        threading.Thread(target=run, name="libvirt-event-loop", daemon=True).start()
        _event_loop_started = True


def uses_daemon(uri: str) -> bool:
    """True when libvirt reaches the node through a socket to a daemon (everything but test:///).

    Such connections get keepalive and the event loop (which also feeds non-blocking streams).
    """
    parts = urlsplit(uri)
    return parts.scheme != "test" or bool(parts.netloc)


def is_connection_error(err: libvirt.libvirtError) -> bool:
    """True when the error says the connection broke rather than the request being refused."""
    return (err.get_error_code() in _CONNECTION_ERRORS
            or (err.get_error_domain() in _CONNECTION_DOMAINS
                and err.get_error_code() in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INTERNAL_ERROR)))


class _Outcome:
    __slots__ = ("value", "error", "alive", "done")

    def __init__(self) -> None:
        self.value: object = None
        self.error: BaseException | None = None
        self.alive = True
        self.done = threading.Event()


def run_with_deadline(fn: Callable[[], T], timeout: float | None, what: str) -> T:
    """Run ``fn`` in a daemon thread; NodeUnavailable if it has not returned after ``timeout`` s.

    ``timeout`` None waits as long as ``fn`` runs (for long operations that bound each step).
    """
    out = _Outcome()

    def work() -> None:
        try:
            out.value = fn()
        except BaseException as exc:  # handed to the caller's thread below
            out.error = exc
        finally:
            out.done.set()

    threading.Thread(target=work, name=f"libvirt: {what}"[:60], daemon=True).start()
    if not out.done.wait(timeout):
        raise NodeUnavailable(f"{what}: no answer within {timeout:g} s")
    if out.error is not None:
        raise out.error
    return out.value  # type: ignore[return-value]


class Connection:
    """One node's libvirt connection: opened lazily, every call bounded by ``timeout`` seconds.

    ``keepalive`` (interval seconds, missed count) is enabled for daemon URIs so that libvirt
    itself closes a connection whose peer went silent, which also releases abandoned calls.
    """

    def __init__(self, uri: str, *, timeout: float = 30.0, keepalive: tuple[int, int] = (5, 3)) -> None:
        self.uri = uri
        self.timeout = timeout
        self.keepalive = keepalive
        self.via_daemon = uses_daemon(uri)
        self._lock = threading.Lock()
        self._conn: libvirt.virConnect | None = None
        silence_libvirt_errors()

    def _open(self) -> libvirt.virConnect:
        if self.via_daemon:
            ensure_event_loop()

        def do_open() -> libvirt.virConnect:
            conn = libvirt.open(self.uri)
            if self.via_daemon:
                try:
                    conn.setKeepAlive(*self.keepalive)
                except libvirt.libvirtError:
                    pass  # the peer does not support keepalive; the deadline still protects us
            return conn

        try:
            return run_with_deadline(do_open, self.timeout, f"connecting to {self.uri}")
        except libvirt.libvirtError as exc:
            raise NodeUnavailable(f"cannot connect to {self.uri}: {exc.get_error_message()}") from exc

    def _current(self) -> libvirt.virConnect:
        with self._lock:
            conn = self._conn
        if conn is not None:
            return conn
        conn = self._open()
        with self._lock:
            if self._conn is None:
                self._conn = conn
                return conn
            winner = self._conn
        _close_quietly(conn)
        return winner

    def _drop(self, conn: libvirt.virConnect) -> None:
        """Forget ``conn`` if it is still current and close it without waiting."""
        with self._lock:
            if self._conn is conn:
                self._conn = None
        threading.Thread(target=_close_quietly, args=(conn,), daemon=True).start()

    def bounded(self, fn: Callable[[], T], what: str) -> T:
        """Run one step of a long operation (a stream chunk) within the per-call timeout."""
        return run_with_deadline(fn, self.timeout, f"{what} on {self.uri}")

    def call(self, fn: Callable[[libvirt.virConnect], T], what: str, timeout: float | None = None,
             *, stepwise: bool = False) -> T:
        """Run ``fn(conn)`` (one or a few libvirt calls) within the deadline.

        NodeUnavailable when the node cannot be reached, the deadline passes or the connection
        broke during the call; other libvirtErrors (request refused) reach the caller unchanged.
        ``stepwise``: no overall deadline, for streaming whole volumes; ``fn`` must then run each
        libvirt call through bounded().
        """
        limit = self.timeout if timeout is None else timeout
        conn = self._current()
        if self.via_daemon and not run_with_deadline(lambda: self._alive(conn), limit, f"checking {self.uri}"):
            self._drop(conn)
            conn = self._current()

        def attempt() -> T:
            try:
                return fn(conn)
            except libvirt.libvirtError as exc:
                if is_connection_error(exc) or not self._alive(conn):
                    raise NodeUnavailable(f"{what} on {self.uri}: {exc.get_error_message()}") from exc
                raise

        try:
            return run_with_deadline(attempt, None if stepwise else limit, f"{what} on {self.uri}")
        except NodeUnavailable:
            self._drop(conn)
            raise

    @staticmethod
    def _alive(conn: libvirt.virConnect) -> bool:
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    def close(self) -> None:
        """Close the connection now; the next call opens a fresh one."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                run_with_deadline(lambda: _close_quietly(conn), self.timeout, f"closing {self.uri}")
            except NodeUnavailable:
                pass


def _close_quietly(conn: libvirt.virConnect) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass
