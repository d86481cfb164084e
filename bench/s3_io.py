#!/usr/bin/env python3
"""Cumulus I/O benchmark: Cumulus, moto's server and two do-nothing servers, side by side, with boto3.

What it measures (boto3 1.3x+ defaults over plain HTTP: signed payloads, so the client computes
the body's SHA-256 first; CRC32 checksums on PUT; ChecksumMode on GET, so the client checks the
CRC32 a server returns for a whole object):
  * PUT and GET of 16 MiB, 256 MiB and 1 GiB objects: one PutObject and upload_file (multipart,
    16 MiB parts, 8 threads), one streamed GetObject and download_file (ranged, concurrent);
  * 1,000 small objects (1 KiB) PUT, LIST (ListObjectsV2 pages) and GET from 8 threads;
  * each server's CPU time (user + system, every process of its session) and peak memory growth
    (RSS of that process tree, sampled every 20 ms).
All servers run at once and every workload goes to each of them in turn, in an order that rotates
from one workload to the next (`--rounds N` repeats that and reports medians), so a change in the
machine's load during the run falls on all of them. The input files are fsync'd before the run.

The two do-nothing servers answer the same boto3 calls on the same HTTP stack as Cumulus
(gunicorn, gthread, 2 workers x 8 threads) and store nothing:
  * "null", the limit the issue asks for: what loopback and hashing allow. A body is received
    with recv_into() straight from gunicorn's socket into recycled 1 MiB buffers and verified as
    any S3 must: MD5 for the ETag (on a second thread, beside SHA-256 and CRC32, so two CPUs
    hash), the SHA-256 of a signed payload against x-amz-content-sha256, x-amz-checksum-crc32
    and Content-MD5 when sent; the answer carries the real ETag and CRC32. GETs are sendfile()
    from a sparse file of zeros, with the correct x-amz-checksum-crc32 when the client asks for
    the whole object, so boto3 does the same checking work as with Cumulus. What it does not do:
    write to disk, fsync, keep metadata, check signatures or permissions.
  * "bare": the same without any hashing or checksum (reads and drops bodies; GETs carry no
    checksum, so boto3 checks nothing): bare loopback + HTTP + boto3's own client-side work.
    Large objects only.
moto's server keeps objects in memory (no disk) and is single-process.

Usage: .venv/bin/python bench/s3_io.py [--sizes 16,256,1024] [--small 1000] [--rounds 1] [--baseline TREE]
                                       [--skip-moto] [--skip-bare]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import queue
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GunicornApp, MotoServer, ec2gw_server

MiB = 1024 * 1024
TRANSFER = TransferConfig(multipart_threshold=16 * MiB, multipart_chunksize=16 * MiB, max_concurrency=8)
SINGLE = TransferConfig(multipart_threshold=1 << 40)

# --------------------------------------------------------------------------- the do-nothing servers

_SIZE_RE = re.compile(r"\.(\d+)$")
#: "hash": the limit (every check an S3 makes on a body, nothing stored); "bare": no checks at all
NULL_MODE = os.environ.get("S3_IO_NULL_MODE", "hash")
#: a sparse file of zeros the GETs are sent from with sendfile(), as Cumulus sends its blobs
_ZERO_FILE = os.environ.get("S3_IO_ZERO_FILE", "")
_ZERO_CRCS: dict[int, int] = {}


def _crc32_of_zeros(n: int) -> str:
    """base64 CRC32 of n zero bytes, by doubling (awscrt's combine): what the client will compute."""
    import base64
    import zlib

    from awscrt import checksums as crt

    if n not in _ZERO_CRCS:
        crc, done, piece, piece_crc = 0, 0, MiB, zlib.crc32(bytes(MiB))
        whole, rest = divmod(n, MiB)
        bits = whole
        while bits:  # crc of `whole` MiB of zeros from crc(1 MiB), crc(2 MiB), crc(4 MiB), ...
            if bits & 1:
                crc = piece_crc if not done else crt.combine_crc32(crc, piece_crc, piece)
                done += piece
            piece_crc, piece, bits = crt.combine_crc32(piece_crc, piece_crc, piece), piece * 2, bits >> 1
        if rest:
            crc = zlib.crc32(bytes(rest), crc)
        _ZERO_CRCS[n] = crc & 0xFFFFFFFF
    return base64.b64encode(_ZERO_CRCS[n].to_bytes(4, "big")).decode()


def _body_reader(environ: dict[str, Any], length: int) -> Callable[[memoryview], int]:
    """readinto() for the request body: recv_into() straight from gunicorn's socket (the bytes it
    read ahead with the headers first; MSG_WAITALL, so one wake-up per MiB), as Cumulus does, else
    the input's read()."""
    stream = environ["wsgi.input"]
    reader: Any = getattr(stream, "reader", None)
    unreader: Any = getattr(reader, "unreader", None)
    if type(reader).__name__ == "LengthReader" and type(unreader).__name__ == "SocketUnreader" \
            and not stream.buf.tell():
        import ssl

        flags = 0 if isinstance(unreader.sock, ssl.SSLSocket) else socket.MSG_WAITALL

        def direct(view: memoryview) -> int:
            want = min(len(view), reader.length)
            if want <= 0:
                return 0
            if unreader.buf.tell():
                data = unreader.buf.getvalue()
                unreader.buf = io.BytesIO()
                unreader.buf.write(data[want:])
                data = data[:want]
                view[: len(data)] = data
                got = len(data)
            else:
                got = unreader.sock.recv_into(view, want, flags)
            reader.length -= got
            return got
        return direct

    def via_read(view: memoryview) -> int:
        data = stream.read(len(view))
        view[: len(data)] = data
        return len(data)
    return via_read


class _Md5Thread:
    """MD5 on a thread of its own (hashlib releases the GIL), fed the buffers in order."""

    def __init__(self, free: queue.SimpleQueue[bytearray]) -> None:
        self.md5, self.free = hashlib.md5(), free
        self.todo: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while (item := self.todo.get()) is not None:
            self.md5.update(memoryview(item[0])[: item[1]])
            self.free.put(item[0])

    def finish(self) -> bytes:
        self.todo.put(None)
        self.thread.join()
        return self.md5.digest()


def _consume(environ: dict[str, Any]) -> tuple[str, dict[str, str]] | str:
    """Read the body; in "hash" mode verify it as an S3 must (x-amz-content-sha256 of a signed
    payload, Content-MD5, x-amz-checksum-crc32) while computing the MD5 of the ETag. Returns
    (etag, checksum headers), or an error code. MD5 runs beside SHA-256 + CRC32 on two threads
    with recycled 1 MiB buffers: the fastest way this machine hashes a stream."""
    import base64
    import zlib

    length = int(environ.get("CONTENT_LENGTH") or 0)
    readinto = _body_reader(environ, length)
    hashing = NULL_MODE == "hash"
    declared = environ.get("HTTP_X_AMZ_CONTENT_SHA256", "")
    sha = hashlib.sha256() if hashing and len(declared) == 64 else None
    want_crc = environ.get("HTTP_X_AMZ_CHECKSUM_CRC32")
    crc = 0
    buffers = [bytearray(min(MiB, max(length, 1)))]
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    md5_thread, md5 = None, hashlib.md5()
    buf = buffers[0]
    while True:
        view, pos = memoryview(buf), 0
        while pos < len(view) and (got := readinto(view[pos:])):
            pos += got
        if not pos:
            break
        if hashing:
            if md5_thread is None and pos == MiB:
                buffers += [bytearray(MiB), bytearray(MiB)]
                for spare in buffers[1:]:
                    free.put(spare)
                md5_thread = _Md5Thread(free)
            if md5_thread is not None:
                md5_thread.todo.put((buf, pos))
            else:
                md5.update(view[:pos])
            if sha is not None:
                sha.update(view[:pos])
            if want_crc is not None:
                crc = zlib.crc32(view[:pos], crc)
        if pos < len(view):
            break
        if md5_thread is not None:
            buf = free.get()
    if not hashing:
        return "d41d8cd98f00b204e9800998ecf8427e", {}
    digest = md5_thread.finish() if md5_thread is not None else md5.digest()
    if sha is not None and sha.hexdigest() != declared.lower():
        return "XAmzContentSHA256Mismatch"
    if environ.get("HTTP_CONTENT_MD5") and base64.b64decode(environ["HTTP_CONTENT_MD5"]) != digest:
        return "BadDigest"
    headers = {}
    if want_crc is not None:
        actual = base64.b64encode(crc.to_bytes(4, "big")).decode()
        if actual != want_crc.strip():
            return "BadDigest"
        headers["x-amz-checksum-crc32"] = actual
    return digest.hex(), headers


def null_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answers PutObject, UploadPart, Create/CompleteMultipartUpload, Head/GetObject (ranges),
    ListObjectsV2 and CreateBucket without storing anything; an object's size is in its key: name.<size>."""
    method, path, query = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", "")
    consumed = _consume(environ)
    if isinstance(consumed, str):
        body = f"<Error><Code>{consumed}</Code><Message>mismatch</Message></Error>".encode()
        start_response("400 Bad Request", [("Content-Length", str(len(body)))])
        return [body]
    etag, checksum_headers = consumed
    headers = [("ETag", f'"{etag}"')]
    if method == "POST" and "uploads" in query:
        body = b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId></InitiateMultipartUploadResult>"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if method == "POST":
        body = b'<CompleteMultipartUploadResult><ETag>"e-1"</ETag></CompleteMultipartUploadResult>'
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if method == "GET" and "list-type=2" in query:
        keys = "".join(f"<Contents><Key>small/{i:05d}.1024</Key><Size>1024</Size><ETag>\"e\"</ETag>"
                       f"<LastModified>2024-01-01T00:00:00.000Z</LastModified></Contents>" for i in range(1000))
        listing = f"<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>1000</KeyCount>{keys}</ListBucketResult>"
        start_response("200 OK", [("Content-Length", str(len(listing)))])
        return [listing.encode()]
    if method in ("GET", "HEAD") and (m := _SIZE_RE.search(path)):
        size = int(m.group(1))
        start, end = 0, size
        status = "200 OK"
        rng = environ.get("HTTP_RANGE", "")
        if rm := re.match(r"bytes=(\d+)-(\d*)", rng):
            start, end = int(rm.group(1)), min(size, int(rm.group(2) or size - 1) + 1)
            status = "206 Partial Content"
            headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        elif NULL_MODE == "hash" and environ.get("HTTP_X_AMZ_CHECKSUM_MODE", "").upper() == "ENABLED":
            # as Cumulus (and S3) answer a whole-object GET that asks: the client then checks it
            headers += [("x-amz-checksum-crc32", _crc32_of_zeros(size)), ("x-amz-checksum-type", "FULL_OBJECT")]
        start_response(status, [*headers, ("Content-Length", str(end - start)), ("Last-Modified",
                                "Mon, 01 Jan 2024 00:00:00 GMT")])
        if method == "HEAD":
            return []
        f = open(_ZERO_FILE, "rb")  # noqa: SIM115  (the server closes it once sent)
        f.seek(start)
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None:
            return wrapper(f, MiB)  # gunicorn: sendfile() of Content-Length bytes, as for Cumulus
        return _chunks(f, end - start)
    start_response("200 OK", [*headers, *checksum_headers.items(), ("Content-Length", "0")])
    return []


def _chunks(f: Any, n: int) -> Iterable[bytes]:
    with f:
        while n > 0 and (piece := f.read(min(n, MiB))):
            n -= len(piece)
            yield piece


class NullServer(GunicornApp):
    """The do-nothing server (null_app) on gunicorn gthread, as Cumulus runs: 2 workers x 8 threads."""

    def __init__(self, mode: str, zero_file: Path) -> None:
        super().__init__("s3_io:null_app", {"S3_IO_NULL_MODE": mode, "S3_IO_ZERO_FILE": str(zero_file)})
        self.mode = mode


def zero_file(directory: Path, size: int) -> Path:
    """A sparse file of `size` zero bytes (no disk space), read once so that its pages are in the
    page cache when the do-nothing servers send it, as Cumulus's freshly written blobs are."""
    path = directory / "zeros"
    with open(path, "wb") as f:
        f.truncate(size)
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(MiB)
        while f.readinto(buf):
            pass
    return path


# --------------------------------------------------------------------------- server resources


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[3]) == sid:
                        pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return pids


