"""RunInstances' volumes: the root device and the block device mappings, checked and recorded.

Every instance gets a root volume (``vol-``, ``is_root``) at its image's RootDeviceName: for an
image in Cumulus it is the instance's own qcow2 overlay (``storage`` overlay), at least the image's
size; for an EBS-backed image (RegisterImage from snapshots) a volume made from the root mapping's
snapshot (``storage`` pool). Further volumes come from the image's other mappings and the request's
BlockDeviceMappings: empty ones of Ebs.VolumeSize, or made from Ebs.SnapshotId. A mapping at the
root device with a larger VolumeSize grows the root; a smaller one is InvalidBlockDeviceMapping, as
on EC2. NoDevice drops the image's mapping at that device; VirtualName (instance store) mappings
are accepted and ignored, as EC2 does for types without instance storage.

The rows are written with the instance, state creating and attachment attaching, with no task:
the compute worker makes them on the instance's node when it spawns it (compute/launch_volumes.py),
so they are in the domain from its first start.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ec2gw import ids
from ec2gw.api.ebs_images import devices_of, ebs_flag
from ec2gw.api.snapshots import find_restorable_snapshot
from ec2gw.api.volume_attachments import TARGETS
from ec2gw.api.volumes import SIZES, TYPES
from ec2gw.compute import volume_placement
from ec2gw.compute.placement import LOCAL_NODE
from ec2gw.db.models import Image, Instance
from ec2gw.db.volume_models import Volume
from ec2gw.errors import ServiceError, invalid_value

_DEVICE = re.compile(r"^/dev/(sd[b-z]|xvd[b-z]|vd[b-z]|sd[a-z][1-9]?|xvd[a-z][1-9]?|vd[a-z])\Z")
GIB = 1 << 30


@dataclass(frozen=True)
class Planned:
    """One volume each instance of the launch gets."""

    device: str
    size_gib: int
    volume_type: str = "gp2"
    iops: int | None = None
    snapshot_id: str | None = None
    delete_on_termination: bool = True
    root: bool = False
    storage: str = "pool"


def _image_plan(s: Session, image: Image) -> dict[str, Planned]:
    """The volumes the image itself brings, by device: its root, and its other EBS mappings."""
    out: dict[str, Planned] = {}
    root = image.root_device_name or "/dev/vda"
    for d in devices_of(s, [image.id]).get(image.id, []):
        out[d.device_name] = Planned(d.device_name, int(d.volume_size or 1), d.volume_type, None, d.snapshot_id,
                                     bool(d.delete_on_termination), d.device_name == root)
    if root not in out:  # an image in Cumulus: the root is the instance's overlay of the image
        out[root] = Planned(root, max(1, math.ceil((image.size_bytes or 0) / GIB)), root=True, storage="overlay")
    return out


def _size(device: str, vtype: str, value: Any) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise invalid_value("BlockDeviceMapping.Ebs.VolumeSize", value, "Give the size in whole GiB.") from None
    low, high = SIZES[vtype]
    if not low <= size <= high:
        raise ServiceError("InvalidParameterValue", f"{device}: a {vtype} volume is {low} to {high} GiB; "
                                                    f"{size} was asked for.")
    return size


def _ebs(s: Session, user_id: int, device: str, ebs: dict[str, Any], have: Planned | None) -> Planned:
    if ebs_flag(ebs.get("Encrypted"), False) or ebs.get("KmsKeyId"):
        raise ServiceError("InvalidParameterValue", f"{device}: encrypted volumes are not supported here; leave "
                                                    "Encrypted out.")
    vtype = ebs.get("VolumeType") or (have.volume_type if have else "gp2")
    if vtype not in TYPES:
        raise invalid_value("BlockDeviceMapping.Ebs.VolumeType", vtype, f"Valid volume types: {', '.join(TYPES)}.")
    iops = ebs.get("Iops")
    if vtype == "io1" and iops is None:
        raise ServiceError("MissingParameter", f"{device}: an io1 volume needs Ebs.Iops.")
    snap_id = ebs.get("SnapshotId")
    dot = ebs_flag(ebs.get("DeleteOnTermination"), have.delete_on_termination if have else True)
    if have is not None and have.root:
        if snap_id and snap_id != have.snapshot_id:
            raise ServiceError("InvalidBlockDeviceMapping", f"{device} is the image's root device; its snapshot "
                                                            "cannot be replaced at launch (register another image).")
        size = have.size_gib
        if ebs.get("VolumeSize") is not None:
            size = _size(device, vtype, ebs["VolumeSize"])
            if size < have.size_gib:
                raise ServiceError("InvalidBlockDeviceMapping",
                                   f"Volume of size {size}GB is smaller than snapshot '{have.snapshot_id or 'image'}', "
                                   f"expect size >= {have.size_gib}GB (the root device {device}).")
        return replace(have, size_gib=size, volume_type=vtype, iops=iops, delete_on_termination=dot)
    least = have.size_gib if have is not None and have.snapshot_id else 1
    if snap_id:
        snap = find_restorable_snapshot(s, user_id, snap_id)
        least = snap.volume_size
    elif have is not None:
        snap_id = have.snapshot_id
    if ebs.get("VolumeSize") is not None:
        size = _size(device, vtype, ebs["VolumeSize"])
        if size < least:
            raise ServiceError("InvalidBlockDeviceMapping", f"Volume of size {size}GB is smaller than snapshot "
                                                            f"'{snap_id}', expect size >= {least}GB ({device}).")
    elif snap_id:
        size = least
    elif have is not None:
        size = have.size_gib
    else:
        raise ServiceError("MissingParameter", f"The request must contain the parameter size or snapshotId for "
                                               f"{device} (Ebs.VolumeSize or Ebs.SnapshotId).")
    return Planned(device, size, vtype, iops, snap_id, dot)


def plan(s: Session, user_id: int, image: Image, mappings: list[dict[str, Any]] | None) -> list[Planned]:
    """The volumes of each instance of a launch of ``image`` with ``mappings``, the root first."""
    planned = _image_plan(s, image)
    seen: set[str] = set()
    for m in mappings or []:
        device = m.get("DeviceName")
        if not device:
            raise ServiceError("MissingParameter", "Each BlockDeviceMapping needs a DeviceName, such as /dev/sdf.")
        if not _DEVICE.match(device):
            raise ServiceError("InvalidBlockDeviceMapping", f"Invalid device name {device}; use /dev/sdf to /dev/sdz, "
                                                            "/dev/xvdf to /dev/xvdz, or the image's root device.")
        if device in seen:
            raise ServiceError("InvalidBlockDeviceMapping", f"The device '{device}' is used in more than one "
                                                            "block-device mapping.")
        seen.add(device)
        have = planned.get(device)
        if m.get("NoDevice") is not None:
            if have is not None and have.root:
                raise ServiceError("InvalidBlockDeviceMapping", f"The root device {device} cannot be suppressed "
                                                                "with NoDevice.")
            planned.pop(device, None)
            continue
        if m.get("VirtualName"):
            if m.get("Ebs"):
                raise ServiceError("InvalidBlockDeviceMapping", f"{device}: give either VirtualName or Ebs, not both.")
            continue  # instance store: none here, ignored as EC2 ignores it for types without it
        ebs = m.get("Ebs")
        if not ebs:
            raise ServiceError("InvalidBlockDeviceMapping", f"{device}: give Ebs (VolumeSize or SnapshotId), "
                                                            "NoDevice or VirtualName.")
        planned[device] = _ebs(s, user_id, device, ebs, have)
    out = sorted(planned.values(), key=lambda p: (not p.root, p.device))
    if len(out) - 1 > len(TARGETS):
        raise ServiceError("InvalidBlockDeviceMapping", f"An instance takes at most {len(TARGETS)} volumes besides "
                                                        "its root device.")
    return out


def pool_gib(planned: list[Planned]) -> tuple[int, int]:
    """(count, GiB) of the volumes a launch adds to the volume storage of each instance's node: those
    of the volume pool, and a root that stays after the instance (it becomes one of the pool then)."""
    pool = [p for p in planned if p.storage == "pool" or (p.root and not p.delete_on_termination)]
    return len(pool), sum(p.size_gib for p in pool)


def check_room(s: Session, instances: list[Instance], planned: list[Planned]) -> None:
    """Every node gets room for the volumes of its instances (InsufficientVolumeCapacity)."""
    per_instance = pool_gib(planned)[1]
    if not per_instance:
        return
    need: dict[str, int] = {}
    for inst in instances:
        name = inst.node_name or LOCAL_NODE
        need[name] = need.get(name, 0) + per_instance
    for name, gib in need.items():
        if not volume_placement.room_to_grow(s, name, gib):
            raise ServiceError("InsufficientVolumeCapacity",
                               f"Node {name} has no room for the {gib} GiB of volumes this launch maps; map smaller "
                               "volumes, launch fewer instances or ask the administrator for more volume storage.")


def rows(owner_id: int, inst: Instance, planned: list[Planned], now: datetime) -> list[Volume]:
    """The Volume rows of one instance: attaching, to be made at its spawn."""
    out = []
    targets = iter(TARGETS)
    for p in planned:
        out.append(Volume(
            id=ids.new_id("vol"), owner_id=owner_id, availability_zone=inst.availability_zone,
            node_name=inst.node_name or LOCAL_NODE, size_gib=p.size_gib, volume_type=p.volume_type,
            iops=p.iops, snapshot_id=p.snapshot_id, state="creating", task=None, instance_id=inst.id,
            device=p.device, target="vda" if p.root else next(targets), attach_state="attaching", attach_time=now,
            delete_on_termination=p.delete_on_termination, is_root=p.root, storage=p.storage, created_at=now))
    return out


def delete_on_termination_changes(mappings: list[dict[str, Any]]) -> dict[str, bool]:
    """ModifyInstanceAttribute BlockDeviceMappings: device name -> DeleteOnTermination, checked."""
    out: dict[str, bool] = {}
    for m in mappings:
        device = m.get("DeviceName")
        if not device:
            raise ServiceError("MissingParameter", "Each BlockDeviceMapping needs the DeviceName of an attached volume.")
        ebs = m.get("Ebs") or {}
        if m.get("NoDevice") is not None or m.get("VirtualName") or ebs.get("DeleteOnTermination") is None:
            raise ServiceError("InvalidParameterCombination", f"{device}: only Ebs.DeleteOnTermination of an attached "
                                                              "volume can be changed.")
        out[device] = ebs_flag(ebs["DeleteOnTermination"], True)
    return out


def set_delete_on_termination(s: Session, instance_id: str, changes: dict[str, bool],
                              keeping_root: Callable[[Volume], None] | None = None) -> None:
    """Apply ``changes`` (device -> DeleteOnTermination) to the volumes attached to the instance;
    a device with no volume attached is InvalidInstanceAttributeValue, as on EC2. ``keeping_root``
    is called, before anything changes, with a root volume that is to stay after the instance (it
    then counts as a volume: quota and node storage)."""
    attached = {v.device: v for v in s.scalars(select(Volume).where(Volume.instance_id == instance_id,
                                                                     Volume.attach_state.is_not(None)))}
    for device, value in changes.items():
        vol = attached.get(device)
        if vol is None:
            raise ServiceError("InvalidInstanceAttributeValue", f"No device is currently mapped at {device} on "
                                                                f"{instance_id}; DescribeInstances lists its devices.")
        if keeping_root is not None and vol.is_root and vol.storage == "overlay" and vol.delete_on_termination and not value:
            keeping_root(vol)
    for device, value in changes.items():
        attached[device].delete_on_termination = value
