"""Whose resources a Describe call asks for: the Owner.N of DescribeImages and the OwnerId.N of
DescribeSnapshots take the same values (12-digit account ids, self, AWS's owner aliases)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import false, or_, select
from sqlalchemy.sql.elements import ColumnElement

from ec2gw.api.context import RequestContext
from ec2gw.db.models import User
from ec2gw.errors import ServiceError

#: a 12-digit account id and nothing else: ASCII digits only, no trailing newline (which `$` would let through)
ACCOUNT_RE = re.compile(r"[0-9]{12}")
#: AWS's own owners, which own nothing here
OWNER_ALIASES = ("amazon", "aws-marketplace", "aws-backup-vault")


def owners_condition(ctx: RequestContext, owner_id: Any, owners: list[str], accepted: str) -> ColumnElement[bool]:
    """The rows whose `owner_id` column is one of `owners`: self (or the caller's account id), an
    alias of AWS (none), another account id. A malformed one is 400 InvalidUserID.Malformed, whose
    message ends with `accepted` (what the parameter takes)."""
    conds: list[ColumnElement[bool]] = []
    for o in owners:
        if o == "self" or o == ctx.principal.account_id:
            conds.append(owner_id == ctx.user_id)
        elif o in OWNER_ALIASES:
            conds.append(false())
        elif ACCOUNT_RE.fullmatch(o):
            conds.append(owner_id.in_(select(User.id).where(User.account_id == o)))
        else:
            raise ServiceError("InvalidUserID.Malformed", f'Invalid user id: "{o}". {accepted}')
    return or_(*conds)
