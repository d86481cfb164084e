"""The attack suite's frame: live servers, an administrator, two ordinary users and an anonymous caller.

Every file in tests/security/ attacks a real `ec2gw serve` through real clients (boto3, the aws
CLI, raw sockets); nothing here mocks HTTP, the database or libvirt. One server serves the whole
session, so a test makes its own resources (fresh names) and never relies on a clean server.

Fixtures (all session-scoped unless said otherwise):

live          tests.live.LiveServer: `ec2gw serve` on free loopback ports, SQLite, a data dir of its own.
              live.cli(...) runs `ec2gw --data-dir ... ARGS`, live.aws(...) the aws CLI, live.log()
              the server's log (worth printing in an assertion message).
admin         Tenant: the administrator the first start created (data-dir/admin.credentials).
alice, bob    Tenant: two ordinary users made with `ec2gw admin user add` (names "alice-<hex>",
              "bob-<hex>", so several sessions never collide). The tenants of every cross-tenant test.
anon          Tenant without credentials: .ec2 and .s3 are boto3 clients with signature_version=UNSIGNED.
public_image  an ami-... the administrator imported with --public (1 MiB raw image); anyone may launch it.
new_user      (function) factory: new_user("carol") -> a fresh Tenant with a unique name, for tests that
              remove a user, change their quota or otherwise spoil them for others.
bucket        (function) a fresh, private bucket of alice's; emptied and deleted after the test.
world         World(servers=[live], admin, alice, bob, anon, public_image) for the SQLite server.
pg_world      World on two `ec2gw serve` processes sharing one PostgreSQL database (tests/pg.py) and one
              data dir: alice and the administrator talk to process A, bob and anon to process B, so
              every cross-tenant refusal is also checked across processes. Started on first use.
deployment    (module, parametrized) `world`, then `pg_world`: a module using it runs all its tests on
              both deployments (pytest groups the tests by deployment, so each is set up once).

A Tenant is a tests.live.Creds (name, access_key, secret_key: accepted wherever Creds are, e.g.
live.client("s3", alice) or the raw signing helpers of tests/functional/s3_fixtures.py) with
ready boto3 clients .ec2 and .s3, the server they talk to (.server), and .aws(...) running the aws
CLI as that user. admin_cli(server, "user", "add", ...) runs `ec2gw admin ... --json` in this process
(make_user wraps it for users). Assertion helpers for refusals (refused, error_of) are in tests/security/__init__.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from tests.functional.s3_fixtures import empty_and_delete, new_bucket_name
from tests.live import Creds, LiveServer, free_port
from tests.pg import shared_cluster


@dataclass(frozen=True)
class Tenant(Creds):
    """A user (or the anonymous caller) with boto3 clients bound to one server."""

    server: LiveServer = None  # type: ignore[assignment]
    ec2: Any = None
    s3: Any = None

    def close(self) -> None:
        """Close the clients' pooled connections (a server stops at once when none is left open)."""
        for c in (self.ec2, self.s3):
            if c is not None:
                c.close()

    @property
    def anonymous(self) -> bool:
        return not self.access_key

    def client(self, service: str, **config: Any) -> Any:
        """Another boto3 client for this tenant (e.g. with addressing_style or signature_version set)."""
        if self.anonymous:
            return anonymous_client(self.server, service, **config)
        return self.server.client(service, self, **config)

    def aws(self, *args: str, check: bool = False, timeout: float = 120) -> Any:
        """The aws CLI as this user against the tenant's server (never raises unless check=True)."""
        if self.anonymous:
            return self.server.aws(*args, "--no-sign-request", creds=Creds("anonymous", "", ""), check=check,
                                   timeout=timeout)
        return self.server.aws(*args, creds=self, check=check, timeout=timeout)


def anonymous_client(server: LiveServer, service: str, **config: Any) -> Any:
    return boto3.client(service, endpoint_url=server.ec2_url if service == "ec2" else server.s3_url,
                        region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}, connect_timeout=10,
                                      read_timeout=60, **config))


def tenant(server: LiveServer, creds: Creds) -> Tenant:
    return Tenant(creds.name, creds.access_key, creds.secret_key, server, server.client("ec2", creds),
                  server.client("s3", creds))


def anonymous(server: LiveServer) -> Tenant:
    return Tenant("anonymous", "", "", server, anonymous_client(server, "ec2"), anonymous_client(server, "s3"))


