"""`ec2gw serve`: both listeners on gunicorn, plus the compute worker process."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import click

from ec2gw.cli.main import CliState, cli, open_app

# CLI start-up time: the service's modules are imported inside the commands, so `ec2gw --help`
# and each command load only what they use (everything at once takes about 2.5 s more).


def first_start(app: Any) -> None:
    """Create the administrator on first start and write <data-dir>/admin.credentials once; make
    the embedded default address pool here rather than in the first RunInstances; make the
    installation's pagination-token key (<data-dir>/token.key) once."""
    from ec2gw import accounts
    from ec2gw.network.pools import ensure_default_pool

    with app.db.session(write=True) as s:
        created = accounts.ensure_admin(s)
        ensure_default_pool(s, mac_prefix=app.settings.mac_prefix)
    app.token_key  # noqa: B018 - made now, before the workers fork, rather than by the first paged request
    path = Path(app.settings.data_dir) / "admin.credentials"
    if created is not None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(accounts.credentials_file_text(created))
        click.echo(f"Created the administrator (access key {created.access_key_id}); its secret key is only in {path} "
                   f"(mode 0600): export AWS_SHARED_CREDENTIALS_FILE={path.resolve()}")


def _gunicorn_app(settings: Any, options: dict[str, Any]) -> Any:
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from ec2gw.app import App

            return App(settings)

    return Server()


@cli.command()
@click.option("--host", default=None, help="Address both listeners bind to [default: 127.0.0.1].")
@click.option("--ec2-port", type=int, default=None, help="EC2 Query API port [default: 8444].")
@click.option("--s3-port", type=int, default=None, help="Cumulus (S3) port [default: 8888].")
@click.option("--tls", is_flag=True, default=None, help="Serve HTTPS on both ports with certificates from the service's CA.")
@click.option("--workers", type=int, default=None, help="Server worker processes [default: 2].")
@click.pass_obj
def serve(state: CliState, host: str | None, ec2_port: int | None, s3_port: int | None, tls: bool | None,
          workers: int | None) -> None:
    """Serve the EC2 API and Cumulus until interrupted (Ctrl-C or SIGTERM)."""
    overrides = {"host": host, "ec2_port": ec2_port, "s3_port": s3_port, "tls": tls or None, "workers": workers}
    wanted = state.settings(**overrides)
    # both listeners first: a port in use ends the start here, at once and in one line, before the
    # banner, the database and service.json
    listeners = bind_listeners(wanted.host, [("EC2 API", wanted.ec2_port, "--ec2-port", "EC2GW_EC2_PORT"),
                                             ("Cumulus", wanted.s3_port, "--s3-port", "EC2GW_S3_PORT")])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = open_app(state, **overrides)
    settings = app.settings
    first_start(app)
    from ec2gw.bundles import record_service  # bundles written later point at these listeners

    record_service(settings)
    options: dict[str, Any] = {
        "workers": settings.workers,
        # gthread with requests read in its poller: slow clients wait there, not in a thread
        "worker_class": "ec2gw.cli.http_worker.ThreadWorker",
        "threads": 8,
        # connections one worker holds (those a slow client opens cost a socket, not a thread)
        "worker_connections": WORKER_CONNECTIONS,
        "timeout": 120,
        "graceful_timeout": 10,
        "keepalive": 5,
        "limit_request_line": 8190,
        # S3 has no header count limit (only sizes: 2 KB of user metadata, 8 KB a header); SDKs send
        # dozens of headers and a request with 200 x-amz-meta-* is the application's to refuse
        # (MetadataTooLarge), not the parser's (gunicorn's default is 100)
        "limit_request_fields": 300,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "ec2gw",
        "control_socket_disable": True,
    }
    if settings.tls:
        options.update(tls_options(settings))
    from ec2gw.cli import http_worker

    http_worker.HEADER_TIMEOUT = settings.header_timeout
    http_worker.BODY_TIMEOUT = settings.body_timeout
    http_worker.EC2_PORTS = {settings.ec2_port}
    http_worker.BODY_LIMITS = body_limits(settings)
    raise_open_files_limit(settings.workers * WORKER_CONNECTIONS + 1024)
    app.db.dispose()
    worker = start_compute_worker(state)
    for sock in listeners:
        sock.listen(LISTEN_BACKLOG)
    options["bind"] = [f"fd://{sock.detach()}" for sock in listeners]  # gunicorn takes them over
    scheme = "https" if settings.tls else "http"
    click.echo(f"ec2gw: EC2 API on {scheme}://{settings.host}:{settings.ec2_port}, "
               f"Cumulus on {scheme}://{settings.host}:{settings.s3_port}")
    try:
        _gunicorn_app(settings, options).run()
    finally:
        stop_process(worker)


