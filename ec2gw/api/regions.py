"""DescribeRegions, DescribeAvailabilityZones, DescribeAccountAttributes, DescribeInstanceTypes."""

from __future__ import annotations

from typing import Any

from ec2gw.api.context import RequestContext
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import filter_items, normalize
from ec2gw.aws.pagination import check_max_results, scope_digest
from ec2gw.compute.states import can_hibernate
from ec2gw.compute.zones import list_zones, type_capacity
from ec2gw.errors import ServiceError
from ec2gw.network import vpc


def _endpoint(ctx: RequestContext) -> str:
    st = ctx.settings
    return f"{'https' if st.tls else 'http'}://{st.advertised_host}:{st.ec2_port}"


def _region_as_named(ctx: RequestContext, asked: list[str]) -> str:
    """The name under which to show the region: an alias the client named itself (a client with a
    fixed region of its own, such as libcloud's Nimbus driver, checks that zones carry its name),
    else the region's own name. See Settings.region_aliases."""
    aliases = ctx.settings.region_names[1:]
    return next((a for a in asked if a in aliases), ctx.settings.region)


def _region_name_filter_values(filters: Any) -> list[str]:
    return [v for name, values in normalize(filters) if name == "region-name" for v in values]


@operation("DescribeRegions")
def describe_regions(
    ctx: RequestContext, region_names: list[str] | None = None, filters: Any = None,
    all_regions: bool | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    ctx.check_dry_run(dry_run)
    names = ctx.settings.region_names
    shown = _region_as_named(ctx, [*(region_names or []), *_region_name_filter_values(filters)])
    region = {"RegionName": shown, "Endpoint": _endpoint(ctx), "OptInStatus": "opt-in-not-required"}
    for name in region_names or []:
        if name not in names:
            raise ServiceError(
                "InvalidParameterValue",
                f"Invalid region: {name}. This cloud has one region, {ctx.settings.region}"
                + (f" (also called {', '.join(names[1:])})." if len(names) > 1 else "."),
            )
    items = filter_items(
        [region],
        filters,
        # a region-name filter matches the region's aliases too (see Settings.region_aliases)
        {"region-name": lambda r: names, "endpoint": lambda r: r["Endpoint"], "opt-in-status": lambda r: r["OptInStatus"]},
    )
    return {"Regions": items}


@operation("DescribeAvailabilityZones")
def describe_availability_zones(
    ctx: RequestContext, zone_names: list[str] | None = None, zone_ids: list[str] | None = None,
    filters: Any = None, all_availability_zones: bool | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    ctx.check_dry_run(dry_run)
    with ctx.db.session() as s:
        zones = list_zones(s, ctx.settings)
    region = _region_as_named(ctx, _region_name_filter_values(filters))
    items = [
        {
            "ZoneName": z.name, "ZoneId": z.name, "State": z.state, "RegionName": region,
            "ZoneType": "availability-zone", "OptInStatus": "opt-in-not-required", "GroupName": region,
            "NetworkBorderGroup": region,
            "Messages": [] if z.state == "available" else [{"Message": f"Some VMM nodes of zone {z.name} do not answer."}],
        }
        for z in zones
    ]
    for wanted, key in ((zone_names, "ZoneName"), (zone_ids, "ZoneId")):
        for name in wanted or []:
            if not any(i[key] == name for i in items):
                raise ServiceError(
                    "InvalidParameterValue", f"The zone '{name}' does not exist; DescribeAvailabilityZones lists the zones."
                )
        if wanted:
            items = [i for i in items if i[key] in wanted]
    return {
        "AvailabilityZones": filter_items(
            items,
            filters,
            {
                "zone-name": lambda z: z["ZoneName"], "zone-id": lambda z: z["ZoneId"], "state": lambda z: z["State"],
                "region-name": lambda z: ctx.settings.region_names, "zone-type": lambda z: z["ZoneType"],
                "group-name": lambda z: z["GroupName"], "opt-in-status": lambda z: z["OptInStatus"],
                "message": lambda z: [m["Message"] for m in z["Messages"]],
            },
        )
    }


@operation("DescribeAccountAttributes")
def describe_account_attributes(
    ctx: RequestContext, attribute_names: list[str] | None = None, dry_run: bool | None = None
) -> dict[str, Any]:
    ctx.check_dry_run(dry_run)
    attrs = {
        "supported-platforms": ["VPC"],
        "default-vpc": [vpc.vpc_id(ctx.settings)],
        "max-instances": [str(ctx.app.instance_limit(ctx.principal))],
        "max-elastic-ips": ["0"],
        "vpc-max-elastic-ips": ["0"],
        "vpc-max-security-groups-per-interface": ["1"],
    }
    names = attribute_names or list(attrs)
    for n in names:
        if n not in attrs:
            raise ServiceError("InvalidParameterValue", f"Unknown account attribute '{n}'; known: {', '.join(attrs)}.")
    return {
        "AccountAttributes": [
            {"AttributeName": n, "AttributeValues": [{"AttributeValue": v} for v in attrs[n]]} for n in names
        ]
    }


def instance_type_item(name: str, vcpus: int, memory: int) -> dict[str, Any]:
    return {
        "InstanceType": name,
        "CurrentGeneration": True,
        "FreeTierEligible": False,
        "SupportedUsageClasses": ["on-demand"],
        "SupportedRootDeviceTypes": ["instance-store"],
        "SupportedVirtualizationTypes": ["hvm"],
        "BareMetal": False,
        "Hypervisor": "nitro",
        "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
        "VCpuInfo": {"DefaultVCpus": vcpus, "DefaultCores": vcpus, "DefaultThreadsPerCore": 1},
        "MemoryInfo": {"SizeInMiB": memory},
        "InstanceStorageSupported": False,
        "NetworkInfo": {"MaximumNetworkInterfaces": 2, "Ipv6Supported": False},
        "PlacementGroupInfo": {"SupportedStrategies": []},
        "AutoRecoverySupported": False,
        "HibernationSupported": can_hibernate(memory),
        "BurstablePerformanceSupported": False,
        "DedicatedHostsSupported": False,
    }


@operation("DescribeInstanceTypes")
def describe_instance_types(
    ctx: RequestContext, instance_types: list[str] | None = None, filters: Any = None,
    max_results: int | None = None, next_token: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    ctx.check_dry_run(dry_run)
    known = ctx.settings.instance_types
    for t in instance_types or []:
        if t not in known:
            raise ServiceError(
                "InvalidInstanceType", f"The instance type '{t}' does not exist here; known types: {', '.join(sorted(known))}."
            )
    names = sorted(instance_types or known)
    items = [instance_type_item(n, *known[n]) for n in names]
    items = filter_items(
        items,
        filters,
        {
            "instance-type": lambda i: i["InstanceType"],
            "vcpu-info.default-vcpus": lambda i: i["VCpuInfo"]["DefaultVCpus"],
            "memory-info.size-in-mib": lambda i: i["MemoryInfo"]["SizeInMiB"],
            "current-generation": lambda i: i["CurrentGeneration"],
            "processor-info.supported-architecture": lambda i: i["ProcessorInfo"]["SupportedArchitectures"],
        },
    )
    check_max_results(max_results, 5, 100)
    scope = scope_digest("types", instance_types, filters)
    if next_token:
        last = ctx.tokens.decode(next_token, scope)
        items = [i for i in items if i["InstanceType"] > last]
    out: dict[str, Any] = {"InstanceTypes": items}
    if max_results and len(items) > max_results:
        out["InstanceTypes"] = items[:max_results]
        out["NextToken"] = ctx.tokens.encode(items[max_results - 1]["InstanceType"], scope)
    return out


def eucalyptus_availability(ctx: RequestContext, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Eucalyptus's capacity of each instance type (DescribeInstanceTypes with Availability=true on
    /services/Eucalyptus): per zone, how many instances of it fit when empty (Max) and now (Available)."""
    known = ctx.settings.instance_types
    with ctx.db.session() as s:
        capacity = type_capacity(s, ctx.settings, {n: known[n] for n in names if n in known})
    return {
        name: [{"ZoneName": z, "Max": full, "Available": free} for z, (full, free) in sorted(zones.items())]
        for name, zones in capacity.items()
    }
