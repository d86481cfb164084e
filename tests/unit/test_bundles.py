"""Client bundles: files and modes, a certificate openssl accepts, endpoints that match the service."""

from __future__ import annotations

import configparser
import json
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from ec2gw import bundles
from ec2gw.accounts import UserRecord
from ec2gw.config import Settings


def record(name: str = "alice", dn: str = "/O=ec2gw/OU=users/CN=alice") -> UserRecord:
    return UserRecord(name, "123456789012", "AKEXAMPLE", "secret/with+chars", "users", dn, False, True)


def app_with(tmp_path: Path, **settings: object) -> SimpleNamespace:
    return SimpleNamespace(settings=Settings(data_dir=tmp_path, **settings))  # type: ignore[arg-type]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_ini(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(path)
    return cp


def test_bundle_files_modes_and_certificate(tmp_path: Path) -> None:
    d = bundles.write_bundle(app_with(tmp_path), record())
    assert d == (tmp_path / "bundles" / "alice").resolve() and mode(d) == 0o700
    for name, expected in [("ca.pem", 0o644), ("usercert.pem", 0o644), ("userkey.pem", 0o600), ("cloud.conf", 0o600),
                           ("aws/config", 0o600), ("aws/credentials", 0o600), ("aws.env", 0o600), ("README.txt", 0o644)]:
        assert mode(d / name) == expected, name
    assert (d / "ca.pem").read_bytes() == (tmp_path / "certs" / "ca.pem").read_bytes()
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.pem"), str(d / "usercert.pem")],
                        check=False, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ": OK" in ok.stdout
    subject = subprocess.run(["openssl", "x509", "-in", str(d / "usercert.pem"), "-noout", "-subject", "-nameopt", "compat"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    assert "/O=ec2gw/OU=users/CN=alice" in subject
    # a certificate from another CA is not accepted against this one
    other = bundles.write_bundle(app_with(tmp_path / "other"), record())
    bad = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.pem"), str(other / "usercert.pem")],
                         check=False, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0


def test_cloud_conf_and_aws_files_over_http(tmp_path: Path) -> None:
    d = bundles.write_bundle(app_with(tmp_path, ec2_port=9001, s3_port=9002, image_bucket="Images"), record())
    conf = read_ini(d / "cloud.conf")["cloud"]
    assert conf["ec2_endpoint"] == "http://127.0.0.1:9001" and conf["s3_endpoint"] == "http://127.0.0.1:9002"
    assert conf["access_key_id"] == "AKEXAMPLE" and conf["secret_access_key"] == "secret/with+chars"
    assert (conf["user"], conf["image_bucket"], conf["image_prefix"]) == ("alice", "Images", "VMS")
    assert "ca_bundle" not in conf
    aws = (d / "aws" / "config").read_text()
    assert "endpoint_url = http://127.0.0.1:9001" in aws and "endpoint_url = http://127.0.0.1:9002" in aws
    assert "ca_bundle" not in aws
    creds = read_ini(d / "aws" / "credentials")["default"]
    assert creds["aws_secret_access_key"] == "secret/with+chars"


def test_https_bundles_carry_the_ca(tmp_path: Path) -> None:
    d = bundles.write_bundle(app_with(tmp_path, tls=True, public_host="cloud.example.org"), record())
    conf = read_ini(d / "cloud.conf")["cloud"]
    assert conf["ec2_endpoint"] == "https://cloud.example.org:8444" and conf["ca_bundle"] == "ca.pem"
    assert f"ca_bundle = {d / 'ca.pem'}" in (d / "aws" / "config").read_text()


def test_endpoints_follow_the_running_service_unless_public_settings_say_otherwise(tmp_path: Path) -> None:
    running = Settings(data_dir=tmp_path, host="127.0.0.1", ec2_port=18444, s3_port=18888, tls=True)
    bundles.record_service(running)
    assert json.loads((tmp_path / "service.json").read_text())["ec2_port"] == 18444
    plain = Settings(data_dir=tmp_path)  # what an admin command without flags sees
    assert bundles.public_endpoints(plain) == bundles.Endpoints("https://127.0.0.1:18444", "https://127.0.0.1:18888")
    explicit = Settings(data_dir=tmp_path, public_host="gw.example.org", public_scheme="http", public_s3_port=80)
    assert bundles.public_endpoints(explicit) == bundles.Endpoints("http://gw.example.org:18444", "http://gw.example.org:80")
    assert bundles.public_endpoints(Settings(data_dir=tmp_path / "none", host="::1")).ec2_url == "http://[::1]:8444"
    with pytest.raises(bundles.BundleError, match="public_scheme"):
        bundles.public_endpoints(Settings(data_dir=tmp_path, public_scheme="ftp"))


def test_rewriting_a_bundle_renews_the_certificate(tmp_path: Path) -> None:
    app = app_with(tmp_path)
    first = (bundles.write_bundle(app, record()) / "usercert.pem").read_bytes()
    second = (bundles.write_bundle(app, record()) / "usercert.pem").read_bytes()
    assert first != second


def test_user_add_with_a_bad_dn_creates_nothing(tmp_path: Path) -> None:
    from ec2gw.cli import admin, serve  # noqa: F401  (registers the commands)
    from ec2gw.cli.main import cli

    runner = CliRunner()
    bad = runner.invoke(cli, ["--data-dir", str(tmp_path), "admin", "user", "add", "carol", "--dn", "no equals sign"])
    assert bad.exit_code == 1 and "distinguished name" in bad.output
    assert not (tmp_path / "bundles" / "carol").exists()
    listed = runner.invoke(cli, ["--data-dir", str(tmp_path), "admin", "user", "list", "--json"])
    assert "carol" not in listed.output
    good = runner.invoke(cli, ["--data-dir", str(tmp_path), "admin", "user", "add", "carol", "--dn", "CN=Carol C,O=Lab"])
    assert good.exit_code == 0, good.output
    assert (tmp_path / "bundles" / "carol" / "cloud.conf").is_file()
    again = runner.invoke(cli, ["--data-dir", str(tmp_path), "admin", "user", "bundle", "carol", "--json"])
    assert again.exit_code == 0 and json.loads(again.output)["bundle_dir"].endswith("bundles/carol")
