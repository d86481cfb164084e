"""Schema creation and upgrades with Alembic, for SQLite and PostgreSQL alike.

The migrations live in ec2gw/db/migrations (versions/ holds one file per revision; 0001 is the
baseline built from every model). upgrade_schema() runs at every start of the service and of each
admin command:

* a database at the head revision is left alone (one cheap query);
* an empty database gets the models' tables from the migrations and is stamped at the head;
* a database from before migrations existed (tables, no alembic_version), which create_all made
  from the models of its day, is completed the same way (missing tables and indexes) and stamped
  at the head;
* any other database is upgraded to the head.

Alembic's own INFO lines (plugin set-up, "Context impl", one per revision) are held back to
WARNING while the service migrates; upgrade_schema() logs one INFO line per revision it applied
(on logger ``ec2gw.db``) and nothing when the schema was already current. Configure the ``alembic``
logger yourself (any level) to see its lines again.

Several processes may start at once against one database (`ec2gw serve` on many machines), so the
whole upgrade runs in one transaction that first takes a lock: pg_advisory_xact_lock on
PostgreSQL, BEGIN IMMEDIATE on SQLite. The loser waits, then finds the schema current.

Every module that defines tables on the shared Base must be imported before the metadata is
compared or created; all_metadata() finds them by name (``models.py`` or ``*_models.py`` under
the service's packages), so a new model module needs no registration here. tests/unit/
test_migrations.py fails when the models and the migrations differ (`alembic ... check` says the
same); add a revision with
`alembic -c ec2gw/db/migrations/alembic.ini revision --autogenerate -m "what changed"`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

from ec2gw.db import models

if TYPE_CHECKING:
    from alembic.config import Config

    from ec2gw.db.session import Database

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
log = logging.getLogger("ec2gw.db")
#: packages whose models.py / *_models.py modules define tables on ec2gw.db.models.Base
MODEL_PACKAGES = ("ec2gw", "storage")
#: pg_advisory_xact_lock key serializing schema upgrades ("ec2gw-db" in ASCII, as an int64)
_PG_LOCK_KEY = 0x6563_3267_772D_6462 & 0x7FFF_FFFF_FFFF_FFFF


def model_modules() -> list[str]:
    """Dotted names of every module that can define tables: models.py and *_models.py files."""
    root = Path(__file__).resolve().parents[2]
    names = []
    for pkg in MODEL_PACKAGES:
        base = root / pkg
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            if path.stem == "models" or path.stem.endswith("_models"):
                names.append(".".join(path.relative_to(root).with_suffix("").parts))
    return names


def all_metadata() -> MetaData:
    """The metadata of every model, importing each module that defines tables on the shared Base."""
    for name in model_modules():
        importlib.import_module(name)
    return models.Base.metadata


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic Config for our migrations, built in code (no alembic.ini needed at run time)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}; the installation is incomplete")
    return head


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic at WARNING for the duration, unless someone configured its logger's level."""
    logger = logging.getLogger("alembic")
    if logger.level != logging.NOTSET:
        yield
        return
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)


def upgrade_schema(db: Database) -> None:
    """Bring the database to the head revision (see the module docstring for the cases)."""
    with _quiet_alembic():
        head = head_revision()
        with db.engine.connect() as conn:
            if current_revision(conn) == head:
                return
        with db.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                applied = _sqlite_upgrade(conn)
            else:
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                    applied = _upgrade_locked(conn)
    for line in applied:
        log.info("database schema: %s", line)


def _pending(conn: Connection) -> list[str]:
    """What upgrading from the database's revision to the head applies, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    revs = list(script.iterate_revisions("heads", current_revision(conn) or "base"))
    return [f"applied migration {r.revision}: {(r.doc or '').strip()}" for r in reversed(revs)]


def _sqlite_upgrade(conn: Connection) -> list[str]:
    """SQLite: foreign keys off while tables may be rebuilt (batch migrations), then checked."""
    raw: Any = conn.connection.dbapi_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        conn = conn.execution_options(ec2gw_immediate=True)  # BEGIN IMMEDIATE: one migrator at a time
        with conn.begin():
            applied = _upgrade_locked(conn)
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the schema upgrade left rows with dangling foreign keys: {broken[:5]}; "
                                   "restore the database from its backup and report the migration")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")
    return applied


def _upgrade_locked(conn: Connection) -> list[str]:
    """Run inside the locked transaction: decide the case afresh, then stamp or upgrade; says what
    it did (nothing when another process got there first)."""
    from alembic import command

    cfg = alembic_config(connection=conn)
    if current_revision(conn) == head_revision():
        return []
    if current_revision(conn) is None and set(inspect(conn).get_table_names()) - {"alembic_version"}:
        metadata = all_metadata()
        metadata.create_all(conn)
        for table in metadata.sorted_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)
        command.stamp(cfg, "head")
        return [f"completed the tables of a database from before migrations and stamped it at {head_revision()}"]
    applied = _pending(conn)
    command.upgrade(cfg, "head")
    return applied
