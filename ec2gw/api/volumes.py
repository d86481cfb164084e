"""EBS volumes: CreateVolume, DescribeVolumes, DeleteVolume, ModifyVolume, DescribeVolumesModifications,
DescribeVolumeStatus, DescribeVolumeAttribute, ModifyVolumeAttribute (AttachVolume and DetachVolume:
volume_attachments.py).

The API records what is asked (ec2gw/db/volume_models.py) and the compute worker does it on the node
(compute/volume_tasks.py), so a new volume is ``creating`` until its qcow2 exists on a node of its
zone, as EC2 shows it. A caller sees only their own volumes; another user's volume id is
InvalidVolume.NotFound, exactly as an id that does not exist.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, and_, false, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.api.snapshots import find_restorable_snapshot
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import Condition, build_conditions, filter_items
from ec2gw.aws.pagination import check_max_results, scope_digest
from ec2gw.compute import volume_placement
from ec2gw.db.models import Tag
from ec2gw.db.volume_models import Volume
from ec2gw.errors import ServiceError, invalid_combination, invalid_value, missing_parameter
from ec2gw.quotas import volume_allowance
from ec2gw.tagging import set_tags, tags_for, tags_from_specifications

#: volume type -> (smallest, largest) size in GiB, as EC2 allows them
SIZES = {"gp2": (1, 16384), "gp3": (1, 16384), "standard": (1, 1024), "io1": (4, 16384), "io2": (4, 16384)}
TYPES = ("gp2", "gp3", "standard", "io1")


# --------------------------------------------------------------------------- shared helpers


def not_found(volume_id: str) -> ServiceError:
    return ServiceError("InvalidVolume.NotFound", f"The volume '{volume_id}' does not exist.")


def check_volume_ids(volume_ids: list[str] | None) -> list[str]:
    out: list[str] = []
    for vid in volume_ids or []:
        ids.check_id(vid, "vol")
        if vid not in out:
            out.append(vid)
    return out


def _cutoff(ctx: RequestContext) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=ctx.settings.terminated_visible_seconds)


def visible(ctx: RequestContext) -> Condition:
    """The caller's volumes; deleted ones only while they are still listed."""
    return and_(Volume.owner_id == ctx.user_id,
                or_(Volume.state != "deleted", Volume.deleted_at > _cutoff(ctx)))


def owned_volume(s: Session, ctx: RequestContext, volume_id: str | None, *, for_update: bool = False) -> Volume:
    """The caller's live (not deleted) volume ``volume_id``; MissingParameter, .Malformed or .NotFound."""
    if not volume_id:
        raise missing_parameter("VolumeId")
    ids.check_id(volume_id, "vol")
    q = select(Volume).where(Volume.id == volume_id, Volume.owner_id == ctx.user_id, Volume.state != "deleted")
    row = s.scalar(q.with_for_update() if for_update else q)
    if row is None:
        raise not_found(volume_id)
    return row


def default_iops(volume_type: str, size_gib: int, iops: int | None) -> int | None:
    if volume_type == "gp2":
        return min(16000, max(100, 3 * size_gib))
    if volume_type == "gp3":
        return iops or 3000
    if volume_type in ("io1", "io2"):
        return iops
    return None


def attached_to(s: Session, instance_ids: list[str]) -> dict[str, list[Volume]]:
    """instance id -> the volumes attached to it (attaching, attached or detaching), its root included."""
    out: dict[str, list[Volume]] = {}
    for i in range(0, len(instance_ids), 500):
        for v in s.scalars(select(Volume).where(Volume.instance_id.in_(instance_ids[i:i + 500]),
                                                Volume.attach_state.is_not(None))):
            out.setdefault(str(v.instance_id), []).append(v)
    return out


def attachment_view(v: Volume) -> dict[str, Any]:
    return {"AttachTime": v.attach_time, "Device": v.device, "InstanceId": v.instance_id, "State": v.attach_state,
            "VolumeId": v.id, "DeleteOnTermination": v.delete_on_termination}


def volume_view(v: Volume, tags: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "Attachments": [attachment_view(v)] if v.instance_id and v.attach_state else [],
        "AvailabilityZone": v.availability_zone, "CreateTime": v.created_at, "Encrypted": v.encrypted,
        "Size": v.size_gib, "SnapshotId": v.snapshot_id or "", "State": v.state, "VolumeId": v.id,
        "Iops": default_iops(v.volume_type, v.size_gib, v.iops), "Tags": tags or None, "VolumeType": v.volume_type,
        "MultiAttachEnabled": False, "Throughput": (v.throughput or 125) if v.volume_type == "gp3" else None,
    }


