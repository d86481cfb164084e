"""cloud-client's own checks, in process: configuration, usage, messages (the verbs run live in functional/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ec2gw.cli import cloud_client
from ec2gw.cli.cloud_client import CloudError, load_conf

CONF = """[cloud]
user = lee
ec2_endpoint = http://127.0.0.1:1
s3_endpoint = http://127.0.0.1:2
access_key_id = AKEXAMPLE
secret_access_key = secret
"""


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["cloud-client", *args])
    code = 0
    try:
        cloud_client.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home and working directory, and no CLOUD_CLIENT_CONF."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(cloud_client.CONF_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_conf_is_found_in_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / ".ec2gw").mkdir()
    (home / ".ec2gw" / "cloud.conf").write_text(CONF.replace("lee", "from-home"))
    assert load_conf(None).user == "from-home"
    (home / "cloud.conf").write_text(CONF.replace("lee", "from-cwd"))
    assert load_conf(None).user == "from-cwd"
    other = home / "elsewhere.conf"
    other.write_text(CONF.replace("lee", "from-env"))
    monkeypatch.setenv(cloud_client.CONF_ENV, str(other))
    assert load_conf(None).user == "from-env"
    assert load_conf(str(home / ".ec2gw" / "cloud.conf")).user == "from-home"


def test_conf_defaults_and_relative_ca(home: Path) -> None:
    (home / "ca.pem").write_text("not really a certificate")
    (home / "cloud.conf").write_text(CONF + "ca_bundle = ca.pem\n")
    conf = load_conf(None)
    assert (conf.region, conf.image_bucket, conf.image_prefix) == ("us-east-1", "Repo", "VMS")
    assert conf.ca_bundle == str(home / "ca.pem") and conf.verify == str(home / "ca.pem")


@pytest.mark.parametrize("text, words", [
    ("", "has no [cloud] section"),
    ("[cloud]\nec2_endpoint = http://x:1\n", "does not say s3_endpoint"),
    (CONF.replace("secret_access_key = secret\n", ""), "has no credentials"),
    (CONF + "ca_bundle = missing.pem\n", "missing.pem named by ca_bundle"),
    ("[cloud\nbroken", "not a valid cloud.conf"),
])
def test_bad_confs_say_what_to_fix(home: Path, text: str, words: str) -> None:
    (home / "cloud.conf").write_text(text)
    with pytest.raises(CloudError) as err:
        load_conf(None)
    assert words in str(err.value)


def test_missing_confs(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(monkeypatch, capsys, "--list")
    assert code == 1 and err.startswith("cloud-client: no cloud.conf found") and "--conf" in err
    code, _, err = run(monkeypatch, capsys, "--conf", str(home / "nope.conf"), "--list")
    assert code == 1 and "nope.conf: no such file" in err


@pytest.mark.parametrize("args, words", [
    ((), "exactly one of"),
    (("--list", "--status"), "(not --list, --status)"),
    (("--run",), "--run needs --name"),
    (("--delete",), "--delete needs --name"),
    (("--transfer",), "--transfer needs --sourcefile"),
    (("--save",), "--save needs --handle"),
    (("--terminate",), "--terminate needs --handle"),
    (("--status", "--hours", "2"), "--hours goes with --run"),
    (("--run", "--name", "x", "--hours", "-1"), "--hours must be more than 0"),
    (("--run", "--name", "x", "--count", "0"), "--count"),
])
def test_usage_errors(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                      args: tuple[str, ...], words: str) -> None:
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 2 and words in err


def test_failures_before_any_request(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "cloud.conf").write_text(CONF)
    code, _, err = run(monkeypatch, capsys, "--transfer", "--sourcefile", str(home / "missing.img"))
    assert code == 1 and "missing.img: no such file" in err
    code, _, err = run(monkeypatch, capsys, "--status", "--handle", "vm-1")
    assert code == 1 and "'vm-1' is not an instance handle" in err and "Traceback" not in err


def test_help_names_every_verb(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(monkeypatch, capsys, "--help")
    assert code == 0
    for verb in cloud_client.VERBS:
        assert f"--{verb}" in out
