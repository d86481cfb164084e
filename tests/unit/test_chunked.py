"""aws-chunked decoding, chunk-signature chains, trailers, sha256/length readers and checksums."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import shutil
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from werkzeug.datastructures import Headers

from ec2gw.aws.auth import RequestView, authenticate
from ec2gw.aws.chunked import (
    AwsChunkedReader,
    ChunkSigner,
    LengthLimitedReader,
    Sha256VerifyingReader,
    new_checksum,
)
from ec2gw.errors import ServiceError
from tests.unit.test_sigv4 import S3, body_of, capture, client, expect_error, view_of

# ---------------------------------------------------------------- the AWS documentation's examples
# https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html and sigv4-streaming-trailers.html

DOC_KEY, DOC_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_NOW = datetime(2013, 5, 24, 0, 1, tzinfo=UTC)
DOC_SIGNED = ("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9", [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"])
DOC_TRAILER = ("106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e", [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"])
DOC_TRAILER_LINES = (b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
                     b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n")
DATA = b"a" * 66560


def doc_request(trailer: bool) -> RequestView:
    seed = (DOC_TRAILER if trailer else DOC_SIGNED)[0]
    signed = ("content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
              "x-amz-storage-class;x-amz-trailer") if trailer else (
              "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
              "x-amz-decoded-content-length;x-amz-storage-class")
    headers = Headers({
        "Host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "Authorization": f"AWS4-HMAC-SHA256 Credential={DOC_KEY}/20130524/us-east-1/s3/aws4_request,"
                         f"SignedHeaders={signed},Signature={seed}",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else ""),
        "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "66560", "Content-Length": "66824"})
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32c"
        del headers["Content-Length"]
    return RequestView("PUT", "/examplebucket/chunkObject.txt", "", headers)


def doc_body(trailer: bool, signatures: list[str] | None = None) -> bytes:
    sigs = signatures or (DOC_TRAILER if trailer else DOC_SIGNED)[1]
    end = DOC_TRAILER_LINES + b"\r\n" if trailer else b"\r\n"
    return (f"10000;chunk-signature={sigs[0]}\r\n".encode() + DATA[:65536] + b"\r\n"
            + f"400;chunk-signature={sigs[1]}\r\n".encode() + DATA[65536:] + b"\r\n"
            + f"0;chunk-signature={sigs[2]}\r\n".encode() + end)


def doc_reader(trailer: bool, body: bytes | None = None) -> AwsChunkedReader:
    auth = authenticate(doc_request(trailer), service="s3", lookup_secret={DOC_KEY: DOC_SECRET}.get, now=DOC_NOW)
    assert isinstance(auth.chunk_signer, ChunkSigner)
    return AwsChunkedReader.for_payload(io.BytesIO(doc_body(trailer) if body is None else body), auth.payload_hash or "",
                                        chunk_signer=auth.chunk_signer, decoded_length=66560)


def read_all(reader: Any, size: int = 8192) -> bytes:
    out = bytearray()
    while True:
        data = reader.read(size)
        if not data:
            return bytes(out)
        out += data


class Trickle(io.RawIOBase):
    """A raw stream that returns at most `step` bytes per read, like a slow socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


@pytest.mark.parametrize("trailer", [False, True])
@pytest.mark.parametrize("size", [1, 1000, 65536, 1 << 20])
def test_documented_signed_streams_decode(trailer: bool, size: int) -> None:
    reader = doc_reader(trailer)
    assert read_all(reader, size) == DATA
    assert reader.trailers == ({"x-amz-checksum-crc32c": "sOO8/Q=="} if trailer else {})
    if trailer:
        checksum = new_checksum("crc32c")
        checksum.update(DATA)
        assert checksum.b64digest() == "sOO8/Q=="


