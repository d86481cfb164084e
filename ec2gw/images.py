"""Image rules shared by the EC2 API, RunInstances and the admin CLI.

What: which images a user sees and may launch, how an image is registered from a Cumulus object
(`bucket/key`, Nimbus layout `Repo/VMS/<user>/<name>` and `Repo/VMS/common/<name>`), and
`import_image` for `ec2gw admin image import`.
Why here: this is the one module of the EC2 rules that reads image objects, through the Cumulus
it is given (app.cumulus, ec2gw/compute/cumulus.py): it never imports Cumulus.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ec2gw import ids
from ec2gw.compute.cumulus import common_image_key, detect_format, user_image_key
from ec2gw.db.models import Image, Tag, User
from ec2gw.errors import ServiceError, invalid_value
from ec2gw.tagging import set_tags

if TYPE_CHECKING:
    from ec2gw.compute.cumulus import Cumulus
    from ec2gw.config import Settings
    from ec2gw.db.session import Database


class ImageServices(Protocol):
    """What the image rules use of the service (ec2gw.app.App is one)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def cumulus(self) -> Cumulus: ...


KIND_PREFIX = {"machine": "ami", "kernel": "aki", "ramdisk": "ari"}
PREFIX_KIND = {v: k for k, v in KIND_PREFIX.items()}
ARCHITECTURES = ("i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac")
_NAME_RE = re.compile(r"^[A-Za-z0-9()\[\] ./\-'@_]{3,128}\Z")
_DEVICE_RE = re.compile(r"^/dev/[a-z0-9]+\Z")
_SNIFF_BYTES = 512


def inspect_object(app: ImageServices, user_id: int, bucket: str, key: str) -> tuple[int, str]:
    """(size, disk format) of the Cumulus object `bucket/key`, which the user must be able to read."""
    store = app.cumulus
    where = f"{bucket}/{key}"
    if store.object_info(bucket, key) is None:
        raise ServiceError(
            "InvalidManifest", f"The image location '{where}' names no object in Cumulus; upload the image there first."
        )
    if not store.can_read(user_id, bucket, key):
        raise ServiceError(
            "InvalidManifest", f"You may not read the object '{where}'; register only images you uploaded or may read."
        )
    handle, size = store.open_object(bucket, key)
    try:
        head = handle.read(_SNIFF_BYTES)
    finally:
        handle.close()
    if size == 0:
        raise ServiceError("InvalidManifest", f"The object '{where}' is empty; upload the image file again.")
    return int(size), detect_format(head)


def parse_location(location: str | None) -> tuple[str, str]:
    """'bucket/key' (also accepted: a leading '/' or 's3://') -> (bucket, key)."""
    if not location:
        raise ServiceError(
            "MissingParameter",
            "The request must contain the parameter ImageLocation: the Cumulus object of the image, as bucket/key.",
        )
    text = location.removeprefix("s3://").lstrip("/")
    bucket, _, key = text.partition("/")
    if not bucket or not key:
        raise invalid_value("ImageLocation", location, "Give the image's Cumulus object as bucket/key, e.g. Repo/VMS/me/disk.img.")
    return bucket, key


# --- visibility and lookup ---------------------------------------------------------------------

def visible(user_id: int) -> ColumnElement[bool]:
    """Images a user sees: their own and public ones."""
    return or_(Image.owner_id == user_id, Image.is_public.is_(True))


def not_found(image_ids: list[str]) -> ServiceError:
    if len(image_ids) == 1:
        return ServiceError("InvalidAMIID.NotFound", f"The image id '[{image_ids[0]}]' does not exist")
    return ServiceError("InvalidAMIID.NotFound", f"The image ids '[{', '.join(image_ids)}]' do not exist")


def check_image_id(image_id: str | None, *prefixes: str) -> str:
    if not image_id:
        raise ServiceError("MissingParameter", "The request must contain the parameter ImageId.")
    return ids.check_id(image_id, *(prefixes or ("ami", "aki", "ari")))


def find_visible_image(s: Session, user_id: int, image_id: str) -> Image:
    check_image_id(image_id)
    row = s.scalar(select(Image).where(Image.id == image_id, visible(user_id)))
    if row is None:
        raise not_found([image_id])
    return row


