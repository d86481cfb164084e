"""The bytes each user holds in Cumulus, as a running total, and the storage quota check that uses it.

What: the s3_usage row of a user is changed in the same transaction as the object and part rows
it counts, after them: `add` by every path that inserts, replaces or removes one (records.commit_object and
delete_object_row, multipart parts, abort and complete, bucket deletion); `charge` does the same
for bytes being added and then refuses (403 QuotaExceeded, the transaction rolls back) when the
user's total passes their quota. `recount` rebuilds the totals from the rows; a user without a
row (no bytes yet, or a database whose objects predate the table) is counted from the rows.

Why: the quota check used to sum every object and part of the user on every PUT, a cost that
grows with the number of objects. Changing the total and checking it inside the write
transaction that stores the object also makes the quota hold under concurrency: on SQLite write
transactions are serialized; on PostgreSQL the UPDATE of the user's row locks it until commit,
so two uploads of one user check one after the other, each seeing the other's bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, union_all, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import MultipartUpload, Object, Part, StorageUsage

if TYPE_CHECKING:
    from storage.host import StorageQuota

_USAGE = cast(Table, StorageUsage.__table__)
_ADD = update(_USAGE).where(_USAGE.c.user_id == bindparam("uid")).values(bytes=_USAGE.c.bytes + bindparam("delta"))
_ADD_RETURNING = _ADD.returning(_USAGE.c.bytes)
_TOTAL = select(_USAGE.c.bytes).where(_USAGE.c.user_id == bindparam("uid"))
_OBJECT_BYTES = select(func.coalesce(func.sum(Object.size), 0)).where(Object.owner_id == bindparam("uid"))
_PART_BYTES = (select(func.coalesce(func.sum(Part.size), 0)).join(MultipartUpload, MultipartUpload.id == Part.upload_id)
               .where(MultipartUpload.owner_id == bindparam("uid")))


def _conn(s: Session | Connection) -> Connection:
    """Core statements on the session's connection: the ORM layer would only add CPU time."""
    return s.connection() if isinstance(s, Session) else s


def add(s: Session | Connection, user_id: int, delta: int) -> int | None:
    """Change the user's total by `delta` bytes in the caller's transaction; returns the new total
    (None when delta is 0: nothing changed, nothing read).

    Call it after the transaction changed the rows it accounts for: a user without a row yet (their
    first bytes, or a database whose rows predate the table) gets one counted from the rows, which
    already include this change.
    """
    if not delta:
        return None
    conn = _conn(s)
    updated = _update(conn, user_id, delta)
    if updated is not None:
        return updated
    value = held(conn, user_id)
    if _insert_if_absent(conn, user_id, value):
        return value
    # another transaction created the row meanwhile (its count did not see this one's rows)
    return _update(conn, user_id, delta)


def _update(conn: Connection, user_id: int, delta: int) -> int | None:
    """UPDATE the row (RETURNING its new value where the database can: one round trip less inside
    the write lock); None if the user has no row."""
    params = {"uid": user_id, "delta": delta}
    if conn.dialect.update_returning:
        value = conn.execute(_ADD_RETURNING, params).scalar()
        return None if value is None else int(value)
    if not conn.execute(_ADD, params).rowcount:
        return None
    return int(conn.execute(_TOTAL, {"uid": user_id}).scalar() or 0)


def _insert_if_absent(conn: Connection, user_id: int, value: int) -> bool:
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        upsert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        # RETURNING tells whether a row went in (rowcount is not reliable for DO NOTHING everywhere)
        stmt = upsert(_USAGE).values(user_id=user_id, bytes=value).on_conflict_do_nothing().returning(_USAGE.c.user_id)
        return conn.execute(stmt).first() is not None
    try:
        with conn.begin_nested():
            conn.execute(insert(_USAGE).values(user_id=user_id, bytes=value))
        return True
    except IntegrityError:
        return False


def held(s: Session | Connection, user_id: int) -> int:
    """The user's bytes counted from the object and part rows (indexed by owner)."""
    conn = _conn(s)
    objects = conn.execute(_OBJECT_BYTES, {"uid": user_id}).scalar()
    parts = conn.execute(_PART_BYTES, {"uid": user_id}).scalar()
    return int(objects or 0) + int(parts or 0)


def total(s: Session | Connection, user_id: int) -> int:
    """The user's bytes: their running total, or a count from the rows if they have none yet."""
    conn = _conn(s)
    value = conn.execute(_TOTAL, {"uid": user_id}).scalar()
    return int(value) if value is not None else held(conn, user_id)


#: charge()'s `limit` when the caller has not looked it up
LOOK_UP = -2


def charge(s: Session | Connection, quota: StorageQuota, user_id: int, delta: int, limit: int | None = LOOK_UP) -> None:
    """add(), then refuse (QuotaExceeded: the caller's transaction rolls back) if the bytes added
    take the user past their storage quota (`limit`, None for none, looked up unless given).
    Freeing bytes (delta <= 0) is never refused."""
    used = add(s, user_id, delta)
    if delta <= 0 or used is None:
        return
    if limit == LOOK_UP:
        limit = quota.limit(_conn(s), user_id)
    if limit is not None and used > limit:
        raise quota.exceeded(limit, used - delta, delta)


def check_quota(conn: Connection, quota: StorageQuota, user_id: int, extra_bytes: int) -> None:
    """Refuse (403 QuotaExceeded) storing extra_bytes more for user_id beyond their quota.

    Called before a body is accepted, with its announced size, so nothing is stored when the
    answer is no. An overwrite is counted as new bytes (the old object still counts until it is
    replaced), which errs on the side of the quota. The transaction that stores the object checks
    again, exactly and safely under concurrency (charge()).
    """
    limit = quota.limit(conn, user_id)
    if limit is None:
        return
    used = total(conn, user_id)
    if used + max(0, extra_bytes) > limit:
        raise quota.exceeded(limit, used, extra_bytes)


def parts_by_owner(s: Session | Connection, where: Any) -> dict[int, int]:
    """{upload owner: bytes of their parts} for the parts of the uploads matching `where`."""
    rows = _conn(s).execute(
        select(MultipartUpload.owner_id, func.coalesce(func.sum(Part.size), 0))
        .join(Part, Part.upload_id == MultipartUpload.id).where(where).group_by(MultipartUpload.owner_id))
    return {int(owner): int(n) for owner, n in rows}


def recount(s: Session | Connection) -> dict[int, int]:
    """Rebuild every user's total from the object and part rows; returns {user id: bytes}."""
    conn = _conn(s)
    held = union_all(
        select(Object.owner_id.label("owner_id"), Object.size.label("size")),
        select(MultipartUpload.owner_id.label("owner_id"), Part.size.label("size"))
        .join(Part, Part.upload_id == MultipartUpload.id),
    ).subquery()
    totals = {int(owner): int(n) for owner, n in conn.execute(
        select(held.c.owner_id, func.sum(held.c.size)).group_by(held.c.owner_id))}
    conn.execute(delete(_USAGE))
    if totals:
        conn.execute(insert(_USAGE), [{"user_id": uid, "bytes": n} for uid, n in totals.items()])
    return totals

