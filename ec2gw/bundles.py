"""Client bundles: everything a user needs on their own machine, in one directory.

What `ec2gw admin user add` writes to `<data-dir>/bundles/<user>/` (0700), as Nimbus's
`nimbus-new-user` did:
  ca.pem                  the installation's CA (trust it for https)
  usercert.pem, userkey.pem   the user's X.509 certificate (their DN) and key (0600), signed by the CA
  cloud.conf              cloud-client's settings: both endpoints, keys, image bucket and prefix (0600)
  aws/config, aws/credentials   ready for the aws CLI and boto3 (endpoints per service, ca_bundle with https)
  aws.env                 `. aws.env` points AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE at the above
  README.txt              how to use it
Why the endpoints come from here: a bundle must work as written, so its URLs follow the public
endpoint settings (public_host, public_scheme, public_ec2_port, public_s3_port) and, for whatever
those leave open, the listeners of the service as `ec2gw serve` last started it (recorded in
`<data-dir>/service.json`), and only then the settings' host, ports and tls.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certs._files import PRIVATE, PUBLIC, ensure_directory, write_atomically
from certs.ca import CertificateAuthority
from certs.dn import parse_dn
from certs.user import issue_user_certificate

if TYPE_CHECKING:
    from ec2gw.accounts import UserRecord
    from ec2gw.config import Settings

SERVICE_RECORD = "service.json"
CONF_NAME = "cloud.conf"
_WILDCARD = ("", "0.0.0.0", "::", "[::]")


class BundleError(ValueError):
    """A bundle that cannot be written; the message says what to do."""


@dataclass(frozen=True)
class Endpoints:
    ec2_url: str
    s3_url: str

    @property
    def tls(self) -> bool:
        return self.ec2_url.startswith("https:") or self.s3_url.startswith("https:")


def cert_dir(settings: Settings) -> Path:
    """Where the CA and the server certificate live (shared with `ec2gw serve --tls`)."""
    return Path(settings.data_dir) / "certs"


def bundle_dir(settings: Settings, user_name: str) -> Path:
    return Path(settings.data_dir) / "bundles" / user_name


def check_dn(dn: str) -> None:
    """BundleError if `dn` cannot be a certificate subject (checked before a user is created)."""
    try:
        parse_dn(dn)
    except ValueError as exc:
        raise BundleError(f"cannot issue a user certificate: {exc}") from None


# --------------------------------------------------------------------------- endpoints

def record_service(settings: Settings) -> Path:
    """Called by `ec2gw serve`: remember how the service listens, so bundles written later match it."""
    path = Path(settings.data_dir) / SERVICE_RECORD
    data = {
        "scheme": "https" if settings.tls else "http",
        "host": settings.host,
        "ec2_port": settings.ec2_port,
        "s3_port": settings.s3_port,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_atomically(path, (json.dumps(data, indent=2) + "\n").encode(), PUBLIC)
    return path


def _recorded(settings: Settings) -> dict[str, Any]:
    try:
        data = json.loads((Path(settings.data_dir) / SERVICE_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def public_endpoints(settings: Settings) -> Endpoints:
    """The URLs clients use: public_* settings, else the running service's listeners, else the settings."""
    rec = _recorded(settings)
    scheme = settings.public_scheme or rec.get("scheme") or ("https" if settings.tls else "http")
    if scheme not in ("http", "https"):
        raise BundleError(f"public_scheme must be http or https, not {scheme!r}; fix it in the settings file")
    host = settings.public_host or str(rec.get("host") or settings.host)
    if host in _WILDCARD:
        host = socket.getfqdn()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    ec2_port = settings.public_ec2_port or int(rec.get("ec2_port") or settings.ec2_port)
    s3_port = settings.public_s3_port or int(rec.get("s3_port") or settings.s3_port)
    return Endpoints(f"{scheme}://{host}:{ec2_port}", f"{scheme}://{host}:{s3_port}")


# --------------------------------------------------------------------------- files

def _ini(sections: dict[str, dict[str, str]], header: str = "") -> bytes:
    cp = configparser.ConfigParser(interpolation=None)
    for name, values in sections.items():
        cp[name] = values
    out = io.StringIO()
    out.write(header)
    cp.write(out)
    return out.getvalue().encode()


