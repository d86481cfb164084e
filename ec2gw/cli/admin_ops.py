"""`ec2gw admin quota ...`, `ec2gw admin instance ...` and `ec2gw admin user bundle`.

What: the operator's views of every user's instances (node, lease end, addresses), terminating
any of them, setting quotas per user or group, and rewriting a user's client bundle.
Why here: admin.py holds users and images; these commands share nothing with them but the group.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import select, update

from ec2gw import ids
from ec2gw.cli.admin import admin, user
from ec2gw.cli.main import CliState, emit, open_app
from ec2gw.errors import ServiceError

# CLI start-up time: the service's modules are imported inside the commands, so `ec2gw --help`
# and each command load only what they use (everything at once takes about 2.5 s more).

_DONE = ("terminated", "shutting-down")
ADMIN_REASON = "Server.AdministratorTerminated"


# --------------------------------------------------------------------------- quotas

@admin.group()
def quota() -> None:
    """Quotas per user or per group: instances, vCPUs, memory and Cumulus storage.

    A user's limit for each resource is their own quota where set, otherwise their group's (which
    applies to each member), otherwise the service default from the settings.
    """


def _limit_help(what: str) -> str:
    return f"{what}; 'unlimited' for no limit, 'default' to fall back to the group or service default."


@quota.command("set")
@click.argument("user_or_group")
@click.option("--instances", default=None, metavar="N", help=_limit_help("Instances (not terminated) at a time"))
@click.option("--vcpus", default=None, metavar="N", help=_limit_help("vCPUs of those instances"))
@click.option("--memory", default=None, metavar="MB", help=_limit_help("Memory of those instances, in MiB"))
@click.option("--storage", default=None, metavar="GB", help=_limit_help("Cumulus storage in GB (2^30 bytes; 0.5 allowed)"))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def quota_set(state: CliState, user_or_group: str, instances: str | None, vcpus: str | None, memory: str | None,
              storage: str | None, as_json: bool) -> None:
    """Set quotas of USER_OR_GROUP (a user name or a group name; user:NAME or group:NAME when both exist).

    Options not given keep their current value. Example: ec2gw admin quota set students --vcpus 8 --storage 20
    """
    from ec2gw import quotas

    if all(v is None for v in (instances, vcpus, memory, storage)):
        raise click.UsageError("give at least one of --instances, --vcpus, --memory, --storage")
    app = open_app(state)
    try:
        changes = {
            "instances": quotas.parse_limit(instances, "instances"),
            "vcpus": quotas.parse_limit(vcpus, "vcpus"),
            "memory_mib": quotas.parse_limit(memory, "memory"),
            "storage_bytes": quotas.parse_limit(storage, "storage", scale=quotas.GIB),
        }
        with app.db.session(write=True) as s:
            row = quotas.set_quota(s, user_or_group, **changes)
    except quotas.QuotaError as exc:
        raise click.ClickException(str(exc)) from None
    emit(row, as_json, _quota_line(row))


def _quota_line(row: dict[str, Any]) -> str:
    return (f"{row['kind']:<6} {row['name']:<20} instances={row['instances']} vcpus={row['vcpus']} "
            f"memory_mib={row['memory_mib']} storage_bytes={row['storage_bytes']}")


@quota.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def quota_list(state: CliState, as_json: bool) -> None:
    """List the quotas set for users and groups."""
    from ec2gw import quotas

    app = open_app(state)
    with app.db.session() as s:
        rows = quotas.list_quotas(s)
    emit(rows, as_json, "\n".join(_quota_line(r) for r in rows) or "(no quotas set; service defaults apply)")


@quota.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def quota_show(state: CliState, name: str, as_json: bool) -> None:
    """Show user NAME's effective limits and current usage."""
    from ec2gw import quotas
    from storage import usage

    app = open_app(state)
    try:
        with app.db.session() as s:
            data = quotas.report(s, app.settings, name, usage.total)
    except quotas.QuotaError as exc:
        raise click.ClickException(str(exc)) from None
    text = "\n".join([f"user: {data['user']} (group {data['group']})"] + [
        f"{k:<14} {data['usage'][k]} of {v}" for k, v in data["limits"].items()
    ])
    emit(data, as_json, text)


