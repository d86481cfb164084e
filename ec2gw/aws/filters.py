"""EC2 Filter.N as data -> SQL conditions.

A resource area declares its filters as a mapping of filter name -> column (matched with `*`/`?`
wildcards) or -> a function of the value list returning a condition. `tag:KEY`, `tag-key` and
`tag-value` are handled for every area that has tags. An unknown filter name is
InvalidParameterValue, as on EC2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.sql.elements import ColumnElement

from ec2gw.errors import ServiceError

Condition = ColumnElement[bool]
FilterSpec = Mapping[str, Any | Callable[[list[str]], Condition]]


def wildcard_to_like(pattern: str) -> tuple[str, bool]:
    """EC2 wildcard pattern -> (SQL LIKE pattern with '\\' escape, whether it has wildcards)."""
    out, wild, i = [], False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*?\\":
            out.append("\\" + pattern[i + 1] if pattern[i + 1] == "\\" else pattern[i + 1])
            i += 2
            continue
        if c == "*":
            out.append("%")
            wild = True
        elif c == "?":
            out.append("_")
            wild = True
        elif c in "%_\\":
            out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    return "".join(out), wild


def unescape(pattern: str) -> str:
    like, _ = wildcard_to_like(pattern)
    return like.replace("\\%", "%").replace("\\_", "_").replace("\\\\", "\\")


def match_any(column: Any, values: Sequence[str]) -> Condition:
    """column matches any of the EC2 wildcard patterns in values."""
    exact: list[str] = []
    conds: list[Condition] = []
    for v in values:
        like, wild = wildcard_to_like(v)
        if wild:
            conds.append(column.like(like, escape="\\"))
        else:
            exact.append(unescape(v))
    if exact:
        conds.append(column.in_(exact) if len(exact) > 1 else column == exact[0])
    return or_(*conds) if len(conds) > 1 else conds[0]


#: AWS's limit on the values of all filters of one request; it also keeps the SQL small enough
#: for SQLite (whose expression tree may be at most 1000 deep: each value is one more OR)
MAX_FILTER_VALUES = 200


def normalize(filters: Any) -> list[tuple[str, list[str]]]:
    """The Filter list as (name, values), validated."""
    out: list[tuple[str, list[str]]] = []
    total = sum(len(f.get("Values") or []) for f in filters or [])
    if total > MAX_FILTER_VALUES:
        raise ServiceError(
            "FilterLimitExceeded",
            f"The maximum number of filter values specified on a single call is {MAX_FILTER_VALUES}; "
            f"{total} were given. Split the request.",
        )
    for f in filters or []:
        name = f.get("Name")
        if not name:
            raise ServiceError("InvalidParameterValue", "Every Filter needs a Name, e.g. Filter.1.Name=instance-state-name.")
        values = [str(v) for v in (f.get("Values") or [])]
        if not values:
            raise ServiceError(
                "InvalidParameterValue", f"The filter '{name}' needs at least one value (Filter.N.Value.1=...)."
            )
        out.append((name, values))
    return out


def build_conditions(
    filters: Any,
    spec: FilterSpec,
    *,
    tag_model: Any = None,
    resource_column: Any = None,
) -> list[Condition]:
    """SQL conditions, ANDed across filters and ORed across each filter's values."""
    conds: list[Condition] = []
    for name, values in normalize(filters):
        if name in spec:
            target = spec[name]
            if callable(target) and not hasattr(target, "like"):
                conds.append(target(values))
            else:
                conds.append(match_any(target, values))
        elif tag_model is not None and name.startswith("tag:") and len(name) > 4:
            key = name[4:]
            conds.append(
                exists(
                    select(tag_model.resource_id).where(
                        and_(tag_model.resource_id == resource_column, tag_model.key == key, match_any(tag_model.value, values))
                    )
                )
            )
        elif tag_model is not None and name in ("tag-key", "tag-value"):
            col = tag_model.key if name == "tag-key" else tag_model.value
            conds.append(
                exists(select(tag_model.resource_id).where(and_(tag_model.resource_id == resource_column, match_any(col, values))))
            )
        else:
            known = sorted(list(spec) + (["tag:<key>", "tag-key", "tag-value"] if tag_model is not None else []))
            raise ServiceError(
                "InvalidParameterValue",
                f"The filter '{name}' is invalid; supported filters here: {', '.join(known)}.",
            )
    return conds


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*?\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.S)


def matches(value: Any, patterns: Sequence[str]) -> bool:
    """In-memory twin of match_any, for resources that are not rows (regions, instance types)."""
    if value is None:
        return False
    values = value if isinstance(value, (list, tuple, set)) else [value]
    for v in values:
        text = ("true" if v else "false") if isinstance(v, bool) else str(v)
        if any(_pattern_regex(p).match(text) for p in patterns):
            return True
    return False


def filter_items(items: list[dict[str, Any]], filters: Any, getters: Mapping[str, Callable[[dict[str, Any]], Any]]) -> list[dict[str, Any]]:
    """Apply Filter.N to in-memory items; unknown names are InvalidParameterValue."""
    result = items
    for name, values in normalize(filters):
        getter = getters.get(name)
        if getter is None:
            raise ServiceError(
                "InvalidParameterValue", f"The filter '{name}' is invalid; supported filters here: {', '.join(sorted(getters))}."
            )
        result = [it for it in result if matches(getter(it), values)]
    return result
