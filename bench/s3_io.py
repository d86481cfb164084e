#!/usr/bin/env python3
"""Cumulus I/O benchmark: Cumulus, moto's server and a do-nothing server, side by side, with boto3.

What it measures (boto3 1.3x+ defaults over plain HTTP: signed payloads, CRC32 checksums):
  * PUT and GET of 16 MiB, 256 MiB and 1 GiB objects: one PutObject and upload_file (multipart,
    16 MiB parts), one streamed GetObject and download_file (ranged, concurrent);
  * 1,000 small objects (1 KiB) PUT, LIST (ListObjectsV2 pages) and GET from 8 threads;
  * the peak memory growth of each server (RSS of its whole process tree) during the 1 GiB transfers.
The do-nothing server answers the same calls on the same HTTP stack as Cumulus (gunicorn, gthread),
reading request bodies and sending zeros, so it shows what loopback, HTTP and boto3's own hashing
allow on this machine.

Usage: .venv/bin/python bench/s3_io.py [--sizes 16,256,1024] [--small 1000] [--skip-moto]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
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
from common import VENV_BIN, MotoServer, ec2gw_server, free_port, wait_port

MiB = 1024 * 1024
TRANSFER = TransferConfig(multipart_threshold=16 * MiB, multipart_chunksize=16 * MiB, max_concurrency=8)
SINGLE = TransferConfig(multipart_threshold=1 << 40)

# --------------------------------------------------------------------------- the do-nothing server

_ZEROS = memoryview(bytes(MiB))
_SIZE_RE = re.compile(r"\.(\d+)$")


def null_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answers PutObject, UploadPart, Create/CompleteMultipartUpload, Head/GetObject (ranges),
    ListObjectsV2 and CreateBucket without storing anything; an object's size is in its key: name.<size>."""
    method, path, query = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", "")
    stream = environ["wsgi.input"]
    while stream.read(MiB):
        pass
    headers = [("ETag", '"d41d8cd98f00b204e9800998ecf8427e"')]
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
        body = f"<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>1000</KeyCount>{keys}</ListBucketResult>"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body.encode()]
    if method in ("GET", "HEAD") and (m := _SIZE_RE.search(path)):
        size = int(m.group(1))
        start, end = 0, size
        status = "200 OK"
        rng = environ.get("HTTP_RANGE", "")
        if rm := re.match(r"bytes=(\d+)-(\d*)", rng):
            start, end = int(rm.group(1)), min(size, int(rm.group(2) or size - 1) + 1)
            status = "206 Partial Content"
            headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        start_response(status, [*headers, ("Content-Length", str(end - start)), ("Last-Modified",
                                "Mon, 01 Jan 2024 00:00:00 GMT")])
        if method == "HEAD":
            return []
        return _zeros(end - start)
    start_response("200 OK", [*headers, ("Content-Length", "0")])
    return []


def _zeros(n: int) -> Iterable[bytes]:
    while n > 0:
        piece = _ZEROS[: min(n, MiB)]
        n -= len(piece)
        yield piece.tobytes()


class NullServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> NullServer:
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "--chdir", str(Path(__file__).parent), "-w", "2", "-k", "gthread",
             "--threads", "8", "-b", f"127.0.0.1:{self.port}", "--log-level", "warning", "s3_io:null_app"],
            start_new_session=True)
        wait_port(self.port, 60, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)


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
            ops = result if name == "list" else count
            out[name] = ops / phase.seconds
            out[name + "_cpu"] = phase.cpu * 1000 / (ops if name != "list" else ops / 1000)
    return out


def run(name: str, url: str, creds: tuple[str, str], sid: int, files: dict[int, Path], count: int) -> dict[str, Any]:
    c = client(url, *creds)
    bucket = f"bench-{int(time.time())}"
    c.create_bucket(Bucket=bucket)
    results: dict[str, Any] = {}
    smallest = min(files)
    large(c, bucket, files[smallest], smallest, sid)  # warm-up: imports, connections, worker threads
    for size, path in files.items():
        print(f"  {name}: {size // MiB} MiB ...", flush=True)
        results[size] = large(c, bucket, path, size, sid)
    print(f"  {name}: {count} small objects ...", flush=True)
    results["small"] = small(c, bucket, count, sid)
    return results


def make_files(directory: Path, sizes: list[int]) -> dict[int, Path]:
    files = {}
    block = os.urandom(MiB)
    for size in sizes:
        path = directory / f"data-{size}"
        with open(path, "wb") as f:
            f.writelines(block[i % 7:] + block[: i % 7] for i in range(size // MiB))
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


def report(results: dict[str, dict[str, Any]], sizes: list[int]) -> str:
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
    for k, label, unit in (("put", "1 KiB PUT, 8 threads", "ms/op"), ("list", "LIST (keys listed)", "ms/1k"),
                           ("get", "1 KiB GET, 8 threads", "ms/op")):
        line(label, "op/s", [results[n]["small"][k] for n in names])
        line("   server CPU", unit, [results[n]["small"][k + "_cpu"] for n in names], lower_better=True)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="16,256,1024", help="object sizes in MiB [16,256,1024]")
    ap.add_argument("--small", type=int, default=1000, help="number of small objects [1000]")
    ap.add_argument("--skip-moto", action="store_true", help="leave moto's server out")
    args = ap.parse_args()
    sizes = [int(s) * MiB for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="s3-io-bench-"))
    files = make_files(work, sizes)
    results: dict[str, dict[str, Any]] = {}
    cumulus = ec2gw_server()
    try:
        admin = cumulus.admin
        assert cumulus.proc is not None
        print("cumulus", flush=True)
        results["cumulus"] = run("cumulus", cumulus.s3_url, (admin.access_key, admin.secret_key), cumulus.proc.pid,
                                 files, args.small)
    finally:
        cumulus.stop()
        shutil.rmtree(cumulus.data_dir, ignore_errors=True)
    if not args.skip_moto:
        moto = MotoServer().start()
        try:
            assert moto.proc is not None
            print("moto", flush=True)
            results["moto"] = run("moto", moto.url, ("bench", "benchsecret"), moto.proc.pid, files, args.small)
        finally:
            moto.stop()
    null = NullServer().start()
    try:
        assert null.proc is not None
        print("null", flush=True)
        results["null"] = run("null", null.url, ("bench", "benchsecret"), null.proc.pid, files, args.small)
    finally:
        null.stop()
    for path in files.values():
        path.unlink()
    disk = disk_rate(work)
    work.rmdir()
    print()
    print(report(results, sizes))
    print(f"\nthis disk: write + fsync of 256 MiB at {disk:.0f} MiB/s (Cumulus writes and fsyncs every PUT; "
          "moto and the do-nothing server keep nothing on disk)")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
