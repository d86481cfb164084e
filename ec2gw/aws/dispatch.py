"""The registry of operation providers: `@operation("RunInstances")` on a typed function.

A provider takes the request context first and the operation's input members as snake_case
keyword arguments (botocore.xform_name), and returns a dict keyed by the output shape's members.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore import xform_name

Provider = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Registered:
    name: str
    func: Provider
    accepts_all: bool  # the provider takes **kwargs
    params: frozenset[str]


class Registry:
    def __init__(self) -> None:
        self._ops: dict[str, Registered] = {}

    def operation(self, name: str) -> Callable[[Provider], Provider]:
        def decorate(func: Provider) -> Provider:
            if name in self._ops:
                raise ValueError(f"operation {name} registered twice")
            sig = inspect.signature(func)
            accepts_all = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
            params = frozenset(p.name for p in list(sig.parameters.values())[1:])
            self._ops[name] = Registered(name, func, accepts_all, params)
            return func

        return decorate

    def get(self, name: str) -> Registered | None:
        return self._ops.get(name)

    def names(self) -> list[str]:
        return sorted(self._ops)

    def call(self, name: str, ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        reg = self._ops[name]
        kwargs = {xform_name(k): v for k, v in params.items()}
        if not reg.accepts_all:
            kwargs = {k: v for k, v in kwargs.items() if k in reg.params}
        return reg.func(ctx, **kwargs) or {}


#: the EC2 operations; api/ modules register into it at import
ec2 = Registry()
operation = ec2.operation

#: the CloudWatch operations (metrics, served on the EC2 port); api/metrics.py registers into it
cloudwatch = Registry()
