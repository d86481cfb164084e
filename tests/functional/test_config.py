"""Settings through the CLI and a live server: every invalid value is one line naming the file (or
the environment, or the command line), the key, what was found and what is expected, exit status 2;
configured instance types add to the built-ins, and builtin_instance_types = false drops them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.live import EC2GW, LiveServer, free_port

# (file name, file text or None, environment, extra serve flags, "source: key", words of what was found)
BAD: list[tuple[str, str | None, dict[str, str], list[str], str, str]] = [
    ("int-as-string.toml", '[ec2gw]\nec2_port = "eighty"\n', {}, [], "[ec2gw] ec2_port", '"eighty"'),
    ("int-as-bool.toml", "[ec2gw]\nworkers = true\n", {}, [], "[ec2gw] workers", "true"),
    ("int-as-float.toml", "[ec2gw]\nworkers = 2.5\n", {}, [], "[ec2gw] workers", "2.5"),
    ("string-as-int.toml", "[ec2gw]\nregion = 5\n", {}, [], "[ec2gw] region", "5"),
    ("negative-port.toml", "[ec2gw]\nec2_port = -1\n", {}, [], "[ec2gw] ec2_port", "-1"),
    ("port-too-big.toml", "[ec2gw]\ns3_port = 70000\n", {}, [], "[ec2gw] s3_port", "70000"),
    ("negative-float.toml", "[ec2gw]\nstop_timeout = -3.0\n", {}, [], "[ec2gw] stop_timeout", "-3.0"),
    ("below-no-limit.toml", "[ec2gw]\nquota_vcpus = -2\n", {}, [], "[ec2gw] quota_vcpus", "-2"),
    ("zero-timeout.toml", "[ec2gw]\nheader_timeout = 0\n", {}, [], "[ec2gw] header_timeout", "0"),
    ("not-a-number.toml", "[ec2gw]\nbody_timeout = nan\n", {}, [], "[ec2gw] body_timeout", "nan"),
    ("bad-bool.toml", '[ec2gw]\ntls = "maybe"\n', {}, [], "[ec2gw] tls", '"maybe"'),
    ("bad-choice.toml", '[ec2gw]\npublic_scheme = "ftp"\n', {}, [], "[ec2gw] public_scheme", '"ftp"'),
    ("bad-mac.toml", '[ec2gw]\nmac_prefix = "53:54"\n', {}, [], "[ec2gw] mac_prefix", '"53:54"'),
    ("bad-url.toml", '[ec2gw]\ndatabase_url = "not a url"\n', {}, [], "[ec2gw] database_url", '"not a url"'),
    ("bad-networks.toml", '[ec2gw]\ninstance_type_networks = "t2.micro=dmz"\n', {}, [],
     "[ec2gw] instance_type_networks", '"t2.micro=dmz"'),
    ("unknown-key.toml", "[ec2gw]\nec2_prot = 8444\n", {}, [], "[ec2gw] ec2_prot", "unknown setting"),
    ("nested-table.toml", '[ec2gw.region]\nname = "x"\n', {}, [], "[ec2gw] region", "a table {name"),
    ("inline-table.toml", "[ec2gw]\nec2_port = {port = 1}\n", {}, [], "[ec2gw] ec2_port", "a table {port = 1}"),
    ("stray-key.toml", 'ec2_port = 1\n[ec2gw]\nregion = "x"\n', {}, [], "ec2_port", "outside [ec2gw]"),
    ("stray-table.toml", "[ec2gw]\nworkers = 2\n[server]\nx = 1\n", {}, [], "server", "a table"),
    ("syntax.toml", "[ec2gw\nec2_port = 1\n", {}, [], "line 1", "invalid TOML"),
    ("syntax-value.toml", "[ec2gw]\nec2_port = \n", {}, [], "line 2", "invalid TOML"),
    ("type-spec.toml", '[instance_types]\n"c9.tiny" = "1;256"\n', {}, [], '[instance_types] "c9.tiny"', '"1;256"'),
    ("type-negative.toml", '[instance_types]\nc9.tiny = "-1,256"\n', {}, [], '[instance_types] "c9.tiny"', '"-1,256"'),
    ("type-zero-memory.toml", '[instance_types]\n"c9.tiny" = [1, 0]\n', {}, [], '[instance_types] "c9.tiny"', "[1, 0]"),
    ("type-half-table.toml", "[instance_types]\nc9.tiny = {vcpus = 1}\n", {}, [], '[instance_types] "c9.tiny"',
     "a table {vcpus = 1}"),
    ("type-not-table.toml", 'instance_types = "c9.tiny=1,256"\n', {}, [], "instance_types", '"c9.tiny=1,256"'),
    ("default-type.toml", '[ec2gw]\ndefault_instance_type = "z9.huge"\n', {}, [], "[ec2gw] default_instance_type",
     '"z9.huge"'),
    ("no-builtins.toml", "[ec2gw]\nbuiltin_instance_types = false\n", {}, [], "[ec2gw] builtin_instance_types",
     "no instance type left"),
    ("no-builtins-default.toml", '[ec2gw]\nbuiltin_instance_types = false\n[instance_types]\n"c9.tiny" = "1,256"\n',
     {}, [], "default_instance_type", '"m1.small"'),
    ("lease.toml", "[ec2gw]\nlease_default_hours = 48\nlease_max_hours = 24\n", {}, [], "[ec2gw] lease_default_hours",
     "48"),
    ("no-section.ini", "ec2_port = 8444\n", {}, [], "line 1", '"ec2_port = 8444" before any [section]'),
    ("no-equals.ini", "[ec2gw]\nec2_port\n", {}, [], "line 2", '"ec2_port", which is not name = value'),
    ("duplicate.ini", "[ec2gw]\nworkers = 2\nworkers = 3\n", {}, [], "line 3", "a second workers"),
    ("unknown-section.ini", "[server]\nworkers = 2\n", {}, [], "[server]", "an unknown section"),
    ("bad-value.ini", "[ec2gw]\nworkers = two\n", {}, [], "[ec2gw] workers", '"two"'),
    ("bad-type.ini", "[instance_types]\nc9.tiny = 1\n", {}, [], "[instance_types] c9.tiny", '"1"'),
    ("env-int", None, {"EC2GW_EC2_PORT": "abc"}, [], "EC2GW_EC2_PORT", '"abc"'),
    ("env-negative", None, {"EC2GW_LEASE_MAX_HOURS": "-1"}, [], "EC2GW_LEASE_MAX_HOURS", '"-1"'),
    ("env-bool", None, {"EC2GW_TLS": "maybe"}, [], "EC2GW_TLS", '"maybe"'),
    ("env-unknown", None, {"EC2GW_WORKRS": "3"}, [], "EC2GW_WORKRS", "unknown setting"),
    ("env-types", None, {"EC2GW_INSTANCE_TYPES": "c9.tiny=1"}, [], "EC2GW_INSTANCE_TYPES c9.tiny", '"1"'),
    ("flag-port", None, {}, ["--ec2-port", "70000"], "--ec2-port", "70000"),
    ("flag-workers", None, {}, ["--workers", "0"], "--workers", "0"),
]


def _serve(tmp_path: Path, config: str | None, env: dict[str, str], flags: list[str],
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`ec2gw [--config FILE] serve` that must exit by itself; a server that starts is stopped and fails."""
    ports = []  # free ports for the listeners the case leaves alone (a flag would override the bad value)
    text = (Path(config).read_text() if config and Path(config).exists() else "") + " ".join([*env, *flags]).lower()
    for key in ("ec2", "s3"):
        if f"{key}_port" not in text and f"{key}-port" not in text:
            ports += [f"--{key}-port", str(free_port())]
    cmd = [EC2GW, "--data-dir", str(tmp_path / "data"), *(["--config", config] if config else []), "serve",
           *ports, *flags]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EC2GW_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**clean, **env},
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"serve did not exit by itself: {err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("name, text, env, flags, where, found", BAD, ids=[b[0] for b in BAD])
def test_bad_setting_is_one_line_and_exit_2(tmp_path: Path, name: str, text: str | None, env: dict[str, str],
                                             flags: list[str], where: str, found: str) -> None:
    config = None
    source = "environment" if env else "command line"
    if text is not None:
        config = str(tmp_path / name)
        Path(config).write_text(text)
        source = config
    res = _serve(tmp_path, config, env, flags)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(f"Error: {source}: {where}: found "), lines[0]
    assert found in lines[0].split(": found ", 1)[1].split("; expected ")[0], lines[0]
    assert "; expected " in lines[0] and lines[0].split("; expected ")[1].strip(), lines[0]
    assert not (tmp_path / "data" / "admin.credentials").exists()  # refused before anything was set up