def cloud_conf_text(settings: Settings, record: UserRecord, endpoints: Endpoints) -> bytes:
    values = {
        "user": record.name,
        "ec2_endpoint": endpoints.ec2_url,
        "s3_endpoint": endpoints.s3_url,
        "region": settings.region,
        "access_key_id": record.access_key_id,
        "secret_access_key": record.secret_access_key,
        "image_bucket": settings.image_bucket,
        "image_prefix": settings.image_prefix,
        "usercert": "usercert.pem",
        "userkey": "userkey.pem",
    }
    if endpoints.tls:
        values["ca_bundle"] = "ca.pem"
    header = (
        f"# cloud-client settings for {record.name}, written by `ec2gw admin user add`.\n"
        "# Relative paths are relative to this file. Keep it private: it holds your secret key.\n"
    )
    return _ini({"cloud": values}, header)


def aws_config_text(settings: Settings, endpoints: Endpoints, ca_path: Path) -> bytes:
    lines = ["[default]", f"region = {settings.region}"]
    if endpoints.tls:
        lines.append(f"ca_bundle = {ca_path}")
    lines += [
        "services = ec2gw",
        "s3 =",
        "    addressing_style = path",
        "",
        "[services ec2gw]",
        "ec2 =",
        f"    endpoint_url = {endpoints.ec2_url}",
        "s3 =",
        f"    endpoint_url = {endpoints.s3_url}",
        "",
    ]
    return "\n".join(lines).encode()


def aws_credentials_text(record: UserRecord) -> bytes:
    return _ini({"default": {"aws_access_key_id": record.access_key_id,
                             "aws_secret_access_key": record.secret_access_key}})


def readme_text(record: UserRecord, endpoints: Endpoints, directory: Path) -> bytes:
    return (
        f"ec2gw client bundle for {record.name} (DN {record.dn})\n\n"
        f"EC2 API: {endpoints.ec2_url}\nCumulus (S3): {endpoints.s3_url}\n\n"
        "cloud-client: copy this directory to ~/.ec2gw on your machine (or pass --conf PATH/cloud.conf):\n"
        "    cloud-client --list\n"
        "    cloud-client --transfer --sourcefile disk.img\n"
        "    cloud-client --run --name disk.img --hours 4\n\n"
        "aws CLI / boto3:  . aws.env   then   aws ec2 describe-instances   or   aws s3 ls\n"
        f"(aws/config and aws.env name files by their absolute paths under {directory};\n"
        " edit them if you move this directory.)\n"
    ).encode()


def write_bundle(app: Any, record: UserRecord) -> Path:
    """Write (or rewrite, renewing the certificate) the bundle of `record`; returns its directory."""
    settings: Settings = app.settings
    check_dn(record.dn)
    endpoints = public_endpoints(settings)
    ca = CertificateAuthority.load_or_create(cert_dir(settings))
    directory = ensure_directory(bundle_dir(settings, record.name)).resolve()
    os.chmod(directory, 0o700)
    (directory / "aws").mkdir(mode=0o700, exist_ok=True)
    ca_path = directory / "ca.pem"
    write_atomically(ca_path, ca.cert_path.read_bytes(), PUBLIC)
    issue_user_certificate(ca, record.dn, directory)
    write_atomically(directory / CONF_NAME, cloud_conf_text(settings, record, endpoints), PRIVATE)
    write_atomically(directory / "aws" / "config", aws_config_text(settings, endpoints, ca_path), PRIVATE)
    write_atomically(directory / "aws" / "credentials", aws_credentials_text(record), PRIVATE)
    env = (
        f"export AWS_CONFIG_FILE='{directory / 'aws' / 'config'}'\n"
        f"export AWS_SHARED_CREDENTIALS_FILE='{directory / 'aws' / 'credentials'}'\n"
        "unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_CA_BUNDLE\n"
    )
    write_atomically(directory / "aws.env", env.encode(), PRIVATE)
    write_atomically(directory / "README.txt", readme_text(record, endpoints, directory), PUBLIC)
    return directory