def _int_values(name: str, values: list[str]) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise invalid_value(f"Filter {name}", values[0], "Give whole numbers.") from None


def _bool_values(name: str, values: list[str]) -> list[bool]:
    out = []
    for v in values:
        if v.lower() not in ("true", "false"):
            raise invalid_value(f"Filter {name}", v, "Give true or false.")
        out.append(v.lower() == "true")
    return out


def _time_range(name: str, column: Any) -> Callable[[list[str]], Condition]:
    """Times matched to the precision given (2026-12-06T16:40:00Z: that second; .123Z: that millisecond)."""
    def cond(values: list[str]) -> Condition:
        parts = []
        for v in values:
            try:
                when = datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                raise invalid_value(f"Filter {name}", v, "Give a time like 2026-12-06T16:40:00.000Z.") from None
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
            step = timedelta(milliseconds=1) if "." in v else timedelta(seconds=1)
            parts.append(and_(column >= when, column < when + step))
        return or_(*parts)
    return cond


FILTERS: dict[str, Any] = {
    "volume-id": Volume.id,
    "status": Volume.state,
    "availability-zone": Volume.availability_zone,
    "volume-type": Volume.volume_type,
    "snapshot-id": Volume.snapshot_id,
    "attachment.instance-id": Volume.instance_id,
    "attachment.device": Volume.device,
    "attachment.status": Volume.attach_state,
    "size": lambda values: Volume.size_gib.in_(_int_values("size", values)),
    "encrypted": lambda values: Volume.encrypted.in_(_bool_values("encrypted", values)),
    "multi-attach-enabled": lambda values: true() if False in _bool_values("multi-attach-enabled", values) else false(),
    "attachment.delete-on-termination": lambda values: and_(
        Volume.instance_id.is_not(None),
        Volume.delete_on_termination.in_(_bool_values("attachment.delete-on-termination", values))),
    "create-time": _time_range("create-time", Volume.created_at),
    "attachment.attach-time": _time_range("attachment.attach-time", Volume.attach_time),
}


def _page(ctx: RequestContext, rows: list[Any], key: Callable[[Any], str], max_results: int | None,
          scope: str) -> tuple[list[Any], str | None]:
    if max_results and len(rows) > max_results:
        rows = rows[:max_results]
        return rows, ctx.tokens.encode(key(rows[-1]), scope)
    return rows, None


#: a query over volumes (Select[Volume], Select[Volume, bool], ...)
_Q = TypeVar("_Q", bound="Select[*tuple[Any, ...]]")


def _listed_ids(volume_ids: list[str] | None, max_results: int | None) -> list[str]:
    """The VolumeId.N asked for, checked; MaxResults pages over filters and cannot go with them."""
    wanted = check_volume_ids(volume_ids)
    if max_results is not None and wanted:
        raise invalid_combination("MaxResults cannot be combined with VolumeId; page over filters instead.")
    return wanted


def _narrowed(q: _Q, ctx: RequestContext, wanted: list[str], next_token: str | None, scope: str) -> _Q:
    """`q` (over volumes, ordered by id) kept to the volumes asked for, if any, and past NextToken, if given."""
    if wanted:
        q = q.where(Volume.id.in_(wanted))
    if next_token:
        q = q.where(Volume.id > ctx.tokens.decode(next_token, scope))
    return q


def _all_found(wanted: list[str], found: set[str]) -> None:
    missing = [v for v in wanted if v not in found]
    if missing:
        raise not_found(missing[0])


