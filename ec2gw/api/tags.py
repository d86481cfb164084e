"""CreateTags, DeleteTags, DescribeTags over every taggable resource.

A resource can be tagged only by its owner and only while it is visible to them: instances
(terminated ones while they are still listed), images of every kind, key pairs, security groups.
All resources of a request are checked before anything changes, so a request is all or nothing.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select
from sqlalchemy.orm import Session

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.api.instance_query import visible as instance_visible
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import build_conditions, match_any, normalize
from ec2gw.aws.pagination import check_max_results, scope_digest
from ec2gw.compute import leases
from ec2gw.compute.snapshot_models import Snapshot
from ec2gw.db.models import Image, Instance, KeyPair, SecurityGroup, Tag
from ec2gw.db.volume_models import Volume
from ec2gw.errors import ServiceError
from ec2gw.network.models import Address
from ec2gw.tagging import set_tags, validate_tags

#: id prefix -> (model, resource type, NotFound error code, how EC2 names the id in messages)
TAGGABLE: dict[str, tuple[Any, str, str, str]] = {
    "i": (Instance, "instance", "InvalidInstanceID.NotFound", "instance ID"),
    "ami": (Image, "image", "InvalidAMIID.NotFound", "image id"),
    "aki": (Image, "image", "InvalidAMIID.NotFound", "image id"),
    "ari": (Image, "image", "InvalidAMIID.NotFound", "image id"),
    "key": (KeyPair, "key-pair", "InvalidKeyPair.NotFound", "key pair"),
    "sg": (SecurityGroup, "security-group", "InvalidGroup.NotFound", "security group"),
    "eipalloc": (Address, "elastic-ip", "InvalidAllocationID.NotFound", "allocation ID"),
    "vol": (Volume, "volume", "InvalidVolume.NotFound", "volume"),
    "snap": (Snapshot, "snapshot", "InvalidSnapshot.NotFound", "snapshot"),
}

FILTERS = {"key": Tag.key, "value": Tag.value, "resource-id": Tag.resource_id, "resource-type": Tag.resource_type}


def check_resource_ids(resource_ids: list[str] | None) -> list[str]:
    """The distinct ids in request order; InvalidID for prefixes that name no taggable resource."""
    if not resource_ids:
        raise ServiceError("MissingParameter", "The request must contain the parameter ResourceId.1.")
    out: list[str] = []
    for rid in resource_ids:
        prefix = rid.split("-", 1)[0] if "-" in rid else ""
        if prefix not in TAGGABLE:
            raise ServiceError(
                "InvalidID",
                f"The ID '{rid}' is not valid. Taggable resources here are instances (i-), images (ami-, aki-, ari-), "
                "key pairs (key-), security groups (sg-), elastic addresses (eipalloc-), volumes (vol-) and snapshots (snap-).",
            )
        ids.check_id(rid, prefix)
        if rid not in out:
            out.append(rid)
    return out


def check_owned(s: Session, ctx: RequestContext, resource_ids: list[str]) -> dict[str, str]:
    """resource id -> resource type for resources the caller owns and sees; the family's NotFound otherwise."""
    by_model: dict[Any, list[str]] = {}
    for rid in resource_ids:
        by_model.setdefault(TAGGABLE[rid.split("-", 1)[0]][0], []).append(rid)
    found: set[str] = set()
    foreign_images: set[str] = set()
    for model, wanted in by_model.items():
        if model is Instance:
            q = select(Instance.id).where(instance_visible(ctx), Instance.id.in_(wanted))
            found.update(s.scalars(q))
        elif model is Image:
            for iid, owner, public in s.execute(select(Image.id, Image.owner_id, Image.is_public).where(Image.id.in_(wanted))):
                if owner == ctx.user_id:
                    found.add(iid)
                elif public:
                    foreign_images.add(iid)
        elif model is Address:
            found.update(s.scalars(select(Address.allocation_id).where(Address.owner_id == ctx.user_id,
                                                                       Address.allocation_id.in_(wanted))))
        else:
            found.update(s.scalars(select(model.id).where(model.owner_id == ctx.user_id, model.id.in_(wanted))))
    for rid in resource_ids:
        if rid in found:
            continue
        if rid in foreign_images:
            raise ServiceError(
                "UnauthorizedOperation",
                f"You are not authorized to tag the image {rid}: it is a public image owned by another account. "
                "Only an image's owner can tag it.",
                status=403,
            )
        _, _, code, noun = TAGGABLE[rid.split("-", 1)[0]]
        shown = f"[{rid}]" if noun == "image id" else rid
        raise ServiceError(code, f"The {noun} '{shown}' does not exist")
    return {rid: TAGGABLE[rid.split("-", 1)[0]][1] for rid in resource_ids}


