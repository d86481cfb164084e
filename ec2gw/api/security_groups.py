"""DescribeSecurityGroups: every account has its 'default' group, created with the account.

Groups carry no rules here (the network does no filtering), so IpPermissions and
IpPermissionsEgress are empty; filters on rules accordingly match nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, false, select, true

from ec2gw import ids
from ec2gw.api.context import RequestContext
from ec2gw.aws.dispatch import operation
from ec2gw.aws.filters import build_conditions, matches
from ec2gw.aws.pagination import check_max_results, decode_token, encode_token, scope_digest
from ec2gw.db.models import SecurityGroup, Tag
from ec2gw.errors import ServiceError, invalid_combination
from ec2gw.tagging import tags_for

_RULE_FILTERS = [
    f"{side}ip-permission.{part}"
    for side in ("", "egress.")
    for part in ("cidr", "from-port", "group-id", "group-name", "ipv6-cidr", "prefix-list-id", "protocol", "to-port", "user-id")
]


def _filters(account_id: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "group-name": SecurityGroup.name,
        "group-id": SecurityGroup.id,
        "description": SecurityGroup.description,
        # the caller sees only their own groups, so the owner is always the caller
        "owner-id": lambda values: true() if matches(account_id, values) else false(),
        "vpc-id": lambda values: false(),
    }
    spec.update({name: (lambda values: false()) for name in _RULE_FILTERS})
    return spec


def group_item(g: SecurityGroup, account_id: str, tags: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "GroupName": g.name, "GroupId": g.id, "Description": g.description, "OwnerId": account_id,
        "IpPermissions": [], "IpPermissionsEgress": [], "Tags": tags,
    }


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
    conds = build_conditions(filters, _filters(ctx.principal.account_id), tag_model=Tag, resource_column=SecurityGroup.id)
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
        q = q.where(SecurityGroup.id > decode_token(next_token, scope))
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
            out["NextToken"] = encode_token(rows[-1].id, scope)
        tags = tags_for(s, [g.id for g in rows])
    out["SecurityGroups"] = [group_item(g, ctx.principal.account_id, tags.get(g.id, [])) for g in rows]
    return out
