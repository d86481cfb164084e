"""The import-linter layers contract (setup.cfg, checked by `make lint`) covers every module.

A module no layer names is checked by nothing: import-linter only constrains the modules its
layers list. So each new top-level module of ec2gw (and each top-level package) must be placed
in a layer when it is added.
"""

from __future__ import annotations

import configparser
import pkgutil
import re
from pathlib import Path

import ec2gw

ROOT = Path(__file__).resolve().parents[2]


def _layered() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    contract = cfg["importlinter:contract:layers"]
    names = (name.strip() for line in contract["layers"].splitlines() for name in re.split(r"[|:]", line))
    return {name for name in names if name}


def test_every_top_level_module_is_in_a_layer() -> None:
    layered = _layered()
    modules = {f"ec2gw.{m.name}" for m in pkgutil.iter_modules(ec2gw.__path__)} - {"ec2gw.__main__"}
    missing = sorted(modules - layered)
    assert not missing, f"place these in a layer of setup.cfg's [importlinter:contract:layers]: {missing}"


def test_every_root_package_is_in_a_layer() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    roots = set(cfg["importlinter"]["root_packages"].split())
    layered = _layered()
    assert {r for r in roots if r != "ec2gw"} <= layered
    assert all(name.split(".")[0] in roots for name in layered)
