"""Reading a request body from the client's connection: what counts as the client's fault, and a
receive timeout so that a client that stops sending cannot hold a server thread.

Both gateways (EC2 and Cumulus) read bodies from gunicorn's socket. Without a timeout, a client
that announces a body and then sends nothing (without closing) keeps one of the server's threads
for as long as it likes; sixteen of them stop a server of 2 workers x 8 threads. With one, the
read fails after `seconds` of silence and the client gets 400 RequestTimeout (S3's answer; S3 waits
about 20 s) and the connection ends.
"""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Any

from ec2gw.errors import ServiceError


def _client_body_errors() -> tuple[type[BaseException], ...]:
    try:
        from gunicorn.http.errors import ParseException
    except ImportError:  # pragma: no cover - gunicorn is a dependency
        return (OSError,)
    return (OSError, ParseException)


#: what reading the server's input raises when the client's body is bad or the connection failed:
#: gunicorn's chunked-framing errors (InvalidChunkSize, ChunkMissingTerminator, ...), NoMoreData
#: (an IOError: the connection closed mid-body), socket errors and timeouts
CLIENT_BODY_ERRORS = _client_body_errors()


def set_receive_timeout(sock: Any, seconds: float) -> bool:
    """SO_RCVTIMEO on the connection (0: none); True when it was set. The socket stays blocking, so
    recv(MSG_WAITALL) keeps filling a whole buffer per call; a recv that waits longer fails with
    EAGAIN. A TLS socket retries its reads on EAGAIN, so it gets an ordinary socket timeout instead
    (it takes no MSG_WAITALL anyway); the server makes its sockets blocking again for every request."""
    if seconds < 0:
        return False
    try:
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(seconds or None)
            return True
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        struct.pack("@ll", int(seconds), int((seconds % 1) * 1_000_000)))
    except (OSError, AttributeError, ValueError):
        return False
    return True


def timed_out(exc: BaseException) -> bool:
    """Whether a read failed because the receive timeout passed (socket.timeout, or EAGAIN after SO_RCVTIMEO)."""
    return isinstance(exc, (TimeoutError, BlockingIOError, ssl.SSLWantReadError))


def request_timeout() -> ServiceError:
    return ServiceError("RequestTimeout", "Your socket connection to the server was not read from or written to "
                        "within the timeout period: the request body stopped arriving. Send the whole body "
                        "without pausing.", 400)


def stop_reading(sock: Any) -> None:
    """After a RequestTimeout: what the client still sends is not read, so the connection ends
    after the answer (socket.socket's own shutdown: ssl.SSLSocket's would drop TLS first)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RD)
    except (OSError, TypeError):
        pass
