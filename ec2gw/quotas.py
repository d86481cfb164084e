"""Quotas: how many instances, vCPUs, MiB of memory, Cumulus bytes and elastic addresses each user may hold.

What: a user's limit for each resource is their own quota where one is set, otherwise their
group's (a group quota applies to each member, as Nimbus's group policies did), otherwise the
service's defaults from the settings. Usage counts every instance that is not terminated (stopped
ones too, so starting them again never passes a quota) and every Cumulus byte the user stored,
finished objects and parts of unfinished multipart uploads alike.
Why one module: RunInstances, DescribeAccountAttributes, Cumulus and the admin CLI must agree on
one rule; each asks here (Cumulus through the StorageQuotaRule it is given when it is built).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ec2gw.db.models import Instance, User
from ec2gw.db.volume_models import LIVE_STATES, Volume, holds_volume_storage
from ec2gw.errors import ServiceError
from ec2gw.network.models import Address
from ec2gw.quota_models import UNLIMITED, Quota

if TYPE_CHECKING:
    from ec2gw.aws.gateway import Principal
    from ec2gw.config import Settings
    from ec2gw.db.session import Database

#: the bytes a user holds in Cumulus (storage.usage.total), for usage reports
StoredBytes = Callable[[Session | Connection, int], int]

FIELDS = ("instances", "vcpus", "memory_mib", "storage_bytes", "addresses", "volumes", "volume_bytes")
GIB = 1 << 30
#: what DescribeAccountAttributes reports as max-instances when there is no limit
NO_LIMIT_INSTANCES = 2**31 - 1


class QuotaError(Exception):
    """An administration request about quotas that cannot be done; the message says what to do."""


@dataclass(frozen=True)
class Limits:
    """A user's effective limits; None means no limit."""

    instances: int | None
    vcpus: int | None
    memory_mib: int | None
    storage_bytes: int | None
    addresses: int | None
    volumes: int | None = None
    volume_bytes: int | None = None


@dataclass(frozen=True)
class Usage:
    instances: int
    vcpus: int
    memory_mib: int
    storage_bytes: int
    addresses: int = 0
    volumes: int = 0
    volume_bytes: int = 0


# --------------------------------------------------------------------------- limits

def defaults(settings: Settings) -> dict[str, int]:
    """The service-wide per-user defaults (-1: no limit)."""
    gb = settings.quota_storage_gb
    return {
        "instances": settings.max_instances_per_user,
        "vcpus": settings.quota_vcpus,
        "memory_mib": settings.quota_memory_mb,
        "storage_bytes": UNLIMITED if gb < 0 else int(gb * GIB),
        "addresses": settings.quota_addresses,
        "volumes": settings.quota_volumes,
        "volume_bytes": UNLIMITED if settings.quota_volume_gb < 0 else settings.quota_volume_gb * GIB,
    }


def limits_for(s: Session, settings: Settings, user_name: str, group: str) -> Limits:
    """Per resource: the user's quota, else the group's, else the settings' default."""
    rows = {
        q.kind: q
        for q in s.scalars(
            select(Quota).where(
                or_(and_(Quota.kind == "user", Quota.name == user_name), and_(Quota.kind == "group", Quota.name == group))
            )
        )
    }
    base = defaults(settings)
    out: dict[str, int | None] = {}
    for f in FIELDS:
        value = base[f]
        for kind in ("user", "group"):
            row = rows.get(kind)
            if row is not None and getattr(row, f) is not None:
                value = getattr(row, f)
                break
        out[f] = None if value < 0 else value
    return Limits(**out)


def usage_of(s: Session, user_id: int, stored: StoredBytes | None = None) -> Usage:
    """The user's instances, vCPUs and memory, and (when `stored` is given: Cumulus keeps that
    count, storage/usage.py) the bytes they hold in Cumulus; 0 bytes without it."""
    count, vcpus, memory = s.execute(
        select(func.count(Instance.id), func.coalesce(func.sum(Instance.vcpus), 0), func.coalesce(func.sum(Instance.memory_mib), 0))
        .where(Instance.owner_id == user_id, Instance.state != "terminated")
    ).one()
    held = s.scalar(select(func.count(Address.id)).where(Address.owner_id == user_id, Address.allocation_id.is_not(None)))
    volumes, volume_gib = s.execute(
        select(func.count(Volume.id), func.coalesce(func.sum(Volume.size_gib), 0))
        .where(Volume.owner_id == user_id, Volume.state.in_(LIVE_STATES), holds_volume_storage())
    ).one()
    return Usage(int(count), int(vcpus), int(memory), 0 if stored is None else stored(s, user_id), int(held or 0),
                 int(volumes), int(volume_gib) * GIB)