def tree_rss(sid: int) -> int:
    """Resident bytes of every process in the server's session (each server runs in its own)."""
    total = 0
    for pid in _session_pids(sid):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total


def tree_cpu(sid: int) -> float:
    """CPU seconds (user + system) used so far by the server's processes."""
    ticks = 0
    for pid in _session_pids(sid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


class Phase:
    """Wall time, server CPU time and peak server memory growth (RSS sampled every 20 ms) of a block."""

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self._stop = threading.Event()
        self.seconds = self.cpu = 0.0
        self.growth = 0

    def __enter__(self) -> Self:
        self.base = self.peak = tree_rss(self.sid)
        self._cpu0 = tree_cpu(self.sid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, tree_rss(self.sid))

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join(5)
        self.cpu = tree_cpu(self.sid) - self._cpu0
        self.peak = max(self.peak, tree_rss(self.sid))
        self.growth = self.peak - self.base


# --------------------------------------------------------------------------- workloads


def client(url: str, key: str = "bench", secret: str = "benchsecret") -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 2}, max_pool_connections=32, read_timeout=600,
                                      s3={"addressing_style": "path"}))


def large(c: Any, bucket: str, path: Path, size: int, sid: int) -> dict[str, float]:
    """For one size: MiB/s and server CPU seconds per GiB of each transfer style, peak memory growth."""
    out: dict[str, float] = {}
    key, mpk = f"obj/{size}.{size}", f"obj/mp-{size}.{size}"

    def put() -> None:
        with open(path, "rb") as f:
            c.put_object(Bucket=bucket, Key=key, Body=f)

    def get() -> None:
        body = c.get_object(Bucket=bucket, Key=key)["Body"]
        got = 0
        while chunk := body.read(MiB):
            got += len(chunk)
        assert got == size, (got, size)

    def get_mp() -> None:
        with tempfile.TemporaryDirectory(dir=path.parent) as d:
            c.download_file(bucket, mpk, str(Path(d) / "back"), Config=TRANSFER)

    steps = {"put": put, "put_mp": lambda: c.upload_file(str(path), bucket, mpk, Config=TRANSFER),
             "get": get, "get_mp": get_mp}
    growth = 0
    for name, step in steps.items():
        with Phase(sid) as phase:
            step()
        out[name] = size / MiB / phase.seconds
        out[name + "_cpu"] = phase.cpu * (1024 * MiB / size)
        growth = max(growth, phase.growth)
    c.delete_object(Bucket=bucket, Key=key)
    c.delete_object(Bucket=bucket, Key=mpk)
    out["mem"] = growth / MiB
    return out


