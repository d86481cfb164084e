"""CreateImage: Nimbus's "save" in EC2 terms, an instance's disk becomes a new image in Cumulus.

The request only records: a new `ami-` in state pending (its object will be
`<image_bucket>/<image_prefix>/<owner>/<name>`) and an ImageTask for the compute worker. Unless
NoReboot is given, a running instance is stopped first (state stopping, as StopInstances does)
and started again once its disk is copied, as EC2 reboots an instance for CreateImage. The worker
(compute/image_tasks.py) copies the stopped instance's disk, flattened, into Cumulus and makes the
image available (or failed, with the reason in its StateReason). Every volume attached to the
instance gets a snapshot, named in the image's BlockDeviceMappings at the volume's device.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.api.instance_query import check_instance_ids, load_instances
from ec2gw.aws.dispatch import operation
from ec2gw.compute.image_models import ImageTask
from ec2gw.compute.placement import node_ref
from ec2gw.compute.snapshot_models import ImageBlockDevice, Snapshot
from ec2gw.db.models import Image, User
from ec2gw.db.volume_models import Volume
from ec2gw.errors import ServiceError, incorrect_state
from ec2gw.images import check_image_name
from ec2gw.tagging import set_tags, tags_from_specifications


def _snapshot_volumes(s: Session, owner_id: int, instance_id: str, image_id: str,
                      tags: list[tuple[str, str]], with_root: bool = False) -> None:
    """A snapshot of every volume attached to the instance (its root volume too when ``with_root``),
    recorded in the image's block device mappings (the compute worker copies each volume,
    compute/snapshot_tasks.py)."""
    q = select(Volume).where(Volume.instance_id == instance_id, Volume.attach_state.in_(("attaching", "attached")),
                             Volume.owner_id == owner_id)
    vols = s.scalars((q if with_root else q.where(Volume.is_root.is_(False))).order_by(Volume.device))
    for vol in vols:
        snap = Snapshot(id=ids.new_id("snap"), owner_id=owner_id, volume_id=vol.id, volume_size=vol.size_gib,
                        description=f"Created by CreateImage({instance_id}) for {image_id}", state="pending",
                        progress=0)
        s.add(snap)
        s.add(ImageBlockDevice(image_id=image_id, device_name=vol.device or vol.target or "/dev/sdf",
                               snapshot_id=snap.id, volume_size=vol.size_gib, volume_type=vol.volume_type,
                               delete_on_termination=vol.delete_on_termination))
        s.flush()
        if tags:
            set_tags(s, owner_id, snap.id, tags)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S GMT")


def _object_exists(ctx: RequestContext, bucket: str, key: str) -> bool:
    return ctx.app.cumulus.object_info(bucket, key) is not None


def _ebs_image(s: Session, owner_id: int, inst: Any, root: Volume, name: str, description: str | None,
               image_tags: list[tuple[str, str]], snapshot_tags: list[tuple[str, str]]) -> str:
    """CreateImage of an instance that boots from a volume: an EBS-backed image (no Cumulus object)
    whose mappings are snapshots of the root and every attached volume, taken while the guest runs
    (point in time, no reboot); pending until they are completed (compute/snapshot_tasks.py)."""
    source = s.get(Image, inst.image_id)
    image = Image(id=ids.new_id("ami"), owner_id=owner_id, name=name, description=description or "", location="",
                  kind="machine", state="pending", architecture=source.architecture if source else "x86_64",
                  disk_format="qcow2", size_bytes=0, kernel_id=inst.kernel_id, ramdisk_id=inst.ramdisk_id,
                  source_instance_id=inst.id, root_device_name=root.device or "/dev/vda")
    s.add(image)
    s.flush()
    if image_tags:
        set_tags(s, owner_id, image.id, image_tags)
    _snapshot_volumes(s, owner_id, inst.id, image.id, snapshot_tags, with_root=True)
    return image.id


@operation("CreateImage")
def create_image(
    ctx: RequestContext, instance_id: str, name: str, description: str | None = None, no_reboot: bool | None = None,
    block_device_mappings: list[dict[str, Any]] | None = None, tag_specifications: list[dict[str, Any]] | None = None,
    dry_run: bool | None = None, **_ignored: Any,
) -> dict[str, Any]:
    check_instance_ids([instance_id])
    check_image_name(name)
    if description is not None and len(description) > 255:
        raise ServiceError("InvalidParameterValue", "Descriptions are at most 255 characters.")
    if block_device_mappings:
        raise ServiceError("InvalidParameterCombination",
                           "BlockDeviceMappings are not supported: the image holds the instance's root disk only.")
    image_tags = tags_from_specifications(tag_specifications, "image", also=("snapshot",))
    snapshot_tags = tags_from_specifications(tag_specifications, "snapshot", also=("image",))
    settings = ctx.settings
    with ctx.db.session(write=True) as s:
        inst = load_instances(s, ctx, [instance_id], for_update=True)[0]
        if inst.state not in ("running", "stopped", "stopping") or (inst.task not in (None, "stop")):
            raise incorrect_state(inst.id, inst.state, "imaged")
        other = s.scalar(select(Image.id).where(Image.owner_id == ctx.user_id, Image.name == name))
        if other is not None:
            raise ServiceError("InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {other}; choose another name.")
        if s.scalar(select(ImageTask.image_id).where(ImageTask.instance_id == inst.id)) is not None:
            raise ServiceError("IncorrectInstanceState",
                               f"An image of instance {inst.id} is already being created; wait until it is available.")
        ebs_root = s.scalar(select(Volume).where(Volume.instance_id == inst.id, Volume.is_root.is_(True),
                                                 Volume.storage == "pool"))
        if ebs_root is not None:  # booted from a volume: the image is EBS-backed, snapshots of its volumes
            ctx.check_dry_run(dry_run)
            return {"ImageId": _ebs_image(s, ctx.user_id, inst, ebs_root, name, description, image_tags,
                                          snapshot_tags)}
        node = node_ref(s, settings, inst.node_name)
        if no_reboot and inst.state != "stopped" and node.domain_type != "test":
            raise ServiceError(
                "InvalidParameterCombination",
                f"NoReboot is possible only for a stopped instance here: the disk of the running {inst.id} is in use "
                "by its guest. Stop the instance first, or leave NoReboot out (the instance is then stopped, "
                "imaged and started again).")
        source = s.get(Image, inst.image_id)
        owner = s.get(User, ctx.user_id)
        assert owner is not None
        key = f"{settings.image_prefix}/{owner.name}/{name}"
        if _object_exists(ctx, settings.image_bucket, key):
            raise ServiceError("InvalidAMIName.Duplicate",
                               f"Cumulus already holds an object {settings.image_bucket}/{key}; choose another name "
                               "(or register that object with RegisterImage).")
        ctx.check_dry_run(dry_run)
        image = Image(
            id=ids.new_id("ami"), owner_id=ctx.user_id, name=name, description=description or "",
            location=f"{settings.image_bucket}/{key}", kind="machine", state="pending",
            architecture=source.architecture if source else "x86_64", disk_format="qcow2", size_bytes=0,
            kernel_id=inst.kernel_id, ramdisk_id=inst.ramdisk_id, source_instance_id=inst.id,
        )
        if source is not None:
            image.root_device_name = source.root_device_name
        s.add(image)
        s.flush()
        restart = inst.state == "running" and not no_reboot
        s.add(ImageTask(image_id=image.id, instance_id=inst.id, no_reboot=bool(no_reboot), restart=restart))
        if restart:
            inst.state = "stopping"
            inst.task = "stop"
            inst.force_stop = False
            inst.state_transition_reason = f"User initiated ({_now()}) for CreateImage {image.id}"
        if image_tags:
            set_tags(s, ctx.user_id, image.id, image_tags)
        _snapshot_volumes(s, ctx.user_id, inst.id, image.id, snapshot_tags)
        return {"ImageId": image.id}
