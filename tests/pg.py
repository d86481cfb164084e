"""A real PostgreSQL server for tests: a throw-away cluster in a temp dir on a free loopback port.

Debian's postgresql package provides the binaries (/usr/lib/postgresql/<version>/bin). initdb
refuses to run as root, so as root the cluster belongs to the `postgres` system user and the
server runs as that user (runuser). Authentication is `trust` on 127.0.0.1 only. Durability is
switched off (fsync, synchronous_commit): the data dies with the test run anyway.

One cluster serves the whole pytest run (``postgres_cluster`` fixture, created on first use and
stopped by its postmaster PID when the run ends); each test asks for a fresh database of its own.
A watchdog process stops it too if the test process dies without cleaning up (killed by a
timeout, say), so no server outlives its tests.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin holding initdb and pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def unavailable_reason() -> str | None:
    if find_bindir() is None:
        return "PostgreSQL is not installed (scripts/install-system-deps.sh installs the postgresql package)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root needs the 'postgres' system user that Debian's postgresql package creates"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def start_watchdog(cleanup: str) -> subprocess.Popen[bytes]:
    """A shell that runs ``cleanup`` once this process has gone, unless stopped first (stop_watchdog)."""
    script = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 0.5; done; {cleanup}"
    return subprocess.Popen(["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_watchdog(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(10)


class PostgresCluster:
    """initdb + pg_ctl start on 127.0.0.1:<free port>; stop() by the postmaster's PID."""

    def __init__(self, max_connections: int = 300) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(unavailable_reason() or "PostgreSQL binaries not found")
        self.bindir = bindir
        self.max_connections = max_connections
        # not under pytest's tmp dir: that is mode 0700 and the postgres user could not enter it
        self.root = Path(tempfile.mkdtemp(prefix="ec2gw-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.pid: int | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._user = "postgres" if os.geteuid() == 0 else None

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self._user, "--"] if self._user else []) + list(args)

    def start(self, timeout: float = 60.0) -> PostgresCluster:
        if self._user:
            pw = pwd.getpwnam(self._user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        subprocess.run(self._cmd(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                 "-E", "UTF8", "--no-sync"), check=True, capture_output=True, timeout=timeout)
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c synchronous_commit=off"
                f" -c full_page_writes=off -c max_connections={self.max_connections} -c shared_buffers=32MB")
        res = subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                                       "-o", opts, "-w", "-t", str(int(timeout)), "start"),
                             capture_output=True, text=True, timeout=timeout + 10, check=False)
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            self.pid = int(pid_file.read_text().split("\n", 1)[0])
        if res.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:] if (self.root / "server.log").exists() else ""
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {res.stderr.strip()}\n{log}")
        self._watchdog = start_watchdog(
            f"kill -INT {self.pid}; sleep 5; kill -KILL {self.pid} 2>/dev/null; rm -rf '{self.root}'")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{secrets.token_hex(4)}".lower()
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT to the postmaster), SIGKILL if it lingers; then delete the files."""
        stop_watchdog(self._watchdog)
        self._watchdog = None
        pid, self.pid = self.pid, None
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                # its children (backends) exit when the postmaster is gone
        shutil.rmtree(self.root, ignore_errors=True)


_KEY = pytest.StashKey[PostgresCluster]()


def shared_cluster(config: pytest.Config) -> PostgresCluster:
    """The run's one cluster, started on first use; stopped when pytest finishes."""
    cluster = config.stash.get(_KEY, None)
    if cluster is None:
        reason = unavailable_reason()
        if reason:
            pytest.fail(f"a PostgreSQL server is needed: {reason}")
        cluster = PostgresCluster().start()
        config.stash[_KEY] = cluster
        config.add_cleanup(cluster.stop)
    return cluster


@pytest.fixture(scope="session")
def postgres_cluster(request: pytest.FixtureRequest) -> PostgresCluster:
    return shared_cluster(request.config)


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty database on the shared cluster."""
    return postgres_cluster.create_database()
