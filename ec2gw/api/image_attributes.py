"""DescribeImageAttribute and ModifyImageAttribute.

Sharing is public or nothing: launchPermission Group=all makes an image public (how a user shares
one here); sharing with single accounts or organizations is refused with a message saying so.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ec2gw import images as svc
from ec2gw.api.context import RequestContext
from ec2gw.api.ebs_images import devices_of
from ec2gw.api.image_views import image_item
from ec2gw.aws.dispatch import operation
from ec2gw.aws.serializer import format_timestamp
from ec2gw.db.models import Image, Instance
from ec2gw.errors import ServiceError, invalid_value

ATTRIBUTES = (
    "description", "kernel", "ramdisk", "launchPermission", "productCodes", "blockDeviceMapping",
    "sriovNetSupport", "bootMode", "tpmSupport", "uefiData", "lastLaunchedTime", "imdsSupport",
    "deregistrationProtection",
)


def _value(v: str | None) -> dict[str, str]:
    return {"Value": v} if v else {}


def _attribute(s: Any, ctx: RequestContext, img: Image, attribute: str) -> dict[str, Any]:
    if attribute == "description":
        return {"Description": _value(img.description)}
    if attribute == "kernel":
        return {"KernelId": _value(img.kernel_id)}
    if attribute == "ramdisk":
        return {"RamdiskId": _value(img.ramdisk_id)}
    if attribute == "launchPermission":
        svc.require_owner(ctx.user_id, img)
        return {"LaunchPermissions": [{"Group": "all"}] if img.is_public else []}
    if attribute == "productCodes":
        return {"ProductCodes": []}
    if attribute == "blockDeviceMapping":
        return {"BlockDeviceMappings": image_item(img, "", [], devices_of(s, [img.id]).get(img.id, []))[
            "BlockDeviceMappings"]}
    if attribute == "sriovNetSupport":
        return {"SriovNetSupport": {}}
    if attribute == "bootMode":
        return {"BootMode": {}}
    if attribute == "tpmSupport":
        return {"TpmSupport": {}}
    if attribute == "uefiData":
        return {"UefiData": {}}
    if attribute == "imdsSupport":
        return {"ImdsSupport": {}}
    if attribute == "deregistrationProtection":
        return {"DeregistrationProtection": {"Value": "disabled"}}
    # lastLaunchedTime: the caller's own launches only, as other accounts' instances are private
    last = s.scalar(select(func.max(Instance.launch_time)).where(Instance.image_id == img.id, Instance.owner_id == ctx.user_id))
    return {"LastLaunchedTime": _value(format_timestamp(last) if last else None)}


@operation("DescribeImageAttribute")
def describe_image_attribute(
    ctx: RequestContext, attribute: str, image_id: str, dry_run: bool | None = None
) -> dict[str, Any]:
    svc.check_image_id(image_id)
    if attribute not in ATTRIBUTES:
        raise invalid_value("Attribute", attribute, f"Valid image attributes: {', '.join(ATTRIBUTES)}.")
    ctx.check_dry_run(dry_run)
    with ctx.db.session() as s:
        img = svc.find_visible_image(s, ctx.user_id, image_id)
        out = _attribute(s, ctx, img, attribute)
    out["ImageId"] = img.id
    return out


def _permission_change(entries: list[dict[str, Any]]) -> bool:
    """True when the entries name Group=all; anything else is refused with what to do instead."""
    public = False
    for e in entries:
        group = e.get("Group")
        if e.get("UserId") or e.get("OrganizationArn") or e.get("OrganizationalUnitArn"):
            raise ServiceError(
                "InvalidParameterValue",
                "Images can be shared only with everyone here: use LaunchPermission Group=all to make the image public.",
            )
        if group != "all":
            raise invalid_value("Group", group, "The only launch permission group is 'all'.")
        public = True
    return public


@operation("ModifyImageAttribute")
def modify_image_attribute(
    ctx: RequestContext, image_id: str, attribute: str | None = None, operation_type: str | None = None,
    user_groups: list[str] | None = None, user_ids: list[str] | None = None, value: str | None = None,
    description: dict[str, Any] | None = None, launch_permission: dict[str, Any] | None = None,
    product_codes: list[str] | None = None, organization_arns: list[str] | None = None,
    organizational_unit_arns: list[str] | None = None, imds_support: dict[str, Any] | None = None,
    dry_run: bool | None = None,
) -> dict[str, Any]:
    """launchPermission (Add/Remove Group=all, or OperationType with UserGroup.N) and description."""
    svc.check_image_id(image_id)
    if attribute is not None and attribute not in ("description", "launchPermission", "imdsSupport"):
        raise invalid_value("Attribute", attribute, "Modifiable image attributes: description, launchPermission.")
    if product_codes or imds_support or attribute == "imdsSupport":
        raise ServiceError("InvalidParameterValue", "Only the description and launchPermission of an image can be modified here.")
    add = list((launch_permission or {}).get("Add") or [])
    remove = list((launch_permission or {}).get("Remove") or [])
    legacy = [{"Group": g} for g in user_groups or []] + [{"UserId": u} for u in user_ids or []]
    legacy += [{"OrganizationArn": a} for a in organization_arns or []]
    legacy += [{"OrganizationalUnitArn": a} for a in organizational_unit_arns or []]
    if legacy:
        if operation_type not in ("add", "remove"):
            raise ServiceError("MissingParameter", "Give OperationType add or remove together with UserGroup.N.")
        (add if operation_type == "add" else remove).extend(legacy)
    new_description = (description or {}).get("Value")
    if new_description is None and attribute == "description":
        new_description = value
    if new_description is not None and len(new_description) > 255:
        raise invalid_value("Description", new_description[:40] + "...", "Descriptions are at most 255 characters.")
    make_public, make_private = _permission_change(add), _permission_change(remove)
    if not (add or remove or new_description is not None):
        raise ServiceError(
            "MissingParameter", "Nothing to modify: give LaunchPermission.Add/Remove (Group=all) or Description.Value."
        )
    ctx.check_dry_run(dry_run)
    with ctx.db.session(write=True) as s:
        img = svc.find_visible_image(s, ctx.user_id, image_id)
        svc.require_owner(ctx.user_id, img)
        if make_public:
            img.is_public = True
        if make_private:
            img.is_public = False
        if new_description is not None:
            img.description = new_description
    return {}
