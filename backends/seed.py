"""NoCloud seed ISOs: how an instance learns its id, hostname, SSH keys, user data and network.

cloud-init's NoCloud datasource looks for a filesystem labelled ``cidata`` holding the files
``meta-data`` and ``user-data`` (and optionally ``network-config``). The image is built in Python
with pycdlib (ISO 9660 with Rock Ridge and Joliet names, as ``genisoimage -volid cidata -joliet
-rock`` would make it), so no external tool is needed; it is small and goes to the node as a
volume upload, attached as a read-only cdrom.

meta-data and network-config are written as JSON, which is valid YAML for cloud-init's loader
and needs no quoting rules of our own.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import pycdlib

LABEL = "cidata"
# ISO 9660 level-1 name, Rock Ridge/Joliet name
_FILES = {"meta-data": "/METADATA.;1", "user-data": "/USERDATA.;1", "network-config": "/NETWORKC.;1",
          "vendor-data": "/VENDORDA.;1"}


@dataclass
class SeedData:
    """What one instance is told at first boot.

    ``user_data`` goes through unchanged (a #cloud-config document, a script, MIME multipart);
    None writes an empty user-data file, which NoCloud requires to exist. ``network_config`` is
    a cloud-init network config (version 1 or 2) as a dict; None lets cloud-init use DHCP on the
    first interface.
    """

    instance_id: str
    hostname: str
    public_keys: list[str] = field(default_factory=list)
    user_data: bytes | str | None = None
    network_config: dict[str, Any] | None = None
    extra_meta_data: dict[str, Any] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        """The seed's files by their cloud-init names."""
        meta = {"instance-id": self.instance_id, "local-hostname": self.hostname, **self.extra_meta_data}
        if self.public_keys:
            meta["public-keys"] = list(self.public_keys)
        user = self.user_data.encode() if isinstance(self.user_data, str) else (self.user_data or b"")
        out = {"meta-data": _json(meta), "user-data": user}
        if self.network_config is not None:
            out["network-config"] = _json(self.network_config)
        return out


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def build_seed_iso(seed: SeedData) -> bytes:
    """The seed as an ISO image labelled ``cidata`` (a few tens of KiB)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABEL, app_ident_str="ec2gw")
    try:
        for name, data in seed.files().items():
            iso.add_fp(io.BytesIO(data), len(data), _FILES[name], rr_name=name, joliet_path=f"/{name}")
        out = io.BytesIO()
        iso.write_fp(out)
    finally:
        iso.close()
    return out.getvalue()


@dataclass(frozen=True)
class SeedContents:
    """What read_seed_iso() found: the volume label and the files by their Rock Ridge names."""

    label: str
    files: dict[str, bytes]

    def meta_data(self) -> dict[str, Any]:
        return json.loads(self.files["meta-data"])

    def network_config(self) -> dict[str, Any] | None:
        raw = self.files.get("network-config")
        return json.loads(raw) if raw is not None else None


def read_seed_iso(image: bytes) -> SeedContents:
    """Read a seed ISO back (for tests and diagnostics): label and every top-level file."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    try:
        label = iso.pvd.volume_identifier.decode().rstrip()
        files: dict[str, bytes] = {}
        for child in iso.list_children(iso_path="/"):
            if child.is_dot() or child.is_dotdot() or child.is_dir():
                continue
            name = child.rock_ridge.name().decode() if child.rock_ridge else child.file_identifier().decode()
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, iso_path=iso.full_path_from_dirrecord(child))
            files[name] = buf.getvalue()
    finally:
        iso.close()
    return SeedContents(label=label, files=files)
