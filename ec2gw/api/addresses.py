"""Elastic IP addresses: AllocateAddress, DescribeAddresses, AssociateAddress, DisassociateAddress,
ReleaseAddress.

Addresses come from the public network pools (ec2gw.network.elastic has the rules); every address
is Domain vpc, its PublicIpv4Pool the pool's name. Associating one with an instance (or one of its
network interfaces) makes it that interface's public address at once in every answer; the compute
worker then puts a NIC on the pool's network into the domain on its node, with the address's DHCP
entry (ec2gw/compute/elastic.py). A user sees and touches only their own addresses and instances:
anything else is NotFound, as EC2 answers for an id it does not know.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import select

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.api.instance_query import check_instance_ids, load_instances
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import matches, normalize
from ec2gw.db.models import Instance
from ec2gw.errors import ServiceError, invalid_combination, invalid_value
from ec2gw.network import elastic, vpc
from ec2gw.network.models import Address
from ec2gw.quotas import address_allowance
from ec2gw.tagging import set_tags, tags_for, tags_from_specifications

#: EC2's filters of DescribeAddresses (besides tag:<key>)
FILTERS = (
    "allocation-id", "association-id", "domain", "instance-id", "network-border-group", "network-interface-id",
    "network-interface-owner-id", "private-ip-address", "public-ip", "public-ipv4-pool", "tag-key",
)


def _check_ip(ip: str, name: str) -> str:
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        raise invalid_value(name, ip, "Give an IPv4 address such as 192.0.2.10.") from None
    return ip


def _check_allocation(alloc: str) -> str:
    if not isinstance(alloc, str) or not ids.is_valid(alloc, ("eipalloc",)):
        raise ServiceError("InvalidAllocationID.Malformed",
                           f'Invalid id: "{alloc}" (expecting "eipalloc-" followed by 8 or 17 lowercase hexadecimal digits).')
    return alloc


def _check_association(assoc: str) -> str:
    if not isinstance(assoc, str) or not ids.is_valid(assoc, ("eipassoc",)):
        raise ServiceError("InvalidAssociationID.Malformed",
                           f'Invalid id: "{assoc}" (expecting "eipassoc-" followed by 8 or 17 lowercase hexadecimal digits).')
    return assoc


def _one_of(allocation_id: str | None, public_ip: str | None, what: str) -> None:
    if allocation_id and public_ip:
        raise invalid_combination(f"Give AllocationId or PublicIp to name the address to {what}, not both.")
    if not allocation_id and not public_ip:
        raise ServiceError("MissingParameter", f"Name the address to {what}: AllocationId (eipalloc-...) or PublicIp.")
    if allocation_id:
        _check_allocation(allocation_id)
    if public_ip:
        _check_ip(public_ip, "PublicIp")


def address_item(ctx: RequestContext, row: Address, tags: list[dict[str, str]], inst_nics: dict[int, str]) -> dict[str, Any]:
    """The Address shape of one elastic address (``inst_nics``: address row id -> eni id)."""
    item: dict[str, Any] = {
        "AllocationId": row.allocation_id, "Domain": "vpc", "PublicIp": row.ip, "PublicIpv4Pool": row.pool,
        "NetworkBorderGroup": ctx.settings.region, "Tags": tags,
    }
    if row.association_id and row.instance_id:
        item.update({"AssociationId": row.association_id, "InstanceId": row.instance_id,
                     "NetworkInterfaceOwnerId": ctx.principal.account_id})
        if row.nic_address_id is not None:
            item["NetworkInterfaceId"] = inst_nics.get(row.nic_address_id) or vpc.eni_id(row.instance_id, row.nic_address_id)
            item["SubnetId"] = inst_nics.get(-row.nic_address_id)
    return item


def _nic_view(s: Any, rows: list[Address]) -> tuple[dict[int, str], dict[int, str]]:
    """For the NICs the addresses are associated with: address id -> eni id and -> private address
    (with subnet ids under negative keys, for the Address shape)."""
    targets = [r.nic_address_id for r in rows if r.nic_address_id is not None]
    enis: dict[int, str] = {}
    private: dict[int, str] = {}
    if targets:
        for nic in s.scalars(select(Address).where(Address.id.in_(targets))):
            if nic.instance_id:
                enis[nic.id] = vpc.eni_id(nic.instance_id, nic.id)
                enis[-nic.id] = vpc.subnet_id(nic.pool)
                private[nic.id] = nic.ip
    return enis, private


@operation("DescribeAddresses")
def describe_addresses(
    ctx: RequestContext, public_ips: list[str] | None = None, allocation_ids: list[str] | None = None,
    filters: Any = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted_filters = normalize(filters)
    for name, _ in wanted_filters:
        if name not in FILTERS and not (name.startswith("tag:") and len(name) > 4):
            raise ServiceError(
                "InvalidParameterValue",
                f"The filter '{name}' is invalid; supported filters here: {', '.join(sorted((*FILTERS, 'tag:<key>')))}.",
            )
    for ip in public_ips or []:
        _check_ip(ip, "PublicIp")
    for alloc in allocation_ids or []:
        _check_allocation(alloc)
    ctx.check_dry_run(dry_run)
    with ctx.db.session() as s:
        rows = elastic.owned(s, ctx.user_id)
        tags = tags_for(s, [r.allocation_id for r in rows if r.allocation_id])
        enis, private = _nic_view(s, rows)
        items = []
        for r in rows:
            item = address_item(ctx, r, tags.get(r.allocation_id or "", []), enis)
            if r.association_id and r.nic_address_id in private:
                item["PrivateIpAddress"] = private[r.nic_address_id]
            items.append(item)
    by_ip = {it["PublicIp"] for it in items}
    by_alloc = {it["AllocationId"] for it in items}
    for ip in public_ips or []:
        if ip not in by_ip:
            raise ServiceError("InvalidAddress.NotFound", f"Address '{ip}' not found: it is not allocated to you.")
    for alloc in allocation_ids or []:
        if alloc not in by_alloc:
            raise ServiceError("InvalidAllocationID.NotFound", f"Allocation ID '{alloc}' not found: DescribeAddresses lists yours.")
    if public_ips:
        items = [it for it in items if it["PublicIp"] in public_ips]
    if allocation_ids:
        items = [it for it in items if it["AllocationId"] in allocation_ids]
    return {"Addresses": [_strip(it) for it in _filtered(items, wanted_filters)]}


_GETTERS: dict[str, str] = {
    "allocation-id": "AllocationId", "association-id": "AssociationId", "domain": "Domain", "instance-id": "InstanceId",
    "network-border-group": "NetworkBorderGroup", "network-interface-id": "NetworkInterfaceId",
    "network-interface-owner-id": "NetworkInterfaceOwnerId", "private-ip-address": "PrivateIpAddress",
    "public-ip": "PublicIp", "public-ipv4-pool": "PublicIpv4Pool",
}


def _filtered(items: list[dict[str, Any]], filters: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    out = items
    for name, values in filters:
        if name.startswith("tag:"):
            key = name[4:]
            out = [it for it in out if any(t["Key"] == key and matches(t["Value"], values) for t in it["Tags"])]
        elif name == "tag-key":
            out = [it for it in out if any(matches(t["Key"], values) for t in it["Tags"])]
        else:
            field = _GETTERS[name]
            out = [it for it in out if it.get(field) is not None and matches(it[field], values)]
    return out


def _strip(item: dict[str, Any]) -> dict[str, Any]:
    if not item.get("SubnetId"):
        item.pop("SubnetId", None)
    return item


@operation("AllocateAddress")
def allocate_address(
    ctx: RequestContext, domain: str | None = None, address: str | None = None, public_ipv4_pool: str | None = None,
    network_border_group: str | None = None, customer_owned_ipv4_pool: str | None = None,
    tag_specifications: list[dict[str, Any]] | None = None, ipam_pool_id: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    if domain is not None and domain not in ("vpc", "standard"):
        raise invalid_value("Domain", domain, "Use vpc.")
    if address is not None:
        _check_ip(address, "Address")
    if customer_owned_ipv4_pool or ipam_pool_id:
        raise ServiceError("UnsupportedOperation", "Customer-owned and IPAM pools do not exist here; addresses come from "
                                                   "the public network pools (PublicIpv4Pool names one).")
    if network_border_group is not None and network_border_group != ctx.settings.region:
        raise invalid_value("NetworkBorderGroup", network_border_group,
                            f"The one network border group here is the region, {ctx.settings.region}.")
    tags = tags_from_specifications(tag_specifications, "elastic-ip")
    ctx.check_dry_run(dry_run)
    with ctx.db.session(write=True) as s:
        address_allowance(s, ctx.settings, ctx.principal)
        row = elastic.allocate(s, ctx.settings, ctx.user_id, public_ipv4_pool, address)
        if tags and row.allocation_id:
            set_tags(s, ctx.user_id, row.allocation_id, tags)
        return {"PublicIp": row.ip, "AllocationId": row.allocation_id, "PublicIpv4Pool": row.pool,
                "NetworkBorderGroup": ctx.settings.region, "Domain": "vpc"}


def _check_state(inst: Instance) -> None:
    if inst.state in ("shutting-down", "terminated"):
        raise ServiceError("IncorrectInstanceState",
                           f"The instance '{inst.id}' is {inst.state}; an address can be associated with a pending, "
                           "running, stopping or stopped instance.")


def _target(s: Any, ctx: RequestContext, instance_id: str | None, interface_id: str | None) -> tuple[Instance, Address]:
    """The caller's instance and the interface (its address row) an address is to be associated with."""
    if instance_id and interface_id:
        raise invalid_combination("Give InstanceId or NetworkInterfaceId, not both: an instance's primary interface is "
                                  "used for InstanceId.")
    if instance_id:
        inst = load_instances(s, ctx, check_instance_ids([instance_id]), for_update=True)[0]
        _check_state(inst)
        nics = elastic.nic_rows(s, inst.id)
        if not nics:
            raise ServiceError("InvalidInstanceID", f"The instance '{inst.id}' has no network interface to associate an "
                                                    "address with.")
        return inst, nics[0]
    if not interface_id:
        raise ServiceError("MissingParameter", "Name the target: InstanceId or NetworkInterfaceId.")
    if not ids.is_valid(interface_id, ("eni",)):
        raise ServiceError("InvalidNetworkInterfaceID.Malformed",
                           f'Invalid id: "{interface_id}" (expecting "eni-" followed by 8 or 17 lowercase hexadecimal digits).')
    for inst in s.scalars(select(Instance).where(Instance.owner_id == ctx.user_id, Instance.state != "terminated")):
        for nic in elastic.nic_rows(s, inst.id):
            if vpc.eni_id(inst.id, nic.id) == interface_id:
                return inst, nic
    raise ServiceError("InvalidNetworkInterfaceID.NotFound",
                       f"The networkInterface ID '{interface_id}' does not exist; DescribeNetworkInterfaces lists yours.")


