"""DescribeImages, RegisterImage, DeregisterImage (attributes live in image_attributes).

A user sees their own images and public ones. Images are instance-store images whose disk is a
Cumulus object; the rules shared with RunInstances and the admin CLI are in ec2gw/images.py.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, false, or_, select, true

from ec2gw import images as svc
from ec2gw.api import ebs_images
from ec2gw.api.context import RequestContext
from ec2gw.api.image_views import image_item
from ec2gw.api.instance_query import time_condition
from ec2gw.api.owners import ACCOUNT_RE, owners_condition
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import build_conditions, match_any, matches
from ec2gw.aws.pagination import check_max_results, scope_digest
from ec2gw.compute.snapshot_models import ImageBlockDevice
from ec2gw.db.models import Image, Tag, User
from ec2gw.errors import ServiceError, invalid_value
from ec2gw.tagging import tags_for, tags_from_specifications


def _constant(value: str) -> Any:
    """A filter on a property every image here has the same value of."""
    return lambda patterns: true() if matches(value, patterns) else false()


def _is_public(values: list[str]) -> Any:
    wanted = set()
    for v in values:
        if v.lower() not in ("true", "false"):
            raise ServiceError("InvalidParameterValue", f"The filter is-public takes true or false, not '{v}'.")
        wanted.add(v.lower() == "true")
    return Image.is_public.in_(sorted(wanted))


def _root_device_type(values: list[str]) -> Any:
    ebs = exists(select(ImageBlockDevice.image_id).where(ImageBlockDevice.image_id == Image.id,
                                                         ImageBlockDevice.device_name == Image.root_device_name))
    conds = ([ebs] if matches("ebs", values) else []) + ([~ebs] if matches("instance-store", values) else [])
    return or_(*conds) if conds else false()


FILTERS: dict[str, Any] = {
    "image-id": Image.id,
    "name": Image.name,
    "state": Image.state,
    "architecture": Image.architecture,
    "image-type": Image.kind,
    "kernel-id": Image.kernel_id,
    "ramdisk-id": Image.ramdisk_id,
    "description": Image.description,
    "root-device-name": Image.root_device_name,
    "manifest-location": Image.location,
    "source-instance-id": Image.source_instance_id,
    "state-reason-message": Image.state_reason,
    "is-public": _is_public,
    "owner-id": lambda values: Image.owner_id.in_(select(User.id).where(match_any(User.account_id, values))),
    "owner-alias": lambda values: false(),
    "creation-date": lambda values: time_condition(Image.created_at, values),
    "root-device-type": lambda values: _root_device_type(values),
    "block-device-mapping.snapshot-id": lambda values: exists(select(ImageBlockDevice.image_id).where(
        ImageBlockDevice.image_id == Image.id, match_any(ImageBlockDevice.snapshot_id, values))),
    "block-device-mapping.device-name": lambda values: exists(select(ImageBlockDevice.image_id).where(
        ImageBlockDevice.image_id == Image.id, match_any(ImageBlockDevice.device_name, values))),
    "virtualization-type": _constant("hvm"),
    "hypervisor": _constant("xen"),
    "platform": lambda values: false(),
    "product-code": lambda values: false(),
    "product-code.type": lambda values: false(),
}


def executable_condition(ctx: RequestContext, users: list[str]) -> Any:
    """all: public images; self or the caller's account: the caller's own (images are shared only publicly)."""
    conds: list[Any] = []
    for u in users:
        if u == "all":
            conds.append(Image.is_public.is_(True))
        elif u == "self" or u == ctx.principal.account_id:
            conds.append(Image.owner_id == ctx.user_id)
        elif ACCOUNT_RE.fullmatch(u):
            conds.append(false())
        else:
            raise ServiceError(
                "InvalidUserID.Malformed", f'Invalid user id: "{u}". ExecutableBy takes 12-digit account ids, self or all.'
            )
    return conds[0] if len(conds) == 1 else or_(*conds)


@operation("DescribeImages")
def describe_images(
    ctx: RequestContext, image_ids: list[str] | None = None, owners: list[str] | None = None,
    executable_users: list[str] | None = None, filters: Any = None, max_results: int | None = None,
    next_token: str | None = None, include_deprecated: bool | None = None, include_disabled: bool | None = None,
    dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted: list[str] = []
    for iid in image_ids or []:
        svc.check_image_id(iid)
        if iid not in wanted:
            wanted.append(iid)
    check_max_results(max_results, 5, 1000)
    conds = build_conditions(filters, FILTERS, tag_model=Tag, resource_column=Image.id)
    if owners:
        conds.append(owners_condition(
            ctx, Image.owner_id, owners,
            "Owners are 12-digit account ids, self, amazon, aws-marketplace or aws-backup-vault."))
    if executable_users:
        conds.append(executable_condition(ctx, executable_users))
    ctx.check_dry_run(dry_run)
    matched = and_(true(), *conds)
    q = (
        select(Image, User.account_id, matched.label("matched"))
        .join(User, User.id == Image.owner_id)
        .where(svc.visible(ctx.user_id))
    )
    q = q.where(Image.id.in_(wanted)) if wanted else q.where(matched)
    scope = scope_digest("images", ctx.user_id, wanted, owners, executable_users, filters)
    if next_token:
        q = q.where(Image.id > ctx.tokens.decode(next_token, scope))
    q = q.order_by(Image.id)
    if max_results and not wanted:
        q = q.limit(max_results + 1)
    with ctx.db.session() as s:
        found = list(s.execute(q))
        if wanted and not next_token:
            seen = {img.id for img, _, _ in found}
            missing = [i for i in wanted if i not in seen]
            if missing:
                raise svc.not_found(missing)
        rows = [(img, account) for img, account, ok in found if ok]
        out: dict[str, Any] = {}
        if max_results and len(rows) > max_results:
            rows = rows[:max_results]
            out["NextToken"] = ctx.tokens.encode(rows[-1][0].id, scope)
        tags = tags_for(s, [img.id for img, _ in rows])
        devices = ebs_images.devices_of(s, [img.id for img, _ in rows])
    out["Images"] = [image_item(img, account, tags.get(img.id, []), devices.get(img.id, [])) for img, account in rows]
    return out


@operation("RegisterImage")
def register_image(
    ctx: RequestContext, name: str, image_location: str | None = None, description: str | None = None,
    architecture: str | None = None, kernel_id: str | None = None, ramdisk_id: str | None = None,
    root_device_name: str | None = None, virtualization_type: str | None = None,
    block_device_mappings: list[dict[str, Any]] | None = None, tag_specifications: list[dict[str, Any]] | None = None,
    dry_run: bool | None = None,
) -> dict[str, Any]:
    """Register the Cumulus object `bucket/key` the caller can read as a machine image."""
    if virtualization_type is not None and virtualization_type not in ("hvm", "paravirtual"):
        raise invalid_value("VirtualizationType", virtualization_type, "Valid values: hvm, paravirtual.")
    reg = svc.Registration(
        name=name, location=image_location or "", kernel_id=kernel_id, ramdisk_id=ramdisk_id,
        architecture=architecture, description=description, root_device_name=root_device_name,
        tags=tags_from_specifications(tag_specifications, "image"),
    )
    reg.check()
    if block_device_mappings:
        if image_location:
            raise ServiceError("InvalidParameterCombination",
                               "Give either ImageLocation (an image in Cumulus) or BlockDeviceMappings with "
                               "RootDeviceName (an image booting from a snapshot), not both.")
        ctx.check_dry_run(dry_run)
        return {"ImageId": ebs_images.register_ebs(ctx, reg, block_device_mappings)}
    svc.parse_location(image_location)
    ctx.check_dry_run(dry_run)
    row = svc.register(ctx.app, ctx.user_id, reg)
    return {"ImageId": row.id}


@operation("DeregisterImage")
def deregister_image(
    ctx: RequestContext, image_id: str, delete_associated_snapshots: bool | None = None, dry_run: bool | None = None
) -> dict[str, Any]:
    svc.check_image_id(image_id)
    ctx.check_dry_run(dry_run)
    with ctx.db.session(write=True) as s:
        row = svc.find_visible_image(s, ctx.user_id, image_id)
        svc.require_owner(ctx.user_id, row)
        gone = ebs_images.delete_associated_snapshots(s, ctx.user_id, row.id) if delete_associated_snapshots else []
        svc.deregister(s, row)
    for location in gone:
        bucket, _, key = location.partition("/")
        ctx.app.cumulus.delete_object(bucket, key)
    return {"Return": True}


from ec2gw.api import image_attributes  # noqa: E402,F401  (registers the attribute operations)
