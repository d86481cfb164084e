"""Whether an EC2 response writes each structure's members in the order of botocore's model, as AWS does.

Clients that read the first element of a name (libcloud's `findtext`) depend on it: TerminateInstances
lists `currentState` before `previousState`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _check(elem: ET.Element, shape: Shape, path: str, problems: list[str], skip: frozenset[str] = frozenset()) -> None:
    if isinstance(shape, StructureShape):
        order = {m.serialization.get("name", name): (i, m) for i, (name, m) in enumerate(shape.members.items())}
        last, last_tag = -1, ""
        for child in elem:
            tag = _local(child.tag)
            if tag in skip:
                continue
            if tag not in order:
                problems.append(f"{path}: <{tag}> is no member of {shape.name}")
                continue
            index, member = order[tag]
            if index <= last:
                problems.append(f"{path}: <{tag}> comes after <{last_tag}> but the model of {shape.name} puts it before")
            last, last_tag = index, tag
            _check(child, member, f"{path}/{tag}", problems)
    elif isinstance(shape, ListShape):
        for n, child in enumerate(elem):
            _check(child, shape.member, f"{path}/{_local(child.tag)}[{n}]", problems)
    elif isinstance(shape, MapShape):
        for n, child in enumerate(elem):
            key, value = child.find("{*}key"), child.find("{*}value")
            if key is None or value is None:
                problems.append(f"{path}/item[{n}]: a map entry needs <key> then <value>")
            elif list(child).index(key) > list(child).index(value):
                problems.append(f"{path}/item[{n}]: <value> before <key>")
            else:
                _check(value, shape.value, f"{path}/item[{n}]/value", problems)


def order_problems(operation: OperationModel, body: bytes) -> list[str]:
    """Where `body` (a successful response of `operation`) departs from the model's member order."""
    root = ET.fromstring(body)
    problems: list[str] = []
    children = list(root)
    if not children or _local(children[0].tag) != "requestId":
        problems.append("the response does not start with <requestId>")
    if operation.output_shape is not None:
        _check(root, operation.output_shape, _local(root.tag), problems, skip=frozenset({"requestId"}))
    return problems