@operation("AssociateAddress")
def associate_address(
    ctx: RequestContext, allocation_id: str | None = None, instance_id: str | None = None, public_ip: str | None = None,
    network_interface_id: str | None = None, private_ip_address: str | None = None,
    allow_reassociation: bool | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    _one_of(allocation_id, public_ip, "associate")
    if instance_id:
        check_instance_ids([instance_id])
    if private_ip_address:
        _check_ip(private_ip_address, "PrivateIpAddress")
    with ctx.db.session(write=True) as s:
        row = elastic.find(s, ctx.user_id, allocation_id, public_ip, for_update=True)
        inst, nic = _target(s, ctx, instance_id, network_interface_id)
        _check_state(inst)
        if private_ip_address and private_ip_address != nic.ip:
            raise invalid_value("PrivateIpAddress", private_ip_address,
                                f"The interface {vpc.eni_id(inst.id, nic.id)} has the one private address {nic.ip}.")
        ctx.check_dry_run(dry_run)
        association = elastic.associate(s, ctx.settings, row, inst, nic, bool(allow_reassociation))
    return {"AssociationId": association}


@operation("DisassociateAddress")
def disassociate_address(
    ctx: RequestContext, association_id: str | None = None, public_ip: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    if association_id and public_ip:
        raise invalid_combination("Give AssociationId or PublicIp, not both.")
    if not association_id and not public_ip:
        raise ServiceError("MissingParameter", "Name the association: AssociationId (eipassoc-...) or PublicIp.")
    if association_id:
        _check_association(association_id)
    if public_ip:
        _check_ip(public_ip, "PublicIp")
    with ctx.db.session(write=True) as s:
        row = (elastic.by_association(s, ctx.user_id, association_id) if association_id
               else elastic.find(s, ctx.user_id, public_ip=public_ip, for_update=True))
        ctx.check_dry_run(dry_run)
        elastic.disassociate(s, ctx.settings, row)
    return {}


@operation("ReleaseAddress")
def release_address(
    ctx: RequestContext, allocation_id: str | None = None, public_ip: str | None = None,
    network_border_group: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    _one_of(allocation_id, public_ip, "release")
    with ctx.db.session(write=True) as s:
        row = elastic.find(s, ctx.user_id, allocation_id, public_ip, for_update=True)
        ctx.check_dry_run(dry_run)
        elastic.release(s, row)
    return {}
