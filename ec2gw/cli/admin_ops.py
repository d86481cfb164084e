"""`ec2gw admin quota ...`, `ec2gw admin instance ...` and `ec2gw admin user bundle`.

What: the operator's views of every user's instances (node, lease end, addresses), terminating,
pausing and resuming any of them, setting quotas per user or group, and rewriting a user's client
bundle.
Why here: admin.py holds users and images; these commands share nothing with them but the group.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import or_, select, update

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
    """Quotas per user or per group: instances, vCPUs, memory, Cumulus storage, elastic addresses and EBS volumes.

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
@click.option("--addresses", default=None, metavar="N", help=_limit_help("Elastic addresses (AllocateAddress) at a time"))
@click.option("--volumes", default=None, metavar="N", help=_limit_help("EBS volumes (not deleted) at a time"))
@click.option("--volume-gb", default=None, metavar="G", help=_limit_help("Total size of those volumes, in GiB"))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def quota_set(state: CliState, user_or_group: str, instances: str | None, vcpus: str | None, memory: str | None,
              storage: str | None, addresses: str | None, volumes: str | None, volume_gb: str | None, as_json: bool) -> None:
    """Set quotas of USER_OR_GROUP (a user name or a group name; user:NAME or group:NAME when both exist).

    Options not given keep their current value. Example: ec2gw admin quota set students --vcpus 8 --storage 20
    """
    from ec2gw import quotas

    if all(v is None for v in (instances, vcpus, memory, storage, addresses, volumes, volume_gb)):
        raise click.UsageError("give at least one of --instances, --vcpus, --memory, --storage, --addresses, "
                               "--volumes, --volume-gb")
    app = open_app(state)
    try:
        changes = {
            "instances": quotas.parse_limit(instances, "instances"),
            "vcpus": quotas.parse_limit(vcpus, "vcpus"),
            "memory_mib": quotas.parse_limit(memory, "memory"),
            "storage_bytes": quotas.parse_limit(storage, "storage", scale=quotas.GIB),
            "addresses": quotas.parse_limit(addresses, "addresses"),
            "volumes": quotas.parse_limit(volumes, "volumes"),
            "volume_bytes": quotas.parse_limit(volume_gb, "volume-gb", scale=quotas.GIB),
        }
        with app.db.session(write=True) as s:
            row = quotas.set_quota(s, user_or_group, **changes)
    except quotas.QuotaError as exc:
        raise click.ClickException(str(exc)) from None
    emit(row, as_json, _quota_line(row))


def _quota_line(row: dict[str, Any]) -> str:
    return (f"{row['kind']:<6} {row['name']:<20} instances={row['instances']} vcpus={row['vcpus']} "
            f"memory_mib={row['memory_mib']} storage_bytes={row['storage_bytes']} addresses={row['addresses']} "
            f"volumes={row['volumes']} volume_bytes={row['volume_bytes']}")


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
    """List instances of all users (or of --user): state, node, lease end, addresses.

    An instance being moved to another node shows as migrating, its node as SOURCE->DESTINATION.
    """
    from ec2gw.compute.leases import format_end
    from ec2gw.compute.migration import active_moves
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
                "paused": inst.paused_at is not None,
            }
            for inst, owner in s.execute(q.order_by(User.name, Instance.launch_time, Instance.id))
        ]
        moving = active_moves(s, [r["instance_id"] for r in rows if r["state"] != "terminated"])
    for r in rows:
        r["migrating_to"] = moving.get(r["instance_id"])
    header = f"{'INSTANCE':<20} {'USER':<14} {'STATE':<13} {'TYPE':<10} {'NODE':<10} {'LEASE END':<21} ADDRESSES"
    lines = [
        f"{r['instance_id']:<20} {r['user']:<14} {_shown_state(r):<13} {r['type']:<10} "
        f"{r['node'] + ('->' + r['migrating_to'] if r['migrating_to'] else ''):<10} "
        f"{r['lease_end'] or '-':<21} {', '.join(a for a in (r['private_ip'], r['public_ip']) if a) or '-'}"
        for r in rows
    ]
    emit(rows, as_json, "\n".join([header, *lines]) if rows else "(no instances)")


