"""DescribeVpcs, DescribeSubnets, DescribeNetworkInterfaces; CreateVpc, CreateSubnet, DeleteVpc and
DeleteSubnet are refused (the pools, hence the subnets, are made by the operator).

The view is read from the pools on every request (ec2gw.network.vpc): one default VPC whose
subnets are the pools, and one network interface per address an instance of the caller holds.
Every caller sees the same VPC and subnets as their own (OwnerId is the caller's account, as for
a default VPC on EC2), and only the interfaces of their own instances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from ec2gw import ids
from ec2gw.api import instance_views as views
from ec2gw.api.context import RequestContext
from ec2gw.api.security_groups import groups_of
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import matches, normalize
from ec2gw.aws.pagination import Tokens, check_max_results, scope_digest
from ec2gw.db.models import Instance
from ec2gw.errors import ServiceError
from ec2gw.network import vpc
from ec2gw.network.pools import nics_of
from ec2gw.network.selection import ordered_nics

Getter = Callable[[dict[str, Any]], Any]


def _malformed(kind: str, prefix: str, value: str) -> ServiceError:
    return ServiceError(f"{kind}.Malformed",
                        f'Invalid id: "{value}" (expecting "{prefix}-" followed by 8 or 17 lowercase hexadecimal digits).')


def _check_ids(values: list[str] | None, prefix: str, kind: str) -> list[str]:
    for v in values or []:
        if not isinstance(v, str) or not ids.is_valid(v, (prefix,)):
            raise _malformed(kind, prefix, str(v))
    return list(dict.fromkeys(values or []))


def _filtered(items: list[dict[str, Any]], filters: Any, getters: dict[str, Getter], tag_field: str) -> list[dict[str, Any]]:
    """Filter.N over in-memory items, tag filters (tag:KEY, tag-key, tag-value) included."""
    out = items
    for name, values in normalize(filters):
        if name.startswith("tag:") and len(name) > 4:
            key = name[4:]
            out = [it for it in out if any(t["Key"] == key and matches(t["Value"], values) for t in it.get(tag_field) or [])]
        elif name in ("tag-key", "tag-value"):
            part = "Key" if name == "tag-key" else "Value"
            out = [it for it in out if any(matches(t[part], values) for t in it.get(tag_field) or [])]
        elif name in getters:
            out = [it for it in out if matches(getters[name](it), values)]
        else:
            known = ", ".join(sorted([*getters, "tag:<key>", "tag-key", "tag-value"]))
            raise ServiceError("InvalidParameterValue", f"The filter '{name}' is invalid; supported filters here: {known}.")
    return out


def _page(tokens: Tokens, items: list[dict[str, Any]], key: str, max_results: int | None, next_token: str | None,
          scope: str) -> tuple[list[dict[str, Any]], str | None]:
    """Items in ``key`` order from after the token, at most ``max_results``, and the next token."""
    items = sorted(items, key=lambda it: it[key])
    if next_token:
        last = tokens.decode(next_token, scope)
        items = [it for it in items if it[key] > last]
    if max_results and len(items) > max_results:
        items = items[:max_results]
        return items, tokens.encode(items[-1][key], scope)
    return items, None


def _answer(items: list[dict[str, Any]], field: str, token: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {field: items}
    if token:
        out["NextToken"] = token
    return out


# --------------------------------------------------------------------------- VPCs


def vpc_item(ctx: RequestContext, subnets: list[vpc.Subnet]) -> dict[str, Any]:
    cidrs = vpc.vpc_cidrs(subnets)
    vid = vpc.vpc_id(ctx.settings)
    return {
        "VpcId": vid, "OwnerId": ctx.principal.account_id, "State": "available", "CidrBlock": cidrs[0],
        "CidrBlockAssociationSet": [
            {"AssociationId": f"vpc-cidr-assoc-{vpc.digest('assoc', vid, c)}", "CidrBlock": c,
             "CidrBlockState": {"State": "associated"}} for c in cidrs],
        "DhcpOptionsId": "default", "InstanceTenancy": "default", "IsDefault": True, "Tags": [],
    }


_VPC_FILTERS: dict[str, Getter] = {
    "vpc-id": lambda v: v["VpcId"],
    "cidr": lambda v: v["CidrBlock"],
    "cidr-block-association.cidr-block": lambda v: [a["CidrBlock"] for a in v["CidrBlockAssociationSet"]],
    "cidr-block-association.association-id": lambda v: [a["AssociationId"] for a in v["CidrBlockAssociationSet"]],
    "cidr-block-association.state": lambda v: [a["CidrBlockState"]["State"] for a in v["CidrBlockAssociationSet"]],
    "dhcp-options-id": lambda v: v["DhcpOptionsId"],
    "is-default": lambda v: v["IsDefault"],
    "isDefault": lambda v: v["IsDefault"],
    "owner-id": lambda v: v["OwnerId"],
    "state": lambda v: v["State"],
}


@operation("DescribeVpcs")
def describe_vpcs(
    ctx: RequestContext, vpc_ids: list[str] | None = None, filters: Any = None, max_results: int | None = None,
    next_token: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted = _check_ids(vpc_ids, "vpc", "InvalidVpcID")
    check_max_results(max_results, 5, 1000)
    normalize(filters)
    ctx.check_dry_run(dry_run)
    with ctx.db.session() as s:
        item = vpc_item(ctx, vpc.list_subnets(s, ctx.settings))
    for v in wanted:
        if v != item["VpcId"]:
            raise ServiceError("InvalidVpcID.NotFound",
                               f"The vpc ID '{v}' does not exist; this cloud has one VPC, {item['VpcId']} (DescribeVpcs).")
    items, token = _page(ctx.tokens, _filtered([item], filters, _VPC_FILTERS, "Tags"), "VpcId", max_results, next_token,
                         scope_digest("vpcs", wanted, filters))
    return _answer(items, "Vpcs", token)


# --------------------------------------------------------------------------- subnets


def subnet_item(ctx: RequestContext, sn: vpc.Subnet) -> dict[str, Any]:
    st = ctx.settings
    return {
        "SubnetId": sn.id, "VpcId": vpc.vpc_id(st), "OwnerId": ctx.principal.account_id, "State": "available",
        "SubnetArn": f"arn:aws:ec2:{st.region}:{ctx.principal.account_id}:subnet/{sn.id}",
        "CidrBlock": sn.cidr, "AvailabilityZone": sn.zone, "AvailableIpAddressCount": sn.available,
        "DefaultForAz": sn.default_for_az, "MapPublicIpOnLaunch": sn.map_public,
        "AssignIpv6AddressOnCreation": False, "Ipv6CidrBlockAssociationSet": [], "MapCustomerOwnedIpOnLaunch": False,
        "EnableDns64": False, "Ipv6Native": False, "Tags": [{"Key": "Name", "Value": sn.pool}],
        "PrivateDnsNameOptionsOnLaunch": {"HostnameType": "ip-name", "EnableResourceNameDnsARecord": False,
                                          "EnableResourceNameDnsAAAARecord": False},
        "_zones": list(sn.zones),
    }


_SUBNET_FILTERS: dict[str, Getter] = {
    "subnet-id": lambda v: v["SubnetId"],
    "subnet-arn": lambda v: v["SubnetArn"],
    "vpc-id": lambda v: v["VpcId"],
    "availability-zone": lambda v: v["_zones"] or [v["AvailabilityZone"]],
    "availabilityZone": lambda v: v["_zones"] or [v["AvailabilityZone"]],
    "available-ip-address-count": lambda v: v["AvailableIpAddressCount"],
    "availableIpAddressCount": lambda v: v["AvailableIpAddressCount"],
    "cidr-block": lambda v: v["CidrBlock"],
    "cidr": lambda v: v["CidrBlock"],
    "cidrBlock": lambda v: v["CidrBlock"],
    "default-for-az": lambda v: v["DefaultForAz"],
    "defaultForAz": lambda v: v["DefaultForAz"],
    "map-public-ip-on-launch": lambda v: v["MapPublicIpOnLaunch"],
    "owner-id": lambda v: v["OwnerId"],
    "state": lambda v: v["State"],
}


@operation("DescribeSubnets")
def describe_subnets(
    ctx: RequestContext, subnet_ids: list[str] | None = None, filters: Any = None, max_results: int | None = None,
    next_token: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted = _check_ids(subnet_ids, "subnet", "InvalidSubnetID")
    check_max_results(max_results, 5, 1000)
    normalize(filters)
    ctx.check_dry_run(dry_run)
    with ctx.db.session() as s:
        subnets = vpc.list_subnets(s, ctx.settings)
    items = [subnet_item(ctx, sn) for sn in subnets]
    if wanted:
        known = {it["SubnetId"] for it in items}
        for sid in wanted:
            if sid not in known:
                raise vpc.unknown_subnet(sid)
        items = [it for it in items if it["SubnetId"] in wanted]
    items, token = _page(ctx.tokens, _filtered(items, filters, _SUBNET_FILTERS, "Tags"), "SubnetId", max_results, next_token,
                         scope_digest("subnets", wanted, filters))
    for it in items:
        del it["_zones"]
    return _answer(items, "Subnets", token)


# --------------------------------------------------------------------------- network interfaces


def interfaces_of(ctx: RequestContext, s: Any) -> list[dict[str, Any]]:
    """The NetworkInterface shapes of every NIC of the caller's instances (terminated ones have none)."""
    rows = list(s.scalars(select(Instance).where(Instance.owner_id == ctx.user_id, Instance.state != "terminated")))
    nics = nics_of(s, [r.id for r in rows])
    groups = groups_of(s, ctx.user_id, [r.id for r in rows])
    net = views.NetView(vpc.vpc_id(ctx.settings), ctx.principal.account_id)
    out = []
    for inst in rows:
        plain, elastic = views.split_elastic(nics.get(inst.id, []))
        for index, nic in enumerate(ordered_nics(inst, plain)):
            shape = views.interface(inst, nic, index, net, groups[inst.id], elastic.get(nic.id))
            shape["Attachment"].update({"InstanceId": inst.id, "InstanceOwnerId": ctx.principal.account_id})
            shape.update({"AvailabilityZone": inst.availability_zone, "RequesterManaged": False, "TagSet": []})
            out.append(shape)
    return out


