"""Leases: every instance ends at a time its owner chose, so forgotten instances go away.

What, as clients see it:
- At launch, the tag `lease:hours` (TagSpecifications, resource type instance) asks for a lease of
  that many hours from now; without it the lease is settings.lease_default_hours. More than
  settings.lease_max_hours is refused with InvalidParameterValue.
- Every instance shows its lease in DescribeInstances as the tag `lease:end`, an ISO 8601 UTC time
  (`2025-01-31T12:00:00Z`). The service computes that tag from the instance's lease; it cannot be
  set or deleted by clients.
- CreateTags `lease:hours=H` on a pending, running, stopping or stopped instance sets its lease to
  end H hours from now (shorter or longer), again at most settings.lease_max_hours from now. So
  a lease is never further away than the maximum, and an active user can keep renewing it.
- When the lease has ended, the reaper terminates the instance, whatever its state or termination
  protection, with StateReason Client.LeaseExpired.
Why compare-and-set: any number of service processes may run the reaper; the UPDATE only matches a
row that is still live and still has the lease the reaper read, so each instance is terminated
exactly once and an extension that lands first wins.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ec2gw.db.models import Instance
from ec2gw.errors import ServiceError

if TYPE_CHECKING:
    from ec2gw.config import Settings
    from ec2gw.db.session import Database

log = logging.getLogger("ec2gw.leases")

HOURS_TAG = "lease:hours"
END_TAG = "lease:end"
REASON_CODE = "Client.LeaseExpired"
#: states an instance can no longer be reaped from
_DONE = ("terminated", "shutting-down")

#: id(worker) -> monotonic time of its next reaper pass
_next_pass: dict[int, float] = {}


def format_end(when: datetime) -> str:
    """The lease end as the `lease:end` tag shows it: ISO 8601, UTC, whole seconds."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_hours(value: str, settings: Settings) -> float:
    """The hours a `lease:hours` tag asks for, or InvalidParameterValue saying what is allowed."""
    try:
        hours = float(value)
    except (TypeError, ValueError):
        hours = math.nan
    if not math.isfinite(hours) or hours <= 0:
        raise ServiceError(
            "InvalidParameterValue",
            f"Value ({value}) for tag {HOURS_TAG} is invalid: give the lease in hours, a number above 0 and at most "
            f"{settings.lease_max_hours:g}.",
        )
    if hours > settings.lease_max_hours:
        raise ServiceError(
            "InvalidParameterValue",
            f"Value ({value}) for tag {HOURS_TAG} is invalid: the maximum lease is {settings.lease_max_hours:g} hours "
            f"({settings.lease_max_hours / 24:g} days). Ask for a shorter lease and extend it later with CreateTags.",
        )
    return hours


def _refuse_end_tag(tags: list[tuple[str, str]]) -> None:
    if any(key == END_TAG for key, _ in tags):
        raise ServiceError(
            "InvalidParameterValue",
            f"The tag {END_TAG} is kept by the service and shows when the lease ends; set {HOURS_TAG} instead.",
        )


def launch_hours(settings: Settings, tags: list[tuple[str, str]]) -> float:
    """The lease a RunInstances request asks for through its instance tags (the default without one)."""
    _refuse_end_tag(tags)
    asked = [value for key, value in tags if key == HOURS_TAG]
    return parse_hours(asked[-1], settings) if asked else settings.lease_default_hours


def with_end_tag(inst: Instance, tags: list[dict[str, str]]) -> list[dict[str, str]]:
    """The instance's tags plus `lease:end` (DescribeInstances, RunInstances)."""
    if inst.lease_end is None:
        return tags
    end = {"Key": END_TAG, "Value": format_end(inst.lease_end)}
    if not tags:
        return [end]
    return sorted([*tags, end], key=lambda t: t["Key"])


def on_create_tags(s: Session, settings: Settings, resource_ids: list[str], tags: list[tuple[str, str]]) -> None:
    """CreateTags: `lease:hours` on instances renews their leases; `lease:end` is refused.

    Runs after the resources were checked and before any tag is written, in the same transaction,
    so a refused renewal changes nothing.
    """
    _refuse_end_tag(tags)
    asked = [value for key, value in tags if key == HOURS_TAG]
    instance_ids = [r for r in resource_ids if r.startswith("i-")]
    if not asked or not instance_ids:
        return
    hours = parse_hours(asked[-1], settings)
    end = datetime.now(UTC) + timedelta(hours=hours)
    for iid in instance_ids:
        res = s.execute(
            update(Instance).where(Instance.id == iid, Instance.state.not_in(_DONE)).values(lease_end=end)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            state = s.scalar(select(Instance.state).where(Instance.id == iid))
            raise ServiceError(
                "IncorrectInstanceState",
                f"The lease of instance '{iid}' cannot be changed: it is {state}. Launch a new instance instead.",
            )


def expire_leases(db: Database, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Terminate instances whose lease has ended; returns the ids this call terminated.

    Each row is taken with a compare-and-set UPDATE (still live, same lease end), so concurrent
    reapers in several processes never terminate one instance twice, and a renewal that commits
    first keeps its instance.
    """
    now = now or datetime.now(UTC)
    reaped: list[str] = []
    with db.session(write=True) as s:
        due = list(
            s.execute(
                select(Instance.id, Instance.lease_end)
                .where(Instance.lease_end.is_not(None), Instance.lease_end < now, Instance.state.not_in(_DONE))
                .order_by(Instance.lease_end)
                .limit(limit)
            )
        )
        for iid, end in due:
            if end is None:  # excluded by the query; keeps the type checker sure
                continue
            res = s.execute(
                update(Instance)
                .where(Instance.id == iid, Instance.lease_end == end, Instance.state.not_in(_DONE))
                .values(
                    state="shutting-down", task="terminate", reboot_pending=False,
                    state_transition_reason=f"Lease expired ({now.strftime('%Y-%m-%d %H:%M:%S')} GMT)",
                    state_reason_code=REASON_CODE,
                    state_reason_message=(
                        f"{REASON_CODE}: the instance's lease ended at {format_end(end)}; launch with a longer "
                        f"{HOURS_TAG} or renew it with CreateTags {HOURS_TAG} before it ends"
                    ),
                )
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                reaped.append(iid)
    if reaped:
        log.info("lease expired, terminating: %s", ", ".join(reaped))
    return reaped


def reap_expired(worker: Any) -> list[str]:
    """The compute worker's hook: expire leases every settings.lease_check_seconds."""
    now = time.monotonic()
    if now < _next_pass.get(id(worker), 0.0):
        return []
    _next_pass[id(worker)] = now + max(0.1, float(worker.settings.lease_check_seconds))
    return expire_leases(worker.db)
