"""Helpers for the operator and user tool tests (users with bundles, cloud-client runs, waiting) and
for the EC2 tests over boto3 (refused calls, images, instances, volumes)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.live import VENV_BIN, Creds, LiveServer

CLOUD_CLIENT = str(VENV_BIN / "cloud-client")
#: boto3 waiters on libvirt's test driver: polled every second, for a minute at the most
FAST = {"Delay": 1, "MaxAttempts": 60}


def add_user(server: LiveServer, name: str, *extra: str) -> tuple[Creds, Path]:
    """`ec2gw admin user add NAME --json`: the user's credentials and the bundle directory it wrote."""
    data: dict[str, Any] = json.loads(server.cli("admin", "user", "add", name, "--json", *extra).stdout)
    return Creds(name, data["access_key_id"], data["secret_access_key"]), Path(data["bundle_dir"])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without AWS_* settings of the machine running the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "CLOUD_CLIENT_CONF"}
    env.update(extra)
    return env


def cloud_client(conf: Path | None, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `cloud-client` console script; never raises on a non-zero exit."""
    cmd = [CLOUD_CLIENT, *(["--conf", str(conf)] if conf else []), *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env or clean_env(), cwd=cwd)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The stderr of a run that must fail with one clear sentence (no traceback) holding `words`."""
    assert result.returncode == 1, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    assert "Traceback" not in result.stderr and last.startswith("cloud-client: "), result.stderr  # after a progress bar
    for w in words:
        assert w in result.stderr, result.stderr
    return result.stderr


def rows(table_text: str) -> list[list[str]]:
    """A cloud-client table (two or more spaces between columns) as rows, without the header."""
    import re

    lines = [ln for ln in table_text.splitlines() if ln.strip()]
    return [re.split(r"\s{2,}", ln.strip()) for ln in lines[1:]]


def image_file(path: Path, size: int) -> Path:
    """A file of `size` bytes that is not all zeros (so nothing can store it as a hole)."""
    block = os.urandom(min(size, 1 << 20))
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = block[: min(left, len(block))]
            f.write(chunk)
            left -= len(chunk)
    return path


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.3) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def instance(ec2: Any, iid: str) -> dict[str, Any]:
    return dict(ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0])


def tags(inst: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in inst.get("Tags") or []}


def code_of(call: Callable[..., Any], **kwargs: Any) -> str:
    """The error code of a boto3 call that must be refused with a 4xx status and a message."""
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    status = err.value.response["ResponseMetadata"]["HTTPStatusCode"]
    assert 400 <= status < 500, err.value.response
    assert err.value.response["Error"]["Message"], err.value.response
    return str(err.value.response["Error"]["Code"])


def first_zone(server: LiveServer) -> str:
    return str(server.client("ec2").describe_availability_zones()["AvailabilityZones"][0]["ZoneName"])


def import_blank_image(server: LiveServer, directory: Path, name: str) -> str:
    """`ec2gw admin image import NAME --public` of a 64 KiB disk of zeros in `directory`: its ami- id."""
    path = directory / "disk.img"
    path.write_bytes(b"\0" * 65536)
    out = server.cli("admin", "image", "import", name, str(path), "--json", "--public")
    return str(json.loads(out.stdout)["image_id"])


def launch(ec2: Any, image: str, **kwargs: Any) -> str:
    """One t2.micro of `image` (RunInstances with `kwargs`), once it is running: its id."""
    iid = str(ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.micro", **kwargs)
              ["Instances"][0]["InstanceId"])
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    return iid


def volume(ec2: Any, vid: str) -> dict[str, Any]:
    return dict(ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0])
