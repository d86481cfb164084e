"""`ec2gw admin ...`: users, images (nodes, pools, instances and quotas in their own modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ec2gw.cli.main import CliState, cli, emit, open_app
from ec2gw.errors import ServiceError

# CLI start-up time: the service's modules are imported inside the commands, so `ec2gw --help`
# and each command load only what they use (everything at once takes about 2.5 s more).


@cli.group()
def admin() -> None:
    """Administer users, images, VMM nodes, network pools, instances and quotas."""


@admin.group()
def user() -> None:
    """Users and their credentials (one key pair per user for EC2 and Cumulus)."""


def _user_text(d: dict[str, Any]) -> str:
    lines = [f"{k}: {v}" for k, v in d.items()]
    return "\n".join(lines)


@user.command("add")
@click.argument("name")
@click.option("--group", default="users", show_default=True, help="Group, for quotas.")
@click.option("--dn", default="", help="X.509 distinguished name for the user certificate (default /O=ec2gw/OU=GROUP/CN=NAME).")
@click.option("--admin", "is_admin", is_flag=True, help="Make the user an administrator.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def user_add(state: CliState, name: str, group: str, dn: str, is_admin: bool, as_json: bool) -> None:
    """Create user NAME with an access key pair; prints the credentials."""
    from ec2gw import accounts
    from ec2gw.compute.cumulus import reserved_user_names

    app = open_app(state)
    try:
        with app.db.session(write=True) as s:
            rec = accounts.create_user(s, name, group=group, dn=dn, is_admin=is_admin,
                                       reserved=reserved_user_names(app.settings))
            bundle = _bundle(app, rec)  # inside the transaction: no user is left without a bundle
    except (accounts.AccountError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    data = rec.as_dict()
    data.update(bundle)
    emit(data, as_json, _user_text(data))


def _bundle(app: Any, rec: Any) -> dict[str, Any]:
    """The client bundle, when the bundle writer is available."""
    try:
        from ec2gw.bundles import write_bundle
    except ModuleNotFoundError as exc:
        if exc.name != "ec2gw.bundles":
            raise
        return {}
    return {"bundle_dir": str(write_bundle(app, rec))}


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def user_list(state: CliState, as_json: bool) -> None:
    """List users."""
    from ec2gw import accounts

    app = open_app(state)
    with app.db.session() as s:
        users = accounts.list_users(s)
    data = [{k: v for k, v in u.as_dict().items() if k != "secret_access_key"} for u in users]
    text = "\n".join(
        f"{u['name']:<20} {u['access_key_id']:<22} {u['group']:<12} {'admin' if u['admin'] else '':<6}"
        f"{'' if u['enabled'] else 'removed'}" for u in data
    ) or "(no users)"
    emit(data, as_json, text)


@user.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def user_show(state: CliState, name: str, as_json: bool) -> None:
    """Show user NAME with its credentials."""
    from ec2gw import accounts

    app = open_app(state)
    try:
        with app.db.session() as s:
            rec = accounts.UserRecord.of(accounts.get_user(s, name))
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    emit(rec.as_dict(), as_json, _user_text(rec.as_dict()))


@user.command("remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def user_remove(state: CliState, name: str, as_json: bool) -> None:
    """Remove user NAME: its keys stop working at once and its instances are terminated."""
    from ec2gw import accounts

    app = open_app(state)
    try:
        with app.db.session(write=True) as s:
            count = accounts.remove_user(s, name)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    emit({"name": name, "removed": True, "instances_terminating": count}, as_json,
         f"removed {name}; {count} instance(s) terminating")


@admin.group()
def image() -> None:
    """Images in Cumulus."""


@image.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", type=click.Choice(["machine", "kernel", "ramdisk"]), default="machine", show_default=True,
              help="machine (ami-), kernel (aki-) or ramdisk (ari-).")
@click.option("--kernel", default=None, help="Kernel image id (aki-...) to boot a machine image with.")
@click.option("--ramdisk", default=None, help="Ramdisk image id (ari-...) to boot a machine image with.")
@click.option("--owner", default=None, help="User who owns the image [default: the administrator].")
@click.option("--public", is_flag=True, help="Share the image with every user (stored under the common prefix).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def image_import(state: CliState, name: str, file: str, kind: str, kernel: str | None, ramdisk: str | None,
                 owner: str | None, public: bool, as_json: bool) -> None:
    """Put FILE into Cumulus and register it as image NAME."""
    from ec2gw.images import import_image

    app = open_app(state)
    try:
        image_id = import_image(app, name=name, path=Path(file), kind=kind, kernel_id=kernel, ramdisk_id=ramdisk,
                                owner_name=owner, public=public)
    except ServiceError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    emit({"image_id": image_id, "name": name, "kind": kind}, as_json, image_id)


from ec2gw.cli import (  # noqa: E402
    admin_moves,  # noqa: E402,F401  (registers `ec2gw admin instance migrate`, `ec2gw admin node drain`)
    admin_nodes,  # noqa: E402,F401  (registers `ec2gw admin node ...`)
    admin_ops,  # noqa: E402,F401  (quotas, instances, bundles)
    admin_pools,  # noqa: E402,F401  (registers `ec2gw admin pool ...`)
)
