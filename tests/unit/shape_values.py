"""Sample values for botocore shapes, for round-trip tests of the protocol engine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape


def sample(shape: Shape, depth: int = 0, seed: int = 0) -> Any:
    """A value filling every member of `shape` (recursion capped), deterministic for a seed."""
    if isinstance(shape, StructureShape):
        if depth > 6:
            return {}
        return {name: sample(member, depth + 1, seed + i) for i, (name, member) in enumerate(shape.members.items())
                if not member.serialization.get("eventstream")}
    if isinstance(shape, ListShape):
        if depth > 6:
            return []
        return [sample(shape.member, depth + 1, seed + k) for k in range(2)]
    if isinstance(shape, MapShape):
        return {f"k{seed}": sample(shape.value, depth + 1, seed)}
    kind = shape.type_name
    if kind == "string":
        if shape.enum:
            return shape.enum[seed % len(shape.enum)]
        return f"v{seed}<&>\u00e9"
    if kind in ("integer", "long"):
        return seed + 3
    if kind == "boolean":
        return seed % 2 == 0
    if kind in ("double", "float"):
        return 1.5 + seed
    if kind == "timestamp":
        return datetime(2024, 5, 1, 12, 30, seed % 60, tzinfo=UTC)
    if kind == "blob":
        return b"blob\x00\xff" + bytes([seed % 256])
    return f"x{seed}"
