"""Streaming readers that verify an S3 request body while it is read, in bounded memory.

What: decoding of ``Content-Encoding: aws-chunked`` bodies (optionally with chained chunk signatures and
trailing headers), a SHA-256 check against ``x-amz-content-sha256``, a length check that notices a body
cut off mid-way, and the x-amz-checksum-* algorithms.

Why: an object must never be held in memory, so every check runs on the stream; a reader raises
ServiceError instead of reporting end-of-file when the body is bad, so a consumer that writes to a temp
file and commits only after ``read()`` returned ``b""`` never stores a bad body. Chunk data is handed
out as it arrives; the last bytes of a chunk are only returned after its signature has been verified.

Every reader is an ``io.RawIOBase`` (``read(n)``, ``readinto``, ``readall``), so it can be wrapped in
``io.BufferedReader`` or passed to ``shutil.copyfileobj``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from typing import Any, BinaryIO, Protocol

from ec2gw.errors import ServiceError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_LINE = 4096  # a chunk header or trailer line longer than this is malformed
_READ_BLOCK = 64 * 1024
_MAX_READ = 1024 * 1024


def incomplete_body(got: int, expected: int | None, what: str) -> ServiceError:
    want = f" of the {expected} announced" if expected is not None else ""
    return ServiceError(
        "IncompleteBody",
        f"The request body ended after {got} bytes{want} ({what}); the upload was cut off, send it again.",
    )


def malformed(detail: str) -> ServiceError:
    return ServiceError(
        "InvalidRequest",
        f"The aws-chunked request body is malformed: {detail}. Send Content-Encoding: aws-chunked bodies "
        "as '<hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n' chunks ending with a 0-size chunk.",
    )


# --------------------------------------------------------------------------- checksums

CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


class Checksum(Protocol):
    def update(self, chunk: bytes) -> None: ...
    def digest(self) -> bytes: ...
    def b64digest(self) -> str: ...


class _CrcmodChecksum:
    """CRC via crcmod (used for CRC32C/CRC64NVME only when awscrt is missing)."""

    def __init__(self, fun: Any, width: int) -> None:
        self._fun, self._width, self._crc = fun, width, 0

    def update(self, chunk: bytes) -> None:
        self._crc = self._fun(chunk, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(self._width, "big")

    def b64digest(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def new_checksum(algorithm: str) -> Checksum:
    """A fresh checksum for ``crc32``, ``crc32c``, ``crc64nvme``, ``sha1`` or ``sha256``.

    Accepts the header name too (``x-amz-checksum-crc32``) in any case. ``b64digest()`` is the value
    AWS prints in x-amz-checksum-*. Uses botocore.httpchecksum's classes (CRC32C and CRC64NVME through
    awscrt); without awscrt those two fall back to crcmod.
    """
    from botocore import httpchecksum as hc

    name = algorithm.strip().lower().removeprefix("x-amz-checksum-")
    simple = {"crc32": hc.Crc32Checksum, "sha1": hc.Sha1Checksum, "sha256": hc.Sha256Checksum}
    if name in simple:
        return simple[name]()
    if name in ("crc32c", "crc64nvme"):
        if hc.HAS_CRT:
            return hc.CrtCrc32cChecksum() if name == "crc32c" else hc.CrtCrc64NvmeChecksum()
        import crcmod  # type: ignore[import-untyped]

        if name == "crc32c":
            return _CrcmodChecksum(crcmod.mkCrcFun(0x11EDC6F41, rev=True, initCrc=0, xorOut=0xFFFFFFFF), 4)
        poly, mask = 0x1AD93D23594C93659, 0xFFFFFFFFFFFFFFFF
        return _CrcmodChecksum(crcmod.mkCrcFun(poly, rev=True, initCrc=0, xorOut=mask), 8)
    raise ServiceError(
        "InvalidRequest",
        f"Checksum algorithm {algorithm!r} is not supported; use one of {', '.join(CHECKSUM_ALGORITHMS)}.",
    )


# --------------------------------------------------------------------------- chunk signatures


class ChunkSigner:
    """Verifies the chain of chunk signatures of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] body.

    Each chunk's signature covers its data and the previous signature, starting from the seed (the
    request's own SigV4 signature), so chunks cannot be dropped, reordered or altered.
    """

    def __init__(self, signing_key: bytes, amz_date: str, scope: str, seed_signature: str) -> None:
        self._key = signing_key
        self._prefix = f"{amz_date}\n{scope}\n"
        self.previous = seed_signature
        self.chunks = 0

    def _check(self, string_to_sign: str, signature: str, what: str) -> None:
        expected = hmac.new(self._key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.strip().lower()):
            raise ServiceError(
                "SignatureDoesNotMatch",
                f"The signature of {what} does not match the one we calculated from the seed signature; "
                "check your secret access key and that the body was not changed in transit.",
                403,
            )
        self.previous = signature.strip().lower()

    def verify_chunk(self, data_sha256_hex: str, signature: str) -> None:
        """Check one chunk (the final 0-byte chunk included) and advance the chain."""
        self.chunks += 1
        sts = f"AWS4-HMAC-SHA256-PAYLOAD\n{self._prefix}{self.previous}\n{EMPTY_SHA256}\n{data_sha256_hex}"
        self._check(sts, signature, f"chunk {self.chunks}")

    def verify_trailer(self, trailers: dict[str, str], signature: str) -> None:
        """Check x-amz-trailer-signature over the canonical trailing headers ("name:value\\n", sorted)."""
        canonical = "".join(f"{k}:{v}\n" for k, v in sorted(trailers.items()))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        self._check(f"AWS4-HMAC-SHA256-TRAILER\n{self._prefix}{self.previous}\n{digest}", signature, "the trailer")


# --------------------------------------------------------------------------- readers


class _Source:
    """Buffered pulls from the raw stream; never holds more than one block plus one line."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw, self._buf, self.eof = raw, b"", False

    def _fill(self) -> bool:
        block = self._raw.read(_READ_BLOCK) if not self.eof else b""
        if not block:
            self.eof = True
            return False
        self._buf += block
        return True

    def read_some(self, n: int) -> bytes:
        """Up to n bytes (fewer is fine); b"" only at end of stream."""
        n = min(n, _MAX_READ)
        if self._buf:
            out, self._buf = self._buf[:n], self._buf[n:]
            return out
        if self.eof:
            return b""
        out = self._raw.read(n)
        if not out:
            self.eof = True
        return out or b""

    def peek(self) -> bool:
        """True if at least one more byte is available."""
        return bool(self._buf) or self._fill()

    def read_exact(self, n: int) -> bytes | None:
        while len(self._buf) < n and self._fill():
            pass
        if len(self._buf) < n:
            return None
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_line(self) -> bytes | None:
        """One line including its LF; None at end of stream (a partial line is returned as is)."""
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_LINE:
                raise malformed(f"a line is longer than {MAX_LINE} bytes")
            if not self._fill():
                out, self._buf = self._buf, b""
                return out or None
        line, _, self._buf = self._buf.partition(b"\n")
        if len(line) > MAX_LINE:
            raise malformed(f"a line is longer than {MAX_LINE} bytes")
        return line + b"\n"


