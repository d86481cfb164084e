"""How the service is started: `ec2gw serve` on a port in use, and `gunicorn wsgi:<endpoint>`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.live import EC2GW, VENV_BIN, LiveServer, free_port, wait_port


@pytest.mark.parametrize("taken", ["ec2", "s3"])
def test_serve_on_a_taken_port_is_one_line_and_leaves_service_json(tmp_path: Path, taken: str) -> None:
    """It printed the banner, logged 5 s of gunicorn's retries, ended with "Can't connect", and had
    already written the taken port into service.json (bundles then pointed at it)."""
    srv = LiveServer(tmp_path / "data").start()  # a start that worked records its listeners
    srv.stop()
    record = srv.data_dir / "service.json"
    before = record.read_bytes()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"ec2": port, "s3": free_port()} if taken == "ec2" else {"ec2": free_port(), "s3": port}
        started = time.monotonic()
        out = subprocess.run([EC2GW, "--data-dir", str(srv.data_dir), "serve", "--host", "127.0.0.1",
                              "--ec2-port", str(ports["ec2"]), "--s3-port", str(ports["s3"])],
                             capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - started
    assert out.returncode != 0
    assert elapsed < 4, elapsed  # at once: no retries
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    flag = "--ec2-port" if taken == "ec2" else "--s3-port"
    assert str(port) in lines[0] and "already in use" in lines[0] and flag in lines[0], lines[0]
    assert "EC2 API on" not in out.stdout  # no banner
    assert record.read_bytes() == before
    assert json.loads(before)["ec2_port"] == srv.ec2_port


def test_serve_on_a_taken_port_writes_no_service_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out = subprocess.run([EC2GW, "--data-dir", str(data), "serve", "--host", "127.0.0.1", "--ec2-port",
                              str(free_port()), "--s3-port", str(busy.getsockname()[1])],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert not (data / "service.json").exists()


def _gunicorn(data: Path, target: str, ports: list[int], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    binds = [arg for port in ports for arg in ("-b", f"127.0.0.1:{port}")]
    with open(log, "ab") as out:
        return subprocess.Popen([str(VENV_BIN / "gunicorn"), "--workers", "1", "--threads", "4", *binds, target],
                                cwd=Path(__file__).resolve().parents[2], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "EC2GW_DATA_DIR": str(data), **env}, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_gunicorn_serves_each_endpoint_by_its_wsgi_name(tmp_path: Path) -> None:
    """The docstring promised `gunicorn wsgi:app`; the module defined nothing (AttributeError)."""
    data, log = tmp_path / "data", tmp_path / "gunicorn.log"
    data.mkdir()
    ec2_port, s3_port, both_ec2, both_s3 = free_port(), free_port(), free_port(), free_port()
    procs = [_gunicorn(data, "wsgi:ec2", [ec2_port], {}, log), _gunicorn(data, "wsgi:s3", [s3_port], {}, log),
             _gunicorn(data, "wsgi:app", [both_ec2, both_s3], {"EC2GW_S3_PORT": str(both_s3)}, log)]
    try:
        for port, proc in ((ec2_port, procs[0]), (s3_port, procs[1]), (both_ec2, procs[2]), (both_s3, procs[2])):
            try:
                wait_port(port, 60, proc)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(f"{exc}; gunicorn's log:\n{log.read_text(errors='replace')}") from None

        # the first request builds the App (and the administrator): any answer will do
        with socket.create_connection(("127.0.0.1", ec2_port), timeout=30) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 ")

        def client(service: str, port: int):  # type: ignore[no-untyped-def]
            lines = dict(line.split(" = ") for line in (data / "admin.credentials").read_text().splitlines()[1:3])
            return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                                aws_access_key_id=lines["aws_access_key_id"],
                                aws_secret_access_key=lines["aws_secret_access_key"],
                                config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=60))

        assert client("ec2", ec2_port).describe_regions()["Regions"]
        assert client("ec2", ec2_port).describe_instances()["Reservations"] == []
        s3 = client("s3", s3_port)
        s3.create_bucket(Bucket="wsgi")
        s3.put_object(Bucket="wsgi", Key="k", Body=b"through gunicorn wsgi:s3")
        assert s3.get_object(Bucket="wsgi", Key="k")["Body"].read() == b"through gunicorn wsgi:s3"
        # wsgi:app: the port decides
        assert client("ec2", both_ec2).describe_regions()["Regions"]
        assert [b["Name"] for b in client("s3", both_s3).list_buckets()["Buckets"]] == ["wsgi"]
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        for proc in procs:
            _stop(proc)
