"""DescribeAddresses.

Elastic IP addresses are not allocated by this cloud (instances take their public address from the
network pools), so every account holds none and the answer is an empty list. The request is still
checked as EC2 checks it: clients ask it on every listing (libcloud's list_nodes does), and a
filter or address named wrongly gets the error EC2 would give.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import normalize
from ec2gw.errors import ServiceError

#: EC2's filters of DescribeAddresses (besides tag:<key>)
FILTERS = (
    "allocation-id", "association-id", "domain", "instance-id", "network-border-group", "network-interface-id",
    "network-interface-owner-id", "private-ip-address", "public-ip", "tag-key",
)


@operation("DescribeAddresses")
def describe_addresses(
    ctx: RequestContext, public_ips: list[str] | None = None, allocation_ids: list[str] | None = None,
    filters: Any = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    for name, _ in normalize(filters):
        if name not in FILTERS and not (name.startswith("tag:") and len(name) > 4):
            raise ServiceError(
                "InvalidParameterValue",
                f"The filter '{name}' is invalid; supported filters here: {', '.join(sorted((*FILTERS, 'tag:<key>')))}.",
            )
    for ip in public_ips or []:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise ServiceError(
                "InvalidParameterValue", f"Invalid value '{ip}' for PublicIp: give an IPv4 address such as 192.0.2.10."
            ) from None
    for alloc in allocation_ids or []:
        if not ids.is_valid(alloc, ("eipalloc",)):
            raise ServiceError(
                "InvalidAllocationID.Malformed",
                f'Invalid id: "{alloc}" (expecting "eipalloc-" followed by 8 or 17 lowercase hexadecimal digits).',
            )
    ctx.check_dry_run(dry_run)
    none_held = "this account holds no Elastic IP addresses (public addresses come with instances, from the network pools)"
    if public_ips:
        raise ServiceError("InvalidAddress.NotFound", f"The address '{public_ips[0]}' was not found: {none_held}.")
    if allocation_ids:
        raise ServiceError("InvalidAllocationID.NotFound", f"The allocation ID '{allocation_ids[0]}' does not exist: {none_held}.")
    return {"Addresses": []}
