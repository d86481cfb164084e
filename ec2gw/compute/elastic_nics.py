"""Elastic addresses on the nodes: the NIC of each associated address, plugged into its instance's domain.

What: on every worker pass, each elastic address whose association (``instance_id``) differs from
what its node has (``plugged_into``/``plugged_node``) is brought in line: its NIC is unplugged
from the domain that had it (libvirt detach, live and saved) and its DHCP entry removed, then, for
a new association, the pool's network is ensured on the instance's node, the address's static
DHCP entry added (network update, live and saved) and a NIC with the address's MAC on that network
plugged into the domain (libvirt attach, live where the guest runs, saved always: a stopped
instance gets it at its next start). The guest leases the address on its new NIC by DHCP.
Why apart from the API: AssociateAddress answers at once (the association is what EC2 shows);
nodes may be slow or away, so the worker retries until the node has it, as it does for launches.

An instance with a task in flight (spawn, start, stop, ...) is left for a later pass, and so is an
unplug from an instance on the move (its NICs follow its domain: compute/moves.py records them on
the destination when the move is done). On libvirt's test driver, whose domains have no NICs
(compute/specs.py), there is nothing to plug: the address is recorded as in place without a node
call, as launches there record their addresses only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from backends.base import DriverError, NicSpec, NodeUnavailable
from backends.filters import nic_parameters
from ec2gw.compute import filter_sync
from ec2gw.compute.placement import node_ref
from ec2gw.db.models import Instance
from ec2gw.network import layout
from ec2gw.network import nodes as net_nodes
from ec2gw.network.models import Address, Pool

if TYPE_CHECKING:
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute")

#: instance states whose domain exists on a node (a pending one only once its spawn is done)
_ON_NODE = ("pending", "running", "stopping", "stopped")


def out_of_line(worker: ComputeWorker, limit: int = 100) -> list[Any]:
    """Elastic address rows whose node has another association than the database."""
    with worker.db.session() as s:
        return list(s.execute(
            select(Address.id, Address.pool, Address.mac, Address.ip, Address.hostname, Address.instance_id,
                   Address.plugged_into, Address.plugged_node)
            .where(or_(Address.allocation_id.is_not(None), Address.plugged_into.is_not(None)),
                   Address.instance_id.is_distinct_from(Address.plugged_into))
            .order_by(Address.id).limit(limit)).all())


def sync(worker: ComputeWorker) -> int:
    """Bring every out-of-line elastic address in line with its association; returns how many moved."""
    moved = 0
    unreachable: set[str] = set()
    for row in out_of_line(worker):
        try:
            if _step(worker, row, unreachable):
                moved += 1
        except NodeUnavailable as exc:
            log.warning("elastic address %s: node does not answer (%s); will retry", row.ip, exc)
        except DriverError as exc:
            log.warning("elastic address %s: the node refused (%s); will retry", row.ip, exc)
        except Exception:  # one address's trouble (a pool gone wrong, say) must not hold up the others
            log.exception("elastic address %s: not brought in line; will retry", row.ip)
    return moved


def _step(worker: ComputeWorker, row: Any, unreachable: set[str]) -> bool:
    with worker.db.session() as s:
        pool = s.get(Pool, row.pool)
        net = net_nodes.pool_network(s, row.pool) if pool is not None else None
        inst = s.get(Instance, row.instance_id) if row.instance_id else None
        old_node = node_ref(s, worker.settings, row.plugged_node) if row.plugged_into else None
        holder = s.get(Instance, row.plugged_into) if row.plugged_into else None
        moving = holder is not None and holder.task == "migrate"  # the NIC is unplugged where the move ends
        new_node = node_ref(s, worker.settings, inst.node_name) if inst is not None and inst.node_name else None
        ready = inst is not None and inst.task is None and inst.state in _ON_NODE and new_node is not None
        mode = pool.network_mode if pool is not None else "none"
    if row.plugged_into and old_node is not None:
        if old_node.name in unreachable or moving:
            return False
        drv = worker.drivers.get(old_node)
        if drv.domain_type != "test":
            try:
                drv.detach_nic(row.plugged_into, row.mac)
                net_nodes.remove_host(drv, row.pool, mode, row.mac)
            except NodeUnavailable:
                unreachable.add(old_node.name)
                raise
        _record(worker, row.id, row.plugged_into, None, None)
        log.info("elastic address %s: NIC %s unplugged from %s on %s", row.ip, row.mac, row.plugged_into, old_node.name)
        if not row.instance_id:
            return True
    if not ready or new_node is None or inst is None or net is None or pool is None:
        return False
    if new_node.name in unreachable:
        return False
    drv = worker.drivers.get(new_node)
    if drv.domain_type != "test" and net.spec is not None:
        try:
            net_nodes.ensure(drv, net)
            address = Address(mac=row.mac, ip=row.ip, hostname=row.hostname)
            net_nodes.add_host(drv, pool, address)
            # the instance's network filter (its groups, anti-spoofing for this NIC's own address)
            filt = filter_sync.ensure_instance_filters(worker, new_node, inst.id)
            params = nic_parameters(row.ip) if filt else {}
            nic = (NicSpec(mac=row.mac, network=layout.network_name(pool.name), filter=filt, filter_params=params)
                   if net.spec.mode != "bridge"
                   else NicSpec(mac=row.mac, bridge=net.spec.bridge, filter=filt, filter_params=params))
            drv.attach_nic(inst.id, nic)
        except NodeUnavailable:
            unreachable.add(new_node.name)
            raise
    _record(worker, row.id, None, inst.id, new_node.name)
    log.info("elastic address %s: NIC %s plugged into %s on %s", row.ip, row.mac, inst.id, new_node.name)
    return True


def _record(worker: ComputeWorker, address_id: int, was: str | None, now: str | None, node: str | None) -> None:
    """What the node has now; compare-and-set on the previous record, so two passes never cross."""
    with worker.db.session(write=True) as s:
        s.execute(update(Address).where(Address.id == address_id, Address.plugged_into.is_not_distinct_from(was))
                  .values(plugged_into=now, plugged_node=node))
