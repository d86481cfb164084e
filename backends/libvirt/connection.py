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
from collections.abc import Callable
from typing import TypeVar
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


def describe(err: libvirt.libvirtError) -> str:
    """libvirt's message for the error (errors raised without a libvirt error record have none)."""
    return err.get_error_message() or str(err)


def is_connection_error(err: libvirt.libvirtError) -> bool:
    """True when the error says the connection broke rather than the request being refused."""
    return (err.get_error_code() in _CONNECTION_ERRORS
            or (err.get_error_domain() in _CONNECTION_DOMAINS
                and err.get_error_code() in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INTERNAL_ERROR)))


class _Outcome:
    __slots__ = ("alive", "done", "error", "value")

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
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread below)
            out.error = exc
        finally:
            out.done.set()

    threading.Thread(target=work, name=f"libvirt: {what}"[:60], daemon=True).start()
    if not out.done.wait(timeout):
        raise NodeUnavailable(f"{what}: no answer within {timeout:g} s")
    if out.error is not None:
        raise out.error
    return out.value  # type: ignore[return-value]


class _Handle:
    """A virConnect plus the number of calls using it, so it is closed only once they are done."""

    __slots__ = ("closed", "conn", "retired", "users")

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn = conn
        self.users = 0
        self.retired = False
        self.closed = False


class _Stale(Exception):
    """The cached connection died while idle; re-open and try once more."""


class Connection:
    """One node's libvirt connection: opened lazily, every call bounded by ``timeout`` seconds.

    ``keepalive`` (interval seconds, missed count) is enabled for daemon URIs so that libvirt
    itself closes a connection whose peer went silent, which also releases abandoned calls.
    A connection given up on is closed only after the last call still using it has returned:
    closing a virConnect under a running call is not safe.
    """

    def __init__(self, uri: str, *, timeout: float = 30.0, keepalive: tuple[int, int] = (5, 3)) -> None:
        self.uri = uri
        self.timeout = timeout
        self.keepalive = keepalive
        self.via_daemon = uses_daemon(uri)
        self._lock = threading.Lock()
        self._handle: _Handle | None = None
        self._local = threading.local()
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
            raise NodeUnavailable(f"cannot connect to {self.uri}: {describe(exc)}") from exc

    def _acquire(self) -> _Handle:
        with self._lock:
            if self._handle is not None:
                self._handle.users += 1
                return self._handle
        conn = self._open()
        with self._lock:
            if self._handle is None:
                self._handle = _Handle(conn)
                conn = None
            self._handle.users += 1
            handle = self._handle
        if conn is not None:  # another thread connected first
            _close_quietly(conn)
        return handle

    def _release(self, handle: _Handle) -> None:
        with self._lock:
            handle.users -= 1
            close = handle.retired and handle.users == 0 and not handle.closed
            handle.closed = handle.closed or close
        if close:  # in the background: closing is an RPC too and must not delay this call's result
            threading.Thread(target=_close_quietly, args=(handle.conn,), daemon=True).start()

    def _retire(self, handle: _Handle, wait: bool = False) -> None:
        """Stop handing out ``handle``; close it now if idle, else when its last call returns.

        ``wait``: close within the timeout in this thread rather than in the background.
        """
        with self._lock:
            if self._handle is handle:
                self._handle = None
            handle.retired = True
            close = handle.users == 0 and not handle.closed
            handle.closed = handle.closed or close
        if close and wait:
            try:
                run_with_deadline(lambda: _close_quietly(handle.conn), self.timeout, f"closing {self.uri}")
            except NodeUnavailable:
                pass
        elif close:
            threading.Thread(target=_close_quietly, args=(handle.conn,), daemon=True).start()

    def bounded(self, fn: Callable[[], T], what: str) -> T:
        """Run one step of a stepwise call (a stream chunk) within the per-call timeout.

        Only valid inside a function run by call(stepwise=True), whose connection it keeps open
        until the step has returned, even if the step is abandoned.
        """
        handle: _Handle = self._local.handle
        with self._lock:
            handle.users += 1

        def step() -> T:
            try:
                return fn()
            finally:
                self._release(handle)
        return run_with_deadline(step, self.timeout, f"{what} on {self.uri}")

    def call(self, fn: Callable[[libvirt.virConnect], T], what: str, timeout: float | None = None,
             *, stepwise: bool = False) -> T:
        """Run ``fn(conn)`` (one or a few libvirt calls) within the deadline.

        NodeUnavailable when the node cannot be reached, the deadline passes or the connection
        broke during the call; other libvirtErrors (request refused) reach the caller unchanged.
        ``stepwise``: no overall deadline, for streaming whole volumes; ``fn`` must then run each
        libvirt call through bounded().
        """
        limit = None if stepwise else (self.timeout if timeout is None else timeout)
        for _ in range(2):
            handle = self._acquire()

            def attempt(handle: _Handle = handle) -> T:
                self._local.handle = handle
                try:
                    if self.via_daemon and not self._alive(handle.conn):
                        raise _Stale()
                    try:
                        return fn(handle.conn)
                    except libvirt.libvirtError as exc:
                        if is_connection_error(exc) or not self._alive(handle.conn):
                            raise NodeUnavailable(f"{what} on {self.uri}: {describe(exc)}") from exc
                        raise
                finally:
                    self._local.handle = None
                    self._release(handle)

            try:
                return run_with_deadline(attempt, limit, f"{what} on {self.uri}")
            except _Stale:
                self._retire(handle)
            except NodeUnavailable:
                self._retire(handle)
                raise
        raise NodeUnavailable(f"{what} on {self.uri}: the connection closed again right after opening")

    @staticmethod
    def _alive(conn: libvirt.virConnect) -> bool:
        try:
            return bool(conn.isAlive())
        except libvirt.libvirtError:
            return False

    def close(self) -> None:
        """Close the connection (once calls still running on it return); the next call re-opens."""
        with self._lock:
            handle = self._handle
        if handle is not None:
            self._retire(handle, wait=True)


def _close_quietly(conn: libvirt.virConnect) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass
