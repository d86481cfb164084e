"""Instance rows -> EC2 shapes (Instance, Reservation, InstanceStatus)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ec2gw.compute import leases
from ec2gw.compute.states import state_dict
from ec2gw.db.models import Instance
from ec2gw.network import vpc
from ec2gw.network.selection import ordered_nics


@dataclass(frozen=True)
class NetView:
    """What the network part of an instance's shape needs besides its rows."""

    vpc_id: str
    account_id: str


def block_device_mappings(volumes: list[Any]) -> list[dict[str, Any]]:
    """InstanceBlockDeviceMapping per attached volume (rows of ec2gw/db/volume_models.py), the root first."""
    ordered = sorted(volumes, key=lambda v: (not v.is_root, v.target or "", v.device or ""))
    return [{"DeviceName": v.device, "Ebs": {"AttachTime": v.attach_time, "DeleteOnTermination": v.delete_on_termination,
                                             "Status": v.attach_state, "VolumeId": v.id}}
            for v in ordered if v.device and v.attach_state]


def root_device(volumes: list[Any]) -> str:
    """The instance's root device name: its root volume's (the image's RootDeviceName); /dev/vda
    for instances launched before root devices were volumes."""
    return next((v.device for v in volumes if v.is_root and v.device), "/dev/vda")


def instance_item(inst: Instance, tags: list[dict[str, str]], groups: list[dict[str, str]], nics: list[Any] | None = None,
                  net: NetView | None = None, monitored: bool = False, volumes: list[Any] | None = None) -> dict[str, Any]:
    """The Instance shape; ``nics`` are the instance's address rows (id, pool, mac, ip, hostname,
    device_index); ``monitored``: detailed monitoring is on (MonitorInstances); ``volumes``: the
    volumes attached to it (its root device first)."""
    volumes = volumes or []
    item: dict[str, Any] = {
        "InstanceId": inst.id,
        "ImageId": inst.image_id,
        "State": state_dict(inst.state),
        "PrivateDnsName": inst.private_dns or "",
        "PublicDnsName": "",
        "StateTransitionReason": inst.state_transition_reason or "",
        "KeyName": inst.key_name,
        "AmiLaunchIndex": inst.launch_index,
        "ProductCodes": [],
        "InstanceType": inst.instance_type,
        "LaunchTime": inst.launch_time,
        "Placement": {"AvailabilityZone": inst.availability_zone, "GroupName": "", "Tenancy": "default"},
        "KernelId": inst.kernel_id,
        "RamdiskId": inst.ramdisk_id,
        "Monitoring": {"State": "enabled" if monitored else "disabled"},
        "PrivateIpAddress": inst.private_ip,
        "PublicIpAddress": inst.public_ip,
        "Architecture": "x86_64",
        "RootDeviceType": "ebs" if any(v.is_root and v.storage == "pool" for v in volumes) else "instance-store",
        "RootDeviceName": root_device(volumes),
        "BlockDeviceMappings": block_device_mappings(volumes),
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",
        "EbsOptimized": False,
        "EnaSupport": False,
        "SourceDestCheck": True,
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
        "CpuOptions": {"CoreCount": inst.vcpus, "ThreadsPerCore": 1},
        "Tags": leases.with_end_tag(inst, tags) or None,
        "SecurityGroups": groups,
        "NetworkInterfaces": [],
        "MetadataOptions": {"State": "applied", "HttpTokens": "optional", "HttpEndpoint": "disabled"},
        "HibernationOptions": {"Configured": bool(inst.hibernation_configured)},
    }
    if inst.state_reason_code:
        item["StateReason"] = {"Code": inst.state_reason_code, "Message": inst.state_reason_message or ""}
    plain, elastic = split_elastic(nics or [])
    if plain:
        ordered = ordered_nics(inst, plain)
        item["NetworkInterfaces"] = [interface(inst, n, index, net, groups, elastic.get(n.id))
                                     for index, n in enumerate(ordered)]
        if net is not None:
            item["VpcId"] = net.vpc_id
            item["SubnetId"] = vpc.subnet_id(ordered[0].pool)
    elif inst.mac:  # addresses already returned (terminated): the NIC the row remembers
        item["NetworkInterfaces"] = [interface(inst, None, 0, None, groups)]
    return item


