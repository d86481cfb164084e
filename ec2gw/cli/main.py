"""`ec2gw`: the service and its administration (command surface fixed in the design's CLI.md)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ec2gw.config import Settings
from ec2gw.config_load import SettingsError

# CLI start-up time: the service's modules are imported inside the commands, so `ec2gw --help`
# and each command load only what they use (everything at once takes about 2.5 s more).


@dataclass
class CliState:
    data_dir: str | None
    config: str | None
    database_url: str | None

    def settings(self, **overrides: Any) -> Settings:
        try:
            return Settings.load(
                self.config,
                {"data_dir": self.data_dir, "database_url": self.database_url, **overrides},
            )
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None


class ConfigError(click.ClickException):
    """An invalid setting: one line on stderr, exit status 2 (like a usage error)."""

    exit_code = 2


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text if text is not None else data)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", envvar="EC2GW_DATA_DIR", type=click.Path(file_okay=False), default=None,
              help="Where the database (SQLite default), Cumulus blobs, certificates and logs live [default: ./data].")
@click.option("--config", envvar="EC2GW_CONFIG", type=click.Path(dir_okay=False), default=None,
              help="Optional settings file (TOML or INI); flags override it.")
@click.option("--database-url", envvar="EC2GW_DATABASE_URL", default=None,
              help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; default SQLite in the data dir.")
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None, config: str | None, database_url: str | None) -> None:
    """ec2gw: a self-hosted cloud with an EC2 Query API (8444) and an S3-compatible store, Cumulus (8888)."""
    ctx.obj = CliState(data_dir, config, database_url)


def open_app(state: CliState, **overrides: Any):  # type: ignore[no-untyped-def]
    """The App for administration commands, with the schema in place."""
    from ec2gw.app import App

    settings = state.settings(**overrides)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = App(settings)
    app.db.create_schema()
    return app


def main() -> None:
    from ec2gw.cli import admin, serve  # noqa: F401  (registers the commands)

    try:
        cli(prog_name="ec2gw")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
