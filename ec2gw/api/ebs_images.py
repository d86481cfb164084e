"""Images' block device mappings: EBS-backed images registered from snapshots, and the mappings
DescribeImages and DescribeImageAttribute report.

RegisterImage with RootDeviceName and BlockDeviceMappings (no ImageLocation) makes an EBS-backed
image: its root device is a volume made from the snapshot mapped at RootDeviceName; other
mappings add volumes made from snapshots or empty ones of VolumeSize GiB. The caller must be able
to make volumes from every snapshot named (own, shared with them, or public), and a snapshot an
image names cannot be deleted while the image exists (InvalidSnapshot.InUse).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ec2gw import images as svc
from ec2gw.api.context import RequestContext
from ec2gw.api.snapshots import find_restorable_snapshot
from ec2gw.compute.snapshot_models import ImageBlockDevice, Snapshot
from ec2gw.db.models import Tag
from ec2gw.errors import ServiceError, invalid_value

VOLUME_TYPES = ("gp2", "gp3", "standard", "io1")
_DEVICE_RE = re.compile(r"^/dev/(sd[a-z][1-9]?|xvd[a-z][1-9]?|vd[a-z][1-9]?|hd[a-z][1-9]?)\Z")
MAX_VOLUME_GIB = 16384


def devices_of(s: Session, image_ids: list[str]) -> dict[str, list[ImageBlockDevice]]:
    out: dict[str, list[ImageBlockDevice]] = {}
    for i in range(0, len(image_ids), 500):
        rows = s.scalars(select(ImageBlockDevice).where(ImageBlockDevice.image_id.in_(image_ids[i:i + 500]))
                         .order_by(ImageBlockDevice.image_id, ImageBlockDevice.device_name))
        for row in rows:
            out.setdefault(row.image_id, []).append(row)
    return out


def is_ebs_backed(root_device_name: str, devices: list[ImageBlockDevice]) -> bool:
    return any(d.device_name == root_device_name for d in devices)


def ebs_flag(value: Any, default: bool) -> bool:
    """A boolean member of an Ebs mapping (DeleteOnTermination, Encrypted): ``default`` when absent."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).lower() == "true"


def check_mappings(s: Session, user_id: int, mappings: list[dict[str, Any]]) -> list[ImageBlockDevice]:
    """ImageBlockDevice rows (without image id) for BlockDeviceMapping.N, checked: device names,
    snapshots the caller may make volumes from, sizes at least the snapshots'."""
    rows: list[ImageBlockDevice] = []
    for m in mappings:
        device = m.get("DeviceName")
        if not device:
            raise ServiceError("MissingParameter", "Each BlockDeviceMapping needs a DeviceName, such as /dev/sdf.")
        if not _DEVICE_RE.match(device):
            raise invalid_value("DeviceName", device, "Give a device name such as /dev/sdf, /dev/xvdf or /dev/vdb.")
        if any(r.device_name == device for r in rows):
            raise ServiceError("InvalidBlockDeviceMapping", f"The device name {device} is given more than once.")
        if m.get("VirtualName") or m.get("NoDevice") is not None:
            raise ServiceError("InvalidBlockDeviceMapping", f"{device}: instance store (VirtualName) and NoDevice "
                                                            "mappings are not supported here; map EBS volumes (Ebs).")
        ebs = m.get("Ebs")
        if not ebs:
            raise ServiceError("InvalidBlockDeviceMapping", f"{device}: give Ebs with a SnapshotId or a VolumeSize.")
        if ebs_flag(ebs.get("Encrypted"), False) or ebs.get("KmsKeyId"):
            raise ServiceError("InvalidParameterValue", f"{device}: encrypted volumes are not supported here.")
        vtype = ebs.get("VolumeType") or "gp2"
        if vtype not in VOLUME_TYPES:
            raise invalid_value("VolumeType", vtype, f"Valid volume types: {', '.join(VOLUME_TYPES)}.")
        size = ebs.get("VolumeSize")
        if size is not None and not 1 <= int(size) <= MAX_VOLUME_GIB:
            raise invalid_value("VolumeSize", size, f"Volume sizes are 1 to {MAX_VOLUME_GIB} GiB.")
        snap_id = ebs.get("SnapshotId")
        if snap_id:
            snap = find_restorable_snapshot(s, user_id, snap_id)
            if snap.owner_id != user_id:
                # an image of another account's snapshot would keep using it after its owner stops
                # sharing it, and would keep its owner from deleting it
                raise ServiceError("OperationNotPermitted", f"{device}: snapshot {snap.id} belongs to another account; "
                                   "an image is registered only from your own snapshots. Make a volume from it "
                                   "(CreateVolume), snapshot that volume (CreateSnapshot) and register from your copy.")
            if size is not None and int(size) < snap.volume_size:
                raise invalid_value("VolumeSize", size, f"{device}: the volume must be at least as large as snapshot "
                                                        f"{snap.id} ({snap.volume_size} GiB).")
            size = int(size) if size is not None else snap.volume_size
        elif size is None:
            raise ServiceError("InvalidBlockDeviceMapping", f"{device}: give Ebs.SnapshotId or Ebs.VolumeSize.")
        rows.append(ImageBlockDevice(device_name=device, snapshot_id=snap_id, volume_size=int(size), volume_type=vtype,
                                     delete_on_termination=ebs_flag(ebs.get("DeleteOnTermination"), True)))
    return rows


def register_ebs(ctx: RequestContext, reg: svc.Registration, mappings: list[dict[str, Any]]) -> str:
    """RegisterImage of an EBS-backed image; returns its id."""
    if not reg.root_device_name:
        raise ServiceError("MissingParameter", "An image registered from snapshots needs RootDeviceName, the device "
                                               "of its BlockDeviceMapping whose snapshot it boots from.")
    with ctx.db.session(write=True) as s:
        rows = check_mappings(s, ctx.user_id, mappings)
        root = [r for r in rows if r.device_name == reg.root_device_name]
        if not root or not root[0].snapshot_id:
            raise ServiceError("InvalidBlockDeviceMapping", f"RootDeviceName {reg.root_device_name} needs a "
                                                            "BlockDeviceMapping with Ebs.SnapshotId at that device.")
        snap = s.get(Snapshot, root[0].snapshot_id)
        assert snap is not None
        image = svc.insert_image(s, ctx.user_id, reg, snap.size_bytes, "qcow2")
        for r in rows:
            r.image_id = image.id
            s.add(r)
        return image.id


def delete_associated_snapshots(s: Session, user_id: int, image_id: str) -> list[str]:
    """Delete the caller's snapshots that the image names and no other image does (DeregisterImage
    DeleteAssociatedSnapshots), with their tags; returns their Cumulus locations, for the caller
    to remove once the transaction is committed."""
    named = [d.snapshot_id for d in s.scalars(select(ImageBlockDevice).where(ImageBlockDevice.image_id == image_id))
             if d.snapshot_id]
    locations = []
    for sid in dict.fromkeys(named):
        other = s.scalar(select(ImageBlockDevice.image_id).where(ImageBlockDevice.snapshot_id == sid,
                                                                 ImageBlockDevice.image_id != image_id).limit(1))
        snap = s.get(Snapshot, sid)
        if other is None and snap is not None and snap.owner_id == user_id:
            if snap.location:
                locations.append(snap.location)
            s.execute(delete(Tag).where(Tag.resource_id == sid))
            s.delete(snap)
    return locations
