"""The serializer writes members in the order of botocore's model for every EC2 action, whatever the
order of the result dict a provider returns (here: every dict reversed)."""

from __future__ import annotations

from typing import Any

import pytest

from ec2gw.aws.serializer import serialize_response
from ec2gw.aws.spec import operation_model, service_model
from tests.member_order import order_problems
from tests.unit.shape_values import sample


def _reversed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_reversed(v) for v in value]
    return value


def _with_output() -> list[str]:
    model = service_model("ec2")
    return [n for n in model.operation_names if model.operation_model(n).output_shape is not None]


def test_every_action_of_the_model_is_covered() -> None:
    assert len(_with_output()) > 500  # the whole EC2 model, not just the actions served today


@pytest.mark.parametrize("name", _with_output())
def test_members_follow_the_model_order(name: str) -> None:
    op = operation_model("ec2", name)
    result = _reversed(sample(op.output_shape))
    body = serialize_response(op, result, "req-1", "2016-11-15")
    assert order_problems(op, body) == []
