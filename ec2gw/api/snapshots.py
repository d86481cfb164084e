"""CreateSnapshot, DescribeSnapshots, DeleteSnapshot (attributes live in snapshot_attributes).

A user sees the snapshots they own, public ones, and those shared with them through
createVolumePermission; only the owner changes or deletes one. The request only records the
snapshot (state pending); the compute worker copies the volume into Cumulus
(compute/snapshot_tasks.py) and completes it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, exists, false, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.api.instance_query import time_condition
from ec2gw.api.owners import ACCOUNT_RE, owners_condition
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import build_conditions, match_any
from ec2gw.aws.pagination import check_max_results, scope_digest
from ec2gw.aws.serializer import format_timestamp
from ec2gw.compute.snapshot_models import ImageBlockDevice, Snapshot, SnapshotPermission
from ec2gw.db.models import Tag, User
from ec2gw.db.volume_models import Volume
from ec2gw.errors import ServiceError, invalid_value
from ec2gw.tagging import set_tags, tags_for, tags_from_specifications

# --- rules shared with CreateVolume --------------------------------------------------------------

def check_snapshot_id(snapshot_id: str | None) -> str:
    if not snapshot_id:
        raise ServiceError("MissingParameter", "The request must contain the parameter SnapshotId.")
    return ids.check_id(snapshot_id, "snap")


def not_found(snapshot_ids: list[str]) -> ServiceError:
    if len(snapshot_ids) == 1:
        return ServiceError("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_ids[0]}' does not exist.")
    return ServiceError("InvalidSnapshot.NotFound", f"The snapshots '{', '.join(snapshot_ids)}' do not exist.")


def shared_with(user_id: int) -> ColumnElement[bool]:
    return exists(select(SnapshotPermission.snapshot_id).where(
        SnapshotPermission.snapshot_id == Snapshot.id, SnapshotPermission.user_id == user_id))


def visible(user_id: int) -> ColumnElement[bool]:
    """Snapshots a user sees, and may make volumes from: own, public, shared with them."""
    return or_(Snapshot.owner_id == user_id, Snapshot.is_public.is_(True), shared_with(user_id))


def find_visible_snapshot(s: Session, user_id: int, snapshot_id: str, *, for_update: bool = False) -> Snapshot:
    check_snapshot_id(snapshot_id)
    q = select(Snapshot).where(Snapshot.id == snapshot_id, visible(user_id))
    row = s.scalar(q.with_for_update() if for_update else q)
    if row is None:
        raise not_found([snapshot_id])
    return row


def find_restorable_snapshot(s: Session, user_id: int, snapshot_id: str) -> Snapshot:
    """The snapshot ``user_id`` may make a volume from (CreateVolume SnapshotId): visible to them
    and completed. InvalidSnapshot.NotFound when not visible; IncorrectState while pending or failed."""
    row = find_visible_snapshot(s, user_id, snapshot_id)
    if row.state != "completed":
        raise ServiceError("IncorrectState", f"Snapshot {row.id} is {row.state}; a volume can be made only from a "
                                             "completed snapshot (wait with the snapshot_completed waiter).")
    return row


def require_owner(user_id: int, row: Snapshot) -> None:
    """Only a snapshot's owner may change or delete it; others get EC2's AuthFailure."""
    if row.owner_id != user_id:
        raise ServiceError("AuthFailure", f"Not authorized for snapshot:{row.id}. Only the account that owns a "
                                          "snapshot can change or delete it.")


# --- views ---------------------------------------------------------------------------------------

def snapshot_item(row: Snapshot, owner_account: str, tags: list[dict[str, str]]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "SnapshotId": row.id,
        "VolumeId": row.volume_id,
        "State": row.state,
        "StartTime": format_timestamp(row.start_time),
        "Progress": f"{row.progress}%",
        "OwnerId": owner_account,
        "Description": row.description,
        "VolumeSize": row.volume_size,
        "Encrypted": False,
        "StorageTier": "standard",
        "Tags": tags,
    }
    if row.state_message:
        item["StateMessage"] = row.state_message
    return item


# --- operations ----------------------------------------------------------------------------------

@operation("CreateSnapshot")
def create_snapshot(
    ctx: RequestContext, volume_id: str, description: str | None = None, tag_specifications: list[dict[str, Any]] | None = None,
    outpost_arn: str | None = None, location: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    ids.check_id(volume_id, "vol")
    if description is not None and len(description) > 255:
        raise invalid_value("Description", description[:40] + "...", "Descriptions are at most 255 characters.")
    if outpost_arn:
        raise ServiceError("InvalidParameterValue", "There are no Outposts here; leave OutpostArn out.")
    if location not in (None, "regional"):
        raise invalid_value("Location", location, "Snapshots are stored in the region (Cumulus): use regional.")
    tags = tags_from_specifications(tag_specifications, "snapshot")
    with ctx.db.session(write=True) as s:
        vol = s.scalar(select(Volume).where(Volume.id == volume_id, Volume.owner_id == ctx.user_id,
                                            Volume.state != "deleted"))
        if vol is None:
            raise ServiceError("InvalidVolume.NotFound", f"The volume '{volume_id}' does not exist.")
        if vol.state in ("creating", "deleting", "error"):
            raise ServiceError("IncorrectState", f"Volume {vol.id} is {vol.state}; snapshots are taken of available "
                                                 "or in-use volumes.")
        ctx.check_dry_run(dry_run)
        row = Snapshot(id=ids.new_id("snap"), owner_id=ctx.user_id, volume_id=vol.id, volume_size=vol.size_gib,
                       description=description or "", state="pending", progress=0)
        s.add(row)
        s.flush()
        if tags:
            set_tags(s, ctx.user_id, row.id, tags)
        account = s.scalar(select(User.account_id).where(User.id == ctx.user_id)) or ""
        return snapshot_item(row, account, [{"Key": k, "Value": v} for k, v in tags])


def _percent(values: list[str]) -> ColumnElement[bool]:
    wanted = []
    for v in values:
        try:
            wanted.append(int(v.rstrip("%")))
        except ValueError:
            raise ServiceError("InvalidParameterValue", f"The filter progress takes percentages like 100%, not '{v}'.") from None
    return Snapshot.progress.in_(wanted)


def _volume_size(values: list[str]) -> ColumnElement[bool]:
    if not all(v.isdigit() for v in values):
        raise ServiceError("InvalidParameterValue", "The filter volume-size takes sizes in GiB, like 8.")
    return Snapshot.volume_size.in_([int(v) for v in values])


def _constant(value: str) -> Any:
    return lambda values: true() if value in values else false()


FILTERS: dict[str, Any] = {
    "snapshot-id": Snapshot.id,
    "volume-id": Snapshot.volume_id,
    "status": Snapshot.state,
    "description": Snapshot.description,
    "owner-id": lambda values: Snapshot.owner_id.in_(select(User.id).where(match_any(User.account_id, values))),
    "owner-alias": lambda values: false(),
    "progress": _percent,
    "start-time": lambda values: time_condition(Snapshot.start_time, values),
    "volume-size": _volume_size,
    "encrypted": _constant("false"),
    "storage-tier": _constant("standard"),
}


def restorable_condition(ctx: RequestContext, users: list[str]) -> ColumnElement[bool]:
    """all: public snapshots; self (or the caller's account): those the caller may make volumes
    from; another account: those that account may make volumes from."""
    conds: list[ColumnElement[bool]] = []
    for u in users:
        if u == "all":
            conds.append(Snapshot.is_public.is_(True))
        elif u == "self" or u == ctx.principal.account_id:
            conds.append(visible(ctx.user_id))
        elif ACCOUNT_RE.fullmatch(u):
            other = select(User.id).where(User.account_id == u).scalar_subquery()
            # whom a snapshot is shared with is its owner's to know: others learn only what is
            # plain (the other account's own snapshots, public ones)
            conds.append(or_(Snapshot.owner_id == other, Snapshot.is_public.is_(True),
                             and_(Snapshot.owner_id == ctx.user_id, exists(select(SnapshotPermission.snapshot_id).where(
                                 SnapshotPermission.snapshot_id == Snapshot.id, SnapshotPermission.user_id == other)))))
        else:
            raise ServiceError("InvalidUserID.Malformed",
                               f'Invalid user id: "{u}". RestorableBy takes 12-digit account ids, self or all.')
    return or_(*conds)


@operation("DescribeSnapshots")
def describe_snapshots(
    ctx: RequestContext, snapshot_ids: list[str] | None = None, owner_ids: list[str] | None = None,
    restorable_by_user_ids: list[str] | None = None, filters: Any = None, max_results: int | None = None,
    next_token: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted: list[str] = []
    for sid in snapshot_ids or []:
        check_snapshot_id(sid)
        if sid not in wanted:
            wanted.append(sid)
    if max_results is not None and wanted:
        raise ServiceError("InvalidParameterCombination", "Give either SnapshotId.N or MaxResults, not both.")
    check_max_results(max_results, 5, 1000)
    conds = build_conditions(filters, FILTERS, tag_model=Tag, resource_column=Snapshot.id)
    if owner_ids:
        conds.append(owners_condition(ctx, Snapshot.owner_id, owner_ids,
                                      "Owners are 12-digit account ids, self or amazon."))
    if restorable_by_user_ids:
        conds.append(restorable_condition(ctx, restorable_by_user_ids))
    ctx.check_dry_run(dry_run)
    matched = and_(true(), *conds)
    q = (select(Snapshot, User.account_id, matched.label("matched"))
         .join(User, User.id == Snapshot.owner_id).where(visible(ctx.user_id)))
    q = q.where(Snapshot.id.in_(wanted)) if wanted else q.where(matched)
    scope = scope_digest("snapshots", ctx.user_id, wanted, owner_ids, restorable_by_user_ids, filters)
    if next_token:
        q = q.where(Snapshot.id > ctx.tokens.decode(next_token, scope))
    q = q.order_by(Snapshot.id)
    if max_results:
        q = q.limit(max_results + 1)
    with ctx.db.session() as s:
        found = list(s.execute(q))
        if wanted:
            missing = [i for i in wanted if i not in {row.id for row, _, _ in found}]
            if missing:
                raise not_found(missing)
        rows = [(row, account) for row, account, ok in found if ok]
        out: dict[str, Any] = {}
        if max_results and len(rows) > max_results:
            rows = rows[:max_results]
            out["NextToken"] = ctx.tokens.encode(rows[-1][0].id, scope)
        tags = tags_for(s, [row.id for row, _ in rows if row.owner_id == ctx.user_id])  # tags are the owner's
    out["Snapshots"] = [snapshot_item(row, account, tags.get(row.id, [])) for row, account in rows]
    return out


@operation("DeleteSnapshot")
def delete_snapshot(ctx: RequestContext, snapshot_id: str, dry_run: bool | None = None) -> dict[str, Any]:
    check_snapshot_id(snapshot_id)
    with ctx.db.session(write=True) as s:
        row = find_visible_snapshot(s, ctx.user_id, snapshot_id, for_update=True)
        require_owner(ctx.user_id, row)
        image = s.scalar(select(ImageBlockDevice.image_id).where(ImageBlockDevice.snapshot_id == row.id).limit(1))
        if image is not None:
            raise ServiceError("InvalidSnapshot.InUse", f"The snapshot {row.id} is currently in use by {image}; "
                                                        "deregister the image first.")
        ctx.check_dry_run(dry_run)
        location = row.location
        s.delete(row)
        s.execute(delete(Tag).where(Tag.resource_id == row.id))
    if location and ctx.app.cumulus is not None:
        bucket, _, key = location.partition("/")
        ctx.app.cumulus.delete_object(bucket, key)
    return {}


from ec2gw.api import snapshot_attributes  # noqa: E402,F401  (registers the attribute operations)
