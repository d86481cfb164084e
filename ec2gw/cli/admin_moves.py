"""`ec2gw admin instance migrate` and `ec2gw admin node drain`: moving instances between nodes.

The rules are in compute/migration.py (what may move where) and compute/moves.py (how the
compute worker moves it); these commands record a move, wait for the worker to carry it out
and report the outcome.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from ec2gw.cli.admin_nodes import node
from ec2gw.cli.admin_ops import _check_instance_id, instance
from ec2gw.cli.main import CliState, emit, open_app

# CLI start-up time: the service's modules are imported inside the commands (see admin_ops.py).

_TIMEOUT_HELP = "Seconds to wait for the compute worker to carry out a move (a live one copies the guest's memory)."


def _wait(app: Any, migration_id: int, timeout: float) -> dict[str, Any]:
    """The move's outcome once it is done or failed, or as it stands when ``timeout`` passed."""
    from ec2gw.compute import migration

    deadline = time.monotonic() + timeout
    while True:
        with app.db.session() as s:
            out = migration.outcome(s, migration_id)
        if out["state"] in ("done", "failed") or time.monotonic() >= deadline:
            return out
        time.sleep(0.2)


def _move(app: Any, instance_id: str, to: str | None, timeout: float) -> dict[str, Any]:
    """Record one move and wait for it; MigrationError when it is refused before it starts."""
    from ec2gw.compute import migration

    with app.db.session(write=True) as s:
        req = migration.request(s, app.settings, instance_id, to)
    return _wait(app, req.migration_id, timeout)


def _not_done(out: dict[str, Any], timeout: float) -> str:
    if out["state"] == "failed":
        return (f"{out['instance_id']} was not moved to {out['destination']}: {out['error']}; it stays on node "
                f"{out['source']}")
    return (f"the move of {out['instance_id']} to {out['destination']} was not carried out within {timeout:g} s; it stays "
            "recorded and the compute worker finishes it (is `ec2gw serve` running? `ec2gw admin instance list` shows "
            "it migrating)")


def _done_text(out: dict[str, Any]) -> str:
    return (f"{out['instance_id']}: moved {out['kind']} from {out['source']} to {out['destination']} in "
            f"{out['seconds']:.1f} s")


@instance.command("migrate")
@click.argument("instance_id")
@click.option("--to", "to", default=None, metavar="NODE",
              help="The destination node [default: the least loaded other node of the instance's zone that serves its "
                   "pools and has room].")
@click.option("--timeout", default=900.0, show_default=True, type=click.FloatRange(min=0.1), help=_TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def instance_migrate(state: CliState, instance_id: str, to: str | None, timeout: float, as_json: bool) -> None:
    """Move instance INSTANCE_ID to another node of its zone.

    A running instance moves live: its guest keeps running (memory and disk are copied while it
    runs, then it pauses for a fraction of a second), with its id, addresses and console. A stopped
    one moves cold (its disk is copied, its domain defined on the destination). The destination's
    room is checked and reserved as for a launch. If the move fails, the instance stays where it
    was, running as before, and the error says why (exit status 1; with --json the move's record,
    state "failed" and its error, is printed too). Nodes on libvirt's test driver cannot move a
    running guest.
    """
    from ec2gw.compute.migration import MigrationError

    _check_instance_id(instance_id)
    app = open_app(state)
    try:
        out = _move(app, instance_id, to, timeout)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    if out["state"] != "done":
        if not as_json:
            raise click.ClickException(_not_done(out, timeout))
        emit(out, True)  # scripts read the move's record (state, error) as for a done one
        click.echo(f"Error: {_not_done(out, timeout)}", err=True)
        raise click.exceptions.Exit(1)
    emit(out, as_json, _done_text(out))


@node.command("drain")
@click.argument("name")
@click.option("--timeout", default=900.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for each instance's move.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def node_drain(state: CliState, name: str, timeout: float, as_json: bool) -> None:
    """Empty node NAME: mark it inactive, then move each of its instances to other nodes of its zone.

    Running instances move live, stopped ones cold, one after the other, each to the least loaded
    node with room (as `ec2gw admin instance migrate` without --to). A progress bar runs on stderr;
    the summary lists what moved where and what could not move, with the reason. Exit status 1
    when instances are left on the node; run it again once that is dealt with.
    """
    from tqdm import tqdm

    from ec2gw.compute import migration

    app = open_app(state)
    try:
        with app.db.session(write=True) as s:
            todo = migration.deactivate(s, name)
    except migration.MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    results: list[dict[str, Any]] = []
    with tqdm(total=len(todo), desc=f"draining {name}", unit="instance", file=sys.stderr,
              disable=as_json or not todo) as bar:
        for iid, inst_state in todo:
            bar.set_postfix_str(iid)
            result: dict[str, Any] = {"instance_id": iid, "state": inst_state, "source": name}
            try:
                out = _move(app, iid, None, timeout)
            except migration.MigrationError as exc:
                result.update(moved=False, error=str(exc))
            else:
                result.update(moved=out["state"] == "done", kind=out["kind"], destination=out["destination"],
                              seconds=out["seconds"], error=None if out["state"] == "done" else _not_done(out, timeout))
            results.append(result)
            bar.update(1)
    moved = [r for r in results if r["moved"]]
    left = [r for r in results if not r["moved"]]
    data = {"node": name, "active": False, "moved": len(moved), "left": len(left), "instances": results}
    lines = [f"node {name} is inactive; {len(moved)} of {len(results)} instance(s) moved"
             + (f", {len(left)} left on it" if left else "")]
    lines += [f"  {r['instance_id']}: {r['kind']} to {r['destination']} in {r['seconds']:.1f} s" for r in moved]
    lines += [f"  {r['instance_id']} ({r['state']}): not moved: {r['error']}" for r in left]
    emit(data, as_json, "\n".join(lines))
    if left:
        raise click.exceptions.Exit(1)
