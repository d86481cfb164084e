"""Stop, Start, Reboot, Terminate, GetConsoleOutput and the instance attributes.

Every request is checked whole before anything changes: one instance in a wrong state refuses
the request for all, as EC2 does. The API only records the request (state + task); the compute
worker carries it out on the node.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from ec2gw.api.context import RequestContext
from ec2gw.api.instance_query import check_instance_ids, load_instances, set_rows
from ec2gw.api.instance_views import block_device_mappings, root_device, state_change
from ec2gw.api.launch_volumes import delete_on_termination_changes, set_delete_on_termination
from ec2gw.api.security_groups import groups_of, resolve_groups, set_groups
from ec2gw.api.volumes import attached_to
from ec2gw.aws.dispatch import operation
from ec2gw.compute import placement, states, volume_placement
from ec2gw.compute.group_changes import instance_groups_changed
from ec2gw.compute.placement import LOCAL_NODE
from ec2gw.db.models import Instance
from ec2gw.errors import ServiceError, incorrect_state, invalid_value
from ec2gw.quotas import launch_allowance, volume_allowance


@operation("TerminateInstances")
def terminate_instances(ctx: RequestContext, instance_ids: list[str], dry_run: bool | None = None) -> dict[str, Any]:
    wanted = check_instance_ids(instance_ids)
    with ctx.db.session(write=True) as s:
        rows = load_instances(s, ctx, wanted, for_update=True,
                              columns=(Instance.id, Instance.state, Instance.disable_api_termination))
        for inst in rows:
            if inst.disable_api_termination and inst.state != "terminated":
                raise ServiceError(
                    "OperationNotPermitted",
                    f"The instance '{inst.id}' may not be terminated. Modify its 'disableApiTermination' attribute and try again.",
                )
        ctx.check_dry_run(dry_run)
        changes = []
        ending = []
        for inst in rows:
            previous = inst.state
            current = previous
            if previous not in ("terminated", "shutting-down"):
                ending.append(inst.id)
                current = "shutting-down"
            changes.append(state_change(inst.id, previous, current))
        # one UPDATE per chunk rather than one per instance: terminating a thousand stays cheap
        set_rows(s, ending, state="shutting-down", task="terminate", state_transition_reason=f"User initiated ({_now()})",
                 state_reason_code="Client.UserInitiatedShutdown",
                 state_reason_message="Client.UserInitiatedShutdown: User initiated shutdown")
    return {"TerminatingInstances": changes}


@operation("StopInstances")
def stop_instances(
    ctx: RequestContext, instance_ids: list[str], force: bool | None = None, hibernate: bool | None = None,
    dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted = check_instance_ids(instance_ids)
    with ctx.db.session(write=True) as s:
        rows = load_instances(s, ctx, wanted, for_update=True)
        for inst in rows:
            if not states.can_stop(inst.state):
                raise incorrect_state(inst.id, inst.state, "stopped")
            if hibernate and not inst.hibernation_configured:
                raise ServiceError(
                    "UnsupportedHibernationConfiguration",
                    f"The instance '{inst.id}' was not launched with hibernation configured "
                    "(RunInstances HibernationOptions.Configured=true); stop it without Hibernate.",
                )
        if hibernate and force:
            raise ServiceError("InvalidParameterCombination",
                               "Hibernate and Force cannot be combined: a forced stop saves no memory. Give one of them.")
        ctx.check_dry_run(dry_run)
        changes = []
        for inst in rows:
            previous = inst.state
            if previous == "running":
                inst.state = "stopping"
                inst.task = "hibernate" if hibernate else "stop"
                inst.force_stop = bool(force)
                inst.state_transition_reason = f"User initiated ({_now()})"
                if hibernate:
                    inst.state_reason_code, inst.state_reason_message = states.HIBERNATE_REASON
                else:
                    inst.state_reason_code = "Client.UserInitiatedShutdown"
                    inst.state_reason_message = "Client.UserInitiatedShutdown: User initiated shutdown"
            elif previous == "stopping" and force:
                inst.force_stop = True
            changes.append(state_change(inst.id, previous, inst.state))
    return {"StoppingInstances": changes}


@operation("StartInstances")
def start_instances(ctx: RequestContext, instance_ids: list[str], dry_run: bool | None = None) -> dict[str, Any]:
    wanted = check_instance_ids(instance_ids)
    with ctx.db.session(write=True) as s:
        rows = load_instances(s, ctx, wanted, for_update=True)
        for inst in rows:
            if not states.can_start(inst.state):
                raise incorrect_state(inst.id, inst.state, "started")
        ctx.check_dry_run(dry_run)
        changes = []
        for inst in rows:
            previous = inst.state
            if previous == "stopped":
                inst.state = "pending"
                inst.task = "start"
                inst.state_reason_code = None
                inst.state_reason_message = None
                inst.state_transition_reason = ""
            changes.append(state_change(inst.id, previous, inst.state))
    return {"StartingInstances": changes}


@operation("RebootInstances")
def reboot_instances(ctx: RequestContext, instance_ids: list[str], dry_run: bool | None = None) -> dict[str, Any]:
    wanted = check_instance_ids(instance_ids)
    with ctx.db.session(write=True) as s:
        rows = load_instances(s, ctx, wanted, for_update=True)
        for inst in rows:
            if not states.can_reboot(inst.state):
                raise incorrect_state(inst.id, inst.state, "rebooted")
        ctx.check_dry_run(dry_run)
        for inst in rows:
            if inst.state == "running":
                inst.reboot_pending = True
    return {}


@operation("GetConsoleOutput")
def get_console_output(
    ctx: RequestContext, instance_id: str, latest: bool | None = None, dry_run: bool | None = None
) -> dict[str, Any]:
    wanted = check_instance_ids([instance_id])
    with ctx.db.session() as s:
        inst = load_instances(s, ctx, wanted)[0]
        ctx.check_dry_run(dry_run)
        node_name, state = inst.node_name, inst.state
    data = b""
    if state in ("running", "stopping", "stopped", "pending"):
        data = ctx.app.console_output(node_name, instance_id)
    out: dict[str, Any] = {"InstanceId": instance_id, "Timestamp": datetime.now(UTC)}
    if data:
        out["Output"] = base64.b64encode(data[-65536:]).decode()
    return out


_ATTRIBUTES = {
    "instanceType": "InstanceType", "kernel": "KernelId", "ramdisk": "RamdiskId", "userData": "UserData",
    "disableApiTermination": "DisableApiTermination", "instanceInitiatedShutdownBehavior": "InstanceInitiatedShutdownBehavior",
    "rootDeviceName": "RootDeviceName", "blockDeviceMapping": "BlockDeviceMappings", "productCodes": "ProductCodes",
    "sourceDestCheck": "SourceDestCheck", "groupSet": "Groups", "ebsOptimized": "EbsOptimized",
    "sriovNetSupport": "SriovNetSupport", "enaSupport": "EnaSupport", "enclaveOptions": "EnclaveOptions",
    "disableApiStop": "DisableApiStop",
}


def _attribute_value(inst: Instance, attribute: str, groups: list[dict[str, str]], volumes: list[Any]) -> Any:
    value: Any = {
        "instanceType": {"Value": inst.instance_type},
        "kernel": {"Value": inst.kernel_id} if inst.kernel_id else {},
        "ramdisk": {"Value": inst.ramdisk_id} if inst.ramdisk_id else {},
        "userData": {"Value": inst.user_data} if inst.user_data else {},
        "disableApiTermination": {"Value": inst.disable_api_termination},
        "instanceInitiatedShutdownBehavior": {"Value": inst.shutdown_behavior},
        "rootDeviceName": {"Value": root_device(volumes)},
        "blockDeviceMapping": block_device_mappings(volumes),
        "productCodes": [],
        "sourceDestCheck": {"Value": True},
        "groupSet": groups,
        "ebsOptimized": {"Value": False},
        "sriovNetSupport": {},
        "enaSupport": {"Value": False},
        "enclaveOptions": {"Enabled": False},
        "disableApiStop": {"Value": False},
    }[attribute]
    return value


@operation("DescribeInstanceAttribute")
def describe_instance_attribute(
    ctx: RequestContext, attribute: str, instance_id: str, dry_run: bool | None = None
) -> dict[str, Any]:
    if attribute not in _ATTRIBUTES:
        raise invalid_value("Attribute", attribute, f"Known attributes: {', '.join(_ATTRIBUTES)}.")
    wanted = check_instance_ids([instance_id])
    with ctx.db.session() as s:
        inst = load_instances(s, ctx, wanted)[0]
        ctx.check_dry_run(dry_run)
        value = _attribute_value(inst, attribute, groups_of(s, ctx.user_id, [inst.id])[inst.id],
                                 attached_to(s, [inst.id]).get(inst.id, []))
    return {"InstanceId": instance_id, _ATTRIBUTES[attribute]: value}


def _bool(value: str, name: str) -> bool:
    low = value.strip().lower()
    if low not in ("true", "false"):
        raise invalid_value(name, value, "Use true or false.")
    return low == "true"


@operation("ModifyInstanceAttribute")
def modify_instance_attribute(
    ctx: RequestContext, instance_id: str, attribute: str | None = None, value: str | None = None,
    instance_type: dict[str, Any] | None = None, user_data: dict[str, Any] | None = None,
    instance_initiated_shutdown_behavior: dict[str, Any] | None = None,
    disable_api_termination: dict[str, Any] | None = None, groups: list[str] | None = None,
    block_device_mappings: list[dict[str, Any]] | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    wanted = check_instance_ids([instance_id])
    changes: dict[str, Any] = {}
    if block_device_mappings:
        changes["blockDeviceMapping"] = delete_on_termination_changes(block_device_mappings)
    if groups is not None:
        if not groups:
            raise ServiceError("MissingParameter", "Groups needs at least one security group id (GroupId.1=sg-...).")
        changes["groups"] = list(groups)
    if attribute is not None:
        if value is None:
            raise ServiceError("MissingParameter", f"The request must contain the parameter Value for attribute {attribute}.")
        if attribute == "instanceType":
            changes["instanceType"] = value
        elif attribute == "userData":
            try:
                changes["userData"] = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, ValueError, UnicodeEncodeError):
                raise invalid_value("Value", value[:20], "userData must be base64-encoded.") from None
        elif attribute == "instanceInitiatedShutdownBehavior":
            changes["shutdown"] = value
        elif attribute == "disableApiTermination":
            changes["disableApiTermination"] = _bool(value, "Value")
        else:
            raise invalid_value(
                "Attribute", attribute, "Modifiable here: instanceType, userData, instanceInitiatedShutdownBehavior, disableApiTermination."
            )
    if instance_type and instance_type.get("Value") is not None:
        changes["instanceType"] = instance_type["Value"]
    if user_data and user_data.get("Value") is not None:
        raw = user_data["Value"]
        changes["userData"] = raw if isinstance(raw, bytes) else str(raw).encode()
    if instance_initiated_shutdown_behavior and instance_initiated_shutdown_behavior.get("Value") is not None:
        changes["shutdown"] = instance_initiated_shutdown_behavior["Value"]
    if disable_api_termination and disable_api_termination.get("Value") is not None:
        changes["disableApiTermination"] = bool(disable_api_termination["Value"])
    if not changes:
        raise ServiceError("MissingParameter", "Name an attribute to change, e.g. InstanceType.Value=m1.large or GroupId.1=sg-....")
    settings = ctx.settings
    if "instanceType" in changes and changes["instanceType"] not in settings.instance_types:
        raise invalid_value("InstanceType", changes["instanceType"], f"Known types: {', '.join(sorted(settings.instance_types))}.")
    if "shutdown" in changes and changes["shutdown"] not in ("stop", "terminate"):
        raise invalid_value("InstanceInitiatedShutdownBehavior", changes["shutdown"], "Use stop or terminate.")
    if "userData" in changes and len(changes["userData"]) > settings.max_user_data_bytes:
        raise invalid_value("UserData", "...", f"User data is limited to {settings.max_user_data_bytes} bytes.")
    with ctx.db.session(write=True) as s:
        inst = load_instances(s, ctx, wanted, for_update=True)[0]
        if ("instanceType" in changes or "userData" in changes) and inst.state != "stopped":
            raise ServiceError(
                "IncorrectInstanceState",
                f"The instance '{inst.id}' is not in the 'stopped' state; stop it before changing its type or user data.",
            )
        if "instanceType" in changes and inst.hibernated:
            raise ServiceError(
                "IncorrectInstanceState",
                f"The instance '{inst.id}' is hibernated: its saved memory fits only its current type. Start it, "
                "stop it without Hibernate, then change its type.",
            )
        if inst.state == "terminated":
            raise incorrect_state(inst.id, inst.state, "modified")
        group_ids = resolve_groups(s, ctx.user_id, None, changes["groups"]) if "groups" in changes else []
        if "instanceType" in changes:
            itype = changes["instanceType"]
            vcpus, memory = settings.instance_types[itype]
            more_vcpus, more_memory = vcpus - inst.vcpus, memory - inst.memory_mib
            # stopped instances count in the user's quota: growing one must fit it, as a launch must
            launch_allowance(s, ctx.settings, ctx.principal, 1, 1, itype, more_vcpus, more_memory, resizing=inst.id)
            # a stopped instance keeps its share of its node: it may grow only into room the node has
            if not placement.room_to_grow(s, settings, inst.node_name, more_vcpus, more_memory):
                raise ServiceError(
                    "InsufficientInstanceCapacity",
                    f"There is not enough capacity on the host of instance '{inst.id}' for a {itype} "
                    f"({vcpus} vCPUs, {memory} MiB); choose a smaller type, or retry once other instances "
                    "on that host are terminated.",
                )
        ctx.check_dry_run(dry_run)
        if "instanceType" in changes:
            inst.instance_type = changes["instanceType"]
            inst.vcpus, inst.memory_mib = settings.instance_types[inst.instance_type]
        if "userData" in changes:
            inst.user_data = base64.b64encode(changes["userData"]).decode() if changes["userData"] else None
        if "shutdown" in changes:
            inst.shutdown_behavior = changes["shutdown"]
        if "disableApiTermination" in changes:
            inst.disable_api_termination = changes["disableApiTermination"]
        if group_ids:
            set_groups(s, [inst.id], group_ids)
            instance_groups_changed(s, [inst.id])
        if "blockDeviceMapping" in changes:
            def keeping_root(vol: Any) -> None:
                volume_allowance(s, settings, ctx.principal, 1, vol.size_gib)
                node = vol.node_name or LOCAL_NODE
                if not volume_placement.room_to_grow(s, node, vol.size_gib):
                    raise ServiceError("InsufficientVolumeCapacity", f"Node {node} has no room to keep the "
                                       f"{vol.size_gib} GiB root volume {vol.id} after the instance; leave "
                                       "DeleteOnTermination true or ask the administrator for more volume storage.")

            set_delete_on_termination(s, inst.id, changes["blockDeviceMapping"], keeping_root)
    return {}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S GMT")
