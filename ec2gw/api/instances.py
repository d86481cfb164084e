"""RunInstances, DescribeInstances, DescribeInstanceStatus.

Launching only writes rows (state pending, task spawn); the compute worker turns them into
domains and moves them to running. Every check happens before anything is written, so a
refused launch leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, false, select
from sqlalchemy.exc import IntegrityError

from ec2gw import ids
from ec2gw.api import instance_views as views
from ec2gw.api import launch_nics, launch_volumes, metrics
from ec2gw.api.context import RequestContext
from ec2gw.api.instance_query import FILTERS, check_instance_ids, page_of_instances
from ec2gw.api.security_groups import groups_of, resolve_groups, set_groups
from ec2gw.api.volumes import attached_to
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import build_conditions, match_any, matches
from ec2gw.aws.pagination import check_max_results, scope_digest
from ec2gw.compute import leases
from ec2gw.compute import placement as node_placement
from ec2gw.compute.states import CODES, HIBERNATION_MAX_MEMORY_MIB, can_hibernate
from ec2gw.compute.zones import list_zones
from ec2gw.db.models import Instance, KeyPair, Reservation, Tag
from ec2gw.errors import ServiceError, invalid_combination, invalid_value
from ec2gw.images import find_launchable_image, require_readable
from ec2gw.network import vpc
from ec2gw.network.models import Address, Pool
from ec2gw.network.pools import DEFAULT_POOL, nics_of
from ec2gw.quotas import launch_allowance, volume_allowance
from ec2gw.tagging import set_tags, tags_for, tags_from_specifications


def _user_data(raw: str | None, limit: int) -> str | None:
    if raw is None or raw == "":
        return None
    try:
        decoded = base64.b64decode(raw.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ServiceError(
            "InvalidParameterValue", "Invalid BASE64 encoding of user data: base64-encode UserData (the AWS CLI and boto3 do it for you)."
        ) from None
    if len(decoded) > limit:
        raise ServiceError(
            "InvalidParameterValue", f"User data is limited to {limit} bytes; {len(decoded)} were given. Keep it smaller or fetch the rest from Cumulus."
        )
    return raw


def _request_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def _reservations(ctx: RequestContext, s: Any, rows: list[Instance]) -> list[dict[str, Any]]:
    """The Reservation shapes of ``rows``, with their tags, NICs and the caller's default group."""
    ids_ = [r.id for r in rows]
    return views.reservations(rows, ctx.principal.account_id, tags_for(s, ids_), groups_of(s, ctx.user_id, ids_),
                              nics_of(s, ids_), vpc.vpc_id(ctx.settings), metrics.monitored(s, ids_),
                              attached_to(s, ids_))


def _describe_reservation(ctx: RequestContext, s: Any, reservation_id: str) -> dict[str, Any]:
    rows = list(s.scalars(select(Instance).where(Instance.reservation_id == reservation_id).order_by(Instance.launch_index)))
    res = _reservations(ctx, s, rows)
    return res[0] if res else {"ReservationId": reservation_id, "OwnerId": ctx.principal.account_id, "Groups": [], "Instances": []}