def small(c: Any, bucket: str, count: int, sid: int, threads: int = 8) -> dict[str, float]:
    """Operations per second (LIST: keys listed per second) and server CPU ms per operation."""
    keys = [f"small/{i:05d}.1024" for i in range(count)]
    data = os.urandom(1024)
    out: dict[str, float] = {}

    def listing() -> int:
        listed = 0
        for _ in range(10):
            for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="small/"):
                listed += len(page.get("Contents", []))
        return listed

    with ThreadPoolExecutor(threads) as pool:
        for name, step in (("put", lambda: list(pool.map(lambda k: c.put_object(Bucket=bucket, Key=k, Body=data),
                                                         keys))),
                           ("list", listing),
                           ("get", lambda: list(pool.map(lambda k: c.get_object(Bucket=bucket, Key=k)["Body"].read(),
                                                         keys)))):
            with Phase(sid) as phase:
                result = step()
            ops = float(result) if name == "list" else float(count)  # type: ignore[arg-type]
            out[name] = ops / phase.seconds
            out[name + "_cpu"] = phase.cpu * 1000 / (ops if name != "list" else ops / 1000)
    return out


class Peer:
    """One server under test: its boto3 client, its bucket and its process session (for CPU and memory)."""

    def __init__(self, name: str, url: str, creds: tuple[str, str], sid: int) -> None:
        self.name, self.sid = name, sid
        self.c = client(url, *creds)
        self.bucket = f"bench-{int(time.time())}"
        self.c.create_bucket(Bucket=self.bucket)
        self.rounds: dict[Any, list[dict[str, float]]] = {}