def test_documented_stream_through_a_trickling_socket() -> None:
    auth = authenticate(doc_request(False), service="s3", lookup_secret={DOC_KEY: DOC_SECRET}.get, now=DOC_NOW)
    reader = AwsChunkedReader(Trickle(doc_body(False), 7), chunk_signer=auth.chunk_signer,  # type: ignore[arg-type]
                              decoded_length=66560)
    assert io.BufferedReader(reader).read() == DATA


def test_tampered_chunk_data_fails_before_end_of_stream() -> None:
    body = bytearray(doc_body(False))
    body[66000] ^= 1  # inside the second chunk's data
    reader = doc_reader(False, bytes(body))
    got = bytearray()
    with pytest.raises(ServiceError) as info:
        while data := reader.read(4096):
            got += data
    assert (info.value.code, info.value.status) == ("SignatureDoesNotMatch", 403)
    assert len(got) < len(DATA)


@pytest.mark.parametrize("mutation", ["swap", "drop", "final"])
def test_chunk_signature_chain_cannot_be_reordered_or_shortened(mutation: str) -> None:
    sigs = list(DOC_SIGNED[1])
    if mutation == "swap":
        body = doc_body(False, [sigs[1], sigs[0], sigs[2]])
    elif mutation == "final":
        body = doc_body(False, [sigs[0], sigs[1], sigs[1]])
    else:  # drop the first chunk altogether
        full = doc_body(False)
        body = full[full.index(b"400;"):]
    with pytest.raises(ServiceError) as info:
        read_all(doc_reader(False, body))
    assert info.value.code in ("SignatureDoesNotMatch", "IncompleteBody")
    if mutation != "drop":
        assert info.value.code == "SignatureDoesNotMatch"


def test_tampered_signed_trailer_is_rejected() -> None:
    body = doc_body(True).replace(b"sOO8/Q==", b"AAAAAA==")
    expect_error("SignatureDoesNotMatch", 403, read_all, doc_reader(True, body))
    no_sig = doc_body(True).replace(DOC_TRAILER_LINES, b"x-amz-checksum-crc32c:sOO8/Q==\r\n")
    expect_error("InvalidRequest", 400, read_all, doc_reader(True, no_sig))


def test_signed_stream_without_chunk_signature_is_malformed() -> None:
    body = doc_body(False).replace(b";chunk-signature=" + DOC_SIGNED[1][0].encode(), b"")
    expect_error("InvalidRequest", 400, read_all, doc_reader(False, body))


# ----------------------------------------------------------------------- hand-built signed stream


def sign_stream(chunks: list[bytes], key: bytes, amz_date: str, scope: str, seed: str) -> bytes:
    """Frame and sign chunks exactly as the AWS docs describe (independent of the server code)."""
    out, previous = bytearray(), seed
    for chunk in [*chunks, b""]:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous,
                         hashlib.sha256(b"").hexdigest(), hashlib.sha256(chunk).hexdigest()])
        previous = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    return bytes(out)


def test_hand_built_signed_stream_with_uneven_chunks() -> None:
    key, date, scope, seed = b"k" * 32, "20240101T000000Z", "20240101/undefined-1234/s3/aws4_request", "ab" * 32
    chunks = [bytes(range(256)) * 40, b"x", b"\r\n0;chunk-signature=\r\n", b"z" * 8192]
    body = sign_stream(chunks, key, date, scope, seed)
    reader = AwsChunkedReader(io.BytesIO(body), chunk_signer=ChunkSigner(key, date, scope, seed),
                              decoded_length=sum(map(len, chunks)))
    assert read_all(reader, 333) == b"".join(chunks)
    wrong_key = AwsChunkedReader(io.BytesIO(body), chunk_signer=ChunkSigner(b"K" * 32, date, scope, seed))
    expect_error("SignatureDoesNotMatch", 403, read_all, wrong_key)


# --------------------------------------------------------------------------- unsigned with trailer


def unsigned_trailer_body(data: bytes, chunk_size: int = 1000) -> bytes:
    wrapper = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=Crc32Checksum,
                                checksum_name="x-amz-checksum-crc32", chunk_size=chunk_size)
    return wrapper.read()