def _shown_state(row: dict[str, Any]) -> str:
    if row["migrating_to"]:
        return "migrating"
    return "paused" if row["paused"] else str(row["state"])


def _check_instance_id(instance_id: str) -> None:
    try:
        ids.check_id(instance_id, "i")
    except ServiceError as exc:
        raise click.ClickException(f"{exc.message} `ec2gw admin instance list` shows the instances.") from None


def _pause_or_resume(state: CliState, instance_id: str, task: str, timeout: float, as_json: bool) -> None:
    """Record the pause (or resume) task for the compute worker and wait for it to be carried out."""
    from ec2gw.db.models import Instance

    _check_instance_id(instance_id)
    pausing = task == "pause"
    app = open_app(state)
    with app.db.session(write=True) as s:
        row = s.execute(select(Instance.state, Instance.task, Instance.paused_at)
                        .where(Instance.id == instance_id)).one_or_none()
        if row is None:
            raise click.ClickException(f"no instance {instance_id}; `ec2gw admin instance list` shows the instances")
        inst_state, busy, paused_at = row
        if inst_state != "running":
            raise click.ClickException(
                f"{instance_id} is {inst_state}; only a running instance can be "
                f"{'paused' if pausing else 'resumed'} (`ec2gw admin instance list` shows the states)")
        if pausing == (paused_at is not None) and busy is None:
            text = f"{instance_id} is already {'paused' if pausing else 'running (not paused)'}"
            emit({"instance_id": instance_id, "paused": pausing, "changed": False}, as_json, text)
            return
        if busy not in (None, task):
            raise click.ClickException(f"{instance_id} is busy ({busy}); try again once that is done")
        res = s.execute(update(Instance)
                        .where(Instance.id == instance_id, Instance.state == "running",
                               or_(Instance.task.is_(None), Instance.task == task))
                        .values(task=task))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            raise click.ClickException(f"{instance_id} changed meanwhile; look at `ec2gw admin instance list` and retry")
    deadline = time.monotonic() + timeout
    while True:
        with app.db.session() as s:
            inst_state, busy, paused_at = s.execute(
                select(Instance.state, Instance.task, Instance.paused_at).where(Instance.id == instance_id)).one()
        if busy != task:
            break
        if time.monotonic() >= deadline:
            raise click.ClickException(
                f"the {task} of {instance_id} was not carried out within {timeout:g} s; it stays recorded and the "
                "compute worker does it when it can (is `ec2gw serve` running, and its node reachable? "
                "`ec2gw admin node list` shows the nodes)")
        time.sleep(0.1)
    if busy is not None or inst_state != "running":
        raise click.ClickException(f"{instance_id} is now {inst_state} ({busy or 'no task'}): a request of its owner "
                                   f"came first; the {task} was dropped")
    if pausing != (paused_at is not None):
        raise click.ClickException(f"the node could not {task} {instance_id}; the service log names the cause")
    text = f"{instance_id}: {'paused' if pausing else 'resumed'}"
    emit({"instance_id": instance_id, "paused": pausing, "changed": True}, as_json, text)


_TIMEOUT_HELP = "Seconds to wait for the compute worker to carry it out."


@instance.command("pause")
@click.argument("instance_id")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1), help=_TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def instance_pause(state: CliState, instance_id: str, timeout: float, as_json: bool) -> None:
    """Pause any user's running instance INSTANCE_ID: it keeps its memory and stops running.

    EC2 still shows it running, and DescribeInstanceStatus reports its instance status check
    impaired until `ec2gw admin instance resume` (or the owner's stop, reboot or terminate).
    """
    _pause_or_resume(state, instance_id, "pause", timeout, as_json)


@instance.command("resume")
@click.argument("instance_id")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1), help=_TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def instance_resume(state: CliState, instance_id: str, timeout: float, as_json: bool) -> None:
    """Let the paused instance INSTANCE_ID run on from where it was paused."""
    _pause_or_resume(state, instance_id, "resume", timeout, as_json)


@instance.command("terminate")
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def instance_terminate(state: CliState, instance_id: str, as_json: bool) -> None:
    """Terminate any user's instance INSTANCE_ID (termination protection does not apply)."""
    from ec2gw.db.models import Instance

    _check_instance_id(instance_id)
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