def volume_allowance(s: Session, settings: Settings, principal: Principal, add_volumes: int, add_gib: int) -> None:
    """Raise VolumeLimitExceeded unless the caller may hold ``add_volumes`` more volumes and
    ``add_gib`` more GiB of them (CreateVolume: 1 and its size; ModifyVolume: 0 and the growth).

    Runs inside the request's write transaction (BEGIN IMMEDIATE on SQLite; the user's row locked on
    PostgreSQL), so two concurrent requests by one user cannot both pass the same quota.
    """
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(User.id).where(User.id == principal.user_id).with_for_update())
    limits = limits_for(s, settings, principal.name, principal.group)
    if limits.volumes is None and limits.volume_bytes is None:
        return
    used = usage_of(s, principal.user_id)
    if limits.volumes is not None and add_volumes and used.volumes + add_volumes > limits.volumes:
        raise ServiceError(
            "VolumeLimitExceeded",
            f"Your quota allows {limits.volumes} volumes and you have {used.volumes}. Delete volumes you no longer "
            "need or ask the administrator for a larger quota (ec2gw admin quota set --volumes).",
        )
    if limits.volume_bytes is not None and add_gib and used.volume_bytes + add_gib * GIB > limits.volume_bytes:
        raise ServiceError(
            "VolumeLimitExceeded",
            f"Your quota allows {limits.volume_bytes // GIB} GiB of volumes; you use {used.volume_bytes // GIB} GiB and "
            f"asked for {add_gib} GiB more. Delete or shrink your use of volumes, or ask the administrator for a "
            "larger quota (ec2gw admin quota set --volume-gb).",
        )


# one Core query (no ORM: it runs in every Cumulus PUT): the user's row, with their own and their
# group's quota rows when there are any
_STORAGE_QUOTAS = (
    select(User.id, Quota.kind, Quota.storage_bytes)
    .select_from(User)
    .outerjoin(Quota, or_(and_(Quota.kind == "user", Quota.name == User.name),
                          and_(Quota.kind == "group", Quota.name == User.group)))
    .where(User.id == bindparam("uid"))
)


def storage_limit(conn: Connection, settings: Settings, user_id: int) -> int | None:
    """The user's Cumulus quota in bytes (user, else group, else the default), None for no limit
    (and for an unknown user)."""
    rows = conn.execute(_STORAGE_QUOTAS, {"uid": user_id}).all()
    if not rows:
        return None
    by_kind = {kind: value for _, kind, value in rows if kind is not None}
    return effective_storage_limit(settings, by_kind.get("user"), by_kind.get("group"))


def effective_storage_limit(settings: Settings, user_value: int | None, group_value: int | None) -> int | None:
    """The storage limit from the user's and the group's quota columns (None: not set there)."""
    value = user_value if user_value is not None else group_value
    if value is None:
        value = defaults(settings)["storage_bytes"]
    return None if value < 0 else value


def storage_quota_columns(user_id: Any) -> tuple[Any, Any]:
    """Scalar subqueries of the user's and of their group's storage quota column, for callers that
    fold the lookup into a query of their own (Cumulus's commit, inside its write lock)."""
    user = select(User.name).where(User.id == user_id).scalar_subquery()
    group = select(User.group).where(User.id == user_id).scalar_subquery()
    return (
        select(Quota.storage_bytes).where(Quota.kind == "user", Quota.name == user).scalar_subquery(),
        select(Quota.storage_bytes).where(Quota.kind == "group", Quota.name == group).scalar_subquery(),
    )


def storage_quota_error(limit: int, used: int, extra_bytes: int) -> ServiceError:
    return ServiceError(
        "QuotaExceeded",
        f"Storing {extra_bytes} more bytes would exceed your Cumulus storage quota of {human_bytes(limit)} "
        f"({used} bytes are in use). Delete objects you no longer need or ask the administrator for a larger quota.",
        status=403,
    )