class _VerifyingReader(io.RawIOBase):
    """io.RawIOBase on top of ``_read(n) -> bytes`` (b"" only once everything checked out)."""

    def readable(self) -> bool:
        return True

    def _read(self, n: int) -> bytes:
        raise NotImplementedError

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        data = self._read(len(view))
        view[: len(data)] = data
        return len(data)


class LengthLimitedReader(_VerifyingReader):
    """Exactly ``length`` bytes of ``raw``; IncompleteBody if the stream ends early (cut-off upload)."""

    def __init__(self, raw: BinaryIO, length: int) -> None:
        self._raw, self.length, self.remaining = raw, length, length

    def _read(self, n: int) -> bytes:
        if self.remaining <= 0:
            return b""
        data = self._raw.read(min(n, self.remaining, _MAX_READ)) or b""
        if not data:
            raise incomplete_body(self.length - self.remaining, self.length, "Content-Length")
        self.remaining -= len(data)
        return data


class Sha256VerifyingReader(_VerifyingReader):
    """Passes the body through and raises XAmzContentSHA256Mismatch at EOF if its SHA-256 is not expected_hex.

    With ``length`` the body is also cut to exactly that many bytes (IncompleteBody when shorter).
    """

    def __init__(self, raw: BinaryIO, expected_hex: str, length: int | None = None) -> None:
        self._raw: BinaryIO = LengthLimitedReader(raw, length) if length is not None else raw  # type: ignore[assignment]
        self._expected = expected_hex.strip().lower()
        self._hash = hashlib.sha256()
        self._done = False

    def _read(self, n: int) -> bytes:
        if self._done:
            return b""
        data = self._raw.read(min(n, _MAX_READ)) or b""
        if data:
            self._hash.update(data)
            return data
        self._done = True
        actual = self._hash.hexdigest()
        if not hmac.compare_digest(actual, self._expected):
            raise ServiceError(
                "XAmzContentSHA256Mismatch",
                f"The provided 'x-amz-content-sha256' header ({self._expected}) does not match the SHA-256 of "
                f"the body we received ({actual}); sign the exact bytes you send.",
                400,
                ClientComputedContentSHA256=self._expected,
                S3ComputedContentSHA256=actual,
            )
        return b""


