"""Tags shared by every taggable resource: validation, reading in bulk, TagSpecifications."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ec2gw.db.models import Tag
from ec2gw.errors import ServiceError

MAX_TAGS = 50

#: id prefix -> EC2 resource type
RESOURCE_TYPES = {
    "i": "instance", "ami": "image", "aki": "image", "ari": "image", "key": "key-pair",
    "sg": "security-group", "r": "reservation", "eipalloc": "elastic-ip", "vol": "volume", "snap": "snapshot",
}


def resource_type_of(resource_id: str) -> str | None:
    return RESOURCE_TYPES.get(resource_id.split("-", 1)[0])


def validate_tags(tags: Iterable[dict[str, Any]] | None, *, need_value: bool = False) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for t in tags or []:
        key = t.get("Key")
        value = t.get("Value", "")
        if key is None or key == "":
            raise ServiceError("InvalidParameterValue", "Tag keys must not be empty; give every Tag.N.Key a value.")
        if len(key) > 128:
            raise ServiceError("InvalidParameterValue", f"Tag key '{key[:40]}...' is longer than 128 characters.")
        if key.lower().startswith("aws:"):
            raise ServiceError("InvalidParameterValue", f"Tag keys starting with 'aws:' are reserved; rename '{key}'.")
        if value is None:
            value = ""
        if len(value) > 256:
            raise ServiceError("InvalidParameterValue", f"The value of tag '{key}' is longer than 256 characters.")
        if any(k == key for k, _ in out):
            raise _duplicate_key(key)
        out.append((key, value))
    if len(out) > MAX_TAGS:
        raise ServiceError("TagLimitExceeded", f"At most {MAX_TAGS} tags are allowed per resource; {len(out)} were given.")
    return out


# built once: every DescribeInstances runs it
_TAGS_OF = (select(Tag.resource_id, Tag.key, Tag.value).where(Tag.resource_id.in_(bindparam("ids", expanding=True)))
            .order_by(Tag.resource_id, Tag.key))


def tags_for(s: Session, resource_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """Tags of many resources in one query (chunked for the parameter limit)."""
    out: dict[str, list[dict[str, str]]] = {}
    for i in range(0, len(resource_ids), 500):
        for rid, key, value in s.execute(_TAGS_OF, {"ids": resource_ids[i : i + 500]}):
            out.setdefault(rid, []).append({"Key": key, "Value": value})
    return out


def _duplicate_key(key: str) -> ServiceError:
    return ServiceError("InvalidParameterValue", f"Duplicate tag key '{key}' specified; give each tag key once.")


def set_tags(s: Session, owner_id: int, resource_id: str, tags: list[tuple[str, str]]) -> None:
    """Add or change `tags` (from validate_tags / tags_from_specifications: each key once) on a resource."""
    existing = {t.key: t for t in s.scalars(select(Tag).where(Tag.resource_id == resource_id))}
    new_keys = {k for k, _ in tags} - set(existing)
    if len(existing) + len(new_keys) > MAX_TAGS:
        raise ServiceError("TagLimitExceeded", f"The resource {resource_id} would have more than {MAX_TAGS} tags.")
    rtype = resource_type_of(resource_id) or "unknown"
    for key, value in tags:
        if key in existing:
            existing[key].value = value
        else:
            s.add(Tag(resource_id=resource_id, key=key, value=value, owner_id=owner_id, resource_type=rtype))


def tags_from_specifications(specs: list[dict[str, Any]] | None, resource_type: str,
                             also: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The tags a TagSpecifications list asks for on `resource_type`. Types in `also` are ones the
    operation takes on AWS for resources this service does not keep (a RunInstances volume, say):
    validated and ignored. Any other type is refused, as AWS refuses it."""
    out: list[tuple[str, str]] = []
    for spec in specs or []:
        rtype = spec.get("ResourceType")
        if not rtype:
            raise ServiceError("InvalidParameterValue", "Each TagSpecification needs a ResourceType, e.g. instance.")
        if rtype != resource_type and rtype not in also:
            allowed = ", ".join((resource_type, *also))
            raise ServiceError("InvalidParameterValue",
                               f"'{rtype[:64]}' is not a valid taggable resource type for this operation; use {allowed}.")
        tags = validate_tags(spec.get("Tags"))
        if rtype == resource_type:
            for key, _ in tags:
                if any(k == key for k, _ in out):  # two TagSpecifications of the type giving the same key
                    raise _duplicate_key(key)
            out.extend(tags)
    return out