def _answer(member: str, items: list[Any], token: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {member: items}
    if token:
        out["NextToken"] = token
    return out


# --------------------------------------------------------------------------- CreateVolume


def snapshot_for_volume(s: Session, ctx: RequestContext, snapshot_id: str) -> int:
    """The size in GiB of the caller's (or a shared, or a public) completed snapshot to make a volume
    from (ec2gw/api/snapshots.py); the compute worker fills the volume with the snapshot's bytes."""
    return find_restorable_snapshot(s, ctx.user_id, snapshot_id).volume_size


def _check_type(volume_type: str, size: int, iops: int | None, throughput: int | None) -> None:
    if volume_type not in TYPES:
        raise invalid_value("VolumeType", volume_type, f"Valid volume types are {', '.join(TYPES)}.")
    low, high = SIZES[volume_type]
    if not low <= size <= high:
        raise invalid_value("Size", size, f"A {volume_type} volume must be {low} to {high} GiB.")
    if volume_type in ("io1",):
        if iops is None:
            raise missing_parameter("Iops")
        if not 100 <= iops <= min(64000, 50 * size):
            raise invalid_value("Iops", iops, f"An io1 volume of {size} GiB takes 100 to {min(64000, 50 * size)} IOPS "
                                              "(at most 50 per GiB).")
    elif volume_type == "gp3":
        if iops is not None and not 3000 <= iops <= 16000:
            raise invalid_value("Iops", iops, "A gp3 volume takes 3000 to 16000 IOPS.")
    elif iops is not None:
        raise invalid_combination(f"The parameter iops is not supported for {volume_type} volumes.")
    if throughput is not None and volume_type != "gp3":
        raise invalid_combination(f"The parameter throughput is not supported for {volume_type} volumes (only gp3).")
    if throughput is not None and not 125 <= throughput <= 1000:
        raise invalid_value("Throughput", throughput, "A gp3 volume takes 125 to 1000 MiB/s.")


@operation("CreateVolume")
def create_volume(
    ctx: RequestContext, availability_zone: str | None = None, availability_zone_id: str | None = None,
    encrypted: bool | None = None, iops: int | None = None, kms_key_id: str | None = None,
    outpost_arn: str | None = None, size: int | None = None, snapshot_id: str | None = None,
    volume_type: str | None = None, tag_specifications: list[dict[str, Any]] | None = None,
    multi_attach_enabled: bool | None = None, throughput: int | None = None, client_token: str | None = None,
    volume_initialization_rate: int | None = None, operator: dict[str, Any] | None = None,
    multi_availability_zone_configuration: Any = None, trim_on_attach: Any = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    if availability_zone_id and not availability_zone:
        availability_zone = availability_zone_id
    volume_type = volume_type or "gp2"
    if encrypted:
        raise invalid_value("Encrypted", "true", "Encrypted volumes are not offered here; leave Encrypted false.")
    if kms_key_id:
        raise invalid_combination("KmsKeyId needs an encrypted volume, and encrypted volumes are not offered here.")
    if multi_attach_enabled:
        raise invalid_value("MultiAttachEnabled", "true", "A volume attaches to one instance at a time here.")
    if outpost_arn:
        raise invalid_value("OutpostArn", outpost_arn, "There are no Outposts here.")
    if size is None and not snapshot_id:
        raise ServiceError("MissingParameter", "The request must contain the parameter size or snapshotId.")
    if client_token is not None and (len(client_token) > 64 or not client_token.isascii()):
        raise invalid_value("ClientToken", client_token[:20] + "...", "Client tokens are at most 64 ASCII characters.")
    tags = tags_from_specifications(tag_specifications, "volume")
    fingerprint = hashlib.sha256(json.dumps([availability_zone, size, snapshot_id, volume_type, iops, throughput, tags],
                                            default=str).encode()).hexdigest()
    with ctx.db.session(write=True) as s:
        if client_token:
            prior = s.scalar(select(Volume).where(Volume.owner_id == ctx.user_id, Volume.client_token == client_token))
            if prior is not None:
                if prior.request_hash != fingerprint:
                    raise ServiceError("IdempotentParameterMismatch",
                                       f"The client token '{client_token}' was used before with other parameters; "
                                       "use a new token for a new request.")
                ctx.check_dry_run(dry_run)
                return volume_view(prior, tags_for(s, [prior.id]).get(prior.id, []))
        zone = volume_placement.check_zone(s, ctx.settings, availability_zone)
        if snapshot_id:
            from_snapshot = snapshot_for_volume(s, ctx, snapshot_id)
            if size is None:
                size = from_snapshot
            elif size < from_snapshot:
                raise invalid_value("Size", size, f"The snapshot is {from_snapshot} GiB; the volume must be at least that.")
        assert size is not None
        _check_type(volume_type, size, iops, throughput)
        volume_allowance(s, ctx.settings, ctx.principal, 1, size)
        node = volume_placement.choose_node(s, ctx.settings, zone, size)
        ctx.check_dry_run(dry_run)
        row = Volume(id=ids.new_id("vol"), owner_id=ctx.user_id, availability_zone=zone, node_name=node, size_gib=size,
                     volume_type=volume_type, iops=iops, throughput=throughput, encrypted=False,
                     snapshot_id=snapshot_id, state="creating", task="create", client_token=client_token or None,
                     request_hash=fingerprint, status_message="")
        s.add(row)
        try:
            s.flush()
        except IntegrityError:
            raise ServiceError("IdempotentParameterMismatch",
                               f"The client token '{client_token}' is being used by a request in progress; "
                               "retry it in a moment.") from None
        if tags:
            set_tags(s, ctx.user_id, row.id, tags)
        return volume_view(row, [{"Key": k, "Value": v} for k, v in tags])


# --------------------------------------------------------------------------- DescribeVolumes


@operation("DescribeVolumes")
def describe_volumes(
    ctx: RequestContext, volume_ids: list[str] | None = None, filters: Any = None, next_token: str | None = None,
    max_results: int | None = None, include_managed_resources: bool | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted = _listed_ids(volume_ids, max_results)
    check_max_results(max_results, 5, 500)
    conds = build_conditions(filters, FILTERS, tag_model=Tag, resource_column=Volume.id)
    ctx.check_dry_run(dry_run)
    scope = scope_digest("volumes", ctx.user_id, filters)
    matched = and_(true(), *conds)
    q = _narrowed(select(Volume, matched.label("matched")).where(visible(ctx)).order_by(Volume.id),
                  ctx, wanted, next_token, scope)
    if not wanted:
        q = q.where(matched)
    if max_results:
        q = q.limit(max_results + 1)
    with ctx.db.session() as s:
        found = list(s.execute(q))
        _all_found(wanted, {r.id for r, _ in found})
        rows, token = _page(ctx, [r for r, ok in found if ok], lambda r: r.id, max_results, scope)
        tags = tags_for(s, [r.id for r in rows])
    return _answer("Volumes", [volume_view(r, tags.get(r.id, [])) for r in rows], token)


# --------------------------------------------------------------------------- DeleteVolume


@operation("DeleteVolume")
def delete_volume(ctx: RequestContext, volume_id: str, dry_run: bool | None = None) -> dict[str, Any]:
    with ctx.db.session(write=True) as s:
        row = owned_volume(s, ctx, volume_id, for_update=True)
        if row.instance_id or row.state == "in-use":
            raise ServiceError("VolumeInUse", f"Volume {row.id} is currently attached to {row.instance_id}; "
                                              "detach it (DetachVolume) first.")
        if row.state == "creating":
            raise ServiceError("IncorrectState", f"The volume '{row.id}' is still being created; delete it once it is "
                                                 "available.")
        if row.task is not None and row.state != "deleting":
            raise ServiceError("IncorrectState", f"The volume '{row.id}' is being modified; try again when that is done.")
        ctx.check_dry_run(dry_run)
        if row.state != "deleting":
            row.state, row.task = "deleting", "delete"
    return {}


# --------------------------------------------------------------------------- status and attributes


_FAILED = re.compile(r"^(\w+)(?: to (i-[0-9a-f]+))?[^:]* failed: ")


def _events(v: Volume) -> list[dict[str, Any]]:
    """The last task the node refused (a create, attach, detach, resize or delete that failed), as an
    event whose Description is the reason: how a failed attach (the volume is available again)
    says why."""
    found = _FAILED.match(v.status_message or "")
    if v.task is not None or not found:
        return []
    event = {"Description": v.status_message, "EventId": "evol-" + hashlib.sha256(
        f"{v.id}/{v.updated_at.isoformat()}".encode()).hexdigest()[:17], "EventType": f"{found.group(1)}-failed",
        "NotBefore": v.updated_at}
    if found.group(2):
        event["InstanceId"] = found.group(2)
    return [event]


def _status(v: Volume) -> dict[str, Any]:
    status = {"error": "impaired", "creating": "insufficient-data"}.get(v.state, "ok")
    io = "failed" if status == "impaired" else "passed"
    return {
        "Actions": [], "AvailabilityZone": v.availability_zone, "Events": _events(v), "VolumeId": v.id,
        "VolumeStatus": {"Details": [{"Name": "io-enabled", "Status": io},
                                     {"Name": "io-performance", "Status": "not-applicable"}], "Status": status},
        "AttachmentStatuses": [{"IoPerformance": "not-applicable", "InstanceId": v.instance_id}] if v.instance_id else [],
    }


_STATUS_FILTERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "volume-status.status": lambda it: it["VolumeStatus"]["Status"],
    "volume-status.details-name": lambda it: [d["Name"] for d in it["VolumeStatus"]["Details"]],
    "volume-status.details-status": lambda it: [d["Status"] for d in it["VolumeStatus"]["Details"]],
    "availability-zone": lambda it: it["AvailabilityZone"],
    "volume-id": lambda it: it["VolumeId"],
    "action.code": lambda it: [], "action.description": lambda it: [], "action.event-id": lambda it: [],
    "event.description": lambda it: [e["Description"] for e in it["Events"]],
    "event.event-id": lambda it: [e["EventId"] for e in it["Events"]],
    "event.event-type": lambda it: [e["EventType"] for e in it["Events"]],
    "event.not-after": lambda it: [], "event.not-before": lambda it: [e["NotBefore"].strftime("%Y-%m-%dT%H:%M:%S.000Z") for e in it["Events"]],
}


@operation("DescribeVolumeStatus")
def describe_volume_status(
    ctx: RequestContext, volume_ids: list[str] | None = None, filters: Any = None, next_token: str | None = None,
    max_results: int | None = None, include_managed_resources: bool | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted = _listed_ids(volume_ids, max_results)
    check_max_results(max_results, 5, 1000)
    filter_items([], filters, _STATUS_FILTERS)  # unknown filter names are refused even with no volume
    ctx.check_dry_run(dry_run)
    scope = scope_digest("volume-status", ctx.user_id, filters)
    q = _narrowed(select(Volume).where(Volume.owner_id == ctx.user_id, Volume.state != "deleted").order_by(Volume.id),
                  ctx, wanted, next_token, scope)
    with ctx.db.session() as s:
        rows = list(s.scalars(q))
    _all_found(wanted, {r.id for r in rows})
    items, token = _page(ctx, filter_items([_status(r) for r in rows], filters, _STATUS_FILTERS),
                         lambda it: it["VolumeId"], max_results, scope)
    return _answer("VolumeStatuses", items, token)


@operation("DescribeVolumeAttribute")
def describe_volume_attribute(ctx: RequestContext, attribute: str, volume_id: str,
                              dry_run: bool | None = None) -> dict[str, Any]:
    if attribute not in ("autoEnableIO", "productCodes"):
        raise invalid_value("Attribute", attribute, "Valid attributes are autoEnableIO and productCodes.")
    with ctx.db.session() as s:
        row = owned_volume(s, ctx, volume_id)
        ctx.check_dry_run(dry_run)
        if attribute == "autoEnableIO":
            return {"VolumeId": row.id, "AutoEnableIO": {"Value": row.auto_enable_io}}
        return {"VolumeId": row.id, "ProductCodes": []}


@operation("ModifyVolumeAttribute")
def modify_volume_attribute(ctx: RequestContext, volume_id: str, auto_enable_io: dict[str, Any] | None = None,
                            dry_run: bool | None = None) -> dict[str, Any]:
    if not auto_enable_io or auto_enable_io.get("Value") is None:
        raise missing_parameter("AutoEnableIO.Value")
    with ctx.db.session(write=True) as s:
        row = owned_volume(s, ctx, volume_id, for_update=True)
        ctx.check_dry_run(dry_run)
        row.auto_enable_io = bool(auto_enable_io["Value"])
    return {}


# --------------------------------------------------------------------------- ModifyVolume


def modification_view(v: Volume) -> dict[str, Any]:
    target_type = v.target_volume_type or v.volume_type
    return {
        "VolumeId": v.id, "ModificationState": v.modification_state,
        "StatusMessage": v.status_message if v.modification_state == "failed" else None,
        "TargetSize": v.target_size_gib or v.size_gib, "TargetIops": default_iops(target_type, v.target_size_gib or v.size_gib, v.iops),
        "TargetVolumeType": target_type, "TargetMultiAttachEnabled": False,
        "OriginalSize": v.original_size_gib, "OriginalIops": default_iops(v.original_volume_type or v.volume_type,
                                                                          v.original_size_gib or v.size_gib, v.iops),
        "OriginalVolumeType": v.original_volume_type, "OriginalMultiAttachEnabled": False,
        "Progress": 100 if v.modification_state in ("completed", "failed") else 0,
        "StartTime": v.modification_start, "EndTime": v.modification_end,
    }


@operation("ModifyVolume")
def modify_volume(
    ctx: RequestContext, volume_id: str, size: int | None = None, volume_type: str | None = None,
    iops: int | None = None, throughput: int | None = None, multi_attach_enabled: bool | None = None,
    multi_availability_zone_configuration: Any = None, trim_on_attach: Any = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    if multi_attach_enabled:
        raise invalid_value("MultiAttachEnabled", "true", "A volume attaches to one instance at a time here.")
    now = datetime.now(UTC)
    with ctx.db.session(write=True) as s:
        row = owned_volume(s, ctx, volume_id, for_update=True)
        if row.state not in ("available", "in-use"):
            raise ServiceError("IncorrectState", f"The volume '{row.id}' is {row.state}; it can be modified when it is "
                                                 "available or in use.")
        if row.modification_state == "modifying":
            raise ServiceError("IncorrectModificationState",
                               f"The volume '{row.id}' is being modified; wait until that modification is done.")
        new_size = row.size_gib if size is None else size
        new_type = volume_type or row.volume_type
        if new_size < row.size_gib:
            raise invalid_value("Size", size, f"New size cannot be smaller than existing size ({row.size_gib} GiB); "
                                              "volumes only grow.")
        _check_type(new_type, new_size, iops if iops is not None else (row.iops if new_type == row.volume_type and
                                                                        new_type in ("io1", "gp3") else None),
                    throughput)
        if new_size == row.size_gib and new_type == row.volume_type and iops in (None, row.iops) \
                and throughput in (None, row.throughput):
            raise invalid_value("Size", new_size, "The new configuration equals the current one; change the size or the "
                                                  "type.")
        grow = new_size - row.size_gib
        if grow and row.task is not None:
            raise ServiceError("IncorrectModificationState",
                               f"The volume '{row.id}' is being {row.task.rstrip('e')}ed; grow it once that is done.")
        # a root deleted with its instance (its overlay) is the instance's disk, not volume storage
        if grow and (row.storage == "pool" or not row.delete_on_termination):
            volume_allowance(s, ctx.settings, ctx.principal, 0, grow)
            if not volume_placement.room_to_grow(s, row.node_name, grow):
                raise ServiceError("InsufficientVolumeCapacity",
                                   f"The storage holding {row.id} has no room for {grow} GiB more; ask the "
                                   "administrator for storage (ec2gw admin node update --volume-gb).")
        ctx.check_dry_run(dry_run)
        row.original_size_gib, row.original_volume_type = row.size_gib, row.volume_type
        row.modification_start, row.status_message = now, ""
        row.volume_type, row.target_volume_type = new_type, new_type
        if iops is not None:
            row.iops = iops
        if throughput is not None:
            row.throughput = throughput
        if grow:
            row.target_size_gib, row.modification_state, row.task, row.modification_end = new_size, "modifying", "resize", None
        else:
            row.target_size_gib, row.modification_state, row.modification_end = new_size, "completed", now
        s.flush()
        return {"VolumeModification": modification_view(row)}


_MOD_FILTERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "volume-id": lambda it: it["VolumeId"],
    "modification-state": lambda it: it["ModificationState"],
    "target-size": lambda it: it["TargetSize"],
    "target-iops": lambda it: it["TargetIops"],
    "target-volume-type": lambda it: it["TargetVolumeType"],
    "original-size": lambda it: it["OriginalSize"],
    "original-iops": lambda it: it["OriginalIops"],
    "original-volume-type": lambda it: it["OriginalVolumeType"],
    "start-time": lambda it: it["StartTime"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
}


@operation("DescribeVolumesModifications")
def describe_volumes_modifications(
    ctx: RequestContext, volume_ids: list[str] | None = None, filters: Any = None, next_token: str | None = None,
    max_results: int | None = None, include_managed_resources: bool | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted = check_volume_ids(volume_ids)
    check_max_results(max_results, 5, 500)
    filter_items([], filters, _MOD_FILTERS)
    ctx.check_dry_run(dry_run)
    scope = scope_digest("volume-modifications", ctx.user_id, wanted, filters)
    q = _narrowed(select(Volume).where(Volume.owner_id == ctx.user_id, Volume.state != "deleted",
                                       Volume.modification_state.is_not(None)).order_by(Volume.id),
                  ctx, wanted, next_token, scope)
    with ctx.db.session() as s:
        rows = list(s.scalars(q))
        if not next_token:
            for vid in wanted:
                if vid not in {r.id for r in rows}:
                    exists = s.scalar(select(Volume.id).where(Volume.id == vid, Volume.owner_id == ctx.user_id,
                                                              Volume.state != "deleted"))
                    if exists is None:
                        raise not_found(vid)
                    raise ServiceError("InvalidVolumeModification.NotFound",
                                       f"Modification for volume '{vid}' does not exist.")
    items, token = _page(ctx, filter_items([modification_view(r) for r in rows], filters, _MOD_FILTERS),
                         lambda it: it["VolumeId"], max_results, scope)
    return _answer("VolumesModifications", items, token)
