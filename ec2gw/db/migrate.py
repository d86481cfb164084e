"""Schema creation and upgrades."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ec2gw.db.session import Database


def all_metadata():  # type: ignore[no-untyped-def]
    """The metadata of every model, importing the modules that define tables on the shared Base."""
    import ec2gw.db.models as models

    for mod in ("storage.models", "ec2gw.network.models"):
        try:
            __import__(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    return models.Base.metadata


def upgrade_schema(db: "Database") -> None:
    all_metadata().create_all(db.engine)
