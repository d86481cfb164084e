"""CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair.

The service keeps only the public half; the private key of a created pair is returned once and
never stored. Fingerprints are computed as AWS computes them (see key_material).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, select, true
from sqlalchemy.exc import IntegrityError

from ec2gw import ids
from ec2gw.api import key_material
from ec2gw.api.context import RequestContext
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import build_conditions
from ec2gw.db.models import KeyPair, Tag
from ec2gw.errors import ServiceError, invalid_value, missing_parameter
from ec2gw.tagging import set_tags, tags_for, tags_from_specifications

FILTERS = {
    "key-name": KeyPair.name,
    "key-pair-id": KeyPair.id,
    "fingerprint": KeyPair.fingerprint,
    "key-type": KeyPair.key_type,
}


def check_key_name(name: str | None) -> str:
    """EC2's rule for key pair names: 1-255 ASCII characters, no leading or trailing spaces."""
    if name is None:
        raise missing_parameter("KeyName")
    if name == "":
        raise invalid_value("KeyName", name, "Give the key pair a name of 1 to 255 ASCII characters.")
    if not name.isascii():
        raise invalid_value("KeyName", name, "Character sets beyond ASCII are not supported.")
    if len(name) > 255:
        raise invalid_value("KeyName", name[:40] + "...", "Length exceeds maximum of 255.")
    if name != name.strip():
        raise invalid_value("KeyName", name, "Key pair names cannot start or end with spaces.")
    return name


def _duplicate(name: str) -> ServiceError:
    return ServiceError(
        "InvalidKeyPair.Duplicate",
        f"The keypair '{name}' already exists. Choose another name, or delete the existing key pair first.",
    )


def _not_found(what: str) -> ServiceError:
    return ServiceError(
        "InvalidKeyPair.NotFound",
        f"The key pair '{what}' does not exist. DescribeKeyPairs lists your key pairs.",
    )


def _store(ctx: RequestContext, name: str, key_type: str, public_key: str, fingerprint: str,
           tags: list[tuple[str, str]]) -> KeyPair:
    try:
        with ctx.db.session(write=True) as s:
            if s.scalar(select(KeyPair.id).where(KeyPair.owner_id == ctx.user_id, KeyPair.name == name)):
                raise _duplicate(name)
            row = KeyPair(
                id=ids.new_id("key"), owner_id=ctx.user_id, name=name, key_type=key_type,
                fingerprint=fingerprint, public_key=public_key,
            )
            s.add(row)
            s.flush()
            if tags:
                set_tags(s, ctx.user_id, row.id, tags)
    except IntegrityError:  # a concurrent request took the name between the check and the insert
        raise _duplicate(name) from None
    return row


def _tag_list(tags: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags]


@operation("CreateKeyPair")
def create_key_pair(
    ctx: RequestContext, key_name: str, key_type: str | None = None, key_format: str | None = None,
    tag_specifications: list[dict[str, Any]] | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    check_key_name(key_name)
    key_type = key_type or "rsa"
    if key_type not in ("rsa", "ed25519"):
        raise invalid_value("KeyType", key_type, "Valid key types are rsa and ed25519.")
    key_format = key_format or "pem"
    if key_format not in ("pem", "ppk"):
        raise invalid_value("KeyFormat", key_format, "Valid key formats are pem and ppk (PuTTY).")
    tags = tags_from_specifications(tag_specifications, "key-pair")
    ctx.check_dry_run(dry_run)
    new = key_material.generate(key_type, key_format, comment=key_name)
    row = _store(ctx, key_name, new.key_type, new.public_key, new.fingerprint, tags)
    return {
        "KeyName": row.name, "KeyFingerprint": row.fingerprint, "KeyMaterial": new.private_key,
        "KeyPairId": row.id, "Tags": _tag_list(tags) or None,
    }


@operation("ImportKeyPair")
def import_key_pair(
    ctx: RequestContext, key_name: str, public_key_material: bytes,
    tag_specifications: list[dict[str, Any]] | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    check_key_name(key_name)
    imported = key_material.parse_public(public_key_material)
    tags = tags_from_specifications(tag_specifications, "key-pair")
    ctx.check_dry_run(dry_run)
    row = _store(ctx, key_name, imported.key_type, imported.public_key, imported.fingerprint, tags)
    return {"KeyName": row.name, "KeyFingerprint": row.fingerprint, "KeyPairId": row.id, "Tags": _tag_list(tags) or None}


@operation("DescribeKeyPairs")
def describe_key_pairs(
    ctx: RequestContext, key_names: list[str] | None = None, key_pair_ids: list[str] | None = None,
    filters: Any = None, include_public_key: bool | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    for kid in key_pair_ids or []:
        ids.check_id(kid, "key")
    conds = build_conditions(filters, FILTERS, tag_model=Tag, resource_column=KeyPair.id)
    ctx.check_dry_run(dry_run)
    matched = and_(true(), *conds)
    q = select(KeyPair, matched.label("matched")).where(KeyPair.owner_id == ctx.user_id).order_by(KeyPair.name)
    if key_names:
        q = q.where(KeyPair.name.in_(key_names))
    if key_pair_ids:
        q = q.where(KeyPair.id.in_(key_pair_ids))
    if not key_names and not key_pair_ids:
        q = q.where(matched)
    with ctx.db.session() as s:
        found = list(s.execute(q))
        # a name or id that does not exist is an error, as on EC2; filters only narrow the answer
        missing = [n for n in key_names or [] if n not in {r.name for r, _ in found}]
        missing += [i for i in key_pair_ids or [] if i not in {r.id for r, _ in found}]
        if missing:
            raise _not_found(missing[0])
        rows = [r for r, ok in found if ok]
        tags = tags_for(s, [r.id for r in rows])
    items = []
    for r in rows:
        item: dict[str, Any] = {
            "KeyPairId": r.id, "KeyName": r.name, "KeyFingerprint": r.fingerprint, "KeyType": r.key_type,
            "Tags": tags.get(r.id, []), "CreateTime": r.created_at,
        }
        if include_public_key:
            item["PublicKey"] = f"{r.public_key} {r.name}"
        items.append(item)
    return {"KeyPairs": items}


@operation("DeleteKeyPair")
def delete_key_pair(
    ctx: RequestContext, key_name: str | None = None, key_pair_id: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    """Deleting a name that does not exist succeeds, as on EC2; an unknown id is InvalidKeyPair.NotFound."""
    if not key_name and not key_pair_id:
        raise ServiceError("MissingParameter", "The request must contain the parameter KeyName or KeyPairId.")
    if key_pair_id:
        ids.check_id(key_pair_id, "key")
    ctx.check_dry_run(dry_run)
    with ctx.db.session(write=True) as s:
        q = select(KeyPair).where(KeyPair.owner_id == ctx.user_id)
        q = q.where(KeyPair.id == key_pair_id) if key_pair_id else q.where(KeyPair.name == key_name)
        row = s.scalar(q)
        if row is None:
            if key_pair_id:
                raise _not_found(key_pair_id)
            return {"Return": True}
        if key_pair_id and key_name and row.name != key_name:
            raise ServiceError(
                "InvalidParameterCombination",
                f"The key pair {key_pair_id} is named '{row.name}', not '{key_name}'; pass only one of KeyName and KeyPairId.",
            )
        s.execute(delete(Tag).where(Tag.resource_id == row.id))
        s.delete(row)
        deleted_id = row.id
    return {"Return": True, "KeyPairId": deleted_id}
