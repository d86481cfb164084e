"""Helpers shared by the benchmark scripts: servers started and stopped by PID, medians."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.live import LiveServer, free_port, wait_port  # noqa: E402

VENV_BIN = Path(sys.executable).parent


def median_of(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def stop_group(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM the process group this script started (SIGKILL after ``timeout`` seconds)."""
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class MotoServer:
    """moto's server, the peer every figure is compared with."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self.proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port, 60, self.proc)
        return self

    def stop(self) -> None:
        stop_group(self.proc, 10)


def ec2gw_server(**kw: Any) -> LiveServer:
    return LiveServer(Path(tempfile.mkdtemp(prefix="ec2gw-bench-")), **kw).start()


def row(label: str, ours: float, peer: float, unit: str, higher_is_better: bool = False) -> str:
    ratio = (ours / peer) if higher_is_better else (peer / ours if ours else float("inf"))
    return f"{label:<48} {ours:>10.3f} {unit:<6} {peer:>10.3f} {unit:<6} {ratio:>6.1f}x"


class GunicornApp:
    """A WSGI app of the bench/ directory served by gunicorn as ec2gw serves (2 gthread workers x 8)."""

    def __init__(self, app: str, env: dict[str, str] | None = None) -> None:
        self.app = app
        self.env = env or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> GunicornApp:
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "--chdir", str(Path(__file__).parent), "-w", "2", "-k", "gthread",
             "--threads", "8", "-b", f"127.0.0.1:{self.port}", "--log-level", "warning", self.app],
            env={**os.environ, **self.env}, start_new_session=True)
        wait_port(self.port, 60, self.proc)
        return self

    def stop(self) -> None:
        stop_group(self.proc, 20)