def test_unsigned_trailer_stream_built_by_botocore() -> None:
    data = bytes(range(256)) * 50
    reader = AwsChunkedReader(io.BytesIO(unsigned_trailer_body(data)), trailer=True, decoded_length=len(data))
    assert read_all(reader, 4096) == data
    checksum = new_checksum("x-amz-checksum-crc32")
    checksum.update(data)
    assert reader.trailers == {"x-amz-checksum-crc32": checksum.b64digest()}


def test_boto3_https_put_object_streams_unsigned_trailer() -> None:
    """boto3 over https: STREAMING-UNSIGNED-PAYLOAD-TRAILER, no Content-Length, crc32 trailer."""
    s3 = client("s3", S3.replace("http:", "https:"), s3={"addressing_style": "path"})
    data = b"hello, cumulus " * 1000
    request = capture(s3, "put_object", Bucket="b", Key="dir/ü x.bin", Body=data)
    auth = authenticate(view_of(request), service="s3", lookup_secret={"AKIDEXAMPLE12345": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}.get)
    assert auth.payload_hash == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    reader = AwsChunkedReader.for_payload(io.BytesIO(body_of(request)), auth.payload_hash, chunk_signer=None,
                                          decoded_length=int(headers["x-amz-decoded-content-length"]))
    assert read_all(reader) == data
    checksum = new_checksum(headers["x-amz-trailer"])
    checksum.update(data)
    assert reader.trailers[headers["x-amz-trailer"]] == checksum.b64digest()


def test_blank_line_before_trailers_and_missing_final_crlf_are_tolerated() -> None:
    body = b"3\r\nabc\r\n0\r\n\r\nx-amz-checksum-crc32:NSRBwg==\r\n"
    reader = AwsChunkedReader(io.BytesIO(body), trailer=True, decoded_length=3)
    assert read_all(reader) == b"abc"
    assert reader.trailers == {"x-amz-checksum-crc32": "NSRBwg=="}


# --------------------------------------------------------------------------- truncated / malformed


@pytest.mark.parametrize("trailer", [False, True])
def test_every_truncation_is_incomplete_body(trailer: bool) -> None:
    data = b"0123456789" * 30
    body = unsigned_trailer_body(data, 100) if trailer else (
        b"".join(f"{100:x}\r\n".encode() + data[i:i + 100] + b"\r\n" for i in range(0, 300, 100)) + b"0\r\n\r\n")
    # a stream with a complete trailer line may end without the final CRLF; everything else must fail
    complete_from = len(body) - 2 if trailer else len(body)
    for cut in range(complete_from):
        reader = AwsChunkedReader(io.BytesIO(body[:cut]), trailer=trailer, decoded_length=len(data))
        with pytest.raises(ServiceError) as info:
            read_all(reader, 64)
        assert info.value.code == "IncompleteBody", (cut, info.value.message)


@pytest.mark.parametrize("body, code", [
    (b"zz\r\nab\r\n0\r\n\r\n", "InvalidRequest"),                       # size is not hex
    (b"3\r\nabcXX0\r\n\r\n", "InvalidRequest"),                          # data not followed by CRLF
    (b"3\nabc\r\n0\r\n\r\n", "InvalidRequest"),                          # header without CR
    (b"3;" + b"x" * 5000 + b"\r\nabc\r\n0\r\n\r\n", "InvalidRequest"),   # endless header line
    (b"2\r\nab\r\n0\r\n\r\n", "IncompleteBody"),                         # fewer bytes than declared
    (b"4\r\nabcd\r\n0\r\n\r\n", "InvalidRequest"),                       # more bytes than declared
])
def test_malformed_streams(body: bytes, code: str) -> None:
    reader = AwsChunkedReader(io.BytesIO(body), decoded_length=3)
    with pytest.raises(ServiceError) as info:
        read_all(reader)
    assert info.value.code == code