def _addresses(n: dict[str, Any]) -> list[str]:
    return [a["PrivateIpAddress"] for a in n["PrivateIpAddresses"]]


_ENI_FILTERS: dict[str, Getter] = {
    "network-interface-id": lambda n: n["NetworkInterfaceId"],
    "subnet-id": lambda n: n["SubnetId"],
    "vpc-id": lambda n: n["VpcId"],
    "availability-zone": lambda n: n["AvailabilityZone"],
    "mac-address": lambda n: n["MacAddress"],
    "private-ip-address": lambda n: n["PrivateIpAddress"],
    "addresses.private-ip-address": _addresses,
    "private-dns-name": lambda n: n["PrivateDnsName"],
    "addresses.primary": lambda n: True,
    "addresses.association.public-ip": lambda n: (n.get("Association") or {}).get("PublicIp"),
    "addresses.association.owner-id": lambda n: (n.get("Association") or {}).get("IpOwnerId"),
    "association.public-ip": lambda n: (n.get("Association") or {}).get("PublicIp"),
    "association.ip-owner-id": lambda n: (n.get("Association") or {}).get("IpOwnerId"),
    "association.public-dns-name": lambda n: (n.get("Association") or {}).get("PublicDnsName"),
    "association.allocation-id": lambda n: (n.get("Association") or {}).get("AllocationId"),
    "association.association-id": lambda n: (n.get("Association") or {}).get("AssociationId"),
    "attachment.attachment-id": lambda n: n["Attachment"]["AttachmentId"],
    "attachment.instance-id": lambda n: n["Attachment"]["InstanceId"],
    "attachment.instance-owner-id": lambda n: n["Attachment"]["InstanceOwnerId"],
    "attachment.device-index": lambda n: n["Attachment"]["DeviceIndex"],
    "attachment.status": lambda n: n["Attachment"]["Status"],
    "attachment.delete-on-termination": lambda n: n["Attachment"]["DeleteOnTermination"],
    "status": lambda n: n["Status"],
    "group-id": lambda n: [g["GroupId"] for g in n["Groups"]],
    "group-name": lambda n: [g["GroupName"] for g in n["Groups"]],
    "owner-id": lambda n: n["OwnerId"],
    "description": lambda n: n["Description"],
    "interface-type": lambda n: n["InterfaceType"],
    "requester-managed": lambda n: n["RequesterManaged"],
    "source-dest-check": lambda n: n["SourceDestCheck"],
}


