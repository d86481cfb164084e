"""RunInstances' network part: SubnetId, NetworkInterfaces and PrivateIpAddress -> the pools of the NICs.

Every subnet is a network pool (ec2gw.network.vpc). A launch naming a subnet gets its primary NIC
in that pool (and, when the subnet maps public addresses, a NIC in the public pool as well);
NetworkInterfaces name one subnet per device index. Nothing here writes: the checks happen before
the launch writes anything, as RunInstances' other checks do.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ec2gw import ids
from ec2gw.errors import ServiceError, invalid_combination, invalid_value
from ec2gw.network import vpc
from ec2gw.network.models import Address
from ec2gw.network.selection import NicRequest

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ec2gw.api.context import RequestContext

#: the members of a NetworkInterfaces entry that are understood (others are refused by name)
_KNOWN = {"DeviceIndex", "SubnetId", "Groups", "PrivateIpAddress", "PrivateIpAddresses", "AssociatePublicIpAddress",
          "DeleteOnTermination", "Description", "SecondaryPrivateIpAddressCount", "NetworkCardIndex"}


@dataclass(frozen=True)
class NicPlan:
    requested: list[NicRequest]
    map_public: bool


def check_subnet_id(value: Any) -> str:
    if not isinstance(value, str) or not ids.is_valid(value, ("subnet",)):
        raise ServiceError("InvalidSubnetID.Malformed",
                           f'Invalid id: "{value}" (expecting "subnet-" followed by 8 or 17 lowercase hexadecimal digits).')
    return value


def plan(s: Session, ctx: RequestContext, subnet_id: str | None, interfaces: list[dict[str, Any]] | None,
         private_ip: str | None, zone: str | None, max_count: int, instance_groups: bool) -> NicPlan | None:
    """The NICs a launch asks for, checked; None when it names no subnet (Nimbus's pool rules apply)."""
    if not subnet_id and not interfaces and not private_ip:
        return None
    if interfaces and (subnet_id or private_ip):
        raise invalid_combination("Network interfaces and an instance-level subnet ID or private IP address may not be "
                                  "specified on the same request; give SubnetId and PrivateIpAddress in the interface.")
    if interfaces and instance_groups:
        raise invalid_combination("Network interfaces and an instance-level security groups may not be specified on the "
                                  "same request; give the groups in the interface (Groups).")
    subnets = vpc.list_subnets(s, ctx.settings)
    if not interfaces:
        sn = _subnet(subnets, subnet_id) if subnet_id else _containing(subnets, private_ip)
        asked = [(sn, private_ip)]
        map_public = sn.map_public
    else:
        asked, map_public = _interfaces(subnets, interfaces)
    if sum(1 for _, ip in asked if ip) and max_count > 1:
        raise invalid_combination("A private IP address can only be given when launching one instance (MaxCount=1); "
                                  "leave PrivateIpAddress out to get free addresses for several.")
    pools = [sn.pool for sn, _ in asked]
    if len(set(pools)) != len(pools):
        raise invalid_value("NetworkInterface.N.SubnetId", ",".join(sn.id for sn, _ in asked),
                            "Each network interface of an instance must be in a different subnet.")
    common = set(asked[0][0].zones)
    for sn, _ in asked[1:]:
        common &= set(sn.zones)
    if not common:
        names = ", ".join(f"{sn.id} (pool {sn.pool}: {', '.join(sn.zones) or 'no node'})" for sn, _ in asked)
        raise invalid_value("SubnetId", ",".join(sn.id for sn, _ in asked),
                            f"No node serves all the subnets asked for: {names}. Choose subnets of one zone, or ask "
                            "the administrator to serve the pool on a node (`ec2gw admin node add ... --pools`).")
    if zone is not None and zone not in common:
        raise invalid_combination(f"The subnet(s) {', '.join(sn.id for sn, _ in asked)} are in {', '.join(sorted(common))}, "
                                  f"not in {zone}; leave Placement.AvailabilityZone out or choose a subnet of {zone}.")
    for sn, ip in asked:
        if ip:
            _check_address(s, sn, ip)
    return NicPlan([NicRequest(sn.pool, ip) for sn, ip in asked], map_public)


def _subnet(subnets: list[vpc.Subnet], subnet_id: Any) -> vpc.Subnet:
    found = vpc.subnet_of(subnets, check_subnet_id(subnet_id))
    if found is None:
        raise vpc.unknown_subnet(subnet_id)
    return found


def _ip(value: Any, name: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise invalid_value(name, value, "Give an IPv4 address such as 10.0.0.12.") from None


def _containing(subnets: list[vpc.Subnet], private_ip: str | None) -> vpc.Subnet:
    ip = _ip(private_ip, "PrivateIpAddress")
    for sn in subnets:
        if ip in ipaddress.ip_network(sn.cidr):
            return sn
    raise invalid_value("PrivateIpAddress", private_ip,
                        "It is in no subnet's range; DescribeSubnets lists their CidrBlock, or give SubnetId.")


def _check_address(s: Session, sn: vpc.Subnet, ip_text: str) -> None:
    ip = _ip(ip_text, "PrivateIpAddress")
    if ip not in ipaddress.ip_network(sn.cidr):
        raise invalid_value("PrivateIpAddress", ip_text,
                            f"Address does not fall within the subnet's address range ({sn.id}: {sn.cidr}).")
    if s.scalar(select(Address.id).where(Address.pool == sn.pool, Address.ip == str(ip))) is None:
        raise invalid_value("PrivateIpAddress", ip_text,
                            f"The subnet {sn.id} (pool {sn.pool}) has no such address among the addresses its "
                            "administrator gave it; leave PrivateIpAddress out to get any free one.")


def _interfaces(subnets: list[vpc.Subnet], interfaces: list[dict[str, Any]]) -> tuple[list[tuple[vpc.Subnet, str | None]], bool]:
    by_index: dict[int, tuple[vpc.Subnet, str | None]] = {}
    public_flags = []
    for n, spec in enumerate(interfaces, 1):
        unknown = sorted(set(spec) - _KNOWN)
        if "NetworkInterfaceId" in unknown:
            raise ServiceError("UnsupportedOperation",
                               f"NetworkInterface.{n}.NetworkInterfaceId: existing network interfaces cannot be attached at "
                               "launch here (an instance's interfaces are made with it); give SubnetId instead.")
        if unknown:
            raise invalid_value(f"NetworkInterface.{n}", ",".join(unknown),
                                f"Not supported here; supported members: {', '.join(sorted(_KNOWN))}.")
        if spec.get("DeviceIndex") is None:
            raise ServiceError("MissingParameter", f"NetworkInterface.{n}.DeviceIndex is required (0 for the primary interface).")
        index = int(spec["DeviceIndex"])
        if index in by_index:
            raise invalid_value(f"NetworkInterface.{n}.DeviceIndex", index, "Each interface needs its own device index.")
        if spec.get("SubnetId") is None:
            raise ServiceError("MissingParameter", f"NetworkInterface.{n}.SubnetId is required; DescribeSubnets lists them.")
        if spec.get("DeleteOnTermination") is False:
            raise invalid_value(f"NetworkInterface.{n}.DeleteOnTermination", "false",
                                "An instance's interfaces are deleted with it here; leave DeleteOnTermination out.")
        if spec.get("SecondaryPrivateIpAddressCount"):
            raise invalid_value(f"NetworkInterface.{n}.SecondaryPrivateIpAddressCount",
                                spec["SecondaryPrivateIpAddressCount"], "An interface has one address here.")
        if int(spec.get("NetworkCardIndex") or 0) != 0:
            raise invalid_value(f"NetworkInterface.{n}.NetworkCardIndex", spec["NetworkCardIndex"], "Only card 0 exists.")
        ip = spec.get("PrivateIpAddress")
        listed = spec.get("PrivateIpAddresses") or []
        if len(listed) > 1:
            raise invalid_value(f"NetworkInterface.{n}.PrivateIpAddresses", len(listed), "An interface has one address here.")
        if listed:
            other = listed[0].get("PrivateIpAddress")
            if ip and other and other != ip:
                raise invalid_combination(f"NetworkInterface.{n}: PrivateIpAddress and PrivateIpAddresses name different addresses.")
            ip = ip or other
        by_index[index] = (_subnet(subnets, spec["SubnetId"]), ip)
        if spec.get("AssociatePublicIpAddress") is not None:
            public_flags.append(bool(spec["AssociatePublicIpAddress"]))
    if sorted(by_index) != list(range(len(by_index))):
        raise invalid_value("NetworkInterface.N.DeviceIndex", ",".join(str(i) for i in sorted(by_index)),
                            "Device indexes must be 0, 1, 2, ... without gaps (0 is the primary interface).")
    if public_flags and len(by_index) > 1:
        raise invalid_combination("The associatePublicIPAddress parameter cannot be specified when launching with multiple "
                                  "network interfaces.")
    asked = [by_index[i] for i in range(len(by_index))]
    map_public = public_flags[0] if public_flags else asked[0][0].map_public
    return asked, map_public