def instance_limit(db: Database, settings: Settings, principal: Principal) -> int:
    """How many instances the caller may have (what DescribeAccountAttributes reports)."""
    with db.session() as s:
        limit = limits_for(s, settings, principal.name, principal.group).instances
    return NO_LIMIT_INSTANCES if limit is None else limit


# --------------------------------------------------------------------------- checks

def launch_allowance(
    s: Session, settings: Settings, principal: Principal, min_count: int, max_count: int, instance_type: str,
    vcpus: int, memory_mib: int, *, resizing: str | None = None,
) -> int:
    """How many of max_count instances the caller may launch now (at least min_count), or raise.

    InstanceLimitExceeded when the instance count is the binding limit, VcpuLimitExceeded when vCPUs
    or memory are. Runs inside the launch's write transaction; on PostgreSQL the user's row is locked
    so that two concurrent launches by one user cannot both pass the same quota.

    With ``resizing`` (the id of the caller's stopped instance changing to instance_type; counts of 1),
    vcpus and memory_mib are what that instance grows by: a resize adds no instance, so the instance
    count is not checked, and one that grows nothing is never refused. ModifyInstanceAttribute calls it
    so, inside its write transaction and before the node check (the user's row is locked before the
    node's, as in a launch): a resize and a launch, or two resizes, cannot both pass the same quota.
    """
    if resizing is not None and vcpus <= 0 and memory_mib <= 0:
        return max_count
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(User.id).where(User.id == principal.user_id).with_for_update())
    limits = limits_for(s, settings, principal.name, principal.group)
    used = usage_of(s, principal.user_id)
    allowed = max_count
    if limits.instances is not None and resizing is None:
        allowed = min(allowed, max(0, limits.instances - used.instances))
        if allowed < min_count:
            raise ServiceError(
                "InstanceLimitExceeded",
                f"Your quota allows running {limits.instances} instances; you have {used.instances} and asked for "
                f"{min_count} more. Terminate instances or ask the administrator for a larger quota.",
            )
    for name, limit, in_use, each, unit in (
        ("vCPU", limits.vcpus, used.vcpus, vcpus, "vCPUs"),
        ("memory", limits.memory_mib, used.memory_mib, memory_mib, "MiB of memory"),
    ):
        if limit is None or each <= 0:
            continue
        allowed = min(allowed, max(0, (limit - in_use) // each))
        if allowed < min_count:
            asked = (
                f"changing instance '{resizing}' to {instance_type} needs {each} more {unit}" if resizing is not None
                else f"{min_count} {instance_type} instance(s) need {min_count * each} {unit}"
            )
            raise ServiceError(
                "VcpuLimitExceeded",
                f"You have requested more {name} capacity than your quota allows: {asked}, you use {in_use} of "
                f"{limit}. Terminate {'other ' if resizing is not None else ''}instances, choose a smaller instance "
                "type or ask the administrator for a larger quota.",
            )
    return allowed


def address_allowance(s: Session, settings: Settings, principal: Principal) -> None:
    """Raise AddressLimitExceeded unless the caller may allocate one more elastic address.

    Runs inside AllocateAddress's write transaction; on PostgreSQL the user's row is locked first,
    so two concurrent allocations by one user cannot both pass the same quota."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(User.id).where(User.id == principal.user_id).with_for_update())
    limit = limits_for(s, settings, principal.name, principal.group).addresses
    if limit is None:
        return
    held = usage_of(s, principal.user_id).addresses
    if held >= limit:
        raise ServiceError(
            "AddressLimitExceeded",
            f"The maximum number of addresses has been reached: your quota allows {limit} elastic addresses and you "
            "hold " + str(held) + ". Release addresses you no longer need (ReleaseAddress) or ask the administrator "
            "for a larger quota.",
        )


class StorageQuotaRule:
    """The Cumulus storage quota as Cumulus is given it (storage.host.StorageQuota): the user's
    limit, the same folded into a query of Cumulus's own, and the error past it.

    Cumulus checks it twice: before it accepts a body (with the announced size, so nothing is
    stored when the answer is no; an overwrite counts as new bytes, erring on the side of the quota)
    and again, exactly and safely under concurrency, in the transaction that stores the object
    (storage/usage.py charge()).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def limit(self, conn: Connection, user_id: int) -> int | None:
        return storage_limit(conn, self.settings, user_id)

    def limit_columns(self, user_id: Any) -> tuple[Any, Any]:
        return storage_quota_columns(user_id)

    def effective_limit(self, user_value: int | None, group_value: int | None) -> int | None:
        return effective_storage_limit(self.settings, user_value, group_value)

    def exceeded(self, limit: int, used: int, extra_bytes: int) -> ServiceError:
        return storage_quota_error(limit, used, extra_bytes)


# --------------------------------------------------------------------------- administration

def resolve_target(s: Session, target: str) -> tuple[str, str]:
    """USER_OR_GROUP -> ("user"|"group", name). `user:NAME` and `group:NAME` say which explicitly."""
    kind, sep, name = target.partition(":")
    if sep and kind in ("user", "group"):
        if not name:
            raise QuotaError(f"{target!r} names no {kind}; write {kind}:NAME")
        if kind == "user" and s.scalar(select(User.id).where(User.name == name)) is None:
            raise QuotaError(f"no user named {name!r}; `ec2gw admin user list` shows the users")
        return kind, name
    is_user = s.scalar(select(User.id).where(User.name == target)) is not None
    is_group = s.scalar(select(User.id).where(User.group == target).limit(1)) is not None
    if is_user and is_group:
        raise QuotaError(f"{target!r} is both a user and a group; write user:{target} or group:{target}")
    if is_user:
        return "user", target
    if is_group:
        return "group", target
    raise QuotaError(
        f"no user or group named {target!r}; `ec2gw admin user list` shows users and their groups "
        f"(write group:{target} to set a quota for a group that has no members yet)"
    )


def parse_limit(text: str | None, what: str, scale: float = 1) -> int | None | str:
    """A CLI value: N (the limit, times scale), 'unlimited' (-1), 'default' (clear), None (keep)."""
    if text is None:
        return None
    word = text.strip().lower()
    if word in ("unlimited", "none"):
        return UNLIMITED
    if word == "default":
        return "default"
    try:
        value = float(word)
    except ValueError:
        raise QuotaError(f"--{what} takes a number, 'unlimited' or 'default', not {text!r}") from None
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise QuotaError(f"--{what} must be 0 or more (or 'unlimited'), not {text!r}")
    if scale == 1 and value != int(value):
        raise QuotaError(f"--{what} takes a whole number, not {text!r}")
    return int(value * scale)


def set_quota(s: Session, target: str, **changes: int | None | str) -> dict[str, Any]:
    """Apply changes (field -> value from parse_limit) to the quota of a user or group; returns it."""
    kind, name = resolve_target(s, target)
    row = s.get(Quota, (kind, name))
    if row is None:
        row = Quota(kind=kind, name=name)
        s.add(row)
    for f, value in changes.items():
        if f not in FIELDS:
            raise QuotaError(f"unknown quota {f!r}; quotas are {', '.join(FIELDS)}")
        if value is None:
            continue
        setattr(row, f, None if value == "default" else value)
    s.flush()
    return quota_dict(row)


def quota_dict(row: Quota) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": row.kind, "name": row.name}
    for f in FIELDS:
        value = getattr(row, f)
        out[f] = "default" if value is None else ("unlimited" if value == UNLIMITED else value)
    return out


def list_quotas(s: Session) -> list[dict[str, Any]]:
    return [quota_dict(q) for q in s.scalars(select(Quota).order_by(Quota.kind, Quota.name))]


def report(s: Session, settings: Settings, user_name: str, stored: StoredBytes | None = None) -> dict[str, Any]:
    """A user's effective limits next to their usage (for `ec2gw admin quota show`); `stored`
    counts their Cumulus bytes (storage.usage.total)."""
    user = s.scalar(select(User).where(User.name == user_name))
    if user is None:
        raise QuotaError(f"no user named {user_name!r}; `ec2gw admin user list` shows the users")
    limits = limits_for(s, settings, user.name, user.group)
    used = usage_of(s, user.id, stored)
    return {
        "user": user.name,
        "group": user.group,
        "limits": {k: ("unlimited" if v is None else v) for k, v in asdict(limits).items()},
        "usage": asdict(used),
    }


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"
