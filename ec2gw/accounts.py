"""Users and their credentials: one access key pair per user, for EC2 and Cumulus alike."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.orm import Session

from ec2gw import ids
from ec2gw.db.models import Instance, SecurityGroup, User
from ec2gw.network import elastic, group_rules

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
ADMIN_NAME = "admin"
#: names that mean something in Cumulus's image layout (`<image_prefix>/common/` is the shared
#: area): never a user's, whatever their case; ec2gw.compute.cumulus.reserved_user_names adds the
#: configured bucket and prefix names
RESERVED_NAMES = frozenset({"common"})


class AccountError(Exception):
    """A user-management request that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class UserRecord:
    name: str
    account_id: str
    access_key_id: str
    secret_access_key: str
    group: str
    dn: str
    is_admin: bool
    enabled: bool

    @classmethod
    def of(cls, u: User) -> UserRecord:
        return cls(u.name, u.account_id, u.access_key, u.secret_key, u.group, u.dn, u.is_admin, u.enabled)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "account_id": self.account_id,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "group": self.group,
            "dn": self.dn,
            "admin": self.is_admin,
            "enabled": self.enabled,
        }


def create_user(s: Session, name: str, *, group: str = "users", dn: str = "", is_admin: bool = False,
                reserved: Collection[str] = RESERVED_NAMES) -> UserRecord:
    if not _NAME_RE.match(name):
        raise AccountError(
            f"invalid user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"
        )
    if name.lower() in {r.lower() for r in (*RESERVED_NAMES, *reserved)}:
        raise AccountError(
            f"the user name {name!r} is reserved: it names a shared area of the image store "
            f"(reserved: {', '.join(sorted({r.lower() for r in (*RESERVED_NAMES, *reserved)}))}); choose another name"
        )
    if s.scalar(select(User).where(User.name == name)) is not None:
        raise AccountError(f"user {name!r} already exists; choose another name or remove it first")
    user = User(
        name=name,
        account_id=ids.new_account_id(),
        access_key=ids.new_access_key(),
        secret_key=ids.new_secret_key(),
        group=group,
        dn=dn or f"/O=ec2gw/OU={group}/CN={name}",
        is_admin=is_admin,
    )
    s.add(user)
    s.flush()
    default = SecurityGroup(id=ids.new_id("sg"), owner_id=user.id, name="default", description="default group")
    s.add(default)
    s.flush()
    s.add_all(group_rules.default_rules(default.id))
    return UserRecord.of(user)


def get_user(s: Session, name: str) -> User:
    user = s.scalar(select(User).where(User.name == name))
    if user is None:
        raise AccountError(f"no user named {name!r}; `ec2gw admin user list` shows the users")
    return user


def list_users(s: Session) -> list[UserRecord]:
    return [UserRecord.of(u) for u in s.scalars(select(User).order_by(User.name))]


def remove_user(s: Session, name: str) -> int:
    """Disable the user's keys at once and have their instances terminated; returns that count."""
    user = get_user(s, name)
    if not user.enabled:
        raise AccountError(f"user {name!r} is already removed")
    user.enabled = False
    count = 0
    for inst in s.scalars(select(Instance).where(Instance.owner_id == user.id, Instance.state != "terminated")):
        if inst.state != "shutting-down":
            inst.state = "shutting-down"
            inst.task = "terminate"
            inst.state_transition_reason = "User removed by the administrator"
            count += 1
    elastic.release_all(s, user.id)
    return count


# built once: the lookup runs on every signed request, so it skips the ORM and statement building
_BY_KEY = select(User.id, User.name, User.account_id, User.secret_key, User.is_admin, User.group).where(
    User.access_key == bindparam("key"), User.enabled.is_(True)
)


def by_access_key(conn: Connection, access_key: str) -> Row[Any] | None:
    """(id, name, account_id, secret_key, is_admin, group) of the enabled user holding the key, or None."""
    return cast("Row[Any] | None", conn.execute(_BY_KEY, {"key": access_key}).first())


def ensure_admin(s: Session) -> UserRecord | None:
    """Create the administrator on first start; returns it when it was just created."""
    if s.scalar(select(User).where(User.is_admin.is_(True))) is not None:
        return None
    return create_user(s, ADMIN_NAME, group="admins", is_admin=True)


def credentials_file_text(record: UserRecord) -> str:
    """AWS shared-credentials format."""
    return (
        "[default]\n"
        f"aws_access_key_id = {record.access_key_id}\n"
        f"aws_secret_access_key = {record.secret_access_key}\n"
    )
