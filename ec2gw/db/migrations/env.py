"""Alembic environment: our metadata, SQLite batch mode, TypeDecorators rendered as their base type.

upgrade_schema() passes its own locked connection in ``config.attributes["connection"]``. From
the command line (developers writing a revision) the URL comes from -x url=..., the alembic.ini
next to this file, or EC2GW_DATABASE_URL.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator

from ec2gw.db.migrate import all_metadata

config = context.config


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Write TypeDecorators (UTCDateTime) as their plain SQL type, so revisions never import models."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        impl = obj.impl_instance if hasattr(obj, "impl_instance") else obj.impl
        return f"sa.{impl!r}"
    return False


def _configure(**kw: Any) -> None:
    context.configure(target_metadata=all_metadata(), render_item=render_item, compare_type=True, **kw)


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    url = url or os.environ.get("EC2GW_DATABASE_URL")
    if not url:
        raise SystemExit("no database URL: pass -x url=sqlite:///path or set EC2GW_DATABASE_URL")
    return url


def run_offline() -> None:
    url = _url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"),
               dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
        connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
