"""AttachVolume and DetachVolume: a volume joins one instance of its zone, at a device name.

The device name the caller gives (/dev/sdf .. /dev/sdp, /dev/xvdf .. /dev/xvdp) is kept and reported;
the guest sees the disk at the next free virtio target (vdb, vdc, ...: vda is the root disk), which
the volume records too. The compute worker does the hot-plug (compute/volume_tasks.py); until then
the attachment is ``attaching`` (the volume already ``in-use``, as EC2 shows it), and a detach is
``detaching`` until the guest has let the disk go.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.api.volumes import attachment_view, owned_volume
from ec2gw.aws.dispatch import operation
from ec2gw.compute import volume_placement
from ec2gw.db.models import Instance
from ec2gw.db.volume_models import Volume
from ec2gw.errors import ServiceError, invalid_value, missing_parameter

_DEVICE = re.compile(r"^/dev/(sd|xvd)[f-p]\Z")
#: guest targets a volume can take (vda is the instance's root disk)
TARGETS = tuple(f"vd{c}" for c in "bcdefghijklmnopqrstuvwxyz")


def check_device(device: str | None) -> str:
    if not device:
        raise missing_parameter("Device")
    if not _DEVICE.match(device):
        raise invalid_value("device", device, f"{device} is not a valid EBS device name; use /dev/sdf to /dev/sdp "
                                              "or /dev/xvdf to /dev/xvdp.")
    return device


@operation("AttachVolume")
def attach_volume(ctx: RequestContext, device: str, instance_id: str, volume_id: str, ebs_card_index: int | None = None,
                  dry_run: bool | None = None) -> dict[str, Any]:
    check_device(device)
    if not instance_id:
        raise missing_parameter("InstanceId")
    ids.check_id(instance_id, "i")
    with ctx.db.session(write=True) as s:
        vol = owned_volume(s, ctx, volume_id, for_update=True)
        inst = s.scalar(select(Instance).where(Instance.id == instance_id, Instance.owner_id == ctx.user_id,
                                               Instance.state != "terminated"))
        if inst is None:
            raise ServiceError("InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist")
        if vol.instance_id or vol.state == "in-use":
            raise ServiceError("VolumeInUse", f"{vol.id} is already attached to an instance ({vol.instance_id}); "
                                              "detach it first.")
        if vol.state != "available" or vol.task is not None:
            raise ServiceError("IncorrectState", f"The volume '{vol.id}' is {vol.state}"
                                                 f"{' and being modified' if vol.task else ''}; it can be attached when "
                                                 "it is available.")
        if inst.state not in ("running", "stopped"):
            raise ServiceError("IncorrectInstanceState", f"Instance '{inst.id}' is {inst.state}; a volume attaches to a "
                                                         "running or stopped instance.")
        if inst.availability_zone != vol.availability_zone:
            raise ServiceError("InvalidVolume.ZoneMismatch",
                               f"The volume '{vol.id}' is not in the same availability zone as instance '{inst.id}' "
                               f"({vol.availability_zone}, not {inst.availability_zone}); make a volume in "
                               f"{inst.availability_zone}.")
        taken = list(s.execute(select(Volume.device, Volume.target).where(Volume.instance_id == inst.id)))
        if device in {d for d, _ in taken}:
            raise invalid_value("device", device, f"Attachment point {device} is already in use on {inst.id}; "
                                                  "choose another device name.")
        free = [t for t in TARGETS if t not in {t for _, t in taken}]
        if not free:
            raise ServiceError("AttachmentLimitExceeded", f"Instance '{inst.id}' has {len(TARGETS)} volumes, the most "
                                                          "it can have; detach one first.")
        node = inst.node_name or vol.node_name
        if node != vol.node_name and not volume_placement.room_to_grow(s, node, vol.size_gib):
            raise ServiceError("InsufficientVolumeCapacity",
                               f"The node of instance '{inst.id}' has no room for the {vol.size_gib} GiB of {vol.id}; "
                               "free volume storage there or ask the administrator for more.")
        ctx.check_dry_run(dry_run)
        vol.instance_id, vol.device, vol.target = inst.id, device, free[0]
        vol.state, vol.attach_state, vol.attach_time, vol.task = "in-use", "attaching", datetime.now(UTC), "attach"
        vol.delete_on_termination, vol.force_detach, vol.status_message = False, False, ""
        s.flush()
        return attachment_view(vol)


@operation("DetachVolume")
def detach_volume(ctx: RequestContext, volume_id: str, device: str | None = None, force: bool | None = None,
                  instance_id: str | None = None, dry_run: bool | None = None) -> dict[str, Any]:
    if instance_id:
        ids.check_id(instance_id, "i")
    with ctx.db.session(write=True) as s:
        vol = owned_volume(s, ctx, volume_id, for_update=True)
        if not vol.instance_id:
            raise ServiceError("IncorrectState", f"Volume '{vol.id}' is in the '{vol.state}' state; it is not attached.")
        if (instance_id and instance_id != vol.instance_id) or (device and device != vol.device):
            raise ServiceError("InvalidAttachment.NotFound",
                               f"The volume {vol.id} is not attached to {instance_id or vol.instance_id}"
                               f"{' at ' + device if device else ''}.")
        if vol.is_root:
            raise ServiceError("IncorrectState", f"Unable to detach root volume '{vol.id}' from instance "
                                                 f"'{vol.instance_id}': an instance keeps its root device here. "
                                                 "Terminate the instance (with DeleteOnTermination false the volume "
                                                 "stays, available).")
        ctx.check_dry_run(dry_run)
        if vol.attach_state != "detaching" or force:
            vol.attach_state, vol.task = "detaching", "detach"
            vol.force_detach = bool(force) or vol.force_detach
        s.flush()
        return attachment_view(vol)
