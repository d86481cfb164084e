"""`ec2gw admin node add|list|show|update|remove`: the VMM nodes instances run on (rules in compute/nodes.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from ec2gw.cli.admin import admin
from ec2gw.cli.main import CliState, emit, open_app

# CLI start-up time: the service's modules are imported inside the commands, so `ec2gw --help`
# and each command load only what they use (everything at once takes about 2.5 s more).


@admin.group()
def node() -> None:
    """VMM nodes: libvirt URIs with a capacity, a zone and the network pools they serve.

    While no node is registered, an implicit node `local` on libvirt's test driver serves every
    instance. Once one is registered, instances go only to registered, active, reachable nodes.
    """


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _row(v: dict[str, Any]) -> str:
    state = ("active" if v["active"] else "inactive") + ("" if v["reachable"] else ",unreachable")
    unknown = f"  {len(v['unknown_domains'])} unknown domain(s)" if v["unknown_domains"] else ""
    if v.get("saved_state_mib"):
        unknown = f"  saved state {v['saved_state_mib']} MiB{unknown}"
    return (f"{v['name']:<16} {v['zone']:<14} {state:<20} vcpus {v['used_vcpus']}/{v['vcpus']:<5} "
            f"memory {v['used_memory_mib']}/{v['memory_mib']} MiB  instances {v['instances']:<5} {v['uri']}{unknown}")


@node.command("add")
@click.argument("name")
@click.option("--uri", required=True, help="libvirt URI of the node, e.g. qemu+ssh://host/system, qemu+tcp://10.0.0.5/system "
                                           "or test+tcp://10.77.0.1/default.")
@click.option("--memory", "memory_mib", type=int, default=None, help="Memory for instances, in MiB [default: what the node reports].")
@click.option("--vcpus", type=int, default=None, help="vCPUs for instances [default: the node's logical CPUs].")
@click.option("--zone", default=None, help="Availability zone [default: the region's first zone, e.g. us-east-1a].")
@click.option("--pools", default="", help="Comma-separated network pools the node serves [default: the built-in default pool].")
@click.option("--volume-gb", type=int, default=None, help="GiB of EBS volumes the node's storage may hold [default: no fixed limit].")
@click.option("--domain-type", type=click.Choice(["qemu", "kvm", "xen"]), default=None,
              help="Domain type: kvm where hardware virtualization works, qemu (TCG) elsewhere, xen for Xen hosts "
                   "(xen+ssh://HOST/system; guests with a kernel run paravirtualized, the others HVM) [default: qemu; "
                   "xen for Xen URIs; test-driver URIs always run test domains]. Never detected: libvirt advertises "
                   "kvm where it crawls.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def node_add(state: CliState, name: str, uri: str, memory_mib: int | None, vcpus: int | None, zone: str | None,
             pools: str, domain_type: str | None, volume_gb: int | None, as_json: bool) -> None:
    """Register node NAME at URI; capacity not given is read from the node."""
    from backends.base import NodeUnavailable
    from ec2gw.compute import nodes, volume_placement
    from ec2gw.compute.placement import split_pools
    from ec2gw.network.nodes import pool_networks

    app = open_app(state)
    pool_list = list(split_pools(pools))
    needs_probe = memory_mib is None or vcpus is None
    info = None
    try:
        nodes.check_name(name)
        nodes.check_uri(uri)
        dtype = nodes.domain_type_for(uri, domain_type)
        if needs_probe:  # before the write transaction: never hold the database while a node answers
            info = nodes.probe_capacity(uri, dtype)
        with app.db.session(write=True) as s:
            nodes.add_node(s, name=name, uri=uri, zone=zone or app.settings.default_zone, memory_mib=memory_mib,
                           vcpus=vcpus, pools=pool_list, domain_type=domain_type,
                           probe=(lambda _u, _t: info) if info is not None else None)
            if volume_gb is not None:
                volume_placement.set_capacity(s, name, volume_gb)
            nets, errors = pool_networks(s, pool_list) if dtype != "test" else ([], {})
    except NodeUnavailable as exc:
        raise click.ClickException(f"node {name} at {uri} does not answer ({exc}); make it reachable, or give --memory "
                                   "and --vcpus to register it anyway") from None
    except (nodes.NodeError, ValueError) as exc:
        raise _fail(exc) from None
    errors.update(_ensure_networks(app, name, uri, dtype, nets))  # after the commit: the node is registered
    with app.db.session() as s:
        data = next(v for v in nodes.list_nodes(s) if v.name == name).as_dict()
    data["network_errors"] = errors
    emit(data, as_json, f"added node {name}: {data['vcpus']} vcpus, {data['memory_mib']} MiB, zone {data['zone']}, "
                        f"{data['domain_type']} domains" + (f", networks of {', '.join(pool_list)}" if nets and not errors
                                                            else ""))


def _ensure_networks(app: Any, name: str, uri: str, dtype: str, nets: list[Any]) -> dict[str, str]:
    """Create the pools' networks on the new node now, rather than at its first launch.

    A node that does not answer stays registered, marked unreachable (the compute worker marks
    it reachable once it answers), and the networks come with its first launch: the worker
    ensures a pool's network on a node before every launch there. Returns pool -> error."""
    from sqlalchemy import update

    from backends.base import NodeUnavailable
    from backends.registry import driver_for
    from ec2gw.compute.nodes import PROBE_TIMEOUT
    from ec2gw.db.models import Node
    from ec2gw.network.nodes import ensure_networks

    if not nets:
        return {}
    pools = ", ".join(n.pool.name for n in nets)
    drv = driver_for(uri, dtype, timeout=PROBE_TIMEOUT)
    try:
        errors = ensure_networks(drv, nets)
    except NodeUnavailable as exc:
        with app.db.session(write=True) as s:
            s.execute(update(Node).where(Node.name == name).values(reachable=False, last_error=str(exc)[:500]))
        click.echo(f"warning: node {name} is registered but does not answer at {uri} ({exc}); the networks of pools "
                   f"{pools} will be created when it answers (the compute worker creates a pool's network on a node "
                   f"before launching there). `ec2gw admin node show {name}` shows whether it answers.", err=True)
        return {n.pool.name: f"node does not answer: {exc}" for n in nets}
    finally:
        drv.close()
    for pool, err in errors.items():
        click.echo(f"warning: node {name}: the network of pool {pool} could not be created ({err}); it is retried "
                   "before each launch there", err=True)
    return errors


