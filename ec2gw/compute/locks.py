"""Leases on singleton jobs (the compute worker, reapers) held in the database.

Any number of service processes may run; at most one holds a given lease at a time. A holder
renews its lease each pass; a lease not renewed before it expires can be taken over.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from ec2gw.db.models import ServiceLock
from ec2gw.db.session import Database


def acquire(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Take or renew the lease `name` for `holder`; True when `holder` holds it afterwards."""
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl)
    with db.session(write=True) as s:
        res = s.execute(
            update(ServiceLock)
            .where(ServiceLock.name == name, or_(ServiceLock.holder == holder, ServiceLock.expires_at < now))
            .values(holder=holder, expires_at=expires)
        )
        if res.rowcount == 1:  # type: ignore[attr-defined]
            return True
        if s.get(ServiceLock, name) is not None:
            return False
    try:
        with db.session(write=True) as s:
            s.add(ServiceLock(name=name, holder=holder, expires_at=expires))
        return True
    except IntegrityError:
        return False


def release(db: Database, name: str, holder: str) -> None:
    with db.session(write=True) as s:
        s.execute(
            update(ServiceLock)
            .where(ServiceLock.name == name, ServiceLock.holder == holder)
            .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC))
        )