def find_launchable_image(s: Session, user_id: int, image_id: str, kind: str = "machine") -> Image:
    """The image `user_id` may launch as `kind` (machine, kernel or ramdisk), as RunInstances needs it.

    InvalidAMIID.Malformed for a malformed id, InvalidParameterValue for an image of another kind,
    InvalidAMIID.NotFound when it does not exist or is not visible, InvalidAMIID.Unavailable when it
    is not available (pending or failed).
    """
    check_image_id(image_id)
    prefix = image_id.split("-", 1)[0]
    if PREFIX_KIND[prefix] != kind:
        raise ServiceError(
            "InvalidParameterValue",
            f"The image {image_id} is a {PREFIX_KIND[prefix]} image, not a {kind} image; "
            f"pass a {KIND_PREFIX[kind]}- id here.",
        )
    row = find_visible_image(s, user_id, image_id)
    if row.state != "available":
        raise ServiceError(
            "InvalidAMIID.Unavailable",
            f"The image {image_id} is not available (it is {row.state}{': ' + row.state_reason if row.state_reason else ''}).",
        )
    return row


def require_readable(app: ImageServices, row: Image) -> None:
    """Every use of an image's bytes (a launch, as machine, kernel or ramdisk image): the image's
    owner must still be allowed to read its Cumulus object, now. An image never exposes bytes its
    owner could not download themselves (the object's ACL may have changed since registration)."""
    if not row.location:  # EBS-backed: its instances boot from volumes made from its snapshots
        return
    bucket, _, key = (row.location or "").partition("/")
    if not bucket or not key or not app.cumulus.can_read(row.owner_id, bucket, key):
        raise ServiceError(
            "InvalidAMIID.Unavailable",
            f"The image {row.id} is not available: its owner may no longer read its Cumulus object {row.location} "
            "(its ACL changed, or it is gone); the image's owner must make it readable again or register another.",
        )


def require_owner(user_id: int, row: Image) -> None:
    """Only an image's owner may change it; others get EC2's AuthFailure."""
    if row.owner_id != user_id:
        raise ServiceError(
            "AuthFailure", f"Not authorized for image:{row.id}. Only the account that owns an image can change it."
        )


# --- registration ------------------------------------------------------------------------------

@dataclass
class Registration:
    """What RegisterImage and `admin image import` ask for, validated by `check`."""

    name: str
    location: str
    kind: str = "machine"
    kernel_id: str | None = None
    ramdisk_id: str | None = None
    architecture: str | None = None
    description: str | None = None
    root_device_name: str | None = None
    public: bool = False
    tags: list[tuple[str, str]] = field(default_factory=list)

    def check(self) -> None:
        """The checks that need no database: names, ids, enumerations, lengths."""
        check_image_name(self.name)
        if self.kind not in KIND_PREFIX:
            raise invalid_value("kind", self.kind, "Image kinds are machine, kernel and ramdisk.")
        if self.kernel_id is not None:
            check_image_id(self.kernel_id, "aki")
        if self.ramdisk_id is not None:
            check_image_id(self.ramdisk_id, "ari")
        if self.kind != "machine" and (self.kernel_id or self.ramdisk_id):
            raise ServiceError("InvalidParameterCombination", "Only machine images take a kernel or a ramdisk.")
        if self.architecture is not None and self.architecture not in ARCHITECTURES:
            raise invalid_value("Architecture", self.architecture, f"Valid values: {', '.join(ARCHITECTURES)}.")
        if self.description is not None and len(self.description) > 255:
            raise invalid_value("Description", self.description[:40] + "...", "Descriptions are at most 255 characters.")
        if self.root_device_name is not None and not _DEVICE_RE.match(self.root_device_name):
            raise invalid_value("RootDeviceName", self.root_device_name, "Give a device name such as /dev/vda or /dev/sda1.")


def check_image_name(name: str | None) -> str:
    if name is None:
        raise ServiceError("MissingParameter", "The request must contain the parameter Name.")
    if not _NAME_RE.match(name):
        raise ServiceError(
            "InvalidAMIName.Malformed",
            f"AMI name '{name[:140]}' is invalid: AMI names must be between 3 and 128 characters long, and may contain "
            "letters, numbers, spaces, '(', ')', '[', ']', '.', '/', '-', \"'\", '@' and '_'.",
        )
    return name


def check_references(s: Session, user_id: int, reg: Registration) -> None:
    """The kernel and ramdisk must be visible, available images of their kind."""
    if reg.kernel_id:
        find_launchable_image(s, user_id, reg.kernel_id, kind="kernel")
    if reg.ramdisk_id:
        find_launchable_image(s, user_id, reg.ramdisk_id, kind="ramdisk")


