"""An S3 request body as a verified stream, and the checks that run when it has been read.

What: `UploadBody.from_request` stacks the readers of ec2gw.aws.chunked on the WSGI input as the
request declares it: a Content-Length limit (cut-off bodies raise IncompleteBody), aws-chunked
decoding (chunk signatures, trailers, x-amz-decoded-content-length), the x-amz-content-sha256
check. `checksums()` gives the hashers the blob writer feeds; `verify(writer)` then compares
Content-MD5 and the x-amz-checksum-* value (from a header or from the trailer) with what was
computed. Only after that does the caller commit the blob.

Why: every check happens on the stream, so no body is held in memory and nothing is stored
unless all of them passed (pattern 9).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from ec2gw.aws.body_input import CLIENT_BODY_ERRORS, request_timeout, timed_out
from ec2gw.aws.chunked import AwsChunkedReader, incomplete_body, malformed, new_checksum
from ec2gw.aws.restxml_parser import HeaderMap
from ec2gw.errors import ServiceError
from storage.blobstore import CHUNK, Readable

#: S3's limits
MAX_OBJECT_SIZE = 5 * 1024**4  # 5 TiB (multipart)
MAX_PUT_SIZE = 5 * 1024**3  # 5 GiB in one PUT or part
ALGORITHMS = {"crc32": "CRC32", "crc32c": "CRC32C", "crc64nvme": "CRC64NVME", "sha1": "SHA1", "sha256": "SHA256"}
_DIGEST_SIZES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}


def _invalid_checksum_header(name: str) -> ServiceError:
    return ServiceError("InvalidRequest", f"Value for {name} header is invalid.", 400)


def _decode_b64(value: str, size: int | None) -> bytes | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    if size is not None and len(raw) != size:
        return None
    return raw


def declared_checksum(headers: HeaderMap) -> tuple[str | None, str | None, bool]:
    """(algorithm, expected base64 value or None, value comes in the trailer) of a request."""
    found = [(alg, headers.get(f"x-amz-checksum-{alg}")) for alg in ALGORITHMS]
    found = [(a, v) for a, v in found if v is not None]
    trailer = (headers.get("x-amz-trailer") or "").strip().lower()
    if len(found) > 1 or (found and trailer.startswith("x-amz-checksum-")):
        raise ServiceError("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are "
                           "not allowed.", 400)
    if found:
        alg, value = found[0]
        if _decode_b64(value or "", _DIGEST_SIZES[alg]) is None:
            raise _invalid_checksum_header(f"x-amz-checksum-{alg}")
        return alg, (value or "").strip(), False
    if trailer:
        alg = trailer.removeprefix("x-amz-checksum-")
        if not trailer.startswith("x-amz-checksum-") or alg not in ALGORITHMS:
            raise ServiceError("InvalidRequest", f"The value specified in the x-amz-trailer header is not supported: "
                               f"{trailer}.", 400)
        return alg, None, True
    sdk = (headers.get("x-amz-sdk-checksum-algorithm") or "").strip().lower()
    if sdk:
        if sdk not in ALGORITHMS:
            raise ServiceError("InvalidRequest", f"Checksum algorithm {sdk!r} is not supported; use one of "
                               f"{', '.join(ALGORITHMS.values())}.", 400)
        return sdk, None, False
    return None, None, False


def content_md5(headers: HeaderMap) -> bytes | None:
    value = headers.get("Content-MD5")
    if value is None:
        return None
    raw = _decode_b64(value, 16)
    if raw is None:
        raise ServiceError("InvalidDigest", "The Content-MD5 you specified was invalid.", 400)
    return raw


def stored_content_encoding(value: str | None) -> str | None:
    """Content-Encoding as the object keeps it: the aws-chunked transfer framing is not part of it."""
    if not value:
        return None
    kept = [t.strip() for t in value.split(",") if t.strip() and t.strip().lower() != "aws-chunked"]
    return ", ".join(kept) or None


def client_body_error(exc: BaseException, got: int, expected: int | None) -> ServiceError:
    """The S3 error for a failure while receiving the request body (never a 500: the client's fault)."""
    if timed_out(exc):  # socket.timeout, or EAGAIN after SO_RCVTIMEO
        return request_timeout()
    if isinstance(exc, OSError):  # NoMoreData, ECONNRESET, ...
        return incomplete_body(got, expected, "the connection ended")
    return ServiceError("InvalidRequest", f"The chunked transfer encoding of the request body is malformed: {exc}.",
                        400)


class _ServerInput:
    """The WSGI input of a body without Content-Length (Transfer-Encoding: chunked): the server
    decodes the framing as it is read, and its errors become 400s instead of escaping as 500s."""

    def __init__(self, raw: Readable) -> None:
        self.raw, self.count = raw, 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.raw.read(n)
        except CLIENT_BODY_ERRORS as exc:
            raise client_body_error(exc, self.count, None) from None
        self.count += len(data)
        return data


class _BodyStream:
    """Exactly `length` bytes straight from the WSGI input (IncompleteBody when it ends early).

    The plain-body path reads the server's input directly: a stack of io.RawIOBase readers costs
    an allocation and two copies per layer and chunk, several seconds of CPU per GiB. The SHA-256
    of x-amz-content-sha256 is computed with the other digests instead (see UploadBody.verify).
    `readinto` (what the blob writer uses for large bodies) receives straight into the writer's
    buffer when the server is gunicorn (see _SocketBody), else uses the input's own readinto/read.
    """

    def __init__(self, raw: Readable, length: int) -> None:
        self.raw, self.length, self.remaining = raw, length, length
        self._direct = _SocketBody.attach(raw)

    def read(self, n: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        try:
            data = self.raw.read(self.remaining if n is None or n < 0 else min(n, self.remaining))
        except CLIENT_BODY_ERRORS as exc:
            raise client_body_error(exc, self.length - self.remaining, self.length) from None
        if not data:
            raise incomplete_body(self.length - self.remaining, self.length, "Content-Length")
        self.remaining -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        if self.remaining <= 0:
            return 0
        view = memoryview(buffer).cast("B")
        view = view[: min(len(view), self.remaining)]
        if not view:
            return 0
        try:
            if self._direct is not None:
                got = self._direct.readinto(view)
            elif getattr(type(self.raw), "readinto", None) not in (None, io.RawIOBase.readinto):
                got = self.raw.readinto(view) or 0  # type: ignore[attr-defined]
            else:
                data = self.raw.read(len(view))
                got = len(data)
                view[:got] = data
        except CLIENT_BODY_ERRORS as exc:
            raise client_body_error(exc, self.length - self.remaining, self.length) from None
        if not got:
            raise incomplete_body(self.length - self.remaining, self.length, "Content-Length")
        self.remaining -= got
        return got


class _SocketBody:
    """gunicorn's body of known length (Body -> LengthReader -> SocketUnreader) read with
    recv_into() straight from the connection into the caller's buffer.

    gunicorn's own read() hands each piece through two BytesIO buffers and several slices: about
    four copies and as many fresh 1 MiB allocations per MiB, which cost more CPU than receiving.
    Here the bytes gunicorn read ahead with the headers are used first, then the socket; the
    LengthReader's count is kept exact, so gunicorn still knows where this request ends (it
    discards what the application left unread, and never reads past the body). Anything but that
    exact stack (another server, a chunked body, a partly read input) keeps the ordinary path.
    """

    def __init__(self, reader: Any, unreader: Any) -> None:
        self.reader, self.unreader, self.sock = reader, unreader, unreader.sock
        # a plain socket waits in the kernel until the whole piece asked for has arrived: one
        # wake-up per MiB instead of one per TCP segment burst (TLS sockets take no flags)
        self.flags = 0 if isinstance(self.sock, ssl.SSLSocket) else getattr(socket, "MSG_WAITALL", 0)

    @classmethod
    def attach(cls, raw: Any) -> _SocketBody | None:
        try:
            from gunicorn.http.body import Body, LengthReader
            from gunicorn.http.unreader import SocketUnreader
        except ImportError:  # pragma: no cover - gunicorn is a dependency
            return None
        if type(raw) is not Body:
            return None
        reader = getattr(raw, "reader", None)
        unreader = getattr(reader, "unreader", None)
        if type(reader) is not LengthReader or type(unreader) is not SocketUnreader:
            return None
        if not isinstance(getattr(raw, "buf", None), io.BytesIO) or raw.buf.tell() \
                or not isinstance(getattr(unreader, "buf", None), io.BytesIO) \
                or not hasattr(unreader, "sock") or not isinstance(getattr(reader, "length", None), int):
            return None
        return cls(reader, unreader)

    def readinto(self, view: memoryview) -> int:
        want = min(len(view), self.reader.length)
        if want <= 0:
            return 0
        held = self.unreader.buf
        if held.tell():  # read ahead with the headers (or pushed back): those bytes come first
            data = held.getvalue()
            self.unreader.buf = io.BytesIO()
            if len(data) > want:
                self.unreader.buf.write(data[want:])
                data = data[:want]
            got = len(data)
            view[:got] = data
        else:
            got = self.sock.recv_into(view, want, self.flags)
        self.reader.length -= got
        return got


class _SizeCap:
    """Refuses bodies growing past `limit` bytes (when no length was announced)."""

    def __init__(self, raw: Readable, limit: int) -> None:
        self.raw, self.limit, self.count = raw, limit, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        if self.count > self.limit:
            raise entity_too_large(self.limit)
        return data


#: what may follow the object's last byte in an aws-chunked body: the final chunk and the trailers
MAX_TRAILER_BYTES = 256 * 1024


class _TrailerCap:
    """Under an AwsChunkedReader: once the object's bytes are all decoded (x-amz-decoded-content-length),
    only the final 0-size chunk and the trailers follow, and the reader keeps every trailer line in
    memory; at most MAX_TRAILER_BYTES of them (S3 allows a few trailing headers, not gigabytes)."""

    def __init__(self, raw: Readable) -> None:
        self.raw, self.after = raw, 0
        self.chunked: AwsChunkedReader | None = None

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        chunked = self.chunked
        if chunked is not None and chunked.decoded_length is not None and chunked.decoded >= chunked.decoded_length:
            self.after += len(data)
            if self.after > MAX_TRAILER_BYTES:
                raise malformed(f"more than {MAX_TRAILER_BYTES} bytes follow the last chunk of data")
        return data


def entity_too_large(limit: int) -> ServiceError:
    return ServiceError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.", 400,
                        MaxSizeAllowed=str(limit))


def _declared_lengths(headers: HeaderMap, aws_chunked: bool) -> tuple[int | None, int | None]:
    """(bytes on the wire, bytes of the object) as the request announces them."""
    codings = [c.strip().lower() for c in (headers.get("Transfer-Encoding") or "").split(",") if c.strip()]
    if any(c not in ("chunked", "identity") for c in codings):
        # the server removes the chunked framing only: a gzip'd body would be stored compressed
        raise ServiceError("NotImplemented", "A header you provided implies functionality that is not implemented: "
                           f"Transfer-Encoding {headers.get('Transfer-Encoding')}.", 501, Header="Transfer-Encoding")
    length_header = (headers.get("Content-Length") or "").strip()
    try:
        wire = int(length_header) if length_header else None
    except ValueError:
        raise ServiceError("InvalidArgument", "The Content-Length header is not a number.", 400) from None
    if wire is not None and wire < 0:
        raise ServiceError("InvalidArgument", "The Content-Length header is negative.", 400)
    if wire is None and "chunked" not in (headers.get("Transfer-Encoding") or "").lower():
        raise ServiceError("MissingContentLength", "You must provide the Content-Length HTTP header.", 411)
    if not aws_chunked:
        return wire, wire
    decoded = headers.get("x-amz-decoded-content-length")
    if decoded is None:
        raise ServiceError("MissingContentLength", "You must provide the x-amz-decoded-content-length header "
                           "with an aws-chunked body.", 411)
    try:
        return wire, int(decoded)
    except ValueError:
        raise ServiceError("InvalidArgument", "x-amz-decoded-content-length is not a number.", 400) from None


@dataclass
class UploadBody:
    reader: Readable
    #: the object's size when the request announced it (Content-Length or decoded length)
    length: int | None
    md5: bytes | None = None
    algorithm: str | None = None
    expected_checksum: str | None = None
    trailer_checksum: bool = False
    chunked: AwsChunkedReader | None = None
    #: x-amz-content-sha256 of a plain body, checked when the body has been read
    payload_sha256: str | None = None
    _hashers: dict[str, Any] | None = field(default=None, repr=False)
    _payload_hasher: Any = field(default=None, repr=False)

    @classmethod
    def from_request(cls, raw: BinaryIO, headers: HeaderMap, payload_hash: str | None,
                     chunk_signer: Any = None, limit: int = MAX_PUT_SIZE) -> UploadBody:
        """The object bytes of a request, verified as they are read (and by verify() at the end);
        raises before reading anything if the request cannot carry an object."""
        declared = payload_hash or ""
        # aws-chunked framing: a STREAMING-* payload, or Content-Encoding aws-chunked with the decoded
        # length it needs; without one, a client naming aws-chunked as a plain content encoding
        # sent the object as it is (S3 stores the body, and no aws-chunked encoding)
        aws_chunked = declared.startswith("STREAMING-") or (
            "aws-chunked" in (headers.get("Content-Encoding") or "").lower()
            and headers.get("x-amz-decoded-content-length") is not None)
        wire, length = _declared_lengths(headers, aws_chunked)
        if length is not None and length > limit:
            raise entity_too_large(limit)
        stream: Readable = _BodyStream(raw, wire) if wire is not None else _ServerInput(raw)
        chunked = None
        if aws_chunked:
            capped = _TrailerCap(stream)
            if declared.startswith("STREAMING-"):
                chunked = AwsChunkedReader.for_payload(cast(BinaryIO, capped), declared, chunk_signer=chunk_signer,
                                                       decoded_length=length)
            else:
                chunked = AwsChunkedReader(cast(BinaryIO, capped), trailer=bool(headers.get("x-amz-trailer")),
                                           decoded_length=length)
            capped.chunked = chunked
            stream = chunked
        if length is None:
            stream = _SizeCap(stream, limit)
        algorithm, expected, trailer = declared_checksum(headers)
        if trailer and chunked is None:
            raise ServiceError("InvalidRequest", "x-amz-trailer needs an aws-chunked body "
                               "(x-amz-content-sha256: STREAMING-...-TRAILER).", 400)
        sha = declared if len(declared) == 64 and chunked is None else None
        return cls(stream, length, content_md5(headers), algorithm, expected, trailer, chunked, sha)

    def checksums(self) -> dict[str, Any]:
        """The hashers to feed with the body (the blob writer updates them with every chunk)."""
        if self._hashers is None:
            self._hashers = {}
            if self.algorithm is not None:
                self._hashers[self.algorithm] = new_checksum(self.algorithm)
            if self.payload_sha256 is not None:
                if self.algorithm != "sha256":
                    self._hashers["x-amz-content-sha256"] = new_checksum("sha256")
                self._payload_hasher = self._hashers.get("sha256") or self._hashers["x-amz-content-sha256"]
        return self._hashers

    def verify(self, md5_digest: bytes) -> str | None:
        """Compare what was computed (the body's MD5, the digests fed by the writer) with what the
        client declared; returns the base64 checksum, if one was asked for."""
        hashers = self.checksums()
        if self.payload_sha256 is not None:
            actual_sha = self._payload_hasher.digest().hex()
            if not hmac.compare_digest(actual_sha, self.payload_sha256.lower()):
                raise ServiceError(
                    "XAmzContentSHA256Mismatch",
                    f"The provided 'x-amz-content-sha256' header ({self.payload_sha256}) does not match the SHA-256 of "
                    f"the body we received ({actual_sha}); sign the exact bytes you send.", 400,
                    ClientComputedContentSHA256=self.payload_sha256, S3ComputedContentSHA256=actual_sha)
        if self.md5 is not None and not hmac.compare_digest(self.md5, md5_digest):
            raise ServiceError("BadDigest", "The Content-MD5 you specified did not match what we received.", 400,
                               ExpectedDigest=base64.b64encode(self.md5).decode(),
                               CalculatedDigest=base64.b64encode(md5_digest).decode())
        if self.algorithm is None:
            return None
        actual = hashers[self.algorithm].b64digest()
        expected = self.expected_checksum
        if self.trailer_checksum:
            assert self.chunked is not None
            expected = self.chunked.trailers.get(f"x-amz-checksum-{self.algorithm}")
            if expected is None:
                raise ServiceError("InvalidRequest", f"The x-amz-checksum-{self.algorithm} trailer announced in "
                                   "x-amz-trailer is missing from the body.", 400)
            if _decode_b64(expected, _DIGEST_SIZES[self.algorithm]) is None:
                raise _invalid_checksum_header(f"x-amz-checksum-{self.algorithm}")
        if expected is not None and not hmac.compare_digest(expected.strip(), actual):
            raise ServiceError("BadDigest", f"The {ALGORITHMS[self.algorithm]} you specified did not match the "
                               "calculated checksum.", 400)
        return actual

    def read_all(self, limit: int) -> bytes:
        """A small body (XML) in memory, verified like any other; at most `limit` bytes."""
        if self.length is not None and self.length > limit:
            raise ServiceError("MaxMessageLengthExceeded", "Your request was too big.", 400)
        out = bytearray()
        md5 = hashlib.md5()
        hashers = self.checksums()
        while data := self.reader.read(min(CHUNK, limit + 1 - len(out))):
            out += data
            md5.update(data)
            for h in hashers.values():
                h.update(data)
            if len(out) > limit:
                raise ServiceError("MaxMessageLengthExceeded", "Your request was too big.", 400)
        self.verify(md5.digest())
        return bytes(out)