@operation("RunInstances")
def run_instances(
    ctx: RequestContext, min_count: int, max_count: int, image_id: str | None = None, instance_type: str | None = None,
    key_name: str | None = None, user_data: str | None = None, client_token: str | None = None,
    tag_specifications: list[dict[str, Any]] | None = None, placement: dict[str, Any] | None = None,
    kernel_id: str | None = None, ramdisk_id: str | None = None, security_groups: list[str] | None = None,
    security_group_ids: list[str] | None = None, instance_initiated_shutdown_behavior: str | None = None,
    subnet_id: str | None = None, network_interfaces: list[dict[str, Any]] | None = None,
    private_ip_address: str | None = None, monitoring: dict[str, Any] | None = None,
    hibernation_options: dict[str, Any] | None = None, block_device_mappings: list[dict[str, Any]] | None = None,
    dry_run: bool | None = None,
) -> dict[str, Any]:
    settings = ctx.settings
    if image_id is None:
        raise ServiceError("MissingParameter", "The request must contain the parameter ImageId.")
    if min_count < 1 or max_count < 1:
        raise invalid_value("MinCount/MaxCount", f"{min_count}/{max_count}", "Both must be at least 1.")
    if min_count > max_count:
        raise invalid_value("MinCount", min_count, "MinCount must not be larger than MaxCount.")
    if max_count > 10000:
        raise invalid_value("MaxCount", max_count, "At most 10000 instances can be asked for at once.")
    itype = instance_type or settings.default_instance_type
    if itype not in settings.instance_types:
        raise ServiceError(
            "InvalidParameterValue",
            f"Invalid value '{itype}' for InstanceType. Known types: {', '.join(sorted(settings.instance_types))}.",
        )
    vcpus, memory = settings.instance_types[itype]
    hibernation = bool((hibernation_options or {}).get("Configured"))
    if hibernation and not can_hibernate(memory):
        raise ServiceError(
            "UnsupportedHibernationConfiguration",
            f"The instance type {itype} ({memory} MiB) does not support hibernation: only types of at most "
            f"{HIBERNATION_MAX_MEMORY_MIB} MiB do (DescribeInstanceTypes shows HibernationSupported). Choose a "
            "smaller type, or launch without HibernationOptions.",
        )
    behavior = instance_initiated_shutdown_behavior or "stop"
    if behavior not in ("stop", "terminate"):
        raise invalid_value("InstanceInitiatedShutdownBehavior", behavior, "Use stop or terminate.")
    udata = _user_data(user_data, settings.max_user_data_bytes)
    tags = tags_from_specifications(tag_specifications, "instance",
                                    also=("volume", "network-interface", "spot-instances-request", "elastic-gpu"))
    volume_tags = tags_from_specifications(tag_specifications, "volume",
                                           also=("instance", "network-interface", "spot-instances-request", "elastic-gpu"))
    lease_hours = leases.launch_hours(settings, tags)
    zone = (placement or {}).get("AvailabilityZone") or None
    if client_token is not None and (len(client_token) > 64 or not client_token.isascii()):
        raise invalid_value("ClientToken", client_token[:20] + "...", "Client tokens are at most 64 ASCII characters.")
    request = {"image": image_id, "type": itype, "min": min_count, "max": max_count, "key": key_name, "ud": udata,
               "zone": zone, **({"subnet": subnet_id, "nics": network_interfaces, "ip": private_ip_address}
                                if subnet_id or network_interfaces or private_ip_address else {})}
    if hibernation:
        request["hibernation"] = True
    if block_device_mappings:
        request["bdm"] = block_device_mappings
    fingerprint = _request_hash(request)
    with ctx.db.session(write=True) as s:
        if client_token:
            prior = s.scalar(select(Reservation).where(Reservation.owner_id == ctx.user_id, Reservation.client_token == client_token))
            if prior is not None:
                if prior.request_hash != fingerprint:
                    raise ServiceError(
                        "IdempotentParameterMismatch",
                        f"The client token '{client_token}' was used before with other parameters; use a new token for a new request.",
                    )
                return _describe_reservation(ctx, s, prior.id)
        image = find_launchable_image(s, ctx.user_id, image_id)
        require_readable(ctx.app, image)
        planned = launch_volumes.plan(s, ctx.user_id, image, block_device_mappings)
        kernel = kernel_id or image.kernel_id
        ramdisk = ramdisk_id or image.ramdisk_id
        if kernel:
            require_readable(ctx.app, find_launchable_image(s, ctx.user_id, kernel, kind="kernel"))
        if ramdisk:
            require_readable(ctx.app, find_launchable_image(s, ctx.user_id, ramdisk, kind="ramdisk"))
        if key_name is not None and s.scalar(
            select(KeyPair.id).where(KeyPair.owner_id == ctx.user_id, KeyPair.name == key_name)
        ) is None:
            raise ServiceError("InvalidKeyPair.NotFound", f"The key pair '{key_name}' does not exist; create or import it first.")
        group_ids = resolve_groups(s, ctx.user_id, security_groups, security_group_ids)
        if zone is not None and zone not in {z.name for z in list_zones(s, settings)}:
            raise ServiceError(
                "InvalidParameterValue", f"Invalid availability zone: [{zone}]. DescribeAvailabilityZones lists the zones."
            )
        nic_plan = launch_nics.plan(s, ctx, subnet_id, network_interfaces, private_ip_address, zone, max_count,
                                    bool(security_groups or security_group_ids))
        for spec in network_interfaces or []:  # an instance's groups are those of all its interfaces
            group_ids += [g for g in resolve_groups(s, ctx.user_id, None, spec.get("Groups")) if g not in group_ids]
        allowed = launch_allowance(s, ctx.settings, ctx.principal, min_count, max_count, itype, vcpus, memory)
        slots = node_placement.place(s, settings, zone, allowed, vcpus, memory,
                                     [r.pool for r in nic_plan.requested] if nic_plan else None)
        if len(slots) < min_count:
            raise ServiceError(
                "InsufficientInstanceCapacity",
                f"There is not enough capacity for {min_count} {itype} instance(s)"
                f"{' in ' + zone if zone else ''}; ask for fewer, a smaller type or another zone.",
            )
        ctx.check_dry_run(dry_run)
        reservation = Reservation(id=ids.new_id("r"), owner_id=ctx.user_id, client_token=client_token, request_hash=fingerprint)
        s.add(reservation)
        try:
            s.flush()
        except IntegrityError:
            raise ServiceError(
                "IdempotentParameterMismatch", f"The client token '{client_token}' is being used by a concurrent request; retry it."
            ) from None
        now = datetime.now(UTC)
        lease_end = now + timedelta(hours=lease_hours)
        instances = []
        for index, node in enumerate(slots):
            inst = Instance(
                id=ids.new_id("i"), owner_id=ctx.user_id, reservation_id=reservation.id, launch_index=index,
                image_id=image.id, kernel_id=kernel, ramdisk_id=ramdisk, instance_type=itype, vcpus=vcpus,
                memory_mib=memory, key_name=key_name, state="pending", task="spawn", shutdown_behavior=behavior,
                availability_zone=node.zone, node_name=node.name, user_data=udata, launch_time=now, lease_end=lease_end,
                hibernation_configured=hibernation,
            )
            instances.append(inst)
        # as many as the pools allow
        instances = ctx.app.assign_addresses(s, instances, slots, min_count, nic_plan.requested if nic_plan else None,
                                             nic_plan.map_public if nic_plan else True)
        for index, inst in enumerate(instances):
            inst.launch_index = index
        count, gib = launch_volumes.pool_gib(planned)
        if count:
            volume_allowance(s, settings, ctx.principal, count * len(instances), gib * len(instances))
        launch_volumes.check_room(s, instances, planned)
        s.add_all(instances)
        s.flush()
        volumes = [v for inst in instances for v in launch_volumes.rows(ctx.user_id, inst, planned, now)]
        s.add_all(volumes)
        s.flush()
        for vol in volumes if volume_tags else []:
            set_tags(s, ctx.user_id, vol.id, volume_tags)
        set_groups(s, [inst.id for inst in instances],
                   group_ids or resolve_groups(s, ctx.user_id, ["default"], None), replace=False)
        for inst in instances:
            if tags:
                set_tags(s, ctx.user_id, inst.id, tags)
        if monitoring and monitoring.get("Enabled"):  # detailed monitoring from the start (api/metrics.py)
            metrics.enable_monitoring(s, [inst.id for inst in instances])
        return _describe_reservation(ctx, s, reservation.id)