def run_all(peers: list[Peer], files: dict[int, Path], count: int, rounds: int) -> dict[str, dict[Any, Any]]:
    """Every workload on every peer in turn (not one peer after the other), `rounds` times, so that a
    change in the machine's load during the run falls on all of them; the median of the rounds."""
    smallest = min(files)
    for peer in peers:
        large(peer.c, peer.bucket, files[smallest], smallest, peer.sid)  # warm-up: imports, connections, threads
    turn = 0
    for size, path in files.items():
        for r in range(rounds):
            for peer in _rotated(peers, turn):
                print(f"  {size // MiB} MiB, round {r + 1}: {peer.name}", flush=True)
                peer.rounds.setdefault(size, []).append(large(peer.c, peer.bucket, path, size, peer.sid))
            turn += 1
    for r in range(rounds if count > 0 else 0):
        for peer in _rotated(peers, turn + r):
            if peer.name == "bare":
                continue  # 1 KiB bodies: the same as "null"
            print(f"  {count} small objects, round {r + 1}: {peer.name}", flush=True)
            peer.rounds.setdefault("small", []).append(small(peer.c, peer.bucket, count, peer.sid))
    return {peer.name: {what: {k: statistics.median(one[k] for one in runs) for k in runs[0]}
                        for what, runs in peer.rounds.items()} for peer in peers}


