#!/usr/bin/env python3
"""Slow clients against `ec2gw serve`: boto3's latency beside thousands of connections that send
a byte a second.

A driver process keeps `--headers` connections (1,000) that sent `GET / HTTP/1.1\\r\\nHost: x\\r\\n`
and then add one byte of header a second, never ending them, and `--bodies` connections (1,000)
that announced a 1 MB body and send it a byte a second; half of each go to the EC2 port, half to
Cumulus. A connection the server closes (its header timeout) is opened again at once, so that the
full count stays open. Meanwhile boto3 calls DescribeInstances (EC2) and GetObject of a 4 KiB
object (Cumulus) one after the other for `--seconds`, each on a client of its own (kept-alive
connection), and, first, for as long without the slow connections.

Reported: per call, count, errors (time-outs: 10 s read timeout), p50 / p99 / max in seconds;
the slow connections open when the measurement started and ended, and how many the server closed.

Usage: .venv/bin/python bench/slow_clients.py [--headers 1000] [--bodies 1000] [--seconds 30]
                                              [--ec2gw PATH/TO/ec2gw (another checkout's, to compare)]
"""

from __future__ import annotations

import argparse
import errno
import json
import resource
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.live import LiveServer  # noqa: E402


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class SlowConn:
    def __init__(self, port: int, kind: str) -> None:
        self.port, self.kind = port, kind
        self.sock = socket.socket()
        self.sock.setblocking(False)
        err = self.sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, "connect")
        if kind == "headers":
            self.start = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
        elif port == DRIVER_PORTS[0]:
            self.start = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
        else:
            self.start = b"PUT /slow/body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
        self.sent_start = False


DRIVER_PORTS: list[int] = []


def drive(ec2_port: int, s3_port: int, headers: int, bodies: int, seconds: float, status_path: Path) -> None:
    """The slow clients (run in a process of their own); their count goes to `status_path` every second."""
    _raise_nofile()
    DRIVER_PORTS[:] = [ec2_port, s3_port]
    sel = selectors.DefaultSelector()
    conns: set[SlowConn] = set()
    closed_by_server = 0
    wanted = [(ec2_port if i % 2 else s3_port, "headers") for i in range(headers)] + \
             [(ec2_port if i % 2 else s3_port, "bodies") for i in range(bodies)]

    def open_conn(port: int, kind: str) -> None:
        try:
            c = SlowConn(port, kind)
        except OSError:
            return
        conns.add(c)
        sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def lose(c: SlowConn) -> None:
        conns.discard(c)
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    for port, kind in wanted:
        open_conn(port, kind)
    end = time.monotonic() + seconds
    next_drip = time.monotonic() + 1.0
    next_report = time.monotonic()
    while time.monotonic() < end:
        for key, events in sel.select(timeout=0.2):
            c = key.data
            if events & selectors.EVENT_WRITE and not c.sent_start:
                try:
                    c.sock.send(c.start)
                    c.sent_start = True
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                except OSError:
                    lose(c)
                    open_conn(c.port, c.kind)
                continue
            if events & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(65536)
                except OSError:
                    data = b""
                if not data:  # the server closed it: open another
                    closed_by_server += 1
                    lose(c)
                    open_conn(c.port, c.kind)
        now = time.monotonic()
        if now >= next_drip:
            next_drip = now + 1.0
            for c in list(conns):
                if c.sent_start:
                    try:
                        c.sock.send(b"x")
                    except OSError:
                        pass
        if now >= next_report:
            next_report = now + 1.0
            started = sum(1 for c in conns if c.sent_start)
            tmp = status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"open": started, "closed_by_server": closed_by_server}))
            tmp.replace(status_path)
    for c in list(conns):
        lose(c)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def measure(server: LiveServer, seconds: float) -> dict[str, dict[str, Any]]:
    import boto3
    from botocore.config import Config

    creds = server.admin
    cfg = Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=10)

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=server.ec2_url if service == "ec2" else server.s3_url,
                            region_name="us-east-1", aws_access_key_id=creds.access_key,
                            aws_secret_access_key=creds.secret_key, config=cfg)

    ec2, s3 = client("ec2"), client("s3")
    calls = {"DescribeInstances": lambda: ec2.describe_instances(),
             "GetObject 4 KiB": lambda: s3.get_object(Bucket="bench", Key="small")["Body"].read()}
    out: dict[str, dict[str, Any]] = {name: {"times": [], "errors": 0} for name in calls}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name, call in calls.items():
            t = time.perf_counter()
            try:
                call()
            except Exception:  # a time-out or a refused connection: counted, and as 10 s
                out[name]["errors"] += 1
                out[name]["times"].append(max(time.perf_counter() - t, 10.0))
                continue
            out[name]["times"].append(time.perf_counter() - t)
    return out


def report(label: str, results: dict[str, dict[str, Any]]) -> None:
    for name, r in results.items():
        t = r["times"]
        print(f"{label:<34} {name:<18} n={len(t):<5} errors={r['errors']:<3} p50={percentile(t, 0.5):.3f} s "
              f"p99={percentile(t, 0.99):.3f} s max={max(t) if t else float('nan'):.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--headers", type=int, default=1000)
    ap.add_argument("--bodies", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--ec2gw", default=None, help="the ec2gw executable to serve with (another checkout's)")
    ap.add_argument("--drive", nargs=3, metavar=("EC2_PORT", "S3_PORT", "STATUS_FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.drive:
        drive(int(args.drive[0]), int(args.drive[1]), args.headers, args.bodies, args.seconds, Path(args.drive[2]))
        return
    _raise_nofile()
    import tempfile

    import tests.live

    if args.ec2gw:
        tests.live.EC2GW = args.ec2gw
    server = LiveServer(Path(tempfile.mkdtemp(prefix="ec2gw-bench-"))).start()
    driver = None
    try:
        import boto3

        s3 = boto3.client("s3", endpoint_url=server.s3_url, region_name="us-east-1",
                          aws_access_key_id=server.admin.access_key, aws_secret_access_key=server.admin.secret_key)
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="small", Body=b"b" * 4096)
        quiet = measure(server, min(args.seconds, 10.0))
        status_path = server.data_dir / "slow-clients.json"

        def status() -> dict[str, int]:
            try:
                return json.loads(status_path.read_text())  # type: ignore[no-any-return]
            except (OSError, ValueError):
                return {"open": 0, "closed_by_server": 0}

        driver = subprocess.Popen([sys.executable, __file__, "--drive", str(server.ec2_port), str(server.s3_port),
                                   str(status_path), "--headers", str(args.headers), "--bodies", str(args.bodies),
                                   "--seconds", str(args.seconds + 60)])
        wanted = args.headers + args.bodies
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and status()["open"] < wanted * 0.99:  # all (nearly) have started
            time.sleep(0.5)
        time.sleep(2)  # ... and sent a byte or two more
        at_start = status()
        slow = measure(server, args.seconds)
        at_end = status()
        print(f"slow connections open: {at_start.get('open')} at the start, {at_end.get('open')} at the end "
              f"(wanted {wanted}); closed by the server (and opened again): {at_end.get('closed_by_server')}")
        report("alone", quiet)
        report(f"beside {args.headers} + {args.bodies} slow", slow)
        worst = max(percentile(r["times"], 0.99) for r in slow.values())
        print(f"p99 beside the slow connections: {worst:.3f} s ({'under' if worst < 1 else 'NOT under'} one second)")
    finally:
        if driver is not None and driver.poll() is None:
            driver.terminate()
            try:
                driver.wait(10)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait(5)
        server.stop()


if __name__ == "__main__":
    main()
