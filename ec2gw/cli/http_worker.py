"""The server worker of `ec2gw serve`: gunicorn's gthread worker, with requests read in its poller.

gunicorn's gthread worker hands a connection to one of its threads as soon as the first bytes
arrive, and the thread then reads the request's headers (and body) blocking. A client that sends
`GET / HTTP/1.1\\r\\nHost: x\\r\\n` and never ends its headers keeps that thread for as long as it
likes: 16 such connections (2 workers x 8 threads) stop both endpoints.

Here the worker's main thread (its poller, one selector for every connection, no thread each)
reads each request until its headers have arrived, and its body too when it is small (the first
PREREAD bytes of a larger one), and only then gives it to a thread, which finds everything in
memory. The poller waits at most `header_timeout` seconds for that: a client too slow for it (a
header or a body a byte a second) gets 400 RequestTimeout and the connection is closed, without
ever having held a thread. TLS handshakes happen in the poller as well, non-blocking.

Bodies larger than PREREAD (uploads to Cumulus) are then read by the thread from the socket as
before (recv_into, O_DIRECT, see storage/upload.py), with the body receive timeout of
`ec2gw.aws.body_input` for a client that goes silent. At most `threads - RESERVED_THREADS` such
requests per worker are in threads at once: a further one waits in the poller, unread, until one of
them ends (for at most UPLOAD_QUEUE_WAIT seconds, then 503), so that uploads trickling in, however
many, always leave threads for every other request.
"""

from __future__ import annotations

import errno
import re
import selectors
import socket
import ssl
import time
import uuid
from collections import deque
from functools import partial
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from gunicorn import http
from gunicorn import sock as gsock
from gunicorn import util as gutil
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

#: seconds a client has for a request's headers and its body's first PREREAD bytes (`serve` sets it
#: from the header_timeout setting before the workers start)
HEADER_TIMEOUT = 10.0
#: seconds a body may stay silent (the body_timeout setting; 0: no limit but HEADER_TIMEOUT)
BODY_TIMEOUT = 20.0
#: ports of the EC2 API (its errors have EC2's envelope; the others S3's)
EC2_PORTS: set[int] = set()
#: port -> the largest body its endpoint takes: a request announcing more goes to a thread at once
#: (the application refuses it by its size, unread)
BODY_LIMITS: dict[int, int] = {}
#: body bytes read in the poller before a thread takes the request (the whole body when smaller)
PREREAD = 64 * 1024
#: seconds a thread waits for the rest of a body its application did not read (a refused upload)
#: before it reuses the connection; a body that takes longer closes the connection instead.
#: gunicorn waits up to 5 s, holding the thread: clients trickling such bodies stopped both endpoints
DRAIN_WAIT = 0.05
#: seconds and bytes a closing connection is read (and discarded) for, so that its last answer is not
#: cut short by a reset (RFC 9112 section 9.6), as gunicorn's close_graceful does; here in the
#: poller, which gunicorn blocks for up to 2 s per connection a client keeps sending on
LINGER = 2.0
LINGER_BYTES = 64 * 1024
#: threads of each worker that requests reading a large body from the socket (past PREREAD) never
#: take: a further such request waits in the poller, unread, until one of them ends
RESERVED_THREADS = 2
#: seconds such a request waits for a thread at most before it is answered 503 (S3's SlowDown,
#: EC2's RequestLimitExceeded), which SDKs retry
UPLOAD_QUEUE_WAIT = 30.0
#: bytes of headers after which the poller stops looking for their end and lets gunicorn's
#: parser refuse them (its limits are far lower)
MAX_HEAD = 1024 * 1024

_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_TIMEOUT_MESSAGE = (b"The request did not arrive within the timeout period (its headers or the start of its body "
                    b"came too slowly, or stopped): send the whole request without pausing.")


