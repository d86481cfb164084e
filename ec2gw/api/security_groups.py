"""Security groups and their rules: CreateSecurityGroup, DeleteSecurityGroup,
AuthorizeSecurityGroupIngress/Egress, RevokeSecurityGroupIngress/Egress, DescribeSecurityGroups,
DescribeSecurityGroupRules.

Every account has its 'default' group, made with the account, with EC2's default rules (all
traffic from the group's members, all traffic out); new groups start with the egress rule only.
Groups belong to the one VPC (ec2gw.network.vpc). Rules are recorded and shown here; the compute
worker makes them libvirt network filters on the QEMU/KVM nodes (ec2gw/compute/filter_sync.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String as SqlString
from sqlalchemy import and_, cast, delete, exists, false, func, select, true
from sqlalchemy.exc import IntegrityError

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import build_conditions, match_any, matches
from ec2gw.aws.pagination import check_max_results, scope_digest
from ec2gw.db.models import Instance, InstanceGroup, SecurityGroup, SecurityGroupRule, Tag
from ec2gw.errors import ServiceError, invalid_combination, invalid_value
from ec2gw.network import group_rules as sg_rules
from ec2gw.network import vpc
from ec2gw.tagging import set_tags, tags_for, tags_from_specifications

_RULE_PARTS = ("cidr", "from-port", "group-id", "group-name", "ipv6-cidr", "prefix-list-id", "protocol", "to-port", "user-id")


def _rule_filter(egress: bool, part: str, account_id: str) -> Any:
    def condition(values: list[str]) -> Any:
        base = and_(SecurityGroupRule.group_id == SecurityGroup.id, SecurityGroupRule.egress.is_(egress))
        if part == "cidr":
            cond: Any = match_any(SecurityGroupRule.cidr_ipv4, values)
        elif part in ("from-port", "to-port"):
            col = SecurityGroupRule.from_port if part == "from-port" else SecurityGroupRule.to_port
            cond = match_any(func.coalesce(cast(col, SqlString), "-1"), values)
        elif part == "protocol":
            wanted = []
            for v in values:
                try:
                    wanted.append(sg_rules.protocol_of(v))
                except ServiceError:
                    wanted.append(v)
            cond = SecurityGroupRule.protocol.in_(wanted)
        elif part == "group-id":
            cond = match_any(SecurityGroupRule.referenced_group_id, values)
        elif part == "group-name":
            ref = SecurityGroup.__table__.alias("ref")
            cond = exists(select(ref.c.id).where(ref.c.id == SecurityGroupRule.referenced_group_id,
                                                 match_any(ref.c.name, values)))
        elif part == "user-id":
            cond = SecurityGroupRule.referenced_group_id.is_not(None) if matches(account_id, values) else false()
        else:  # ipv6-cidr, prefix-list-id: none are kept
            cond = false()
        return exists(select(SecurityGroupRule.id).where(base, cond))
    return condition


def _filters(ctx: RequestContext) -> dict[str, Any]:
    account_id = ctx.principal.account_id
    vid = vpc.vpc_id(ctx.settings)
    spec: dict[str, Any] = {
        "group-name": SecurityGroup.name,
        "group-id": SecurityGroup.id,
        "description": SecurityGroup.description,
        # the caller sees only their own groups, so the owner is always the caller
        "owner-id": lambda values: true() if matches(account_id, values) else false(),
        "vpc-id": lambda values: true() if matches(vid, values) else false(),
    }
    for side, egress in (("", False), ("egress.", True)):
        for part in _RULE_PARTS:
            spec[f"{side}ip-permission.{part}"] = _rule_filter(egress, part, account_id)
    return spec


def group_item(g: SecurityGroup, account_id: str, tags: list[dict[str, str]], rules: list[SecurityGroupRule],
               vpc_id: str) -> dict[str, Any]:
    return {
        "GroupName": g.name, "GroupId": g.id, "Description": g.description, "OwnerId": account_id, "VpcId": vpc_id,
        "IpPermissions": sg_rules.permissions([r for r in rules if not r.egress], account_id),
        "IpPermissionsEgress": sg_rules.permissions([r for r in rules if r.egress], account_id),
        "Tags": tags,
    }


def _rules_of(s: Any, group_ids: list[str]) -> dict[str, list[SecurityGroupRule]]:
    out: dict[str, list[SecurityGroupRule]] = {gid: [] for gid in group_ids}
    for start in range(0, len(group_ids), 500):
        for r in s.scalars(select(SecurityGroupRule).where(SecurityGroupRule.group_id.in_(group_ids[start:start + 500]))):
            out[r.group_id].append(r)
    return out


@operation("DescribeSecurityGroups")
def describe_security_groups(
    ctx: RequestContext, group_names: list[str] | None = None, group_ids: list[str] | None = None,
    filters: Any = None, max_results: int | None = None, next_token: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    for gid in group_ids or []:
        ids.check_id(gid, "sg")
    if max_results is not None and (group_ids or group_names):
        raise invalid_combination("MaxResults cannot be combined with GroupId or GroupName; page over filters instead.")
    check_max_results(max_results, 5, 1000)
    conds = build_conditions(filters, _filters(ctx), tag_model=Tag, resource_column=SecurityGroup.id)
    ctx.check_dry_run(dry_run)
    matched = and_(true(), *conds)
    q = select(SecurityGroup, matched.label("matched")).where(SecurityGroup.owner_id == ctx.user_id)
    if group_names:
        q = q.where(SecurityGroup.name.in_(group_names))
    if group_ids:
        q = q.where(SecurityGroup.id.in_(group_ids))
    if not group_names and not group_ids:
        q = q.where(matched)
    scope = scope_digest("groups", ctx.user_id, filters)
    if next_token:
        q = q.where(SecurityGroup.id > ctx.tokens.decode(next_token, scope))
    q = q.order_by(SecurityGroup.id)
    if max_results:
        q = q.limit(max_results + 1)
    with ctx.db.session() as s:
        found = list(s.execute(q))
        for name in group_names or []:
            if name not in {g.name for g, _ in found}:
                raise ServiceError(
                    "InvalidGroup.NotFound", f"The security group '{name}' does not exist. DescribeSecurityGroups lists yours."
                )
        for gid in group_ids or []:
            if gid not in {g.id for g, _ in found}:
                raise ServiceError(
                    "InvalidGroup.NotFound", f"The security group ID '{gid}' does not exist. DescribeSecurityGroups lists yours."
                )
        rows = [g for g, ok in found if ok]
        out: dict[str, Any] = {}
        if max_results and len(rows) > max_results:
            rows = rows[:max_results]
            out["NextToken"] = ctx.tokens.encode(rows[-1].id, scope)
        tags = tags_for(s, [g.id for g in rows])
        rules = _rules_of(s, [g.id for g in rows])
        vid = vpc.vpc_id(ctx.settings)
        out["SecurityGroups"] = [group_item(g, ctx.principal.account_id, tags.get(g.id, []), rules[g.id], vid) for g in rows]
    return out


# --------------------------------------------------------------------------- groups


def find_group(s: Any, ctx: RequestContext, group_id: str | None, group_name: str | None,
               for_update: bool = False) -> SecurityGroup:
    """The caller's group named by id or name; InvalidGroup.NotFound otherwise."""
    if not group_id and not group_name:
        raise ServiceError("MissingParameter", "The request must contain the parameter GroupId (or GroupName).")
    if group_id:
        ids.check_id(group_id, "sg")
        q = select(SecurityGroup).where(SecurityGroup.owner_id == ctx.user_id, SecurityGroup.id == group_id)
    else:
        q = select(SecurityGroup).where(SecurityGroup.owner_id == ctx.user_id, SecurityGroup.name == group_name)
    if for_update and s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    group = s.scalar(q)
    if group is None:
        raise ServiceError("InvalidGroup.NotFound",
                           f"The security group '{group_id or group_name}' does not exist; DescribeSecurityGroups lists yours.")
    return group