@operation("DescribeNetworkInterfaces")
def describe_network_interfaces(
    ctx: RequestContext, network_interface_ids: list[str] | None = None, filters: Any = None,
    max_results: int | None = None, next_token: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted = _check_ids(network_interface_ids, "eni", "InvalidNetworkInterfaceID")
    if wanted and max_results is not None:
        raise ServiceError("InvalidParameterCombination",
                           "MaxResults cannot be combined with NetworkInterfaceId; page over filters instead.")
    check_max_results(max_results, 5, 1000)
    normalize(filters)
    ctx.check_dry_run(dry_run)
    with ctx.db.session() as s:
        items = interfaces_of(ctx, s)
    if wanted:
        known = {it["NetworkInterfaceId"] for it in items}
        for eid in wanted:
            if eid not in known:
                raise ServiceError("InvalidNetworkInterfaceID.NotFound",
                                   f"The networkInterface ID '{eid}' does not exist; DescribeNetworkInterfaces lists yours.")
        items = [it for it in items if it["NetworkInterfaceId"] in wanted]
    items, token = _page(ctx.tokens, _filtered(items, filters, _ENI_FILTERS, "TagSet"), "NetworkInterfaceId", max_results,
                         next_token, scope_digest("enis", ctx.user_id, wanted, filters))
    return _answer(items, "NetworkInterfaces", token)


# --------------------------------------------------------------------------- refused changes


def _operator_made(what: str) -> ServiceError:
    return ServiceError(
        "UnsupportedOperation",
        f"{what}: this cloud has one VPC whose subnets are the network pools its administrator made "
        "(`ec2gw admin pool add`); DescribeVpcs and DescribeSubnets list them. Launch into a subnet with "
        "RunInstances' SubnetId.",
    )


@operation("CreateVpc")
def create_vpc(ctx: RequestContext, cidr_block: str | None = None, dry_run: bool | None = None, **_: Any) -> dict[str, Any]:
    raise _operator_made("VPCs cannot be created")


@operation("DeleteVpc")
def delete_vpc(ctx: RequestContext, vpc_id: str | None = None, dry_run: bool | None = None) -> dict[str, Any]:
    _check_ids([vpc_id] if vpc_id else [], "vpc", "InvalidVpcID")
    if vpc_id != vpc.vpc_id(ctx.settings):
        raise ServiceError("InvalidVpcID.NotFound", f"The vpc ID '{vpc_id}' does not exist; DescribeVpcs lists the VPC.")
    raise _operator_made("The default VPC cannot be deleted")


@operation("CreateSubnet")
def create_subnet(ctx: RequestContext, vpc_id: str | None = None, dry_run: bool | None = None, **_: Any) -> dict[str, Any]:
    raise _operator_made("Subnets cannot be created through the API")


@operation("DeleteSubnet")
def delete_subnet(ctx: RequestContext, subnet_id: str | None = None, dry_run: bool | None = None) -> dict[str, Any]:
    _check_ids([subnet_id] if subnet_id else [], "subnet", "InvalidSubnetID")
    with ctx.db.session() as s:
        known = {sn.id for sn in vpc.list_subnets(s, ctx.settings)}
    if subnet_id not in known:
        raise vpc.unknown_subnet(str(subnet_id))
    raise _operator_made("Subnets cannot be deleted through the API")