def _ignore_unknown_expectations() -> None:
    """gunicorn answers 417 Expectation Failed to any Expect header but 100-continue; S3 (and EC2)
    ignore the others (an empty Expect, `Expect: 200`), and the clients that send them expect
    their request to be served: the header is kept and nothing is expected."""
    policy = http.message.HeaderPolicy
    if getattr(policy._apply_header_policy, "ec2gw_ignores_expect", False):
        return
    original = policy._apply_header_policy

    def apply(self: Any, name: str, value: str, *args: Any, **kwargs: Any) -> Any:
        if name == "EXPECT" and value.strip().lower() != "100-continue":
            return name, value
        return original(self, name, value, *args, **kwargs)

    apply.ec2gw_ignores_expect = True  # type: ignore[attr-defined]
    policy._apply_header_policy = apply


_ignore_unknown_expectations()


def error_answer(ec2: bool, status: str, code: str, message: str, extra: bytes = b"") -> bytes:
    """An error in the endpoint's envelope (EC2's `<Response><Errors>`, S3's `<Error>`), with its
    request id, closing the connection; `status` is e.g. "400 Bad Request"."""
    request_id = str(uuid.uuid4())
    text = xml_escape("".join(c if c.isprintable() else "?" for c in message))
    if ec2:
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>"
                f"<Message>{text}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
    else:
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{text}</Message>"
                f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>")
    data = body.encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nConnection: close\r\n"
            f"x-amz-request-id: {request_id}\r\n".encode() + extra
            + b"Content-Length: %d\r\n\r\n" % len(data) + data)


def timeout_answer(ec2: bool) -> bytes:
    """400 RequestTimeout in the endpoint's error envelope, closing the connection."""
    return error_answer(ec2, "400 Bad Request", "RequestTimeout", _TIMEOUT_MESSAGE.decode())


def busy_answer(ec2: bool) -> bytes:
    """503 in the endpoint's error envelope (retried by SDKs), closing the connection: the request
    waited UPLOAD_QUEUE_WAIT seconds for a thread free to read its body."""
    message = (f"Too many uploads are being received at once and this one waited {int(UPLOAD_QUEUE_WAIT)} seconds "
               "for its turn: retry it later, or send fewer uploads at a time.")
    return error_answer(ec2, "503 Service Unavailable", "RequestLimitExceeded" if ec2 else "SlowDown", message,
                        b"Retry-After: 1\r\n")