@operation("CreateSecurityGroup")
def create_security_group(
    ctx: RequestContext, group_name: str | None = None, description: str | None = None, vpc_id: str | None = None,
    tag_specifications: list[dict[str, Any]] | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    if not group_name:
        raise ServiceError("MissingParameter", "The request must contain the parameter GroupName.")
    if description is None or description == "":
        raise ServiceError("MissingParameter", "The request must contain the parameter GroupDescription.")
    if len(group_name) > 255 or len(description) > 255:
        raise invalid_value("GroupName/GroupDescription", group_name[:40], "Names and descriptions are at most 255 characters.")
    if group_name.lower().startswith("sg-"):
        raise invalid_value("GroupName", group_name, "Group names may not start with sg-.")
    if group_name == "default":
        raise ServiceError("InvalidGroup.Reserved", "The security group name 'default' is reserved: every account has its "
                                                    "default group already; choose another name.")
    vid = vpc.vpc_id(ctx.settings)
    if vpc_id is not None and vpc_id != vid:
        if not ids.is_valid(vpc_id, ("vpc",)):
            raise ServiceError("InvalidVpcID.Malformed", f'Invalid id: "{vpc_id}" (expecting "vpc-" followed by 17 hex digits).')
        raise ServiceError("InvalidVpcID.NotFound", f"The vpc ID '{vpc_id}' does not exist; this cloud has one VPC, {vid}.")
    tags = tags_from_specifications(tag_specifications, "security-group")
    ctx.check_dry_run(dry_run)
    with ctx.db.session(write=True) as s:
        if s.scalar(select(SecurityGroup.id).where(SecurityGroup.owner_id == ctx.user_id,
                                                   SecurityGroup.name == group_name)) is not None:
            raise ServiceError("InvalidGroup.Duplicate",
                               f"The security group '{group_name}' already exists for VPC '{vid}'; choose another name.")
        group = SecurityGroup(id=ids.new_id("sg"), owner_id=ctx.user_id, name=group_name, description=description)
        s.add(group)
        try:
            s.flush()
        except IntegrityError:
            raise ServiceError("InvalidGroup.Duplicate",
                               f"The security group '{group_name}' already exists for VPC '{vid}'; choose another name.") from None
        s.add(sg_rules.egress_all(group.id))
        if tags:
            set_tags(s, ctx.user_id, group.id, tags)
        return {"GroupId": group.id, "Tags": [{"Key": k, "Value": v} for k, v in tags]}


@operation("DeleteSecurityGroup")
def delete_security_group(
    ctx: RequestContext, group_id: str | None = None, group_name: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    with ctx.db.session(write=True) as s:
        group = find_group(s, ctx, group_id, group_name, for_update=True)
        if group.name == "default":
            raise ServiceError("CannotDelete", f'the specified group: "{group.id}" name: "default" cannot be deleted by a user; '
                                               "every account keeps its default group.")
        ctx.check_dry_run(dry_run)
        users = list(s.scalars(select(InstanceGroup.instance_id).join(Instance, Instance.id == InstanceGroup.instance_id)
                               .where(InstanceGroup.group_id == group.id, Instance.state != "terminated").limit(3)))
        if users:
            raise ServiceError("DependencyViolation",
                               f"resource {group.id} has a dependent object: instances {', '.join(users)} are in it; "
                               "terminate them or move them to other groups (ModifyInstanceAttribute Groups) first.")
        referencing = list(s.scalars(select(SecurityGroupRule.group_id).where(
            SecurityGroupRule.referenced_group_id == group.id, SecurityGroupRule.group_id != group.id).limit(3)))
        if referencing:
            raise ServiceError("DependencyViolation",
                               f"resource {group.id} has a dependent object: rules of {', '.join(sorted(set(referencing)))} "
                               "name it; revoke them first.")
        s.execute(delete(InstanceGroup).where(InstanceGroup.group_id == group.id))
        s.execute(delete(SecurityGroupRule).where(SecurityGroupRule.group_id == group.id))
        s.execute(delete(Tag).where(Tag.resource_id == group.id))
        gid = group.id
        s.delete(group)
    return {"Return": True, "GroupId": gid}


# --------------------------------------------------------------------------- rules


def _legacy(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.get(k) for k in ("ip_protocol", "from_port", "to_port", "cidr_ip", "source_security_group_name",
                                        "source_security_group_owner_id")}


def _authorize(ctx: RequestContext, egress: bool, group_id: str | None, group_name: str | None,
               ip_permissions: list[dict[str, Any]] | None, legacy: dict[str, Any], dry_run: bool | None,
               tag_specifications: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if tags_from_specifications(tag_specifications, "security-group-rule"):
        raise invalid_value("TagSpecifications", "security-group-rule", "Rules carry no tags here; tag the group instead.")
    with ctx.db.session(write=True) as s:
        group = find_group(s, ctx, group_id, group_name, for_update=True)
        asked = sg_rules.rules_of(s, ctx.user_id, ctx.principal.account_id, egress, ip_permissions, legacy)
        ctx.check_dry_run(dry_run)
        have = {sg_rules.of_row(r).key for r in s.scalars(select(SecurityGroupRule).where(
            SecurityGroupRule.group_id == group.id, SecurityGroupRule.egress.is_(egress)))}
        rows = []
        for rule in asked:
            if rule.key in have:
                raise ServiceError("InvalidPermission.Duplicate",
                                   f'the specified rule "{rule.text()}" already exists in {group.id}; '
                                   "DescribeSecurityGroupRules lists its rules.")
            have.add(rule.key)
            rows.append(sg_rules.new_row(group.id, rule))
        s.add_all(rows)
        s.flush()
        return {"Return": True, "SecurityGroupRules": [sg_rules.rule_item(r, ctx.principal.account_id) for r in rows]}


def _revoke(ctx: RequestContext, egress: bool, group_id: str | None, group_name: str | None,
            ip_permissions: list[dict[str, Any]] | None, rule_ids: list[str] | None, legacy: dict[str, Any],
            dry_run: bool | None) -> dict[str, Any]:
    with ctx.db.session(write=True) as s:
        group = find_group(s, ctx, group_id, group_name, for_update=True)
        existing = list(s.scalars(select(SecurityGroupRule).where(SecurityGroupRule.group_id == group.id,
                                                                  SecurityGroupRule.egress.is_(egress))))
        doomed: list[SecurityGroupRule] = []
        if rule_ids:
            if ip_permissions:
                raise invalid_combination("Give either SecurityGroupRuleIds or IpPermissions, not both.")
            by_id = {r.id: r for r in existing}
            for rid in rule_ids:
                if rid not in by_id:
                    raise ServiceError("InvalidSecurityGroupRuleId.NotFound",
                                       f"The security group rule ID '{rid}' does not exist in {group.id} "
                                       f"({'egress' if egress else 'ingress'}); DescribeSecurityGroupRules lists them.")
                doomed.append(by_id[rid])
        else:
            by_key = {sg_rules.of_row(r).key: r for r in existing}
            for rule in sg_rules.rules_of(s, ctx.user_id, ctx.principal.account_id, egress, ip_permissions, legacy):
                if rule.key not in by_key:
                    raise ServiceError("InvalidPermission.NotFound",
                                       f'The specified rule "{rule.text()}" does not exist in this security group '
                                       f"({group.id}); DescribeSecurityGroupRules lists its rules.")
                doomed.append(by_key[rule.key])
        ctx.check_dry_run(dry_run)
        for r in {r.id: r for r in doomed}.values():
            s.delete(r)
    return {"Return": True}


@operation("AuthorizeSecurityGroupIngress")
def authorize_ingress(ctx: RequestContext, group_id: str | None = None, group_name: str | None = None,
                      ip_permissions: list[dict[str, Any]] | None = None,
                      tag_specifications: list[dict[str, Any]] | None = None, dry_run: bool | None = None,
                      **kwargs: Any) -> dict[str, Any]:
    return _authorize(ctx, False, group_id, group_name, ip_permissions, _legacy(kwargs), dry_run, tag_specifications)


@operation("AuthorizeSecurityGroupEgress")
def authorize_egress(ctx: RequestContext, group_id: str | None = None, ip_permissions: list[dict[str, Any]] | None = None,
                     tag_specifications: list[dict[str, Any]] | None = None, dry_run: bool | None = None,
                     **kwargs: Any) -> dict[str, Any]:
    if not group_id:
        raise ServiceError("MissingParameter", "The request must contain the parameter GroupId.")
    return _authorize(ctx, True, group_id, None, ip_permissions, _legacy(kwargs), dry_run, tag_specifications)


@operation("RevokeSecurityGroupIngress")
def revoke_ingress(ctx: RequestContext, group_id: str | None = None, group_name: str | None = None,
                   ip_permissions: list[dict[str, Any]] | None = None, security_group_rule_ids: list[str] | None = None,
                   dry_run: bool | None = None, **kwargs: Any) -> dict[str, Any]:
    return _revoke(ctx, False, group_id, group_name, ip_permissions, security_group_rule_ids, _legacy(kwargs), dry_run)


@operation("RevokeSecurityGroupEgress")
def revoke_egress(ctx: RequestContext, group_id: str | None = None, ip_permissions: list[dict[str, Any]] | None = None,
                  security_group_rule_ids: list[str] | None = None, dry_run: bool | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    if not group_id:
        raise ServiceError("MissingParameter", "The request must contain the parameter GroupId.")
    return _revoke(ctx, True, group_id, None, ip_permissions, security_group_rule_ids, _legacy(kwargs), dry_run)


_RULE_FILTERS: dict[str, Any] = {
    "group-id": SecurityGroupRule.group_id,
    "security-group-rule-id": SecurityGroupRule.id,
}


@operation("DescribeSecurityGroupRules")
def describe_security_group_rules(
    ctx: RequestContext, security_group_rule_ids: list[str] | None = None, filters: Any = None,
    max_results: int | None = None, next_token: str | None = None, dry_run: bool | None = None,
) -> dict[str, Any]:
    for rid in security_group_rule_ids or []:
        if not ids.is_valid(rid, ("sgr",)):
            raise ServiceError("InvalidSecurityGroupRuleId.Malformed",
                               f'Invalid id: "{rid}" (expecting "sgr-" followed by 17 lowercase hexadecimal digits).')
    check_max_results(max_results, 5, 1000)
    conds = build_conditions(filters, _RULE_FILTERS, tag_model=Tag, resource_column=SecurityGroupRule.id)
    ctx.check_dry_run(dry_run)
    mine = select(SecurityGroup.id).where(SecurityGroup.owner_id == ctx.user_id)
    q = select(SecurityGroupRule).where(SecurityGroupRule.group_id.in_(mine), *conds)
    if security_group_rule_ids:
        q = q.where(SecurityGroupRule.id.in_(security_group_rule_ids))
    scope = scope_digest("rules", ctx.user_id, security_group_rule_ids, filters)
    if next_token:
        q = q.where(SecurityGroupRule.id > ctx.tokens.decode(next_token, scope))
    q = q.order_by(SecurityGroupRule.id)
    if max_results:
        q = q.limit(max_results + 1)
    with ctx.db.session() as s:
        rows = list(s.scalars(q))
        if security_group_rule_ids and not conds and not next_token:
            missing = set(security_group_rule_ids) - {r.id for r in rows}
            if missing:
                raise ServiceError("InvalidSecurityGroupRuleId.NotFound",
                                   f"The security group rule ID '{sorted(missing)[0]}' does not exist; "
                                   "DescribeSecurityGroupRules lists yours.")
        out: dict[str, Any] = {}
        if max_results and len(rows) > max_results:
            rows = rows[:max_results]
            out["NextToken"] = ctx.tokens.encode(rows[-1].id, scope)
        out["SecurityGroupRules"] = [sg_rules.rule_item(r, ctx.principal.account_id) for r in rows]
    return out


# --------------------------------------------------------------------------- instances' groups


def groups_of(s: Any, user_id: int, instance_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """instance id -> its groups (GroupName, GroupId); instances without memberships are in default."""
    out: dict[str, list[dict[str, str]]] = {}
    for start in range(0, len(instance_ids), 500):
        chunk = instance_ids[start:start + 500]
        for iid, gid, name in s.execute(
                select(InstanceGroup.instance_id, SecurityGroup.id, SecurityGroup.name)
                .join(SecurityGroup, SecurityGroup.id == InstanceGroup.group_id)
                .where(InstanceGroup.instance_id.in_(chunk)).order_by(SecurityGroup.name)):
            out.setdefault(iid, []).append({"GroupName": name, "GroupId": gid})
    missing = [iid for iid in instance_ids if iid not in out]
    if missing:
        default = s.scalar(select(SecurityGroup.id).where(SecurityGroup.owner_id == user_id, SecurityGroup.name == "default"))
        for iid in missing:
            out[iid] = [{"GroupName": "default", "GroupId": default}] if default else []
    return out


def resolve_groups(s: Any, user_id: int, names: list[str] | None, group_ids: list[str] | None) -> list[str]:
    """The ids of the caller's groups named by name or id (InvalidGroup.NotFound for others)."""
    out: list[str] = []
    for name in names or []:
        gid = s.scalar(select(SecurityGroup.id).where(SecurityGroup.owner_id == user_id, SecurityGroup.name == name))
        if gid is None:
            raise ServiceError("InvalidGroup.NotFound", f"The security group '{name}' does not exist; DescribeSecurityGroups lists yours.")
        out.append(gid)
    for gid in group_ids or []:
        ids.check_id(gid, "sg")
        if s.scalar(select(SecurityGroup.id).where(SecurityGroup.owner_id == user_id, SecurityGroup.id == gid)) is None:
            raise ServiceError("InvalidGroup.NotFound", f"The security group ID '{gid}' does not exist; DescribeSecurityGroups lists yours.")
        out.append(gid)
    return list(dict.fromkeys(out))


def set_groups(s: Any, instance_ids: list[str], group_ids: list[str], replace: bool = True) -> None:
    """Make ``group_ids`` the groups of each instance (replacing what it had unless ``replace`` is
    False: new instances have none)."""
    for start in range(0, len(instance_ids), 500) if replace else ():
        s.execute(delete(InstanceGroup).where(InstanceGroup.instance_id.in_(instance_ids[start:start + 500])))
    s.add_all([InstanceGroup(instance_id=iid, group_id=gid) for iid in instance_ids for gid in group_ids])