def test_missing_settings_file(tmp_path: Path) -> None:
    res = _serve(tmp_path, str(tmp_path / "nope.toml"), {}, [])
    assert res.returncode == 2
    assert res.stderr.strip() == (f"Error: {tmp_path / 'nope.toml'}: --config: found no such file; "
                                  "expected an existing settings file (TOML or INI)")


def _image(server: LiveServer, tmp_path: Path) -> str:
    path = tmp_path / "base.img"
    path.write_bytes(b"\0" * (1 << 20))
    out = server.cli("admin", "image", "import", "base-image", str(path), "--public", "--json")
    return str(json.loads(out.stdout)["image_id"])


def _types(ec2: Any) -> dict[str, tuple[int, int]]:
    return {t["InstanceType"]: (t["VCpuInfo"]["DefaultVCpus"], t["MemoryInfo"]["SizeInMiB"])
            for t in ec2.describe_instance_types()["InstanceTypes"]}


def _run(ec2: Any, image_id: str, **kw: Any) -> str:
    inst = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, **kw)["Instances"][0]
    return str(inst["InstanceType"])


def test_configured_types_add_to_the_builtins(tmp_path: Path) -> None:
    config = tmp_path / "types.toml"
    # unquoted dotted names are the same types as quoted ones (TOML reads them as nested tables)
    config.write_text('[instance_types]\nc9.tiny = "1,256"\n"c9.big" = [2, 512]\n'
                      '"m1.large" = {vcpus = 3, memory = 3072}\n"m1.xlarge" = "none"\n')
    srv = LiveServer(tmp_path / "data", global_args=["--config", str(config)])
    try:
        srv.start()
        ec2 = srv.client("ec2")
        types = _types(ec2)
        assert types["c9.tiny"] == (1, 256) and types["c9.big"] == (2, 512)
        assert types["m1.large"] == (3, 3072)  # overridden
        assert types["t2.micro"] == (1, 1024) and types["m1.small"] == (1, 1740)  # built-ins stay
        assert "m1.xlarge" not in types  # dropped
        image_id = _image(srv, tmp_path)
        assert _run(ec2, image_id) == "m1.small"  # the default type still works
        assert _run(ec2, image_id, InstanceType="c9.tiny") == "c9.tiny"
        with pytest.raises(ClientError) as exc:
            _run(ec2, image_id, InstanceType="m1.xlarge")
        assert exc.value.response["Error"]["Code"] == "InvalidParameterValue"
    finally:
        srv.stop()


def test_builtin_instance_types_false_drops_them(tmp_path: Path) -> None:
    config = tmp_path / "types.ini"
    config.write_text("[ec2gw]\nbuiltin_instance_types = false\ndefault_instance_type = c9.tiny\n"
                      "[instance_types]\nc9.tiny = 1,256\n")
    srv = LiveServer(tmp_path / "data", global_args=["--config", str(config)])
    try:
        srv.start()
        ec2 = srv.client("ec2")
        assert _types(ec2) == {"c9.tiny": (1, 256)}
        image_id = _image(srv, tmp_path)
        assert _run(ec2, image_id) == "c9.tiny"
        with pytest.raises(ClientError) as exc:
            _run(ec2, image_id, InstanceType="t2.micro")
        assert "c9.tiny" in exc.value.response["Error"]["Message"]
    finally:
        srv.stop()


def test_environment_adds_types(tmp_path: Path) -> None:
    srv = LiveServer(tmp_path / "data", env={"EC2GW_INSTANCE_TYPES": "c9.tiny=1,256; t2.micro=none"})
    try:
        srv.start()
        types = _types(srv.client("ec2"))
        assert types["c9.tiny"] == (1, 256) and "t2.micro" not in types and "m1.small" in types
    finally:
        srv.stop()
