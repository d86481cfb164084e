"""Visibility and lookup of a caller's instances, shared by the instance actions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.compute.states import CODES
from ec2gw.db.models import Instance
from ec2gw.errors import ServiceError


def _cutoff(ctx: RequestContext) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=ctx.settings.terminated_visible_seconds)


def visible(ctx: RequestContext) -> ColumnElement[bool]:
    """The caller's instances, terminated ones only for settings.terminated_visible_seconds."""
    return and_(
        Instance.owner_id == ctx.user_id,
        or_(Instance.state != "terminated", Instance.terminated_at > _cutoff(ctx)),
    )


#: ids per query: SQLite builds may allow as few as 999 bound parameters
_ID_CHUNK = 500

# visible() and an id list, built once: DescribeInstances by id is the most frequent request
_VISIBLE_BY_ID = select(Instance).where(
    Instance.owner_id == bindparam("owner"),
    or_(Instance.state != "terminated", Instance.terminated_at > bindparam("cutoff")),
    Instance.id.in_(bindparam("ids", expanding=True)),
).order_by(Instance.id)


def visible_by_id(s: Session, ctx: RequestContext, instance_ids: list[str]) -> list[Instance]:
    """The caller's visible instances among ``instance_ids``, ordered by id (missing ones left out)."""
    cutoff = _cutoff(ctx)
    rows: list[Instance] = []
    for start in range(0, len(instance_ids), _ID_CHUNK):
        chunk = instance_ids[start:start + _ID_CHUNK]
        rows += s.scalars(_VISIBLE_BY_ID, {"owner": ctx.user_id, "cutoff": cutoff, "ids": chunk})
    if len(instance_ids) > _ID_CHUNK:
        rows.sort(key=lambda r: r.id)
    return rows


def check_instance_ids(instance_ids: Iterable[str] | None) -> list[str]:
    out: dict[str, None] = {}
    for iid in instance_ids or []:
        ids.check_id(iid, "i")
        out[iid] = None
    return list(out)


def load_instances(s: Session, ctx: RequestContext, instance_ids: list[str], for_update: bool = False,
                   columns: tuple[Any, ...] = ()) -> list[Any]:
    """The named instances in request order; InvalidInstanceID.NotFound names every missing one.

    With ``columns`` (Instance.id among them), plain rows of those columns instead of Instance
    objects: cheaper when a request names a thousand instances and needs a few fields."""
    if not instance_ids:
        raise ServiceError("MissingParameter", "The request must contain the parameter InstanceId.1.")
    rows: dict[str, Any] = {}
    for start in range(0, len(instance_ids), _ID_CHUNK):
        q = (select(*columns) if columns else select(Instance)).where(
            visible(ctx), Instance.id.in_(instance_ids[start:start + _ID_CHUNK]))
        if for_update and s.get_bind().dialect.name == "postgresql":
            q = q.with_for_update()
        rows.update((i.id, i) for i in (s.execute(q) if columns else s.scalars(q)))
    missing = [i for i in instance_ids if i not in rows]
    if missing:
        quoted = ", ".join(f"'{m}'" for m in missing)
        raise ServiceError(
            "InvalidInstanceID.NotFound",
            f"The instance ID{'s' if len(missing) > 1 else ''} {quoted} do{'' if len(missing) > 1 else 'es'} not exist",
        )
    return [rows[i] for i in instance_ids]


def state_code_condition(values: list[str]) -> ColumnElement[bool]:
    names = []
    for v in values:
        try:
            code = int(v)
        except ValueError:
            raise ServiceError(
                "InvalidParameterValue", f"The filter instance-state-code takes numbers such as 16, not '{v}'."
            ) from None
        names += [n for n, c in CODES.items() if c == (code & 0xFF)]
    return Instance.state.in_(names)


def time_condition(column: Any, values: list[str]) -> ColumnElement[bool]:
    """launch-time filter: an exact time, or a prefix with wildcards (2024-05-*) as a time range."""
    conds = []
    for v in values:
        prefix = v.split("*", 1)[0].split("?", 1)[0]
        start, end = _prefix_range(prefix, v)
        conds.append(and_(column >= start, column < end))
    return or_(*conds)


