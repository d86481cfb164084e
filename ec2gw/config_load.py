"""Reading Settings from a file (TOML or INI), the environment (EC2GW_*) and flags, checked.

Every invalid value is refused with a SettingsError whose message is one line naming where it was
found (the file, ``environment`` or ``command line``), the key as written there, what was found
and the expected form, e.g.::

    bad.toml: [ec2gw] ec2_port: found "eighty"; expected a whole number from 1 to 65535

Instance types: the built-in ones (config.DEFAULT_INSTANCE_TYPES, passed in) stay unless the setting
``builtin_instance_types`` is false; ``[instance_types]`` adds types and overrides built-ins of the
same name, and a type set to ``"none"`` is dropped. Type names contain dots, so TOML wants them
quoted (``"c9.tiny" = "1,256"``); unquoted (``c9.tiny = "1,256"``, which TOML reads as a table
``c9`` holding ``tiny``) means the same type and is accepted.
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ec2gw.config import Settings

ENV_PREFIX = "EC2GW_"
#: EC2GW_* variables that are not settings
ENV_NOT_SETTINGS = frozenset({"EC2GW_CONFIG"})
TOML_FORM = ('TOML: an [ec2gw] table of name = value settings and an [instance_types] table of '
             '"name" = "vcpus,memory_mib" lines')
INI_FORM = ("INI: an [ec2gw] section of name = value settings and an [instance_types] section of "
            "name = vcpus,memory_mib lines")
TYPE_FORM = '"vcpus,memory_mib" with whole numbers of at least 1 (e.g. "2,4096"), or "none" to drop the type'
DROP = "none"
_TYPE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAC_PREFIX_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){0,4}$")
_REGION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
_NO_LIMIT = " (-1: no limit)"

#: name -> (lowest, lowest allowed?, highest or None, note)
_RANGES: dict[str, tuple[float, bool, float | None, str]] = {
    "ec2_port": (1, True, 65535, ""),
    "s3_port": (1, True, 65535, ""),
    "public_ec2_port": (0, True, 65535, " (0: the port serve listens on)"),
    "public_s3_port": (0, True, 65535, " (0: the port serve listens on)"),
    "workers": (1, True, None, ""),
    "terminated_visible_seconds": (0, True, None, ""),
    "stop_timeout": (0, True, None, ""),
    "worker_interval": (0, False, None, ""),
    "lease_default_hours": (0, False, None, ""),
    "lease_max_hours": (0, False, None, ""),
    "lease_check_seconds": (0, False, None, ""),
    "max_user_data_bytes": (0, True, None, ""),
    "max_instances_per_user": (0, True, None, ""),
    "quota_vcpus": (-1, True, None, _NO_LIMIT),
    "quota_memory_mb": (-1, True, None, _NO_LIMIT),
    "quota_storage_gb": (-1, True, None, _NO_LIMIT),
    "quota_addresses": (-1, True, None, _NO_LIMIT),
    "quota_volumes": (-1, True, None, _NO_LIMIT),
    "quota_volume_gb": (-1, True, None, _NO_LIMIT),
    "cpu_overcommit": (0, False, None, ""),
    "memory_overcommit": (0, False, None, ""),
    "address_grace_seconds": (0, True, None, ""),
    "cumulus_sweep_hours": (0, True, None, " (0: no sweeps)"),
    "body_timeout": (0, True, None, " (0: wait for ever)"),
    "sigv2_max_expires": (1, True, None, ""),
    "header_timeout": (0, False, None, ""),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "public_scheme": ("", "http", "https"),
    "seed_cdrom_bus": ("ide", "sata", "scsi", "virtio", "usb", "xen"),
}
_NON_EMPTY = ("host", "region", "default_node_uri", "image_bucket", "image_prefix", "network_public_pool",
              "network_private_pool", "node_storage_dir", "default_instance_type", "mac_prefix", "eucalyptus_version")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class SettingsError(ValueError):
    """One invalid setting: where, which key, what was found, what is expected."""

    def __init__(self, source: str, key: str, found: str, expected: str) -> None:
        self.source, self.key, self.found, self.expected = source, key, found, expected
        super().__init__(f"{source}: {key}: found {found}; expected {expected}")


@dataclass(frozen=True)
class Origin:
    #: the file's path, "environment" or "command line"
    source: str
    #: the key as written there: "[ec2gw] ec2_port", "EC2GW_EC2_PORT", "--ec2-port"
    key: str

    def error(self, found: str, expected: str) -> SettingsError:
        return SettingsError(self.source, self.key, found, expected)


@dataclass
class Raw:
    value: Any
    origin: Origin


def show(value: Any, limit: int = 80) -> str:
    """A value as the user wrote it, TOML-like, shortened to about ``limit`` characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value)
    elif isinstance(value, Mapping):
        text = "a table {" + ", ".join(f"{k} = {show(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, list | tuple):
        text = "an array [" + ", ".join(show(v, limit) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- reading the sources -------------------------------------------------------------------

@dataclass
class Sources:
    settings: dict[str, Raw]
    #: instance types in the order written: (name, raw spec, origin)
    types: list[tuple[str, Any, Origin]]


def read_file(path: Path) -> Sources:
    source = str(path)
    if not path.is_file():
        raise SettingsError(source, "--config", "no such file" if not path.exists() else "not a regular file",
                            "an existing settings file (TOML or INI)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(source, "--config", f"an unreadable file ({exc})", "a readable UTF-8 text file") from None
    if path.suffix.lower() == ".toml":
        return _read_toml(source, text)
    return _read_ini(source, text)


def _read_toml(source: str, text: str) -> Sources:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)$", msg)
        where = f"line {m.group(1)}" if m else "syntax"
        raise SettingsError(source, where, f"invalid TOML ({msg})", TOML_FORM) from None
    out = Sources({}, [])
    if isinstance(data.get("ec2gw"), dict):
        table, prefix = data["ec2gw"], "[ec2gw] "
        for key, value in data.items():
            if key not in ("ec2gw", "instance_types"):
                what = "a table" if isinstance(value, dict) else "a key outside [ec2gw]"
                raise SettingsError(source, key, f"{what} ({show(value)})",
                                    "settings inside [ec2gw] and instance types inside [instance_types]")
    else:
        table, prefix = {k: v for k, v in data.items() if k != "instance_types"}, ""
    for key, value in table.items():
        if key == "instance_types" and isinstance(value, dict):
            _collect_types(source, f"{prefix.strip()[:-1]}.instance_types]" if prefix else "[instance_types]",
                           value, out.types)
            continue
        out.settings[key] = Raw(value, Origin(source, prefix + key))
    if "instance_types" in data:
        types = data["instance_types"]
        if not isinstance(types, dict):
            raise SettingsError(source, "instance_types", show(types), f"a table [instance_types] of {TYPE_FORM}")
        _collect_types(source, "[instance_types]", types, out.types)
    return out


def _collect_types(source: str, table: str, types: Mapping[str, Any], out: list[tuple[str, Any, Origin]],
                   prefix: str = "") -> None:
    """Instance types from a TOML table; a sub-table that is not a {vcpus, memory} spec holds the
    rest of dotted names (TOML reads c9.tiny = ... as c9 = {tiny = ...})."""
    for key, spec in types.items():
        name = prefix + key
        if isinstance(spec, dict) and not (set(spec) & {"vcpus", "memory"}):
            _collect_types(source, table, spec, out, name + ".")
            continue
        out.append((name, spec, Origin(source, f"{table} {json.dumps(name) if '.' in name else name}")))


def _read_ini(source: str, text: str) -> Sources:
    parser = configparser.ConfigParser(interpolation=None, default_section="\x00no default section")
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # instance type names keep their case
    try:
        parser.read_string(text, source=source)
    except configparser.MissingSectionHeaderError as exc:
        raise SettingsError(source, f"line {exc.lineno}", f"{show(exc.line.strip())} before any [section]",
                            INI_FORM + " (a TOML file must be named *.toml)") from None
    except (configparser.DuplicateOptionError, configparser.DuplicateSectionError) as exc:
        what = (f"[{exc.section}] a second {exc.option}" if isinstance(exc, configparser.DuplicateOptionError)
                else f"a second [{exc.section}]")
        raise SettingsError(source, f"line {exc.lineno}", what, "each section and each key once") from None
    except configparser.ParsingError as exc:
        lineno = exc.errors[0][0]
        lines = text.splitlines()
        line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        raise SettingsError(source, f"line {lineno}", f"{show(line)}, which is not name = value", INI_FORM) from None
    except configparser.Error as exc:
        raise SettingsError(source, "syntax", f"invalid INI ({' '.join(str(exc).split())})", INI_FORM) from None
    out = Sources({}, [])
    for section in parser.sections():
        if section == "ec2gw":
            for key, value in parser.items(section):
                out.settings[key.lower()] = Raw(value, Origin(source, f"[ec2gw] {key}"))
        elif section == "instance_types":
            for key, value in parser.items(section):
                out.types.append((key, value, Origin(source, f"[instance_types] {key}")))
        else:
            raise SettingsError(source, f"[{section}]", "an unknown section", "the sections [ec2gw] and [instance_types]")
    return out


def read_environment(environ: Mapping[str, str], fields: Mapping[str, Any]) -> Sources:
    out = Sources({}, [])
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in ENV_NOT_SETTINGS:
            continue
        name, origin, value = var[len(ENV_PREFIX):].lower(), Origin("environment", var), environ[var]
        if name == "instance_types":
            for item in (i for i in value.split(";") if i.strip()):
                tname, sep, spec = item.partition("=")
                if not sep:
                    raise origin.error(show(item.strip()), f'"name=vcpus,memory_mib" items separated by ";", the spec being {TYPE_FORM}')
                out.types.append((tname.strip(), spec.strip(), Origin("environment", f"{var} {tname.strip()}")))
            continue
        if name not in fields:
            raise unknown(origin, name, fields, f"{ENV_PREFIX}<SETTING>")
        out.settings[name] = Raw(value, origin)
    return out


def unknown(origin: Origin, name: str, fields: Mapping[str, Any], form: str = "<setting>") -> SettingsError:
    choices = [f for f in fields if f != "instance_types"]
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"a known setting such as {form.replace('<SETTING>', close[0].upper()).replace('<setting>', close[0])}" if close \
        else "one of the settings " + ", ".join(sorted(choices))
    return origin.error("an unknown setting", hint)


# ---- checking values ----------------------------------------------------------------------

def _expected_number(name: str, integer: bool) -> str:
    what = "a whole number" if integer else "a number"
    lo, inclusive, hi, note = _RANGES.get(name, (None, True, None, ""))
    if lo is None:
        return what
    fmt = (lambda v: str(int(v))) if integer or float(lo).is_integer() else str
    if hi is not None:
        return f"{what} from {fmt(lo)} to {fmt(hi)}{note}"
    return f"{what} {'of at least' if inclusive else 'above'} {fmt(lo)}{note}"


def _number(name: str, raw: Raw, integer: bool) -> int | float:
    value = raw.value
    expected = _expected_number(name, integer)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise raw.origin.error(show(value), expected)
    num: int | float
    if isinstance(value, str):
        text = value.strip()
        try:
            num = int(text) if integer else float(text)
        except ValueError:
            raise raw.origin.error(show(value), expected) from None
    elif integer and isinstance(value, float):
        raise raw.origin.error(show(value), expected)
    else:
        num = value
    if isinstance(num, float) and not math.isfinite(num):
        raise raw.origin.error(show(value), expected)
    lo, inclusive, hi, _note = _RANGES.get(name, (None, True, None, ""))
    if lo is not None and (num < lo or (num == lo and not inclusive) or (hi is not None and num > hi)):
        raise raw.origin.error(show(value), expected)
    return num


def _boolean(raw: Raw) -> bool:
    value = raw.value
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise raw.origin.error(show(value), "true or false (also yes/no, on/off, 1/0)")


def _string(name: str, raw: Raw) -> str:
    value = raw.value
    if not isinstance(value, str):
        raise raw.origin.error(show(value), "a string (in TOML, in double quotes)")
    value = value.strip()
    if name in _CHOICES and value not in _CHOICES[name]:
        raise raw.origin.error(show(raw.value), "one of " + ", ".join(json.dumps(c) for c in _CHOICES[name]))
    if name in _NON_EMPTY and not value:
        raise raw.origin.error(show(raw.value), "a non-empty string")
    if name == "mac_prefix" and (not _MAC_PREFIX_RE.match(value) or int(value[:2], 16) & 1):
        raise raw.origin.error(show(value), "1 to 5 hex octets with a unicast first octet, like 52:54:00")
    if name == "region" and not _REGION_RE.match(value):
        raise raw.origin.error(show(value), "a region name of letters, digits and dashes, like us-east-1")
    if name == "node_storage_dir" and not value.startswith("/"):
        raise raw.origin.error(show(value), "an absolute path, like /var/lib/ec2gw")
    if name == "database_url" and value:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except ArgumentError:
            raise raw.origin.error(show(value), "an SQLAlchemy URL like postgresql+psycopg://user@host/db "
                                   "or sqlite:////abs/path.sqlite") from None
    if name == "instance_type_networks" and value:
        for item in value.split(","):
            tname, sep, roles = item.strip().partition("=")
            wanted = roles.replace("+", " ").split()
            if not sep or not tname.strip() or not wanted or any(r not in ("public", "private") for r in wanted):
                raise raw.origin.error(show(item.strip()), 'comma-separated "type=public", "type=private" or '
                                       '"type=public+private" items')
    return value


def _instance_type(name: str, spec: Any, origin: Origin) -> tuple[int, int] | None:
    """(vcpus, memory MiB), or None for a type to drop."""
    if not _TYPE_NAME_RE.match(name):
        raise origin.error(f"the type name {show(name)}", "a name of letters, digits, dots, dashes and underscores, "
                           "like c9.tiny")
    parts: list[Any]
    if isinstance(spec, str):
        if spec.strip().lower() == DROP:
            return None
        parts = [p.strip() for p in spec.split(",")]
    elif isinstance(spec, list):
        parts = list(spec)
    elif isinstance(spec, dict) and set(spec) == {"vcpus", "memory"}:
        parts = [spec["vcpus"], spec["memory"]]
    else:
        raise origin.error(show(spec), TYPE_FORM + ", [vcpus, memory_mib] or {vcpus = N, memory = MiB}")
    if len(parts) != 2:
        raise origin.error(show(spec), TYPE_FORM)
    out = []
    for p in parts:
        if isinstance(p, bool) or not isinstance(p, int | str):
            raise origin.error(show(spec), TYPE_FORM)
        try:
            n = int(p)
        except ValueError:
            raise origin.error(show(spec), TYPE_FORM) from None
        if n < 1:
            raise origin.error(show(spec), TYPE_FORM)
        out.append(n)
    return out[0], out[1]


def coerce(name: str, kind: Any, raw: Raw) -> Any:
    """The value of setting ``name`` whose default is ``kind``, checked."""
    if isinstance(kind, bool):
        return _boolean(raw)
    if isinstance(kind, int):
        return _number(name, raw, integer=True)
    if isinstance(kind, float):
        return float(_number(name, raw, integer=False))
    if isinstance(kind, Path):
        if not isinstance(raw.value, str) or not raw.value.strip():
            raise raw.origin.error(show(raw.value), "a directory path (a non-empty string)")
        return Path(raw.value.strip())
    return _string(name, raw)


# ---- putting it together ------------------------------------------------------------------

def load(cls: type[Settings], builtin_types: Mapping[str, tuple[int, int]],
         config_file: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None,
         environ: Mapping[str, str]) -> Settings:
    """Settings of class ``cls`` from the file, the environment and the flags, on top of the
    built-in instance types ``builtin_types`` (name -> (vcpus, memory MiB))."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    layers: list[Sources] = []
    path = config_file or environ.get("EC2GW_CONFIG")
    if path:
        layers.append(read_file(Path(path)))
    layers.append(read_environment(environ, fields))
    flags = Sources({}, [])
    for key, value in (overrides or {}).items():
        if value is not None:
            flags.settings[key] = Raw(value, Origin("command line", "--" + key.replace("_", "-")))
    layers.append(flags)

    raws: dict[str, Raw] = {}
    types: list[tuple[str, Any, Origin]] = []
    for layer in layers:
        for name, raw in layer.settings.items():
            if name == "instance_types":
                raise raw.origin.error(show(raw.value), f"a table [instance_types] of {TYPE_FORM}")
            if name not in fields:
                raise unknown(raw.origin, name, fields)
            raws[name] = raw
        types.extend(layer.types)

    kwargs: dict[str, Any] = {}
    for name, raw in raws.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        kwargs[name] = coerce(name, default, raw)

    builtin = kwargs.get("builtin_instance_types", True)
    table: dict[str, tuple[int, int]] = dict(builtin_types) if builtin else {}
    last_origin: Origin | None = None
    for tname, spec, origin in types:
        value = _instance_type(tname, spec, origin)
        if value is None:
            table.pop(tname, None)
        else:
            table[tname] = value
        last_origin = origin
    if not table:
        origin = last_origin or raws["builtin_instance_types"].origin
        raise origin.error("no instance type left", "at least one type in [instance_types] when "
                           "builtin_instance_types is false or every type is dropped")
    kwargs["instance_types"] = table
    settings = cls(**kwargs)
    _check_together(settings, raws, last_origin)
    return settings


def _check_together(settings: Settings, raws: Mapping[str, Raw], types_origin: Origin | None) -> None:
    """Checks that involve two settings."""
    if settings.default_instance_type not in settings.instance_types:
        known = ", ".join(sorted(settings.instance_types))
        raw = raws.get("default_instance_type")
        if raw is not None:
            raise raw.origin.error(show(raw.value), f"one of the instance types ({known})")
        origin = types_origin or raws["builtin_instance_types"].origin
        raise SettingsError(origin.source, "default_instance_type",
                            f"the default {show(settings.default_instance_type)}, which this file's instance types drop",
                            f"default_instance_type set in [ec2gw] to one of {known}")
    if settings.lease_default_hours > settings.lease_max_hours:
        raw = raws.get("lease_default_hours") or raws["lease_max_hours"]
        raise raw.origin.error(show(raw.value), f"lease_default_hours ({settings.lease_default_hours:g}) at most "
                               f"lease_max_hours ({settings.lease_max_hours:g})")
    if settings.ec2_port == settings.s3_port:
        raw = raws.get("s3_port") or raws["ec2_port"]
        raise raw.origin.error(show(raw.value), f"different ports for the EC2 API and Cumulus (both are {settings.ec2_port})")