@operation("DescribeInstances")
def describe_instances(
    ctx: RequestContext, instance_ids: list[str] | None = None, filters: Any = None, max_results: int | None = None,
    next_token: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    ctx.check_dry_run(dry_run)
    wanted = check_instance_ids(instance_ids)
    if wanted and max_results is not None:
        raise invalid_combination("The parameter instancesSet cannot be used with the parameter maxResults")
    check_max_results(max_results)
    scope = scope_digest("instances", filters)
    with ctx.db.session() as s:
        conds = build_conditions(filters, {**FILTERS, **_network_filters(ctx, s)}, tag_model=Tag, resource_column=Instance.id)
        rows, token = page_of_instances(s, ctx, conds, wanted, next_token, max_results, scope)
        out: dict[str, Any] = {"Reservations": _reservations(ctx, s, rows)}
    if token:
        out["NextToken"] = token
    return out


def _network_filters(ctx: RequestContext, s: Any) -> dict[str, Any]:
    """DescribeInstances' filters on the VPC view: subnets are pools, matched by their ids."""
    names = [*s.scalars(select(Pool.name)), DEFAULT_POOL]
    vid = vpc.vpc_id(ctx.settings)

    def nic_in(values: list[str], primary: bool) -> Any:
        chosen = [p for p in names if matches(vpc.subnet_id(p), values)]
        cond = and_(Address.instance_id == Instance.id, Address.pool.in_(chosen))
        return exists(select(Address.id).where(cond, Address.mac == Instance.mac) if primary else select(Address.id).where(cond))

    def in_vpc(values: list[str]) -> Any:
        return exists(select(Address.id).where(Address.instance_id == Instance.id)) if matches(vid, values) else false()

    return {
        "subnet-id": lambda values: nic_in(values, True),
        "network-interface.subnet-id": lambda values: nic_in(values, False),
        "vpc-id": in_vpc,
        "network-interface.vpc-id": in_vpc,
        "network-interface.addresses.private-ip-address": lambda values: exists(select(Address.id).where(
            Address.instance_id == Instance.id, match_any(Address.ip, values))),
    }


@operation("DescribeInstanceStatus")
def describe_instance_status(
    ctx: RequestContext, instance_ids: list[str] | None = None, filters: Any = None, max_results: int | None = None,
    next_token: str | None = None, include_all_instances: bool | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    ctx.check_dry_run(dry_run)
    wanted = check_instance_ids(instance_ids)
    if wanted and max_results is not None:
        raise invalid_combination("The parameter instancesSet cannot be used with the parameter maxResults")
    check_max_results(max_results)
    status_filters = {
        "availability-zone": Instance.availability_zone,
        "instance-state-name": Instance.state,
        "instance-state-code": FILTERS["instance-state-code"],
    }
    plain = [f for f in (filters or []) if f.get("Name") not in HEALTH_FILTERS]
    health = [f for f in (filters or []) if f.get("Name") in HEALTH_FILTERS]
    conds = build_conditions(plain, status_filters)
    scope = scope_digest("status", filters, include_all_instances)
    if not include_all_instances:
        conds.append(Instance.state == "running")
    with ctx.db.session() as s:
        rows, token = page_of_instances(s, ctx, conds, wanted, next_token, max_results, scope)
        reachable = ctx.app.node_reachability(s)
    items = [_status_item(inst, reachable.get(inst.node_name or node_placement.LOCAL_NODE, True)) for inst in rows]
    for f in health:
        section, field = HEALTH_FILTERS[f["Name"]]
        values = f.get("Values") or []
        if field == "Status":
            items = [i for i in items if i[section]["Status"] in values]
        else:
            items = [i for i in items if any(d["Status"] in values for d in i[section]["Details"])]
    out: dict[str, Any] = {"InstanceStatuses": items}
    if token:
        out["NextToken"] = token
    return out


HEALTH_FILTERS = {
    "instance-status.status": ("InstanceStatus", "Status"),
    "system-status.status": ("SystemStatus", "Status"),
    "instance-status.reachability": ("InstanceStatus", "Details"),
    "system-status.reachability": ("SystemStatus", "Details"),
}


def _status_item(inst: Instance, node_ok: bool) -> dict[str, Any]:
    """Status checks: the system check fails when the instance's node does not answer; the instance
    check fails then too, and while an operator has the instance paused (it is running but gets no CPU)."""
    running = inst.state == "running"
    paused = running and inst.paused_at is not None
    system = ("ok" if node_ok else "impaired") if running else "not-applicable"
    system_detail = [{"Name": "reachability", "Status": "passed" if node_ok else "failed"}] if running else []
    if not running:
        own, own_detail = system, system_detail
    elif paused or not node_ok:
        failed: dict[str, Any] = {"Name": "reachability", "Status": "failed"}
        if paused:
            failed["ImpairedSince"] = inst.paused_at
        own, own_detail = "impaired", [failed]
    else:
        own, own_detail = "ok", system_detail
    return {
        "InstanceId": inst.id,
        "AvailabilityZone": inst.availability_zone,
        "InstanceState": {"Code": CODES[inst.state], "Name": inst.state},
        "InstanceStatus": {"Status": own, "Details": own_detail},
        "SystemStatus": {"Status": system, "Details": system_detail},
        "Events": [],
    }