def _prefix_range(prefix: str, original: str) -> tuple[datetime, datetime]:
    text = prefix.rstrip("-T:. ").replace("Z", "")
    formats = [("%Y-%m-%dT%H:%M:%S.%f", "ms"), ("%Y-%m-%dT%H:%M:%S", "s"), ("%Y-%m-%dT%H:%M", "m"),
               ("%Y-%m-%dT%H", "h"), ("%Y-%m-%d", "d"), ("%Y-%m", "mo"), ("%Y", "y")]
    if original == prefix and "+" in text:
        text = text.split("+")[0]
    for fmt, unit in formats:
        try:
            start = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        try:
            if unit == "mo":
                end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
            elif unit == "y":
                end = start.replace(year=start.year + 1)
            else:
                end = start + {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1),
                               "h": timedelta(hours=1), "d": timedelta(days=1)}[unit]
        except (ValueError, OverflowError):  # the range reaches past 9999-12-31: it ends with the calendar
            end = datetime.max.replace(tzinfo=UTC)
        return start, end
    if not text:
        return datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
    raise ServiceError(
        "InvalidParameterValue", f"The filter launch-time takes times such as 2024-05-01T12:00:00.000Z or 2024-05-*, not '{original}'."
    )


def _int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    # a whole number the database can compare (SQLite integers are 64-bit; AWS's are 32-bit)
    if number is None or not -(2**31) <= number < 2**31:
        raise ServiceError("InvalidParameterValue", f"The filter {name} takes whole numbers, not '{value[:40]}'.")
    return number


FILTERS: dict[str, Any] = {
    "instance-id": Instance.id,
    "instance-state-name": Instance.state,
    "instance-state-code": state_code_condition,
    "instance-type": Instance.instance_type,
    "image-id": Instance.image_id,
    "key-name": Instance.key_name,
    "availability-zone": Instance.availability_zone,
    "reservation-id": Instance.reservation_id,
    "private-ip-address": Instance.private_ip,
    "ip-address": Instance.public_ip,
    "private-dns-name": Instance.private_dns,
    "kernel-id": Instance.kernel_id,
    "ramdisk-id": Instance.ramdisk_id,
    "ami-launch-index": lambda values: Instance.launch_index.in_([_int(v, "ami-launch-index") for v in values]),
    "launch-time": lambda values: time_condition(Instance.launch_time, values),
    "state-reason-code": Instance.state_reason_code,
    "network-interface.mac-address": Instance.mac,
}


def set_rows(s: Session, instance_ids: list[str], **values: Any) -> None:
    """Set ``values`` on the named instance rows with one UPDATE per _ID_CHUNK ids, bypassing the
    ORM's per-row flush. Instance objects already loaded in ``s`` keep their old values: read the
    new state from ``values``, not from them."""
    table = cast(Table, Instance.__table__)
    for start in range(0, len(instance_ids), _ID_CHUNK):
        chunk = instance_ids[start:start + _ID_CHUNK]
        s.execute(update(table).where(table.c.id.in_(chunk)).values(**values),
                  execution_options={"synchronize_session": False})


def page_of_instances(s: Session, ctx: RequestContext, conds: list[Any], wanted: list[str], next_token: str | None,
                      max_results: int | None, scope: str) -> tuple[list[Instance], str | None]:
    """One page of the caller's visible instances matching ``conds`` (and ``wanted`` ids), in id
    order, with the NextToken of the rest. A named id that is not the caller's is NotFound, even
    when filters would have dropped it."""
    if wanted and not conds and not next_token:
        rows = visible_by_id(s, ctx, wanted)
    else:
        q = select(Instance).where(visible(ctx), *conds)
        if wanted:
            q = q.where(Instance.id.in_(wanted))
        if next_token:
            q = q.where(Instance.id > ctx.tokens.decode(next_token, scope))
        q = q.order_by(Instance.id)
        if max_results:
            q = q.limit(max_results + 1)
        rows = list(s.scalars(q))
    if wanted and len(rows) < len(wanted):
        load_instances(s, ctx, wanted)
    if max_results and len(rows) > max_results:
        rows = rows[:max_results]
        return rows, ctx.tokens.encode(rows[-1].id, scope)
    return rows, None
