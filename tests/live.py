"""A real ec2gw server for functional tests: `ec2gw serve` on free loopback ports, stopped by PID."""

from __future__ import annotations

import configparser
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

VENV_BIN = Path(sys.executable).parent
EC2GW = str(VENV_BIN / "ec2gw")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass(frozen=True)
class Creds:
    name: str
    access_key: str
    secret_key: str


@dataclass
class LiveServer:
    data_dir: Path
    ec2_port: int = field(default_factory=free_port)
    s3_port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    global_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def ec2_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ec2_port}"

    @property
    def s3_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.s3_port}"

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [EC2GW, "--data-dir", str(self.data_dir), *self.global_args, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check,
                              env={**os.environ, **self.env})

    def start(self, timeout: float = 60.0) -> LiveServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "server.log"
        log = open(self.log_path, "ab")
        cmd = [EC2GW, "--data-dir", str(self.data_dir), *self.global_args, "serve", "--host", "127.0.0.1",
               "--ec2-port", str(self.ec2_port), "--s3-port", str(self.s3_port), *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                                     start_new_session=True)
        log.close()
        try:
            wait_port(self.ec2_port, timeout, self.proc)
            wait_port(self.s3_port, timeout, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"server did not start; its log:\n{self.log()}") from None
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:] if self.log_path and self.log_path.exists() else ""

    @property
    def admin(self) -> Creds:
        cp = configparser.ConfigParser()
        cp.read(self.data_dir / "admin.credentials")
        return Creds("admin", cp["default"]["aws_access_key_id"], cp["default"]["aws_secret_access_key"])

    def make_user(self, name: str, *extra: str) -> Creds:
        out = self.cli("admin", "user", "add", name, "--json", *extra)
        data: dict[str, Any] = json.loads(out.stdout)
        return Creds(name, data["access_key_id"], data["secret_access_key"])

    def client(self, service: str, creds: Creds | None = None, **config: Any) -> Any:
        creds = creds or self.admin
        return boto3.client(
            service,
            endpoint_url=self.ec2_url if service in ("ec2", "cloudwatch", "sts") else self.s3_url,
            region_name="us-east-1",
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=60, **config),
        )

    def aws_env(self, creds: Creds | None = None) -> dict[str, str]:
        creds = creds or self.admin
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=creds.access_key, AWS_SECRET_ACCESS_KEY=creds.secret_key,
                   AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
                   PATH=f"{VENV_BIN}:{env.get('PATH', '')}")
        return env

    def aws(self, *args: str, creds: Creds | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The aws CLI as a subprocess against this server; `args` start with the service (ec2, s3, s3api)."""
        service = args[0]
        url = self.ec2_url if service in ("ec2", "cloudwatch") else self.s3_url
        cmd = [str(VENV_BIN / "aws"), "--endpoint-url", url, "--output", "json", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, env=self.aws_env(creds))
