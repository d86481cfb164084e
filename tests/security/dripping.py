"""Slow clients for the tests that they cannot stop the service: connections that sent the start
of a request and then one more byte every so often, for as long as the test holds them."""

from __future__ import annotations

import socket
import threading


def connect(port: int, start: bytes) -> socket.socket:
    """A connection to 127.0.0.1:`port` that has sent `start`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(start)
    return sock


class Dripping:
    """`socks`, made non-blocking, each sent one byte (b"x") every `every` seconds by a thread of
    their own until close(), which closes them."""

    def __init__(self, socks: list[socket.socket], every: float) -> None:
        self.socks = socks
        self.every = every
        self.stop = threading.Event()
        for sock in socks:
            sock.setblocking(False)
        self.thread = threading.Thread(target=self.drip, daemon=True)
        self.thread.start()

    def drip(self) -> None:
        while not self.stop.wait(self.every):
            for sock in self.socks:
                try:
                    sock.send(b"x")
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        for sock in self.socks:
            sock.close()
