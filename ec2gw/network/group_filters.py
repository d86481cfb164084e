"""The network filters security groups call for, read from the database (backends/filters.py
translates; this module only gathers the rows).

An instance is in the groups its InstanceGroup rows name, or in its owner's `default` group when
it has none (as the API shows it). A rule naming a group admits the addresses of that group's
members: every address held by an instance in the group that is not terminated (stopped ones keep
theirs). A node needs the filter of every instance placed there (terminated ones aside) and the
filters of those instances' groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import exists, select

from backends.filters import FilterSpec, GroupRule, group_filter, instance_filter
from ec2gw.db.models import Instance, InstanceGroup, SecurityGroup, SecurityGroupRule
from ec2gw.network.models import Address

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_CHUNK = 500


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


@dataclass
class WantedFilters:
    """Filters in the order to define them (groups before the instance filters that include
    them), and the rules that could not be enforced, as log lines."""

    specs: list[FilterSpec] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def names(self) -> set[str]:
        return {s.name for s in self.specs}


def groups_of_instances(s: Session, instances: list[tuple[str, int]]) -> dict[str, list[str]]:
    """instance id -> its group ids, for (instance id, owner id) pairs; no rows: the owner's default."""
    out: dict[str, list[str]] = {}
    for chunk in _chunks([i for i, _ in instances]):
        for iid, gid in s.execute(select(InstanceGroup.instance_id, InstanceGroup.group_id)
                                  .where(InstanceGroup.instance_id.in_(chunk))):
            out.setdefault(iid, []).append(gid)
    owners = {owner for iid, owner in instances if iid not in out}
    defaults: dict[int, str] = {}
    if owners:
        defaults = dict(s.execute(select(SecurityGroup.owner_id, SecurityGroup.id).where(
            SecurityGroup.owner_id.in_(owners), SecurityGroup.name == "default")).all())
    for iid, owner in instances:
        if iid not in out:
            out[iid] = [defaults[owner]] if owner in defaults else []
    return out


def member_addresses(s: Session, group_ids: Iterable[str]) -> dict[str, list[str]]:
    """group id -> the IPv4 addresses of its members (instances not terminated)."""
    wanted = sorted(set(group_ids))
    members: dict[str, set[str]] = {g: set() for g in wanted}
    live = Instance.state != "terminated"
    for chunk in _chunks(wanted):
        for gid, iid in s.execute(select(InstanceGroup.group_id, Instance.id)
                                  .join(Instance, Instance.id == InstanceGroup.instance_id)
                                  .where(InstanceGroup.group_id.in_(chunk), live)):
            members[gid].add(iid)
        # members of a default group also are the owner's instances that name no group at all
        no_rows = ~exists(select(InstanceGroup.instance_id).where(InstanceGroup.instance_id == Instance.id))
        for gid, iid in s.execute(select(SecurityGroup.id, Instance.id)
                                  .join(Instance, Instance.owner_id == SecurityGroup.owner_id)
                                  .where(SecurityGroup.id.in_(chunk), SecurityGroup.name == "default", live, no_rows)):
            members[gid].add(iid)
    ids = sorted({i for m in members.values() for i in m})
    addresses: dict[str, list[str]] = {}
    for chunk in _chunks(ids):
        for holder, ip in s.execute(select(Address.instance_id, Address.ip).where(Address.instance_id.in_(chunk))):
            addresses.setdefault(str(holder), []).append(ip)
    return {g: sorted(ip for i in m for ip in addresses.get(i, ())) for g, m in members.items()}


def wanted_filters(s: Session, instances: list[tuple[str, int]]) -> WantedFilters:
    """The filters the instances (id, owner id) need: their groups' filters, then their own."""
    groups = groups_of_instances(s, instances)
    group_ids = sorted({g for gs in groups.values() for g in gs})
    rules: dict[str, list[GroupRule]] = {g: [] for g in group_ids}
    for chunk in _chunks(group_ids):
        for r in s.scalars(select(SecurityGroupRule).where(SecurityGroupRule.group_id.in_(chunk))
                           .order_by(SecurityGroupRule.id)):
            rules[r.group_id].append(GroupRule(r.egress, r.protocol, r.from_port, r.to_port, r.cidr_ipv4,
                                               r.referenced_group_id))
    referenced = {r.group for rs in rules.values() for r in rs if r.group}
    members = member_addresses(s, referenced) if referenced else {}
    out = WantedFilters()
    for gid in group_ids:
        done = group_filter(gid, rules[gid], members)
        out.specs.append(done.spec)
        out.skipped += [f"security group {gid}: a {'egress' if r.egress else 'ingress'} rule is not enforced: {why}"
                        for r, why in done.skipped]
    out.specs += [instance_filter(iid, groups[iid]) for iid, _ in instances]
    return out


def node_filters(s: Session, node_name: str, arriving: Iterable[str] = ()) -> WantedFilters:
    """What node ``node_name`` needs: the filters of its instances (terminated ones aside) and of
    the instances ``arriving`` there (moves under way to it)."""
    on_node = (Instance.node_name == node_name) | Instance.id.in_(sorted(set(arriving)))
    rows = s.execute(select(Instance.id, Instance.owner_id).where(on_node, Instance.state != "terminated")
                     .order_by(Instance.id))
    return wanted_filters(s, [(i, o) for i, o in rows])


def instance_filters(s: Session, instance_id: str) -> WantedFilters:
    """What one instance needs on whatever node runs it (at launch, or before a migration there)."""
    owner = s.scalar(select(Instance.owner_id).where(Instance.id == instance_id))
    return wanted_filters(s, [] if owner is None else [(instance_id, owner)])
