"""DescribeSnapshotAttribute, ModifySnapshotAttribute, ResetSnapshotAttribute.

createVolumePermission is who may make volumes from a snapshot besides its owner: single users
(by account id, UserId) and everyone (Group all). Only the owner reads or changes it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from ec2gw.api.context import RequestContext
from ec2gw.api.snapshots import check_snapshot_id, find_visible_snapshot, require_owner
from ec2gw.aws.dispatch import operation
from ec2gw.compute.snapshot_models import SnapshotPermission
from ec2gw.db.models import User
from ec2gw.errors import ServiceError, invalid_value

ATTRIBUTES = ("createVolumePermission", "productCodes")


def _check_attribute(attribute: str | None) -> str:
    if not attribute:
        raise ServiceError("MissingParameter", "The request must contain the parameter Attribute (createVolumePermission).")
    if attribute not in ATTRIBUTES:
        raise invalid_value("Attribute", attribute, f"Valid snapshot attributes: {', '.join(ATTRIBUTES)}.")
    return attribute


@operation("DescribeSnapshotAttribute")
def describe_snapshot_attribute(ctx: RequestContext, attribute: str, snapshot_id: str,
                                dry_run: bool | None = None) -> dict[str, Any]:
    check_snapshot_id(snapshot_id)
    _check_attribute(attribute)
    ctx.check_dry_run(dry_run)
    out: dict[str, Any] = {"SnapshotId": snapshot_id}
    with ctx.db.session() as s:
        row = find_visible_snapshot(s, ctx.user_id, snapshot_id)
        require_owner(ctx.user_id, row)
        if attribute == "productCodes":
            out["ProductCodes"] = []
            return out
        perms: list[dict[str, str]] = [{"Group": "all"}] if row.is_public else []
        accounts = s.scalars(select(User.account_id).join(SnapshotPermission, SnapshotPermission.user_id == User.id)
                             .where(SnapshotPermission.snapshot_id == row.id).order_by(User.account_id))
        perms += [{"UserId": a} for a in accounts]
    out["CreateVolumePermissions"] = perms
    return out


def _entries(entries: list[dict[str, Any]]) -> tuple[bool, list[str]]:
    """(Group all named, account ids named) of a list of CreateVolumePermission entries."""
    group, users = False, []
    for e in entries:
        if e.get("Group") is not None:
            if e["Group"] != "all":
                raise invalid_value("Group", e["Group"], "The only createVolumePermission group is 'all'.")
            group = True
        if e.get("UserId") is not None:
            users.append(str(e["UserId"]))
        if e.get("Group") is None and e.get("UserId") is None:
            raise ServiceError("InvalidParameterValue", "Each createVolumePermission entry needs a UserId or Group=all.")
    return group, users


def _user_ids(s: Any, accounts: list[str], owner_id: int) -> list[int]:
    out = []
    for account in dict.fromkeys(accounts):
        uid = s.scalar(select(User.id).where(User.account_id == account))
        if uid is None:
            raise ServiceError("InvalidUserID.Malformed" if not (account.isdigit() and len(account) == 12)
                               else "InvalidParameterValue",
                               f"No account {account!r} exists here; give the 12-digit account id of a user.")
        if uid != owner_id:
            out.append(uid)
    return out


@operation("ModifySnapshotAttribute")
def modify_snapshot_attribute(
    ctx: RequestContext, snapshot_id: str, attribute: str | None = None,
    create_volume_permission: dict[str, Any] | None = None, group_names: list[str] | None = None,
    operation_type: str | None = None, user_ids: list[str] | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    check_snapshot_id(snapshot_id)
    if attribute is not None and attribute != "createVolumePermission":
        raise invalid_value("Attribute", attribute, "Only createVolumePermission can be modified.")
    add = list((create_volume_permission or {}).get("Add") or [])
    remove = list((create_volume_permission or {}).get("Remove") or [])
    legacy = [{"Group": g} for g in group_names or []] + [{"UserId": u} for u in user_ids or []]
    if legacy:
        if operation_type not in ("add", "remove"):
            raise ServiceError("MissingParameter", "Give OperationType add or remove together with UserId.N or UserGroup.N.")
        (add if operation_type == "add" else remove).extend(legacy)
    if not (add or remove):
        raise ServiceError("MissingParameter", "Nothing to modify: give CreateVolumePermission.Add or .Remove "
                                               "(UserId=<account id> or Group=all).")
    add_all, add_users = _entries(add)
    remove_all, remove_users = _entries(remove)
    with ctx.db.session(write=True) as s:
        row = find_visible_snapshot(s, ctx.user_id, snapshot_id, for_update=True)
        require_owner(ctx.user_id, row)
        adding = _user_ids(s, add_users, row.owner_id)
        removing = _user_ids(s, remove_users, row.owner_id)
        ctx.check_dry_run(dry_run)
        if add_all:
            row.is_public = True
        if remove_all:
            row.is_public = False
        have = set(s.scalars(select(SnapshotPermission.user_id).where(SnapshotPermission.snapshot_id == row.id)))
        for uid in adding:
            if uid not in have:
                s.add(SnapshotPermission(snapshot_id=row.id, user_id=uid))
                have.add(uid)
        if removing:
            s.execute(delete(SnapshotPermission).where(SnapshotPermission.snapshot_id == row.id,
                                                       SnapshotPermission.user_id.in_(removing)))
    return {}


@operation("ResetSnapshotAttribute")
def reset_snapshot_attribute(ctx: RequestContext, attribute: str, snapshot_id: str,
                             dry_run: bool | None = None) -> dict[str, Any]:
    check_snapshot_id(snapshot_id)
    if _check_attribute(attribute) != "createVolumePermission":
        raise invalid_value("Attribute", attribute, "Only createVolumePermission can be reset.")
    with ctx.db.session(write=True) as s:
        row = find_visible_snapshot(s, ctx.user_id, snapshot_id, for_update=True)
        require_owner(ctx.user_id, row)
        ctx.check_dry_run(dry_run)
        row.is_public = False
        s.execute(delete(SnapshotPermission).where(SnapshotPermission.snapshot_id == row.id))
    return {}