def _shown(exc: BaseException, limit: int = 80) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def parse_error_answer(ec2: bool, exc: BaseException, cfg: Any) -> bytes | None:
    """The answer to a request gunicorn's parser refused (see ThreadWorker.handle_error), in the
    endpoint's envelope with the status and code S3 (or EC2) use; None for an error that is not
    the client's."""
    errors = http.errors
    line_limit = cfg.limit_request_line
    field_limit = cfg.limit_request_field_size
    fields_limit = cfg.limit_request_fields
    bad = "InvalidParameterValue" if ec2 else "BadRequest"
    if isinstance(exc, errors.LimitRequestLine):
        return error_answer(ec2, "414 URI Too Long", "InvalidParameterValue" if ec2 else "InvalidURI",
                            f"The request line (method, path and query string) is longer than {line_limit} bytes: "
                            + ("send the parameters in a POST body (application/x-www-form-urlencoded) instead of "
                               "the query string." if ec2 else "use a shorter object key and fewer or shorter "
                               "query parameters."))
    if isinstance(exc, errors.LimitRequestHeaders):
        what = str(exc)
        if "fields size" in what or what.startswith("limit request headers fields size"):
            problem = f"A request header (its name and value) is longer than {field_limit} bytes"
            todo = "send shorter headers" + ("" if ec2 else " (user metadata is limited to 2 KB in all)")
        elif "fields" in what:
            problem = f"The request has more than {fields_limit} headers"
            todo = f"send at most {fields_limit} headers" + ("" if ec2 else " (user metadata is limited to 2 KB in all)")
        else:
            problem = "The request's headers are too large"
            todo = f"send fewer and shorter headers (at most {fields_limit}, each under {field_limit} bytes)"
        message = f"{problem}: {todo}."
        if ec2:
            return error_answer(ec2, "431 Request Header Fields Too Large", "InvalidParameterValue", message)
        return error_answer(ec2, "400 Bad Request", "RequestHeaderSectionTooLarge", message)
    if isinstance(exc, errors.InvalidRequestMethod):
        return error_answer(ec2, "400 Bad Request", bad,
                            f"The request method {getattr(exc, 'method', '?')!r:.80} is not valid: send GET, HEAD, PUT, POST or DELETE.")
    if isinstance(exc, errors.InvalidHTTPVersion):
        return error_answer(ec2, "400 Bad Request", bad,
                            f"The HTTP version '{_shown(exc)}' is not supported: send HTTP/1.1 (or HTTP/1.0).")
    if isinstance(exc, errors.InvalidRequestLine):
        return error_answer(ec2, "400 Bad Request", bad,
                            f"The request line '{_shown(exc)}' is malformed: send 'METHOD /path HTTP/1.1' with a "
                            "percent-encoded path and query string.")
    if isinstance(exc, (errors.InvalidHeaderName, errors.InvalidHeader, errors.ObsoleteFolding)):
        return error_answer(ec2, "400 Bad Request", bad,
                            f"A request header is malformed ({_shown(exc)}): send 'Name: value' lines with names "
                            "made of letters, digits and -, values without control characters, and no folded "
                            "(continued) lines.")
    if isinstance(exc, (errors.InvalidChunkSize, errors.ChunkMissingTerminator, errors.InvalidChunkExtension)):
        return error_answer(ec2, "400 Bad Request", "IncompleteBody",
                            f"The chunked body is malformed ({_shown(exc)}): send each chunk as its size in hex, "
                            "CRLF, the data, CRLF, and end with a zero-size chunk.")
    if isinstance(exc, errors.UnsupportedTransferCoding):
        return error_answer(ec2, "501 Not Implemented", "NotImplemented",
                            f"The transfer coding is not supported ({_shown(exc)}): send the body with "
                            "Content-Length or Transfer-Encoding: chunked.")
    if isinstance(exc, errors.ExpectationFailed):
        return error_answer(ec2, "417 Expectation Failed", bad,
                            f"The Expect header cannot be met ({_shown(exc)}): send 'Expect: 100-continue' or none.")
    if isinstance(exc, (errors.InvalidSchemeHeaders, errors.InvalidProxyLine, errors.ForbiddenProxyRequest,
                        errors.InvalidH2CPreface)):
        return error_answer(ec2, "400 Bad Request", bad,
                            f"The request is malformed ({_shown(exc)}): send a plain HTTP/1.1 request.")
    return None


def body_left(buf: bytes | bytearray, limit: int | None = None) -> bool:
    """Whether the thread taking a ready request (see request_ready) reads more of its body from the
    socket: a body larger than what the poller read, and not refused by its size."""
    start = len(buf) - len(bytes(buf).lstrip(b"\r\n"))
    end = _END_OF_HEAD.search(buf, start)
    if end is None:
        return False
    have = len(buf) - end.end()
    length = chunked = None
    for line in bytes(buf[start:end.start()]).split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        name = name.strip().lower()
        if sep and name == b"content-length":
            length = value.strip()
        elif sep and name == b"transfer-encoding":
            chunked = value.strip().lower()
    if chunked is not None:
        return not chunked_body_complete(buf, end.end())
    try:
        size = int(length) if length is not None else 0
    except ValueError:
        return False
    return size > have and (limit is None or size <= limit)


def request_ready(buf: bytes | bytearray, limit: int | None = None) -> tuple[bool, bool]:
    """(ready, wants_continue) for the bytes of a request read so far: ready when its headers are
    complete and its body has arrived (or its first PREREAD bytes); wants_continue when the client
    waits for "100 Continue" before sending a body small enough to be read here. A body announced
    larger than `limit` is ready at once: the application refuses it without reading it."""
    start = 0
    while buf.startswith(b"\r\n", start) or buf.startswith(b"\n", start):  # empty lines before a request
        start += 2 if buf.startswith(b"\r\n", start) else 1
    end = _END_OF_HEAD.search(buf, start)
    if end is None:
        return len(buf) - start > MAX_HEAD, False  # far too long: gunicorn's parser refuses it
    have = len(buf) - end.end()
    length = chunked = None
    expect = False
    for line in bytes(buf[start:end.start()]).split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"content-length":
            length = value.strip()
        elif name == b"transfer-encoding":
            chunked = value.strip().lower()
        elif name == b"expect":
            expect = value.strip().lower() == b"100-continue"
    if chunked is not None:
        if expect and not have:
            return True, False  # a chunked body of unknown size: the application decides
        return have >= PREREAD or chunked_body_complete(buf, end.end()), False
    if length is None:
        return True, False
    try:
        size = int(length)
    except ValueError:
        return True, False  # gunicorn's parser refuses it
    if size <= 0 or (limit is not None and size > limit):
        return True, False  # no body (or one gunicorn's parser refuses), or one refused by its size
    if expect and not have:
        # the client sends nothing before "100 Continue": a small body is read here after it, a
        # large one is the application's (it may refuse it unread)
        return (size > PREREAD, size <= PREREAD)
    return have >= min(size, PREREAD), False