def split_elastic(nics: list[Any]) -> tuple[list[Any], dict[int, Any]]:
    """An instance's address rows as its network interfaces and, by interface (its row id), the
    elastic address associated with it: an elastic address is an interface's association, not
    an interface of its own."""
    plain = [n for n in nics if getattr(n, "allocation_id", None) is None]
    elastic = {n.nic_address_id: n for n in nics if getattr(n, "allocation_id", None) is not None}
    return plain, elastic


def interface(inst: Instance, nic: Any, index: int, net: NetView | None, groups: list[dict[str, str]],
              eip: Any = None) -> dict[str, Any]:
    """One NIC (``nic`` None: the one the instance row remembers). Its association is the elastic
    address ``eip`` associated with it; else the primary one (index 0) carries the instance's
    launch-time public address, as on EC2."""
    mac, ip, hostname = (nic.mac, nic.ip, nic.hostname) if nic is not None else (inst.mac, inst.private_ip, inst.private_dns)
    public = inst.public_ip if index == 0 else None
    association: dict[str, Any] | None = None
    if eip is not None:
        association = {"PublicIp": eip.ip, "PublicDnsName": "", "IpOwnerId": net.account_id if net else "",
                       "AllocationId": eip.allocation_id, "AssociationId": eip.association_id}
    elif public:
        association = {"PublicIp": public, "PublicDnsName": "", "IpOwnerId": "amazon"}
    item: dict[str, Any] = {
        "MacAddress": mac,
        "PrivateIpAddress": ip,
        "PrivateDnsName": hostname or "",
        "Status": "in-use",
        "Attachment": {"DeviceIndex": index, "Status": "attached", "AttachTime": inst.launch_time},
        "PrivateIpAddresses": [{"Primary": True, "PrivateIpAddress": ip, "PrivateDnsName": hostname or "",
                                "Association": association}],
        "Association": association,
    }
    if nic is not None and net is not None:
        item.update({
            "NetworkInterfaceId": vpc.eni_id(inst.id, nic.id),
            "SubnetId": vpc.subnet_id(nic.pool),
            "VpcId": net.vpc_id,
            "OwnerId": net.account_id,
            "Description": "",
            "Groups": groups,
            "Ipv6Addresses": [],
            "SourceDestCheck": True,
            "InterfaceType": "interface",
        })
        item["Attachment"].update({"AttachmentId": vpc.attachment_id(inst.id, nic.id), "DeleteOnTermination": True,
                                   "NetworkCardIndex": 0})
    return item


def reservations(
    rows: Iterable[Instance], owner_account: str, tags: dict[str, list[dict[str, str]]],
    groups: dict[str, list[dict[str, str]]], nics: dict[str, list[Any]] | None = None, vpc_id: str | None = None,
    monitored: set[str] | None = None, volumes: dict[str, list[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Group instances into reservations in the order their first instance appears."""
    net = NetView(vpc_id, owner_account) if vpc_id else None
    out: dict[str, dict[str, Any]] = {}
    for inst in rows:
        res = out.get(inst.reservation_id)
        if res is None:
            res = out[inst.reservation_id] = {
                "ReservationId": inst.reservation_id,
                "OwnerId": owner_account,
                "Groups": [],
                "Instances": [],
            }
        res["Instances"].append(instance_item(inst, tags.get(inst.id, []), groups.get(inst.id, []), (nics or {}).get(inst.id),
                                              net, inst.id in (monitored or ()), (volumes or {}).get(inst.id)))
    return list(out.values())


def state_change(inst_id: str, previous: str, current: str) -> dict[str, Any]:
    return {"InstanceId": inst_id, "PreviousState": state_dict(previous), "CurrentState": state_dict(current)}
