"""Filter.N -> SQL and opaque NextTokens, against a real SQLite database."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ec2gw.aws.filters import build_conditions, filter_items, matches, wildcard_to_like
from ec2gw.aws.pagination import decode_token, encode_token, scope_digest
from ec2gw.errors import ServiceError


class _Base(DeclarativeBase):
    pass


class Thing(_Base):
    __tablename__ = "things"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    state: Mapped[str] = mapped_column(String)
    size: Mapped[int] = mapped_column(Integer)


class ThingTag(_Base):
    __tablename__ = "thing_tags"
    resource_id: Mapped[str] = mapped_column(String, primary_key=True)
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(String)


@pytest.fixture()
def session() -> Session:
    engine = create_engine("sqlite://")

    from sqlalchemy import event

    event.listen(engine, "connect", lambda c, _r: c.execute("PRAGMA case_sensitive_like=ON"))
    _Base.metadata.create_all(engine)
    s = Session(engine)
    s.add_all([Thing(id="a1", state="running", size=1), Thing(id="a2", state="stopped", size=2),
               Thing(id="b_%", state="running", size=3), Thing(id="B3", state="pending", size=4)])
    s.add_all([ThingTag(resource_id="a1", key="Name", value="web-1"), ThingTag(resource_id="a2", key="Name", value="db"),
               ThingTag(resource_id="a2", key="env", value="prod")])
    s.commit()
    return s


def _ids(s: Session, filters: list[dict[str, object]]) -> list[str]:
    conds = build_conditions(filters, {"thing-id": Thing.id, "state": Thing.state}, tag_model=ThingTag, resource_column=Thing.id)
    return sorted(s.scalars(select(Thing.id).where(*conds)))


def test_wildcards_and_escapes() -> None:
    assert wildcard_to_like("a*b?c") == ("a%b_c", True)
    assert wildcard_to_like("100%_x") == ("100\\%\\_x", False)
    assert wildcard_to_like("lit\\*") == ("lit*", False)


def test_values_or_filters_and(session: Session) -> None:
    assert _ids(session, [{"Name": "state", "Values": ["running", "pending"]}]) == ["B3", "a1", "b_%"]
    assert _ids(session, [{"Name": "state", "Values": ["running"]}, {"Name": "thing-id", "Values": ["a*"]}]) == ["a1"]


def test_like_is_case_sensitive_and_literal_percent(session: Session) -> None:
    assert _ids(session, [{"Name": "thing-id", "Values": ["b*"]}]) == ["b_%"]
    assert _ids(session, [{"Name": "thing-id", "Values": ["b_%"]}]) == ["b_%"]
    assert _ids(session, [{"Name": "thing-id", "Values": ["?1"]}]) == ["a1"]


def test_tag_filters(session: Session) -> None:
    assert _ids(session, [{"Name": "tag:Name", "Values": ["web-*"]}]) == ["a1"]
    assert _ids(session, [{"Name": "tag-key", "Values": ["env"]}]) == ["a2"]
    assert _ids(session, [{"Name": "tag-value", "Values": ["db", "web-1"]}]) == ["a1", "a2"]


@pytest.mark.parametrize("bad", [[{"Name": "nonsense", "Values": ["x"]}], [{"Name": "state", "Values": []}], [{"Values": ["x"]}]])
def test_bad_filters_are_invalid_parameter_value(session: Session, bad: list[dict[str, object]]) -> None:
    with pytest.raises(ServiceError) as err:
        _ids(session, bad)
    assert err.value.code == "InvalidParameterValue"


def test_more_than_200_filter_values_is_filter_limit_exceeded(session: Session) -> None:
    """AWS's limit; without it a few hundred wildcard values made SQLite's expression tree too deep
    (an OperationalError, so an InternalError)."""
    at_limit = [{"Name": "tag:Name", "Values": [f"*{i}*" for i in range(150)]}, {"Name": "state", "Values": ["r*"] * 50}]
    assert _ids(session, at_limit) == ["a1"]
    with pytest.raises(ServiceError) as err:
        _ids(session, [{"Name": "tag:Name", "Values": [f"*{i}*" for i in range(1000)]}])
    assert err.value.code == "FilterLimitExceeded"
    with pytest.raises(ServiceError) as err:
        _ids(session, [{"Name": "state", "Values": ["x"] * 101}, {"Name": "thing-id", "Values": ["y"] * 100}])
    assert err.value.code == "FilterLimitExceeded"


def test_in_memory_matching() -> None:
    assert matches("us-east-1a", ["us-*"]) and not matches("eu-west-1", ["us-*"])
    assert matches(True, ["true"]) and matches(["x86_64", "arm"], ["arm"])
    items = [{"n": "t2.micro"}, {"n": "m1.small"}]
    assert filter_items(items, [{"Name": "type", "Values": ["t2.*"]}], {"type": lambda i: i["n"]}) == [{"n": "t2.micro"}]


def test_tokens_round_trip_and_refuse_tampering_and_other_scopes() -> None:
    key = b"k" * 32
    scope = scope_digest("instances", [{"Name": "state", "Values": ["running"]}])
    token = encode_token(key, "user:1", "i-0123", scope)
    assert decode_token(key, "user:1", token, scope) == "i-0123"
    other = scope_digest("instances", None)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad_key, caller, bad_token, bad_scope in ((key, "user:1", token, other), (key, "user:1", flipped, scope),
                                                  (key, "user:1", "not-a-token", scope), (key, "user:1", "", scope),
                                                  (key, "user:2", token, scope), (b"j" * 32, "user:1", token, scope),
                                                  (b"", "user:1", token, scope)):
        with pytest.raises(ServiceError) as err:
            decode_token(bad_key, caller, bad_token, bad_scope)
        assert err.value.code == "InvalidParameterValue"