@node.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def node_list(state: CliState, as_json: bool) -> None:
    """List nodes with their capacity, use, health and any domains the service does not know."""
    from ec2gw.compute import nodes

    app = open_app(state)
    with app.db.session() as s:
        views = [v.as_dict() for v in nodes.list_nodes(s)]
    text = "\n".join(_row(v) for v in views) or ("(no nodes registered: the implicit node 'local' on libvirt's test "
                                                   "driver serves instances; it does not enforce security groups)")
    emit(views, as_json, text)


@node.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def node_show(state: CliState, name: str, as_json: bool) -> None:
    """Show node NAME: registration, health, whether it enforces security groups (qemu and kvm nodes
    do, with libvirt's network filters; test-driver and Xen nodes do not), its instances and unknown
    domains (never destroyed)."""
    from ec2gw.compute import metrics, nodes, volume_placement

    app = open_app(state)
    # the latest samples count as live while they are at most three sampling intervals old
    since = datetime.now(UTC) - timedelta(seconds=3 * max(app.settings.metrics_interval_seconds, 1.0))
    try:
        with app.db.session() as s:
            data = nodes.show_node(s, name)
            data["utilisation"] = use = metrics.node_utilisation(s, name, since)
            data["volume_storage"] = vs = volume_placement.storage_report(s, name)
    except nodes.NodeError as exc:
        raise _fail(exc) from None
    use["vcpus_committed"], use["memory_committed_mib"] = data["used_vcpus"], data["used_memory_mib"]
    if isinstance(use["as_of"], datetime):
        use["as_of"] = use["as_of"].strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [_row(data), _utilisation_line(use), nodes.security_groups_line(data["domain_type"]),
             f"volume storage: {vs['used_gib']} GiB used by {vs['volumes']} volume(s), "
             + ("no fixed limit" if vs["capacity_gib"] is None else f"{vs['free_gib']} GiB free of {vs['capacity_gib']} GiB")]
    if data["last_error"]:
        lines.append(f"last error: {data['last_error']}")
    lines += [f"  instance {i['id']} {i['state']} {i['type']}" for i in data["instance_ids"]]
    lines += [f"  unknown domain {u['domain']} ({u['state']}), seen since {u['first_seen']}: not managed by ec2gw, "
              "left alone" for u in data["unknown_domains"]]
    emit(data, as_json, "\n".join(lines))


def _utilisation_line(use: dict[str, Any]) -> str:
    if not use["sampled"]:
        return (f"utilisation: committed vcpus {use['vcpus_committed']}, memory {use['memory_committed_mib']} MiB; "
                "used: no recent samples (metrics_interval_seconds; is the compute worker running?)")
    vcpus = "unknown" if use["vcpus_used"] is None else f"{use['vcpus_used']:.2f}"
    memory = "unknown" if use["memory_used_mib"] is None else f"{use['memory_used_mib']} MiB"
    return (f"utilisation: vcpus used {vcpus} of {use['vcpus_committed']} committed, memory used {memory} of "
            f"{use['memory_committed_mib']} MiB committed ({use['sampled']} instance(s) sampled, as of {use['as_of']})")


@node.command("update")
@click.argument("name")
@click.option("--active/--inactive", default=None, help="Inactive nodes get no new instances; their instances keep running.")
@click.option("--memory", "memory_mib", type=int, default=None, help="Memory for instances, in MiB.")
@click.option("--vcpus", type=int, default=None, help="vCPUs for instances.")
@click.option("--volume-gb", type=int, default=None, help="GiB of EBS volumes the node's storage may hold.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def node_update(state: CliState, name: str, active: bool | None, memory_mib: int | None, vcpus: int | None,
                volume_gb: int | None, as_json: bool) -> None:
    """Change node NAME: activate, deactivate or change its capacity."""
    from ec2gw.compute import nodes, volume_placement

    app = open_app(state)
    try:
        with app.db.session(write=True) as s:
            nodes.update_node(s, name, active=active, memory_mib=memory_mib, vcpus=vcpus)
            if volume_gb is not None:
                volume_placement.set_capacity(s, name, volume_gb)
            view = next(v for v in nodes.list_nodes(s) if v.name == name)
    except (nodes.NodeError, ValueError) as exc:
        raise _fail(exc) from None
    data = view.as_dict()
    emit(data, as_json, _row(data))


@node.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove even with instances: they are marked terminated (their domains "
                                            "on the node are left alone).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def node_remove(state: CliState, name: str, force: bool, as_json: bool) -> None:
    """Remove node NAME; refused while it has instances unless --force."""
    from ec2gw.compute import nodes

    app = open_app(state)
    try:
        with app.db.session(write=True) as s:
            terminated = nodes.remove_node(s, name, force=force)
    except nodes.NodeError as exc:
        raise _fail(exc) from None
    text = f"removed node {name}" + (f"; {len(terminated)} instance(s) marked terminated: {', '.join(terminated)}"
                                     if terminated else "")
    emit({"name": name, "removed": True, "terminated_instances": terminated}, as_json, text)