def _rotated(peers: list[Peer], turn: int) -> list[Peer]:
    """The peers in a different order each turn: none always goes first (after a quiet spell) or last."""
    k = turn % len(peers)
    return peers[k:] + peers[:k]


def make_files(directory: Path, sizes: list[int]) -> dict[int, Path]:
    files = {}
    block = os.urandom(MiB)
    for size in sizes:
        path = directory / f"data-{size}"
        with open(path, "wb") as f:
            f.writelines(block[i % 7:] + block[: i % 7] for i in range(size // MiB))
            f.flush()
            os.fsync(f.fileno())  # on disk now, not written back while the first peer runs
        files[size] = path
    return files


def disk_rate(directory: Path, size: int = 256 * MiB) -> float:
    """MiB/s of writing and fsyncing `size` bytes where the servers keep data (Cumulus must do both)."""
    block = os.urandom(MiB)
    path = directory / "disk-probe"
    t = time.perf_counter()
    with open(path, "wb") as f:
        f.writelines(block for _ in range(size // MiB))
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - t
    path.unlink()
    return size / MiB / elapsed


def report(results: dict[str, dict[Any, Any]], sizes: list[int]) -> str:
    names = list(results)
    lines = [f"{'':<44}" + "".join(f"{n:>10}" for n in names) + "  cumulus/moto cumulus/null"]

    def line(label: str, unit: str, values: list[float], lower_better: bool = False) -> None:
        by = dict(zip(names, values, strict=True))
        ratios = ""
        for peer in ("moto", "null"):
            if by.get(peer) and by.get("cumulus"):
                ratios += f"{(by[peer] / by['cumulus'] if lower_better else by['cumulus'] / by[peer]):>13.2f}"
            else:
                ratios += f"{'-':>13}"
        lines.append(f"{label:<36}{unit:>8}" + "".join(f"{v:>10.1f}" for v in values) + ratios)

    labels = {"put": "PUT, one request", "put_mp": "PUT, upload_file (multipart)",
              "get": "GET, one stream", "get_mp": "GET, download_file (ranged)"}
    for size in sizes:
        for k, label in labels.items():
            line(f"{size // MiB} MiB {label}", "MiB/s", [results[n][size][k] for n in names])
            line("   server CPU", "s/GiB", [results[n][size][k + "_cpu"] for n in names], lower_better=True)
        line(f"{size // MiB} MiB peak memory growth", "MiB", [results[n][size]["mem"] for n in names],
             lower_better=True)
    with_small = [n for n in names if "small" in results[n]]
    if with_small:
        for k, label, unit in (("put", "1 KiB PUT, 8 threads", "ms/op"), ("list", "LIST (keys listed)", "ms/1k"),
                               ("get", "1 KiB GET, 8 threads", "ms/op")):
            line(label, "op/s", [results[n]["small"][k] if n in with_small else 0.0 for n in names])
            line("   server CPU", unit, [results[n]["small"][k + "_cpu"] if n in with_small else 0.0 for n in names],
                 lower_better=True)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="16,256,1024", help="object sizes in MiB [16,256,1024]")
    ap.add_argument("--small", type=int, default=1000, help="number of small objects, 0 for none [1000]")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every workload, report medians [1]")
    ap.add_argument("--skip-moto", action="store_true", help="leave moto's server out")
    ap.add_argument("--skip-bare", action="store_true", help="leave the bare do-nothing server out")
    ap.add_argument("--baseline", metavar="SOURCE_TREE",
                    help="also run Cumulus from another source tree (an earlier checkout, say), as 'baseline'")
    args = ap.parse_args()
    sizes = [int(s) * MiB for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="s3-io-bench-"))
    files = make_files(work, sizes)
    disk = disk_rate(work)
    cumulus = ec2gw_server()
    baseline = ec2gw_server(env={"PYTHONPATH": str(Path(args.baseline).resolve())}) if args.baseline else None
    moto = None if args.skip_moto else MotoServer()
    zeros = zero_file(work, max(sizes))
    nulls = [NullServer(mode, zeros) for mode in (("hash",) if args.skip_bare else ("hash", "bare"))]
    try:
        admin = cumulus.admin
        assert cumulus.proc is not None
        peers = [Peer("cumulus", cumulus.s3_url, (admin.access_key, admin.secret_key), cumulus.proc.pid)]
        if baseline is not None:
            assert baseline.proc is not None
            peers.append(Peer("baseline", baseline.s3_url, (baseline.admin.access_key, baseline.admin.secret_key),
                              baseline.proc.pid))
        if moto is not None:
            moto.start()
            assert moto.proc is not None
            peers.append(Peer("moto", moto.url, ("bench", "benchsecret"), moto.proc.pid))
        for null in nulls:
            null.start()
            assert null.proc is not None
            peers.append(Peer("null" if null.mode == "hash" else "bare", null.url, ("bench", "benchsecret"),
                              null.proc.pid))
        results = run_all(peers, files, args.small, args.rounds)
    finally:
        for server in (cumulus, baseline):
            if server is not None:
                server.stop()
                shutil.rmtree(server.data_dir, ignore_errors=True)
        if moto is not None:
            moto.stop()
        for null in nulls:
            null.stop()
        for path in [*files.values(), zeros]:
            path.unlink()
        work.rmdir()
    print()
    print(report(results, sizes))
    print(f"\nthis disk: write + fsync of 256 MiB at {disk:.0f} MiB/s (Cumulus writes and fsyncs every PUT; "
          "moto and the do-nothing servers keep nothing on disk)")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