def _duplicate_name(s: Session, owner_id: int, name: str) -> None:
    other = s.scalar(select(Image.id).where(Image.owner_id == owner_id, Image.name == name))
    if other is not None:
        raise ServiceError(
            "InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {other}; choose another name."
        )


def insert_image(s: Session, owner_id: int, reg: Registration, size: int, disk_format: str) -> Image:
    """Store a checked registration as an available image (with its tags) and return the row."""
    _duplicate_name(s, owner_id, reg.name)
    check_references(s, owner_id, reg)
    row = Image(
        id=ids.new_id(KIND_PREFIX[reg.kind]), owner_id=owner_id, name=reg.name, description=reg.description or "",
        location=reg.location, kind=reg.kind, state="available", is_public=reg.public,
        architecture=reg.architecture or "x86_64", disk_format=disk_format, size_bytes=size,
        kernel_id=reg.kernel_id, ramdisk_id=reg.ramdisk_id,
    )
    if reg.root_device_name:
        row.root_device_name = reg.root_device_name
    s.add(row)
    try:
        s.flush()
    except IntegrityError:  # a concurrent registration took the name
        raise ServiceError("InvalidAMIName.Duplicate", f"AMI name {reg.name} is already in use; choose another name.") from None
    if reg.tags:
        set_tags(s, owner_id, row.id, reg.tags)
    return row


def register(app: ImageServices, owner_id: int, reg: Registration) -> Image:
    """Validate, look at the object in Cumulus (outside any write transaction), then insert."""
    reg.check()
    bucket, key = parse_location(reg.location)
    reg.location = f"{bucket}/{key}"
    with app.db.session() as s:
        _duplicate_name(s, owner_id, reg.name)
        check_references(s, owner_id, reg)
    size, disk_format = inspect_object(app, owner_id, bucket, key)
    with app.db.session(write=True) as s:
        return insert_image(s, owner_id, reg, size, disk_format)


def deregister(s: Session, image: Image) -> None:
    """Remove the image and its tags; the Cumulus object stays, as an S3 bundle does on EC2."""
    s.execute(delete(Tag).where(Tag.resource_id == image.id))
    s.delete(image)


# --- admin import ------------------------------------------------------------------------------

def import_image(
    app: ImageServices, *, name: str, path: str | os.PathLike[str], kind: str = "machine", kernel_id: str | None = None,
    ramdisk_id: str | None = None, owner_name: str | None = None, public: bool = False,
) -> str:
    """Put a local image file into Cumulus under the Nimbus layout and register it; returns its id.

    Public images go to `<image_prefix>/common/<name>`, others to the owner's prefix, both in the
    bucket settings.image_bucket. The owner defaults to the administrator. Raises ServiceError
    (its .message says what to do) or FileNotFoundError.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file; pass the path of an image file")
    reg = Registration(name=name, location="-/-", kind=kind, kernel_id=kernel_id, ramdisk_id=ramdisk_id, public=public)
    reg.check()
    with app.db.session() as s:
        q = select(User).where(User.name == owner_name) if owner_name else select(User).where(User.is_admin.is_(True))
        owner = s.scalar(q.order_by(User.id))
        if owner is None or not owner.enabled:
            raise ServiceError(
                "InvalidParameterValue",
                f"No active user named {owner_name!r}; `ec2gw admin user list` shows the users." if owner_name
                else "There is no administrator yet; start the service once (`ec2gw serve`) to create it.",
            )
        owner_id, owner_login = owner.id, owner.name
        _duplicate_name(s, owner_id, name)
        check_references(s, owner_id, reg)
        settings = app.settings
        key = common_image_key(settings, name) if public else user_image_key(settings, owner_login, name)
        bucket = settings.image_bucket
        holder = s.scalar(select(Image.id).where(Image.location == f"{bucket}/{key}"))
        if holder is not None:  # never overwrite the disk of another image
            raise ServiceError(
                "InvalidAMIName.Duplicate",
                f"The object {bucket}/{key} already holds image {holder}; import under another name.",
            )
    app.cumulus.put_file(owner_id, bucket, key, path, os.path.getsize(path))
    reg.location = f"{bucket}/{key}"
    size, disk_format = inspect_object(app, owner_id, bucket, key)
    with app.db.session(write=True) as s:
        return insert_image(s, owner_id, reg, size, disk_format).id
