"""EC2 API benchmark: ec2gw against moto's server, both started here, in the same run.

Figures (medians of several runs):
  RunInstances MaxCount=100 (seconds per call)
  DescribeInstances over 1,000 instances through boto3 (seconds), and the server's own time for
  that listing: the signed HTTP exchange without any client-side parsing
  DescribeInstances by id from 8 threads (requests per second)
  TerminateInstances of 1,000 instances in one call (seconds)
The ratio column says how many times better ec2gw is (higher is better).

The client's own ceiling for the by-id figure is measured too: the same 8 boto3 threads against a
canned-reply server (gunicorn, configured as `ec2gw serve`, answering every request with the bytes
ec2gw gave for one instance, without reading or checking anything). boto3 signs each request and
parses each answer in one Python process on the same two CPUs, so no server can be faster than that.
Run: .venv/bin/python bench/ec2_api.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import urllib.request
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from common import GunicornApp, MotoServer, ec2gw_server, median_of, row, timed


def client(url: str, key: str, secret: str) -> Any:
    return boto3.client("ec2", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 0}, max_pool_connections=16,
                                                                    read_timeout=300))


def raw_describe(url: str, key: str, secret: str) -> float:
    """The HTTP exchange of a full DescribeInstances, signed, with no XML parsing."""
    body = b"Action=DescribeInstances&Version=2016-11-15"
    req = AWSRequest(method="POST", url=url + "/", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(Credentials(key, secret), "ec2", "us-east-1").add_auth(req)
    r = urllib.request.Request(url + "/", data=body, headers=dict(req.headers.items()), method="POST")
    t = time.perf_counter()
    with urllib.request.urlopen(r, timeout=300) as resp:
        resp.read()
    return time.perf_counter() - t


def canned_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers every request with the bytes in $EC2_CANNED_BODY (read once per worker)."""
    global _CANNED
    if _CANNED is None:
        with open(os.environ["EC2_CANNED_BODY"], "rb") as f:
            _CANNED = f.read()
    start_response("200 OK", [("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(_CANNED)))])
    return [_CANNED]


_CANNED: bytes | None = None


def raw_by_id(url: str, key: str, secret: str, instance_id: str) -> bytes:
    body = f"Action=DescribeInstances&Version=2016-11-15&InstanceId.1={instance_id}".encode()
    req = AWSRequest(method="POST", url=url + "/", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(Credentials(key, secret), "ec2", "us-east-1").add_auth(req)
    r = urllib.request.Request(url + "/", data=body, headers=dict(req.headers.items()), method="POST")
    with urllib.request.urlopen(r, timeout=60) as resp:
        return resp.read()


def client_ceiling(sample: bytes, ids: list[str], runs: int) -> float:
    """by_id_rps against a server that only sends back ``sample``: what boto3 itself allows here."""
    with tempfile.NamedTemporaryFile(suffix=".xml", delete=False) as f:
        f.write(sample)
    canned = GunicornApp("ec2_api:canned_app", env={"EC2_CANNED_BODY": f.name}).start()
    try:
        c = client(canned.url, "canned", "canned")
        return median_of(runs, lambda: by_id_rps(c, ids))
    finally:
        canned.stop()
        os.unlink(f.name)


def by_id_rps(c: Any, ids: list[str], threads: int = 8, per_thread: int = 60) -> float:
    def work(offset: int) -> None:
        for n in range(per_thread):
            c.describe_instances(InstanceIds=[ids[(offset * per_thread + n) % len(ids)]])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    t = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return threads * per_thread / (time.perf_counter() - t)


def measure(c: Any, url: str, key: str, secret: str, image: str, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ids: list[str] = []

    def run100() -> float:
        t = time.perf_counter()
        resp = c.run_instances(ImageId=image, MinCount=100, MaxCount=100, InstanceType="m1.small")
        dt = time.perf_counter() - t
        ids.extend(i["InstanceId"] for i in resp["Instances"])
        return dt

    out["run100"] = median_of(runs, run100)
    while len(ids) < 1000:
        run100()
    ids = ids[:1000]
    out["describe_all"] = median_of(runs, lambda: timed(lambda: c.describe_instances()))
    out["describe_raw"] = median_of(runs, lambda: raw_describe(url, key, secret))
    out["by_id_rps"] = median_of(runs, lambda: by_id_rps(c, ids))
    out["count"] = float(sum(len(r["Instances"]) for r in c.describe_instances()["Reservations"]))
    out["sample"] = raw_by_id(url, key, secret, ids[0])
    out["terminate1000"] = timed(lambda: c.terminate_instances(InstanceIds=ids))
    out["ids"] = ids
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs per figure; the median is printed")
    args = ap.parse_args()

    srv = ec2gw_server()
    moto = MotoServer().start()
    try:
        img = srv.data_dir / "bench.img"
        img.write_bytes(b"\0" * 65536)
        image = json.loads(srv.cli("admin", "image", "import", "bench", str(img), "--json").stdout)["image_id"]
        admin = srv.admin
        ours = measure(client(srv.ec2_url, admin.access_key, admin.secret_key), srv.ec2_url,
                       admin.access_key, admin.secret_key, image, args.runs)
        mc = client(moto.url, "testing", "testing")
        moto_image = mc.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        peer = measure(mc, moto.url, "testing", "testing", moto_image, args.runs)
    finally:
        srv.stop()
        moto.stop()
    ceiling = client_ceiling(ours["sample"], ours["ids"], args.runs)
    print(f"instances listed: ec2gw {ours['count']:.0f}, moto {peer['count']:.0f}; medians of {args.runs} runs")
    print(f"{'figure':<48} {'ec2gw':>17} {'moto':>17} {'ratio':>7}")
    print(row("RunInstances MaxCount=100", ours["run100"], peer["run100"], "s"))
    print(row("DescribeInstances, 1,000 instances, boto3", ours["describe_all"], peer["describe_all"], "s"))
    print(row("DescribeInstances, 1,000, server (HTTP only)", ours["describe_raw"], peer["describe_raw"], "s"))
    print(row("DescribeInstances by id, 8 threads", ours["by_id_rps"], peer["by_id_rps"], "req/s", higher_is_better=True))
    print(row("TerminateInstances of 1,000", ours["terminate1000"], peer["terminate1000"], "s"))
    print(row("by id, 8 threads: canned-reply server (ceiling)", ceiling, peer["by_id_rps"], "req/s",
              higher_is_better=True))
    print(f"ec2gw by id reaches {ours['by_id_rps'] / ceiling:.0%} of the client's ceiling; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
