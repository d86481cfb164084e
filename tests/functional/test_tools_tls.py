"""`ec2gw serve --tls` with the installation's CA: the aws CLI with --ca-bundle, bundles, cloud-client over https."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.tools import add_user, clean_env, cloud_client, image_file, ok, rows
from tests.live import VENV_BIN, LiveServer

AWS = str(VENV_BIN / "aws")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("tls-server"), extra_args=["--tls"], scheme="https").start()
    try:
        yield srv
    finally:
        srv.stop()


def aws(srv: LiveServer, ca: Path | None, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """The aws CLI against `srv`; one attempt (failures here are expected ones, retries only waste time)."""
    url = url or (srv.ec2_url if args[0] == "ec2" else srv.s3_url)
    cmd = [AWS, "--endpoint-url", url, "--output", "json", *(["--ca-bundle", str(ca)] if ca else []), *args]
    env = {**srv.aws_env(), "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, env=env)


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], check=False, capture_output=True, text=True, timeout=30)


def test_certificates_chain_to_the_ca_and_keys_are_private(tls_server: LiveServer) -> None:
    certs = tls_server.data_dir / "certs"
    _, bundle = add_user(tls_server, "tls-dora", "--dn", "/O=Physics/OU=Cloud/CN=Dora")
    for cert in (certs / "server.pem", bundle / "usercert.pem"):
        res = openssl("verify", "-CAfile", str(certs / "ca.pem"), str(cert))
        assert res.returncode == 0 and ": OK" in res.stdout, res.stdout + res.stderr
    subject = openssl("x509", "-in", str(bundle / "usercert.pem"), "-noout", "-subject", "-nameopt", "compat").stdout
    assert "/O=Physics/OU=Cloud/CN=Dora" in subject
    sans = openssl("x509", "-in", str(certs / "server.pem"), "-noout", "-ext", "subjectAltName").stdout
    assert "IP Address:127.0.0.1" in sans and "DNS:localhost" in sans
    for key in (certs / "ca.key", certs / "server.key", bundle / "userkey.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_aws_cli_with_ca_bundle_on_both_ports(tls_server: LiveServer, tmp_path: Path) -> None:
    ca = tls_server.data_dir / "certs" / "ca.pem"
    assert json.loads(ok(aws(tls_server, ca, "ec2", "describe-regions")))["Regions"]
    ok(aws(tls_server, ca, "s3api", "create-bucket", "--bucket", "tls-bucket"))
    src = image_file(tmp_path / "payload.bin", 9 << 20)  # above the CLI's 8 MiB multipart threshold
    ok(aws(tls_server, ca, "s3", "cp", str(src), "s3://tls-bucket/payload.bin"))
    back = tmp_path / "back.bin"
    ok(aws(tls_server, ca, "s3", "cp", "s3://tls-bucket/payload.bin", str(back)))
    assert back.read_bytes() == src.read_bytes()
    # without the CA the server's certificate is not trusted: TLS is really on
    refused = aws(tls_server, None, "ec2", "describe-regions")
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    plain = aws(tls_server, ca, "ec2", "describe-regions", url=f"http://127.0.0.1:{tls_server.ec2_port}")
    assert plain.returncode != 0  # no plain http on the TLS port


def test_bundle_works_as_written_for_aws_cli_and_cloud_client(tls_server: LiveServer, tmp_path: Path) -> None:
    _, bundle = add_user(tls_server, "tls-erin")
    conf = (bundle / "cloud.conf").read_text()
    assert f"ec2_endpoint = https://127.0.0.1:{tls_server.ec2_port}" in conf
    assert f"s3_endpoint = https://127.0.0.1:{tls_server.s3_port}" in conf and "ca_bundle = ca.pem" in conf
    # the aws CLI with nothing but the bundle's files: endpoints, keys and CA come from them
    env = clean_env(AWS_CONFIG_FILE=str(bundle / "aws" / "config"),
                    AWS_SHARED_CREDENTIALS_FILE=str(bundle / "aws" / "credentials"))
    res = subprocess.run([AWS, "ec2", "describe-instances", "--output", "json"], check=False, capture_output=True, text=True,
                         timeout=60, env=env)
    assert res.returncode == 0 and json.loads(res.stdout) == {"Reservations": []}, res.stderr
    src = image_file(tmp_path / "tls-erin.img", 20 << 20)
    up = subprocess.run([AWS, "s3", "cp", str(src), "s3://Repo/VMS/tls-erin/via-aws.img"], check=False, capture_output=True,
                        text=True, timeout=120, env=env)
    assert up.returncode == 0, up.stderr
    # the same files after `. aws.env`, as a user would do
    sourced = subprocess.run(["bash", "-c", f". '{bundle / 'aws.env'}' && '{AWS}' s3 ls s3://Repo/VMS/tls-erin/"],
                             check=False, capture_output=True, text=True, timeout=60, env=clean_env(AWS_CA_BUNDLE="/nonexistent"))
    assert sourced.returncode == 0 and "via-aws.img" in sourced.stdout, sourced.stderr
    # cloud-client over https: multipart upload with aws-chunked bodies, register, run, status
    moved = tmp_path / "copied-bundle"
    os.rename(bundle, moved)  # cloud.conf names the CA relative to itself, so the bundle can move
    conf_path = moved / "cloud.conf"
    out = ok(cloud_client(conf_path, "--transfer", "--sourcefile", str(src)))
    assert "image tls-erin.img is ami-" in out
    assert [r[0] for r in rows(ok(cloud_client(conf_path, "--list")))] == ["tls-erin.img"]
    launched = ok(cloud_client(conf_path, "--run", "--name", "tls-erin.img", "--hours", "1"))
    handle = rows(launched.split("\nlaunched")[0])[0][0]
    assert handle in ok(cloud_client(conf_path, "--status"))
    ok(cloud_client(conf_path, "--terminate", "--handle", handle))
