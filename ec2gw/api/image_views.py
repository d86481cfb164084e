"""Image rows -> the Image shape of DescribeImages (keys are the botocore member names)."""

from __future__ import annotations

from typing import Any

from ec2gw.aws.serializer import format_timestamp
from ec2gw.compute.snapshot_models import ImageBlockDevice
from ec2gw.db.models import Image


def _mapping(d: ImageBlockDevice) -> dict[str, Any]:
    ebs: dict[str, Any] = {"DeleteOnTermination": d.delete_on_termination, "VolumeType": d.volume_type,
                           "Encrypted": False}
    if d.snapshot_id:
        ebs["SnapshotId"] = d.snapshot_id
    if d.volume_size is not None:
        ebs["VolumeSize"] = d.volume_size
    return {"DeviceName": d.device_name, "Ebs": ebs}


def image_item(img: Image, owner_account: str, tags: list[dict[str, str]],
               devices: list[ImageBlockDevice] | None = None) -> dict[str, Any]:
    """``devices``: the image's block device mappings (an EBS-backed image maps its root device)."""
    devices = devices or []
    item: dict[str, Any] = {
        "ImageId": img.id,
        "ImageLocation": img.location,
        "State": img.state,
        "OwnerId": owner_account,
        "CreationDate": format_timestamp(img.created_at),
        "Public": img.is_public,
        "Architecture": img.architecture,
        "ImageType": img.kind,
        "KernelId": img.kernel_id,
        "RamdiskId": img.ramdisk_id,
        "Name": img.name,
        "Description": img.description or None,
        "RootDeviceType": "ebs" if any(d.device_name == img.root_device_name for d in devices) else "instance-store",
        "RootDeviceName": img.root_device_name,
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
        "BlockDeviceMappings": [_mapping(d) for d in devices],
        "ProductCodes": [],
        "Tags": tags,
        "SourceInstanceId": img.source_instance_id,
    }
    if img.state_reason:
        code, sep, message = img.state_reason.partition(": ")
        if not (sep and code.startswith(("Client.", "Server."))):
            code, message = img.state, img.state_reason
        item["StateReason"] = {"Code": code, "Message": message}
    return item
