"""ModifyNetworkInterfaceAttribute: an interface's security groups (and the attributes EC2 clients
send with them).

An instance's security groups are kept per instance here and shared by all its interfaces, so
SecurityGroupId.N on any interface of an instance sets the groups of the instance (as
ModifyInstanceAttribute Groups does), and the change is announced to the compute layer
(ec2gw/compute/group_changes.py) in the same transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.api.security_groups import resolve_groups, set_groups
from ec2gw.aws.dispatch import operation
from ec2gw.compute.group_changes import instance_groups_changed
from ec2gw.db.models import Instance
from ec2gw.errors import ServiceError, invalid_value
from ec2gw.network import elastic, vpc


def find_interface(s: Any, ctx: RequestContext, interface_id: str) -> Instance:
    """The caller's instance holding the interface ``interface_id``; NotFound otherwise."""
    if not isinstance(interface_id, str) or not ids.is_valid(interface_id, ("eni",)):
        raise ServiceError("InvalidNetworkInterfaceID.Malformed",
                           f'Invalid id: "{interface_id}" (expecting "eni-" followed by 8 or 17 lowercase hexadecimal digits).')
    for inst in s.scalars(select(Instance).where(Instance.owner_id == ctx.user_id, Instance.state != "terminated")):
        for nic in elastic.nic_rows(s, inst.id):
            if vpc.eni_id(inst.id, nic.id) == interface_id:
                return inst
    raise ServiceError("InvalidNetworkInterfaceID.NotFound",
                       f"The networkInterface ID '{interface_id}' does not exist; DescribeNetworkInterfaces lists yours.")


@operation("ModifyNetworkInterfaceAttribute")
def modify_network_interface_attribute(
    ctx: RequestContext, network_interface_id: str, groups: list[str] | None = None,
    description: dict[str, Any] | None = None, source_dest_check: dict[str, Any] | None = None,
    attachment: dict[str, Any] | None = None, associate_public_ip_address: bool | None = None,
    dry_run: bool | None = None, **_: Any,
) -> dict[str, Any]:
    asked = [groups is not None, description is not None, source_dest_check is not None, attachment is not None,
             associate_public_ip_address is not None]
    if sum(asked) != 1:
        raise ServiceError("InvalidParameterCombination",
                           "Change one attribute per request: SecurityGroupId.N, Description, SourceDestCheck or Attachment.")
    if groups is not None and not groups:
        raise ServiceError("MissingParameter", "SecurityGroupId needs at least one security group id (SecurityGroupId.1=sg-...).")
    if description is not None and (description.get("Value") or "") != "":
        raise ServiceError("UnsupportedOperation", "Interfaces here carry no description (DescribeNetworkInterfaces shows "
                                                   "an empty one); tag the instance instead.")
    if source_dest_check is not None and source_dest_check.get("Value") is False:
        raise invalid_value("SourceDestCheck", "false", "Every interface here may send only from its own addresses "
                                                        "(the nodes' anti-spoofing); it cannot be turned off.")
    if attachment is not None and attachment.get("DeleteOnTermination") is False:
        raise invalid_value("Attachment.DeleteOnTermination", "false",
                            "An instance's interfaces are deleted with it here.")
    if associate_public_ip_address is not None:
        raise ServiceError("UnsupportedOperation", "Public addresses come with the launch or as elastic addresses here: "
                                                   "use AllocateAddress and AssociateAddress.")
    with ctx.db.session(write=True) as s:
        inst = find_interface(s, ctx, network_interface_id)
        group_ids = resolve_groups(s, ctx.user_id, None, list(groups)) if groups else []
        ctx.check_dry_run(dry_run)
        if group_ids:
            set_groups(s, [inst.id], group_ids)
            instance_groups_changed(s, [inst.id])
    return {}