def admin_cli(server: LiveServer, *args: str) -> Any:
    """`ec2gw admin ARGS --json` against the server's data dir and database, run in this process (a Python
    start per command costs seconds on a loaded machine); the parsed JSON output."""
    from click.testing import CliRunner

    from ec2gw.cli import admin as _admin  # noqa: F401  (registers the commands)
    from ec2gw.cli.main import cli

    res = CliRunner().invoke(cli, ["--data-dir", str(server.data_dir), *server.global_args, "admin", *args, "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, f"ec2gw admin {' '.join(args)}: {res.output}"
    return json.loads(res.stdout)


def make_user(server: LiveServer, name: str, *extra: str) -> Creds:
    """`ec2gw admin user add NAME` (in this process): the new user's credentials."""
    data = admin_cli(server, "user", "add", name, *extra)
    return Creds(name, data["access_key_id"], data["secret_access_key"])


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


@dataclass
class World:
    """One deployment under attack: its server processes and the tenants that talk to them."""

    servers: list[LiveServer]
    admin: Tenant
    alice: Tenant
    bob: Tenant
    anon: Tenant
    public_image: str

    @property
    def name(self) -> str:
        return "sqlite" if len(self.servers) == 1 else f"postgresql, {len(self.servers)} processes"


def import_public_image(server: LiveServer, directory: Path) -> str:
    path = directory / "public.img"
    path.write_bytes(b"\x01" * (1 << 20))
    return str(admin_cli(server, "image", "import", unique("sec-public"), str(path), "--public")["image_id"])


#: instance metrics sampled every 2 s, so that alice's instances have some for bob to try to read
METRICS_ENV = {"EC2GW_METRICS_INTERVAL_SECONDS": "2"}

# --------------------------------------------------------------------------- the SQLite server


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(Path(tmp_path_factory.mktemp("sec-server")), env=METRICS_ENV).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def admin(live: LiveServer) -> Iterator[Tenant]:
    t = tenant(live, live.admin)
    yield t
    t.close()


@pytest.fixture(scope="session")
def alice(live: LiveServer) -> Iterator[Tenant]:
    t = tenant(live, make_user(live, unique("alice")))
    yield t
    t.close()


@pytest.fixture(scope="session")
def bob(live: LiveServer) -> Iterator[Tenant]:
    t = tenant(live, make_user(live, unique("bob")))
    yield t
    t.close()


@pytest.fixture(scope="session")
def anon(live: LiveServer) -> Iterator[Tenant]:
    t = anonymous(live)
    yield t
    t.close()


@pytest.fixture(scope="session")
def public_image(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    return import_public_image(live, tmp_path_factory.mktemp("sec-image"))


@pytest.fixture
def new_user(live: LiveServer) -> Callable[[str], Tenant]:
    def make(name: str = "carol") -> Tenant:
        return tenant(live, make_user(live, unique(name)))

    return make


@pytest.fixture
def bucket(alice: Tenant) -> Iterator[str]:
    name = new_bucket_name("sec")
    alice.s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(alice.s3, name)


@pytest.fixture(scope="session")
def world(live: LiveServer, admin: Tenant, alice: Tenant, bob: Tenant, anon: Tenant, public_image: str) -> World:
    return World([live], admin, alice, bob, anon, public_image)


# --------------------------------------------------------------------------- PostgreSQL, two processes


@pytest.fixture(scope="session")
def pg_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = shared_cluster(request.config).create_database("sec")
    data = Path(tmp_path_factory.mktemp("sec-pg"))
    # one data dir (the object store, the CA) shared by both processes, as on a shared filesystem
    a = LiveServer(data, global_args=["--database-url", url], extra_args=["--workers", "1"], env=METRICS_ENV)
    b = LiveServer(data, global_args=["--database-url", url], extra_args=["--workers", "1"],
                   ec2_port=free_port(), s3_port=free_port(), env=METRICS_ENV)
    try:
        a.start()  # first: it creates the administrator and writes admin.credentials
        b.start()
        image = import_public_image(a, tmp_path_factory.mktemp("sec-pg-image"))
        w = World([a, b], tenant(a, a.admin), tenant(a, make_user(a, unique("alice"))),
                  tenant(b, make_user(a, unique("bob"))), anonymous(b), image)
        yield w
        for t in (w.admin, w.alice, w.bob, w.anon):
            t.close()
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(LiveServer.stop, (a, b)))


@pytest.fixture(scope="module", params=["sqlite", "postgresql-2-processes"])
def deployment(request: pytest.FixtureRequest) -> World:
    return request.getfixturevalue("world" if request.param == "sqlite" else "pg_world")  # type: ignore[no-any-return]
