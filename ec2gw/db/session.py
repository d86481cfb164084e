"""Engine and session scope. SQLite runs in WAL mode, synchronous=FULL, with a busy timeout; any SQLAlchemy URL works."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ec2gw.db.migrate import upgrade_schema


class Database:
    """Owns the engine and hands out sessions; one per process, created by the app factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: Engine = create_engine(
                url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=10, max_overflow=20,
                # SQLite builds older than 3.32 allow 999 bound parameters per statement: 16 rows of the
                # widest table (instances, under 60 columns) stay below that in one multi-row INSERT
                insertmanyvalues_page_size=16,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> None:
        upgrade_schema(self)

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A transaction: committed when the block ends normally, rolled back on any exception.

        write=True takes SQLite's write lock at the start (BEGIN IMMEDIATE), so a transaction that
        reads and then writes never fails half-way on a lock held by another process.
        """
        s = self._factory()
        if write and self.is_sqlite:
            s.connection(execution_options={"ec2gw_immediate": True})
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: each commit syncs the WAL before it returns. NORMAL would sync only at checkpoints, so a
    # power cut could take back a transaction already answered: a stored object's row (its blob
    # then swept as an orphan), an instance's record beside a running domain.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA case_sensitive_like=ON")
    cur.close()
    # let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions defer locking oddly)
    dbapi_conn.isolation_level = None  # type: ignore[attr-defined]


def _sqlite_begin(conn: object) -> None:
    immediate = conn.get_execution_options().get("ec2gw_immediate")  # type: ignore[attr-defined]
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")  # type: ignore[attr-defined]