@operation("CreateTags")
def create_tags(
    ctx: RequestContext, resources: list[str], tags: list[dict[str, Any]], dry_run: bool | None = None
) -> dict[str, Any]:
    wanted = check_resource_ids(resources)
    pairs = validate_tags(tags)
    if not pairs:
        raise ServiceError("MissingParameter", "The request must contain the parameter Tag.1.Key.")
    ctx.check_dry_run(dry_run)
    with ctx.db.session(write=True) as s:
        check_owned(s, ctx, wanted)
        leases.on_create_tags(s, ctx.settings, wanted, pairs)
        for rid in wanted:
            set_tags(s, ctx.user_id, rid, pairs)
    return {}


@operation("DeleteTags")
def delete_tags(
    ctx: RequestContext, resources: list[str], tags: list[dict[str, Any]] | None = None, dry_run: bool | None = None
) -> dict[str, Any]:
    """A Tag with a Value deletes the tag only if it has that value; without one, whatever its value."""
    wanted = check_resource_ids(resources)
    selectors: list[tuple[str, str | None]] = []
    for t in tags or []:
        key = t.get("Key")
        if not key:
            raise ServiceError("InvalidParameterValue", "Every Tag.N given to DeleteTags needs a Key.")
        selectors.append((key, t.get("Value")))
    ctx.check_dry_run(dry_run)
    with ctx.db.session(write=True) as s:
        check_owned(s, ctx, wanted)
        base = delete(Tag).where(Tag.resource_id.in_(wanted))
        if not selectors:
            s.execute(base)
        for key, value in selectors:
            cond = Tag.key == key if value is None else and_(Tag.key == key, Tag.value == value)
            s.execute(base.where(cond))
    return {}


def _tag_filter_conditions(filters: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """tag:KEY on DescribeTags selects the tags with that key whose value matches; the rest go on."""
    conds, rest = [], []
    for name, values in normalize(filters):
        if name.startswith("tag:") and len(name) > 4:
            conds.append(and_(Tag.key == name[4:], match_any(Tag.value, values)))
        else:
            rest.append({"Name": name, "Values": values})
    return conds, rest


@operation("DescribeTags")
def describe_tags(
    ctx: RequestContext, filters: Any = None, max_results: int | None = None, next_token: str | None = None,
    dry_run: bool | None = None,
) -> dict[str, Any]:
    check_max_results(max_results, 5, 1000)
    tag_conds, rest = _tag_filter_conditions(filters)
    conds = tag_conds + build_conditions(rest, FILTERS)
    ctx.check_dry_run(dry_run)
    # tags of instances that are no longer listed are not listed either
    live_instance = exists(select(Instance.id).where(Instance.id == Tag.resource_id, instance_visible(ctx)))
    q = select(Tag).where(Tag.owner_id == ctx.user_id, or_(Tag.resource_type != "instance", live_instance), *conds)
    scope = scope_digest("tags", ctx.user_id, filters)
    if next_token:
        try:
            last_rid, last_key = json.loads(ctx.tokens.decode(next_token, scope))
        except (ValueError, TypeError):
            raise ServiceError("InvalidParameterValue", "The NextToken is not valid; pass back the previous response's token.") from None
        q = q.where(or_(Tag.resource_id > last_rid, and_(Tag.resource_id == last_rid, Tag.key > last_key)))
    q = q.order_by(Tag.resource_id, Tag.key)
    if max_results:
        q = q.limit(max_results + 1)
    with ctx.db.session() as s:
        rows = list(s.scalars(q))
    out: dict[str, Any] = {}
    if max_results and len(rows) > max_results:
        rows = rows[:max_results]
        out["NextToken"] = ctx.tokens.encode(json.dumps([rows[-1].resource_id, rows[-1].key]), scope)
    out["Tags"] = [
        {"ResourceId": t.resource_id, "ResourceType": t.resource_type, "Key": t.key, "Value": t.value} for t in rows
    ]
    return out