def head_complete(buf: bytes | bytearray) -> bool:
    """Whether the headers of the request in `buf` have all arrived."""
    return _END_OF_HEAD.search(buf.lstrip(b"\r\n")) is not None


def chunked_body_complete(buf: bytes | bytearray, pos: int) -> bool:
    """Whether a chunked body starting at `pos` ends (last chunk and trailers) within `buf`."""
    while True:
        eol = buf.find(b"\n", pos)
        if eol < 0:
            return False
        size_field = bytes(buf[pos:eol]).split(b";")[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            return True  # broken framing: gunicorn's parser answers it
        if size == 0:
            return _END_OF_HEAD.search(buf, max(eol - 1, 0)) is not None  # trailers end with an empty line
        pos = eol + 1 + size
        if len(buf) < pos + 2:
            return False
        if buf[pos:pos + 2] == b"\r\n":
            pos += 2
        elif buf[pos:pos + 1] == b"\n":
            pos += 1
        else:
            return True  # broken framing


class ThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    """gthread with requests read in the poller (see the module docstring)."""

    def init_process(self) -> None:
        self.reading: set[Any] = set()  # connections whose request is read here
        self.lingering: set[Any] = set()  # closing connections whose last bytes are discarded here
        self.uploads = 0  # requests in threads reading a large body from the socket
        self.waiting: deque[Any] = deque()  # such requests waiting (unread) for one of them to end
        self.next_check = 0.0
        self.ssl_ctx = gsock.ssl_context(self.cfg) if self.cfg.is_ssl else None
        super().init_process()

    # -- connections ---------------------------------------------------------------------------
    def accept(self, listener: Any) -> None:
        for _ in range(64):  # several per wake-up: a burst of connections is taken in at once
            if self.nr_conns >= self.worker_connections:
                return
            try:
                client_sock, client_addr = listener.accept()
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            self.nr_conns += 1
            conn = gthread.TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
            if negotiation.prior_knowledge_allowed(self.cfg, client_addr):
                self.enqueue_req(conn)  # HTTP/2 without TLS: gunicorn's own way
                continue
            conn.ec2gw_handshake = False
            if self.ssl_ctx is not None:
                try:
                    conn.sock = self.ssl_ctx.wrap_socket(client_sock, server_side=True, do_handshake_on_connect=False,
                                                         suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
                except (OSError, ValueError):
                    self.drop(conn)
                    continue
                conn.ec2gw_handshake = True
            self.start_reading(conn, b"")

    def start_reading(self, conn: Any, held: bytes) -> None:
        """Read the connection's next request in the poller; `held` is what was read of it already."""
        conn.ec2gw_buf = bytearray(held)
        conn.ec2gw_continued = False
        conn.ec2gw_started = conn.ec2gw_last = time.monotonic()
        self.reading.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_data, conn))
        if held:
            self.on_request_data(conn, conn.sock, fresh=False)

    def stop_reading(self, conn: Any) -> None:
        self.reading.discard(conn)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def drop(self, conn: Any) -> None:
        self.stop_reading(conn)
        self.nr_conns -= 1
        conn.close()

    def on_request_data(self, conn: Any, _fileobj: Any, fresh: bool = True) -> None:
        sock = conn.sock
        try:
            if conn.ec2gw_handshake:
                try:
                    sock.do_handshake()
                except ssl.SSLWantReadError:
                    self.poller.modify(sock, selectors.EVENT_READ, partial(self.on_request_data, conn))
                    return
                except ssl.SSLWantWriteError:
                    self.poller.modify(sock, selectors.EVENT_WRITE, partial(self.on_request_data, conn))
                    return
                conn.ec2gw_handshake = False
                self.poller.modify(sock, selectors.EVENT_READ, partial(self.on_request_data, conn))
                if gsock.is_http2_negotiated(sock):  # HTTP/2 by ALPN: gunicorn's own way
                    self.stop_reading(conn)
                    conn.initialized = conn.is_http2 = True
                    conn.parser = http.get_parser(self.cfg, sock, conn.client, http2_connection=True)
                    conn.parser.initiate_connection()
                    self.enqueue_req(conn)
                    return
            buf = conn.ec2gw_buf
            port = conn.server[1] if isinstance(conn.server, tuple) else None
            limit = BODY_LIMITS.get(port) if port else None
            ready, wants_continue = request_ready(buf, limit)
            while fresh and not ready:  # no further than the request needs: the rest is the thread's
                try:
                    data = sock.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                    break
                if not data:  # the client closed (or only its sending side): answer what it sent
                    if buf:
                        self.hand_over(conn)
                    else:
                        self.drop(conn)
                    return
                buf += data
                conn.ec2gw_last = time.monotonic()
                ready, wants_continue = request_ready(buf, limit)
            if wants_continue and not conn.ec2gw_continued:
                conn.ec2gw_continued = True
                sock.send(_CONTINUE)  # 25 bytes into an empty send buffer
            if ready:
                self.hand_over(conn)
        except (OSError, ValueError):  # reset, TLS errors (ssl.SSLError is an OSError), closed
            self.drop(conn)

    def hand_over(self, conn: Any) -> None:
        """The request is in memory (all of it, or the start of a large body, which waits for a
        thread allowed to read uploads: see RESERVED_THREADS)."""
        self.stop_reading(conn)
        port = conn.server[1] if isinstance(conn.server, tuple) else None
        if body_left(conn.ec2gw_buf, BODY_LIMITS.get(port) if port else None):
            if self.uploads >= max(self.cfg.threads - RESERVED_THREADS, 1) or self.waiting:
                conn.ec2gw_waiting_since = time.monotonic()
                self.waiting.append(conn)
                return
            self.uploads += 1
            conn.ec2gw_upload = True
        self.to_thread(conn)

    def admit_uploads(self) -> None:
        """Requests waiting to read a large body take the upload threads that are free, in order."""
        while self.waiting and self.uploads < max(self.cfg.threads - RESERVED_THREADS, 1):
            conn = self.waiting.popleft()
            self.uploads += 1
            conn.ec2gw_upload = True
            self.to_thread(conn)

    def to_thread(self, conn: Any) -> None:
        """A thread takes the request from here (gunicorn's parser reads the buffer)."""
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.ec2gw_buf))
        conn.ec2gw_buf = None
        conn.initialized = conn.data_ready = True
        self.enqueue_req(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        if getattr(conn, "ec2gw_continued", False):  # "100 Continue" went out from the poller
            req._expected_100_continue = False
            conn.ec2gw_continued = False
        return super().handle_request(req, conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """A request gunicorn's parser refused (a request line or headers over the limits, a bad
        method, version, header or chunked framing) is answered in the endpoint's error envelope,
        not with gunicorn's HTML page; anything else is gunicorn's."""
        try:
            ec2 = client.getsockname()[1] in EC2_PORTS
        except (OSError, ValueError, TypeError, IndexError):
            ec2 = False
        answer = parse_error_answer(ec2, exc, self.cfg)
        if answer is None:
            return super().handle_error(req, client, addr, exc)
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], _shown(exc, 200))
        try:
            gutil.write_nonblock(client, answer)
        except Exception:
            self.log.debug("Failed to send error message.")

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        """Whether the connection serves another request: what is left of a body the application did
        not read is discarded if it arrives within DRAIN_WAIT (a small body is in memory already,
        read by the poller), else the connection closes and the thread is free at once."""
        if not keepalive:
            return False
        return bool(conn.parser.finish_body(deadline=time.monotonic() + DRAIN_WAIT))

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection's next request: read in the poller too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.start_reading(conn, b"")
        self.on_request_data(conn, client)

    def finish_request(self, conn: Any, fs: Any) -> None:
        if getattr(conn, "ec2gw_upload", False):
            conn.ec2gw_upload = False
            self.uploads -= 1
        try:
            self.finish(conn, fs)
        finally:
            self.admit_uploads()

    def finish(self, conn: Any, fs: Any) -> None:
        keep = False
        try:
            keep = not fs.cancelled() and fs.result() is True
        except Exception:
            pass
        if keep and self.alive and not conn.is_http2 and conn.parser is not None:
            held = conn.parser.unreader.take_buffered()  # the client's next request, pipelined
            if held:
                try:
                    conn.sock.setblocking(False)
                    self.start_reading(conn, held)
                except (OSError, ValueError):
                    self.drop(conn)
                return
        try:
            closing = not fs.cancelled() and fs.result() not in (True, gthread._DEFER)
        except Exception:
            closing = False
        if closing:
            # gunicorn would close it gracefully right here, waiting up to 2 s in the poller for a
            # client that keeps sending (every connection of the worker waits meanwhile)
            self.nr_conns -= 1
            self.linger(conn)
            return
        super().finish_request(conn, fs)

    def linger(self, conn: Any) -> None:
        """Close a connection as gunicorn's close_graceful does (our side first, then what the client
        still sends is read and discarded until it closes, for at most LINGER seconds and
        LINGER_BYTES), without ever waiting in the poller."""
        sock = conn.sock
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
            conn.ec2gw_linger_until = time.monotonic() + LINGER
            conn.ec2gw_linger_left = LINGER_BYTES
            self.poller.register(sock, selectors.EVENT_READ, partial(self.on_linger_data, conn))
        except (OSError, ValueError, KeyError):
            conn.close()
            return
        self.lingering.add(conn)

    def on_linger_data(self, conn: Any, _fileobj: Any) -> None:
        try:
            while conn.ec2gw_linger_left > 0:
                data = conn.sock.recv(4096)
                if not data:
                    break
                conn.ec2gw_linger_left -= len(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return  # nothing more for now
        except (OSError, ValueError):
            pass
        self.end_linger(conn)

    def end_linger(self, conn: Any) -> None:
        self.lingering.discard(conn)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        conn.close()

    def murder_pending(self) -> None:
        """Besides gunicorn's own: connections whose request did not arrive in time (HEADER_TIMEOUT
        for the headers and the start of the body, BODY_TIMEOUT of silence in the body) are answered
        400 RequestTimeout and closed; a stopping worker closes every one still being read."""
        super().murder_pending()
        now = time.monotonic()
        if now < self.next_check and self.alive:
            return
        self.next_check = now + 0.25  # a few thousand connections: a scan takes about a millisecond
        for conn in list(self.lingering):
            if now >= conn.ec2gw_linger_until or not self.alive:
                self.end_linger(conn)
        while self.waiting and (now >= self.waiting[0].ec2gw_waiting_since + UPLOAD_QUEUE_WAIT or not self.alive):
            conn = self.waiting.popleft()
            try:
                conn.sock.send(busy_answer(conn.server[1] in EC2_PORTS if isinstance(conn.server, tuple) else False))
            except (OSError, ValueError):
                pass
            self.nr_conns -= 1
            self.linger(conn)
        for conn in list(self.reading):
            if self.alive and now < conn.ec2gw_started + HEADER_TIMEOUT and not (
                    BODY_TIMEOUT > 0 and now >= conn.ec2gw_last + BODY_TIMEOUT and head_complete(conn.ec2gw_buf)):
                continue
            if conn.ec2gw_buf and not conn.ec2gw_handshake:
                try:
                    conn.sock.send(timeout_answer(conn.server[1] in EC2_PORTS if isinstance(conn.server, tuple)
                                                  else False))
                except (OSError, ValueError):
                    pass
            self.timed_out(conn)

    def timed_out(self, conn: Any) -> None:
        self.stop_reading(conn)
        self.nr_conns -= 1
        try:
            socket.socket.shutdown(conn.sock, socket.SHUT_WR)  # the answer, then the end
        except (OSError, ValueError, TypeError):
            pass
        conn.close()
