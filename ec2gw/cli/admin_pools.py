"""`ec2gw admin pool add|list|show|remove`: Nimbus network pools (rules in ec2gw/network/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from ec2gw.cli.admin import admin
from ec2gw.cli.main import CliState, emit, open_app

# CLI start-up time: the service's modules are imported inside the commands, so `ec2gw --help`
# and each command load only what they use (everything at once takes about 2.5 s more).


@admin.group()
def pool() -> None:
    """Network pools (Nimbus's network slots): the addresses instances get, with their MACs.

    A pool file's first line is the DNS server (or `none`); each further line is
    `hostname ip gateway broadcast netmask [MAC]`. On every node serving the pool it becomes a
    libvirt network (nat or isolated, with a static DHCP entry per instance) or NICs on an
    existing host bridge (bridge:BRIDGE). Elastic addresses (AllocateAddress) come from public
    pools: those added with --public, and the one the setting network_public_pool names.
    """


def _nodes_serving(s: Any, name: str) -> list[Any]:
    from ec2gw.compute.placement import split_pools
    from ec2gw.db.models import Node

    return [n for n in s.scalars(select(Node).order_by(Node.name)) if name in split_pools(n.pools)]


def _on_nodes(app: Any, nodes: list[Any], action: Any) -> dict[str, str]:
    """Run ``action(driver)`` on each node; node name -> error text for those that failed."""
    from backends import driver_for
    from backends.base import DriverError

    errors: dict[str, str] = {}
    for n in nodes:
        drv = driver_for(n.uri, n.domain_type, timeout=15.0)
        try:
            action(drv)
        except (DriverError, ValueError) as exc:
            errors[n.name] = str(exc)
        finally:
            drv.close()
    return errors


def _text(v: dict[str, Any]) -> str:
    return (f"{v['name']:<16} {v['network_mode']:<18} {v['role']:<8} {v['subnet'] or '-':<18} "
            f"free {v['free']}/{v['addresses']}  in use {v['in_use']} (elastic {v['elastic']})  held {v['held']}  "
            f"dns {v['dns']}")


@pool.command("add")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--network-mode", default="nat", show_default=True,
              help="nat, isolated (no forwarding) or bridge:BRIDGE (NICs on an existing host bridge).")
@click.option("--public", is_flag=True,
              help="A public pool: users allocate elastic addresses from it (AllocateAddress). The pool named by the "
                   "setting network_public_pool is public without it.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def pool_add(state: CliState, name: str, file: str, network_mode: str, public: bool, as_json: bool) -> None:
    """Add pool NAME from the Nimbus pool FILE; nodes serving NAME get its network."""
    from ec2gw.network import layout, nodes, pools

    app = open_app(state)
    settings = app.settings
    try:
        dns, entries = pools.parse_pool_file(Path(file).read_text())
        mode = pools.check_network_mode(network_mode)
        role = "public" if public or name == settings.network_public_pool else "private"
        with app.db.session(write=True) as s:
            row = pools.add_pool(s, name, dns, entries, network_mode=mode, role=role, mac_prefix=settings.mac_prefix)
            net = nodes.pool_network(s, name)  # checks that the entries form one subnet
            serving = _nodes_serving(s, name)
            data = pools.summary(s, row, settings.address_grace_seconds)
    except (pools.PoolFileError, pools.PoolError, layout.NetworkLayoutError) as exc:
        raise click.ClickException(f"{file}: {exc}" if isinstance(exc, pools.PoolFileError) else str(exc)) from None
    errors = _on_nodes(app, serving, lambda drv: nodes.ensure(drv, net))
    data["nodes"] = [n.name for n in serving]
    data["node_errors"] = errors
    for node_name, err in errors.items():
        click.echo(f"warning: node {node_name}: the pool's network could not be created ({err}); "
                   "it is retried when an instance launches there", err=True)
    emit(data, as_json, _text(data))


@pool.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def pool_list(state: CliState, as_json: bool) -> None:
    """List the pools with their free and used addresses."""
    from ec2gw.network import pools
    from ec2gw.network.models import Pool

    app = open_app(state)
    with app.db.session() as s:
        data = [pools.summary(s, p, app.settings.address_grace_seconds)
                for p in s.scalars(select(Pool).order_by(Pool.name))]
    emit(data, as_json, "\n".join(_text(v) for v in data) or "(no pools)")


@pool.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def pool_show(state: CliState, name: str, as_json: bool) -> None:
    """Show pool NAME with every address, its MAC, the instance holding it and, for elastic
    addresses, the user they are allocated to."""
    from ec2gw.network import elastic, pools
    from ec2gw.network.models import Address, Pool

    app = open_app(state)
    with app.db.session() as s:
        row = s.get(Pool, name)
        if row is None:
            raise click.ClickException(f"there is no pool {name!r}; `ec2gw admin pool list` shows the pools")
        data = pools.summary(s, row, app.settings.address_grace_seconds)
        data["nodes"] = [n.name for n in _nodes_serving(s, name)]
        owners = elastic.holders(s, name)
        data["entries"] = [
            {"hostname": a.hostname, "ip": a.ip, "gateway": a.gateway, "broadcast": a.broadcast, "netmask": a.netmask,
             "mac": a.mac, "instance_id": a.instance_id, "user": owners.get(a.id, (None, None))[0],
             "allocation_id": a.allocation_id,
             "released_at": a.released_at.isoformat() if a.released_at else None}
            for a in s.scalars(select(Address).where(Address.pool == name).order_by(Address.id))
        ]
    lines = [_text(data), f"nodes: {', '.join(data['nodes']) or '-'}"]
    lines += [f"  {e['hostname']:<20} {e['ip']:<16} {e['mac']}  {e['instance_id'] or '':<20} "
              f"{('user ' + e['user'] + ' ' + (e['allocation_id'] or '')) if e['user'] else ''}".rstrip()
              for e in data["entries"]]
    emit(data, as_json, "\n".join(lines))


@pool.command("remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def pool_remove(state: CliState, name: str, as_json: bool) -> None:
    """Remove pool NAME (refused while instances hold its addresses); its networks leave the nodes."""
    from ec2gw.network import nodes, pools

    app = open_app(state)
    try:
        with app.db.session(write=True) as s:
            pools.remove_pool(s, name)
            serving = _nodes_serving(s, name)
            for n in serving:  # the nodes stop serving it
                n.pools = ",".join(p for p in n.pools.split(",") if p.strip() and p.strip() != name)
    except pools.PoolError as exc:
        raise click.ClickException(str(exc)) from None
    errors = _on_nodes(app, serving, lambda drv: nodes.remove(drv, name))
    for node_name, err in errors.items():
        click.echo(f"warning: node {node_name}: the pool's network could not be removed ({err}); "
                   f"remove network ec2gw-{name} there by hand", err=True)
    emit({"name": name, "removed": True, "nodes": [n.name for n in serving], "node_errors": errors}, as_json,
         f"removed pool {name}" + (f" (from nodes {', '.join(n.name for n in serving)})" if serving else ""))