# --------------------------------------------------------------------------- instances

@admin.group()
def instance() -> None:
    """Every user's instances: where they run, their leases and addresses."""


@instance.command("list")
@click.option("--user", "user_name", default=None, help="Only this user's instances.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def instance_list(state: CliState, user_name: str | None, as_json: bool) -> None:
    """List instances of all users (or of --user): state, node, lease end, addresses."""
    from ec2gw.compute.leases import format_end
    from ec2gw.db.models import Instance, User

    app = open_app(state)
    with app.db.session() as s:
        q = select(Instance, User.name).join(User, User.id == Instance.owner_id)
        if user_name is not None:
            if s.scalar(select(User.id).where(User.name == user_name)) is None:
                raise click.ClickException(f"no user named {user_name!r}; `ec2gw admin user list` shows the users")
            q = q.where(User.name == user_name)
        rows = [
            {
                "instance_id": inst.id, "user": owner, "state": inst.state, "type": inst.instance_type,
                "node": inst.node_name or "local", "zone": inst.availability_zone,
                "lease_end": format_end(inst.lease_end) if inst.lease_end else None,
                "private_ip": inst.private_ip, "public_ip": inst.public_ip, "image_id": inst.image_id,
                "launch_time": inst.launch_time.isoformat(timespec="seconds"),
                "state_reason": inst.state_reason_code,
            }
            for inst, owner in s.execute(q.order_by(User.name, Instance.launch_time, Instance.id))
        ]
    header = f"{'INSTANCE':<20} {'USER':<14} {'STATE':<13} {'TYPE':<10} {'NODE':<10} {'LEASE END':<21} ADDRESSES"
    lines = [
        f"{r['instance_id']:<20} {r['user']:<14} {r['state']:<13} {r['type']:<10} {r['node']:<10} "
        f"{r['lease_end'] or '-':<21} {', '.join(a for a in (r['private_ip'], r['public_ip']) if a) or '-'}"
        for r in rows
    ]
    emit(rows, as_json, "\n".join([header, *lines]) if rows else "(no instances)")


@instance.command("terminate")
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def instance_terminate(state: CliState, instance_id: str, as_json: bool) -> None:
    """Terminate any user's instance INSTANCE_ID (termination protection does not apply)."""
    from ec2gw.db.models import Instance

    try:
        ids.check_id(instance_id, "i")
    except ServiceError as exc:
        raise click.ClickException(f"{exc.message} `ec2gw admin instance list` shows the instances.") from None
    app = open_app(state)
    now = datetime.now(UTC)
    with app.db.session(write=True) as s:
        previous = s.scalar(select(Instance.state).where(Instance.id == instance_id))
        if previous is None:
            raise click.ClickException(f"no instance {instance_id}; `ec2gw admin instance list` shows the instances")
        res = s.execute(
            update(Instance)
            .where(Instance.id == instance_id, Instance.state.not_in(_DONE))
            .values(state="shutting-down", task="terminate", reboot_pending=False,
                    state_transition_reason=f"Administrator initiated ({now.strftime('%Y-%m-%d %H:%M:%S')} GMT)",
                    state_reason_code=ADMIN_REASON,
                    state_reason_message=f"{ADMIN_REASON}: terminated by the administrator")
        )
        changed = res.rowcount == 1  # type: ignore[attr-defined]
    current = "shutting-down" if changed else previous
    text = f"{instance_id}: {previous} -> {current}" if changed else f"{instance_id} is already {previous}"
    emit({"instance_id": instance_id, "previous_state": previous, "current_state": current}, as_json, text)


# --------------------------------------------------------------------------- bundles

@user.command("bundle")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def user_bundle(state: CliState, name: str, as_json: bool) -> None:
    """Write user NAME's client bundle again: a new certificate, current endpoints and keys."""
    from ec2gw import accounts
    from ec2gw.bundles import write_bundle

    app = open_app(state)
    try:
        with app.db.session() as s:
            rec = accounts.UserRecord.of(accounts.get_user(s, name))
        path = write_bundle(app, rec)
    except (accounts.AccountError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    emit({"name": name, "bundle_dir": str(path)}, as_json, str(path))