class AwsChunkedReader(_VerifyingReader):
    """Decodes an ``aws-chunked`` body to the object's bytes.

    ``chunk_signer`` (from authenticate() for STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]) makes every
    chunk's signature mandatory and verified. ``trailer=True`` expects trailing headers after the final
    chunk (STREAMING-*-TRAILER); they are in ``.trailers`` once ``read()`` returned ``b""``, and with a
    signer ``x-amz-trailer-signature`` is verified. ``decoded_length`` (x-amz-decoded-content-length)
    must equal the decoded size. Truncated or malformed framing raises instead of ending the stream.
    """

    def __init__(
        self,
        raw: BinaryIO,
        *,
        chunk_signer: ChunkSigner | None = None,
        trailer: bool = False,
        decoded_length: int | None = None,
    ) -> None:
        self._src = _Source(raw)
        self._signer = chunk_signer
        self._trailer = trailer
        self.decoded_length = decoded_length
        self.decoded = 0
        self.trailers: dict[str, str] = {}
        self._remaining = 0  # bytes left in the current chunk
        self._hash: Any = None
        self._signature: str | None = None
        self._done = False

    @classmethod
    def for_payload(
        cls, raw: BinaryIO, payload_hash: str, *, chunk_signer: ChunkSigner | None, decoded_length: int | None
    ) -> AwsChunkedReader:
        """The reader matching a declared x-amz-content-sha256 STREAMING-* value."""
        signed = payload_hash.startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        if signed and chunk_signer is None:
            raise ValueError("a signed aws-chunked body needs the chunk signer from authenticate()")
        return cls(
            raw, chunk_signer=chunk_signer if signed else None,
            trailer=payload_hash.endswith("-TRAILER"), decoded_length=decoded_length,
        )

    def _truncated(self) -> ServiceError:
        return incomplete_body(self.decoded, self.decoded_length, "aws-chunked framing")

    def _read(self, n: int) -> bytes:
        while not self._done:
            if self._remaining:
                data = self._src.read_some(min(n, self._remaining))
                if not data:
                    raise self._truncated()
                self._remaining -= len(data)
                self._count(data)
                if not self._remaining:
                    self._end_chunk()
                return data
            self._start_chunk()
        return b""

    def _count(self, data: bytes) -> None:
        self.decoded += len(data)
        if self._hash is not None:
            self._hash.update(data)
        if self.decoded_length is not None and self.decoded > self.decoded_length:
            raise malformed(f"it decodes to more than x-amz-decoded-content-length={self.decoded_length} bytes")

    def _start_chunk(self) -> None:
        line = self._src.read_line()
        if line is None or not line.endswith(b"\r\n"):
            raise self._truncated() if line is None or self._src.eof else malformed("a chunk header lacks CRLF")
        size_text, _, ext = line[:-2].decode("latin-1").partition(";")
        size_text = size_text.strip()
        if not size_text or len(size_text) > 16 or any(c not in "0123456789abcdefABCDEF" for c in size_text):
            raise malformed(f"bad chunk size {size_text[:32]!r}")
        size = int(size_text, 16)
        self._signature = None
        for item in ext.split(";"):
            name, _, value = item.strip().partition("=")
            if name == "chunk-signature":
                self._signature = value.strip()
        if self._signer is not None and not self._signature:
            raise malformed("a chunk has no chunk-signature although the body is declared signed")
        self._hash = hashlib.sha256() if self._signer is not None else None
        if size:
            self._remaining = size
            return
        if self._signer is not None:
            self._signer.verify_chunk(EMPTY_SHA256, self._signature or "")
        self._read_trailers()
        self._finish()

    def _end_chunk(self) -> None:
        crlf = self._src.read_exact(2)
        if crlf is None:
            raise self._truncated()
        if crlf != b"\r\n":
            raise malformed("chunk data is not followed by CRLF (the chunk size is wrong)")
        if self._signer is not None:
            self._signer.verify_chunk(self._hash.hexdigest(), self._signature or "")

    def _read_trailers(self) -> None:
        """Trailing "name:value" lines up to an empty line (or, with trailers, the end of the stream)."""
        signature = None
        first_line = True
        while True:
            line = self._src.read_line()
            if line is None and self._trailer and (self.trailers or signature):
                break  # some clients omit the final CRLF after the trailers
            if line is None or not line.endswith(b"\n"):
                raise self._truncated()
            text = line.decode("latin-1").strip()
            if not text:
                # some clients put a blank line between the 0-size chunk and the trailers
                if self._trailer and first_line and self._more_follows():
                    first_line = False
                    continue
                break
            first_line = False
            if not self._trailer:
                raise malformed("data follows the final chunk although no trailer was declared (x-amz-trailer)")
            name, colon, value = text.partition(":")
            if not colon:
                raise malformed(f"trailer line {text[:64]!r} is not 'name:value'")
            if name.strip().lower() == "x-amz-trailer-signature":
                signature = value.strip()
            else:
                self.trailers[name.strip().lower()] = value.strip()
        if self._signer is not None and self._trailer:
            if signature is None:
                raise malformed("the trailer has no x-amz-trailer-signature although the body is declared signed")
            self._signer.verify_trailer(self.trailers, signature)

    def _more_follows(self) -> bool:
        return self._src.peek()

    def _finish(self) -> None:
        if self.decoded_length is not None and self.decoded != self.decoded_length:
            raise incomplete_body(self.decoded, self.decoded_length, "x-amz-decoded-content-length")
        self._done = True

