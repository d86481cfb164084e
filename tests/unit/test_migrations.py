"""Alembic migrations: they build exactly the models' schema on SQLite and PostgreSQL.

test_models_and_migrations_agree_* fail as soon as someone changes or adds a model without a
revision: write one with `alembic -c ec2gw/db/migrations/alembic.ini revision --autogenerate`.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from ec2gw.db import migrate
from ec2gw.db.session import Database
from tests.pg import postgres_cluster, postgres_url  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def _diff(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(ctx, migrate.all_metadata()))


def _revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return migrate.current_revision(conn)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Any:
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite'}")
    yield db
    db.dispose()


@pytest.fixture
def pg_db(postgres_url: str) -> Any:  # noqa: F811
    db = Database(postgres_url)
    yield db
    db.dispose()


def test_models_and_migrations_agree_sqlite(sqlite_db: Database) -> None:
    sqlite_db.create_schema()
    assert _revision(sqlite_db) == migrate.head_revision()
    assert _diff(sqlite_db) == [], "models differ from the migrations: add a revision (see this module's doc)"


@pytest.mark.slow
def test_models_and_migrations_agree_postgresql(pg_db: Database) -> None:
    pg_db.create_schema()
    assert _revision(pg_db) == migrate.head_revision()
    assert _diff(pg_db) == [], "models differ from the migrations: add a revision (see this module's doc)"


def test_every_table_of_every_module_is_found() -> None:
    """A table defined in a module all_metadata() does not import would never get migrated."""
    from ec2gw.db.models import Base

    found = set(migrate.all_metadata().tables)
    for pkg in ("ec2gw", "storage", "backends", "certs"):
        mod = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(mod.__path__, prefix=f"{pkg}."):
            if not info.name.endswith("__main__") and ".migrations" not in info.name:
                importlib.import_module(info.name)
    missing = set(Base.metadata.tables) - found
    assert not missing, f"tables {sorted(missing)} live outside models.py/*_models.py modules: move them or name the module so"


def test_legacy_database_is_stamped_and_upgraded(sqlite_db: Database) -> None:
    """A database made by create_all before migrations existed keeps its rows and joins the history."""
    from ec2gw.db.models import Base, Node

    tables = [t for name, t in migrate.all_metadata().tables.items() if name != "node_unknown_domains"]
    Base.metadata.create_all(sqlite_db.engine, tables=tables)
    with sqlite_db.session(write=True) as s:
        s.execute(text("DROP INDEX ix_instances_node_usage"))
        s.add(Node(name="n1", uri="test:///default", zone="z"))
    sqlite_db.create_schema()
    assert _revision(sqlite_db) == migrate.head_revision()
    assert _diff(sqlite_db) == []
    with sqlite_db.session() as s:
        assert s.get(Node, "n1") is not None


def test_downgrade_to_nothing_and_up_again(sqlite_db: Database) -> None:
    sqlite_db.create_schema()
    with sqlite_db.engine.connect() as conn:
        command.downgrade(migrate.alembic_config(connection=conn), "base")
        conn.commit()
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    sqlite_db.create_schema()
    assert _diff(sqlite_db) == []


def test_upgrade_at_head_is_a_no_op(sqlite_db: Database) -> None:
    sqlite_db.create_schema()
    with sqlite_db.session(write=True) as s:
        s.execute(text("CREATE TABLE marker (x INTEGER)"))
    sqlite_db.create_schema()
    with sqlite_db.engine.connect() as conn:
        assert "marker" in inspect(conn).get_table_names()


def _race(url: str, count: int) -> None:
    """`count` processes' worth of first starts at once on one empty database."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def start() -> None:
        db = Database(url)
        try:
            barrier.wait(10)
            db.create_schema()
        except Exception as exc:  # noqa: BLE001  (reported below, in the test's thread)
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a schema upgrade hung"
    assert not errors, errors


def test_concurrent_first_starts_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.sqlite'}"
    _race(url, 4)
    db = Database(url)
    assert _diff(db) == [] and _revision(db) == migrate.head_revision()
    db.dispose()


@pytest.mark.slow
def test_concurrent_first_starts_postgresql(postgres_url: str) -> None:  # noqa: F811
    _race(postgres_url, 4)
    db = Database(postgres_url)
    assert _diff(db) == [] and _revision(db) == migrate.head_revision()
    db.dispose()


def test_baseline_revision_is_plain() -> None:
    """Revisions must not import models (they change later); TypeDecorators are written as SQL types."""
    for path in (ROOT / "ec2gw" / "db" / "migrations" / "versions").glob("*.py"):
        body = path.read_text()
        assert "ec2gw" not in body, f"{path.name} imports the service's code"


def test_0015b_gives_every_live_instance_a_root_volume(sqlite_db: Database) -> None:
    """Instances launched before root devices were volumes get theirs (their overlay) on upgrade."""
    from ec2gw.db.models import Image, Instance, Reservation, User
    from ec2gw.db.volume_models import Volume

    sqlite_db.create_schema()
    with sqlite_db.session(write=True) as s:
        s.add(User(id=7, name="old", account_id="000000000007", access_key="AKOLD", secret_key="x"))
        s.flush()
        s.add(Image(id="ami-0000000000000000a", owner_id=7, name="old", location="Repo/VMS/old/disk",
                    root_device_name="/dev/sda1", size_bytes=(3 << 30) + 1))
        s.add(Reservation(id="r-0000000000000000a", owner_id=7))
        s.flush()
        for iid, state in (("i-0000000000000000a", "running"), ("i-0000000000000000b", "terminated")):
            s.add(Instance(id=iid, owner_id=7, reservation_id="r-0000000000000000a", image_id="ami-0000000000000000a",
                           instance_type="t2.micro", vcpus=1, memory_mib=512, state=state, node_name="n1",
                           availability_zone="z1"))
    with sqlite_db.engine.connect() as conn:
        command.downgrade(migrate.alembic_config(connection=conn), "0013s")
        conn.commit()
    sqlite_db.create_schema()
    assert _revision(sqlite_db) == migrate.head_revision()
    with sqlite_db.session() as s:
        vols = list(s.query(Volume))
    assert [(v.instance_id, v.device, v.target, v.size_gib, v.state, v.attach_state, v.is_root, v.storage,
             v.delete_on_termination, v.node_name, v.availability_zone) for v in vols] == \
        [("i-0000000000000000a", "/dev/sda1", "vda", 4, "in-use", "attached", True, "overlay", True, "n1", "z1")]
    assert vols[0].id.startswith("vol-") and len(vols[0].id) == 21