def test_memory_stays_bounded_for_a_large_stream() -> None:
    chunk = b"x" * (1 << 20)
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"

    class Endless(io.RawIOBase):
        """32 MiB of aws-chunked framing produced on the fly (never held in memory at once)."""

        def __init__(self) -> None:
            self.pieces = iter([framed] * 32 + [b"0\r\n\r\n"])
            self.current = memoryview(b"")

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            if not self.current:
                self.current = memoryview(next(self.pieces, b""))
            n = min(len(b), len(self.current))
            b[:n] = self.current[:n]
            self.current = self.current[n:]
            return n

    reader = AwsChunkedReader(io.BufferedReader(Endless()), decoded_length=32 << 20)
    tracemalloc.start()
    try:
        total = 0
        while data := reader.read(65536):
            total += len(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 32 << 20
    assert peak < 2 << 20, peak


# ------------------------------------------------------------------------ sha256 / length readers


def test_sha256_reader_accepts_matching_body_and_rejects_others() -> None:
    data = b"payload" * 1000
    good = Sha256VerifyingReader(io.BytesIO(data), hashlib.sha256(data).hexdigest(), len(data))
    out = io.BytesIO()
    shutil.copyfileobj(good, out)
    assert out.getvalue() == data
    bad = Sha256VerifyingReader(io.BytesIO(data[:-1] + b"X"), hashlib.sha256(data).hexdigest(), len(data))
    err = expect_error("XAmzContentSHA256Mismatch", 400, read_all, bad)
    assert err.extra["ClientComputedContentSHA256"] == hashlib.sha256(data).hexdigest()


def test_sha256_reader_notices_a_cut_off_body() -> None:
    data = b"payload" * 1000
    reader = Sha256VerifyingReader(io.BytesIO(data[:500]), hashlib.sha256(data).hexdigest(), len(data))
    err = expect_error("IncompleteBody", 400, read_all, reader)
    assert "500" in err.message and str(len(data)) in err.message


def test_length_limited_reader() -> None:
    reader = LengthLimitedReader(io.BytesIO(b"abcdefgh"), 5)
    assert read_all(reader, 2) == b"abcde"
    expect_error("IncompleteBody", 400, read_all, LengthLimitedReader(Trickle(b"abc", 1), 5))
    buf = bytearray(10)
    assert LengthLimitedReader(io.BytesIO(b"abcdefgh"), 4).readinto(buf) == 4 and buf[:4] == b"abcd"


# ----------------------------------------------------------------------------------------- checksums

CHECK = b"123456789"
EXPECTED = {
    "crc32": (0xCBF43926).to_bytes(4, "big"),
    "crc32c": (0xE3069283).to_bytes(4, "big"),
    "crc64nvme": (0xAE8B14860A799888).to_bytes(8, "big"),
    "sha1": hashlib.sha1(CHECK).digest(),
    "sha256": hashlib.sha256(CHECK).digest(),
}


@pytest.mark.parametrize("algorithm", sorted(EXPECTED))
@pytest.mark.parametrize("crt", [True, False])
def test_checksums_match_reference_values(algorithm: str, crt: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.httpchecksum

    monkeypatch.setattr(botocore.httpchecksum, "HAS_CRT", crt)
    checksum = new_checksum(f"x-amz-checksum-{algorithm.upper()}" if crt else algorithm)
    checksum.update(CHECK[:4])
    checksum.update(CHECK[4:])
    assert checksum.digest() == EXPECTED[algorithm]
    assert checksum.b64digest() == base64.b64encode(EXPECTED[algorithm]).decode()


def test_unknown_checksum_algorithm() -> None:
    expect_error("InvalidRequest", 400, new_checksum, "md5")


def test_trailers_are_refused_when_none_were_declared() -> None:
    """A signed stream without -TRAILER must end right after the final chunk: nothing unsigned can be appended."""
    body = doc_body(False)[:-2] + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    expect_error("InvalidRequest", 400, read_all, doc_reader(False, body))