#: connections the kernel queues per listener before the workers accept them
LISTEN_BACKLOG = 2048
#: connections each server worker keeps open at most (then it stops accepting until some end)
WORKER_CONNECTIONS = 4096


def body_limits(settings: Any) -> dict[int, int]:
    """Port -> the largest body its endpoint accepts (larger ones are refused by their size)."""
    from ec2gw.aws.gateway import MAX_BODY

    limits = {settings.ec2_port: MAX_BODY}
    try:
        from storage.upload import MAX_PUT_SIZE
    except ModuleNotFoundError as exc:  # pragma: no cover - Cumulus ships with the package
        if exc.name not in ("storage", "storage.upload"):
            raise
    else:
        limits[settings.s3_port] = MAX_PUT_SIZE
    return limits


def raise_open_files_limit(wanted: int) -> None:
    """Raise this process's open-files limit (inherited by the workers) towards `wanted`, within
    the hard limit: every connection is a file."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def bind_listeners(host: str, wanted: list[tuple[str, int, str, str]]) -> list[socket.socket]:
    """Bind every (endpoint, port, flag, variable) at `host`, or end the command with one line that
    names the port and how to choose another (nothing is left bound). The sockets listen only once
    the service is ready (first start done): until then a client is refused, not kept waiting."""
    bound: list[socket.socket] = []
    try:
        for endpoint, port, flag, variable in wanted:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            except socket.gaierror as exc:
                raise click.ClickException(f"cannot listen on {host!r}: {exc.strerror}; give an address of this "
                                           "machine with --host (e.g. 127.0.0.1 or 0.0.0.0).") from None
            # a name (localhost) binds its IPv4 address, as gunicorn did; an IPv6 literal its own
            family, _, _, _, address = next((i for i in infos if i[0] == socket.AF_INET), infos[0])
            sock = socket.socket(family, socket.SOCK_STREAM)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"{host}:{port}"
                if exc.errno == errno.EADDRINUSE:
                    why = f"port {port} ({endpoint}) on {host} is already in use by another program"
                elif exc.errno == errno.EACCES:
                    why = f"port {port} ({endpoint}) on {host} needs privileges this user lacks"
                elif exc.errno == errno.EADDRNOTAVAIL:
                    raise click.ClickException(f"cannot listen on {where} ({endpoint}): {host} is no address of this "
                                               "machine; give one with --host (e.g. 127.0.0.1 or 0.0.0.0).") from None
                else:
                    why = f"cannot listen on {where} ({endpoint}): {exc.strerror}"
                raise click.ClickException(f"{why}; stop what listens there or pick another port with {flag} "
                                           f"(or {variable}).") from None
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound


def tls_options(settings: Any) -> dict[str, Any]:
    try:
        from certs.ca import CertificateAuthority
        from certs.server import ensure_server_certificate
    except ModuleNotFoundError as exc:  # pragma: no cover - certs ships with the package
        raise click.ClickException(f"TLS needs the certs package: {exc}") from None
    cert_dir = Path(settings.data_dir) / "certs"
    ca = CertificateAuthority.load_or_create(cert_dir)
    names = sorted({"localhost", settings.advertised_host} - {""})
    hostnames = [n for n in names if not _is_ip(n)]
    addresses = sorted({"127.0.0.1", *(n for n in names if _is_ip(n)), *([settings.host] if _is_ip(settings.host) else [])})
    cert, key = ensure_server_certificate(ca, cert_dir, hostnames or ["localhost"], addresses)
    return {"certfile": str(cert), "keyfile": str(key)}


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def start_compute_worker(state: CliState) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "ec2gw"]
    for flag, value in (("--data-dir", state.data_dir), ("--config", state.config), ("--database-url", state.database_url)):
        if value:
            args += [flag, value]
    args += ["compute-worker", "--parent-pid", str(os.getpid())]
    return subprocess.Popen(args)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


#: the compute worker yields the CPU to the API: a burst of launches must not slow down requests
WORKER_NICENESS = 5


@cli.command("compute-worker", hidden=True)
@click.option("--parent-pid", type=int, default=None, help="Exit when this process goes away.")
@click.pass_obj
def compute_worker(state: CliState, parent_pid: int | None) -> None:
    """Run the compute worker (started by `ec2gw serve`; one per installation holds the lease)."""
    from ec2gw.compute.worker import ComputeWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.nice(WORKER_NICENESS)
    app = open_app(state)
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if parent_pid:
        def watch_parent() -> None:
            while not stop.wait(1.0):
                if os.getppid() != parent_pid:
                    stop.set()

        threading.Thread(target=watch_parent, daemon=True).start()
    ComputeWorker(app.settings, app.db, app.drivers, cumulus=app.cumulus).run(stop)
