"""Image rows -> the Image shape of DescribeImages (keys are the botocore member names)."""

from __future__ import annotations

from typing import Any

from ec2gw.aws.serializer import format_timestamp
from ec2gw.db.models import Image


def image_item(img: Image, owner_account: str, tags: list[dict[str, str]]) -> dict[str, Any]:
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
        "RootDeviceType": "instance-store",
        "RootDeviceName": img.root_device_name,
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
        "BlockDeviceMappings": [],
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
