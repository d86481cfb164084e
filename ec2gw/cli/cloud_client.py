"""`cloud-client`: Nimbus's client verbs over boto3, for ec2gw or any EC2 + S3 compatible endpoint.

What: one command a user runs on their own machine to upload images (--transfer), list and delete
them, run instances with a lease (--run --hours), see them (--status), save one as an image
(--save) and terminate it. Settings come from the cloud.conf of the bundle `ec2gw admin user add`
wrote (endpoints, keys, image bucket and prefix, CA); the verbs live in cloud_verbs.py.
Why boto3 and nothing ec2gw-specific: the same client must work against any compatible cloud.
Every failure ends in one sentence on stderr that says what to do, never a traceback.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

CONF_ENV = "CLOUD_CLIENT_CONF"
DEFAULT_CONF_PATHS = (Path("cloud.conf"), Path("~/.ec2gw/cloud.conf"))
VERBS = ("list", "transfer", "delete", "run", "status", "save", "terminate")
_AUTH_CODES = ("AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "InvalidAccessKeyId",
               "UnrecognizedClientException", "InvalidSecurity", "OptInRequired")
_QUOTA_CODES = ("InstanceLimitExceeded", "VcpuLimitExceeded", "QuotaExceeded", "InsufficientInstanceCapacity")


class CloudError(Exception):
    """A failure to tell the user in one sentence (what went wrong, what to do)."""


@dataclass(frozen=True)
class CloudConf:
    path: Path
    user: str
    ec2_endpoint: str
    s3_endpoint: str
    region: str
    access_key_id: str
    secret_access_key: str
    image_bucket: str
    image_prefix: str
    ca_bundle: str | None

    @property
    def verify(self) -> str | bool:
        return self.ca_bundle or True


def find_conf(explicit: str | None) -> Path:
    """--conf, else $CLOUD_CLIENT_CONF, else ./cloud.conf, else ~/.ec2gw/cloud.conf."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise CloudError(f"{path}: no such file; pass --conf the cloud.conf from the bundle "
                             "`ec2gw admin user add` wrote for you")
        return path
    if os.environ.get(CONF_ENV):
        return find_conf(os.environ[CONF_ENV])
    for candidate in DEFAULT_CONF_PATHS:
        path = candidate.expanduser()
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in DEFAULT_CONF_PATHS)
    raise CloudError(f"no cloud.conf found (looked at {tried}); copy the bundle your administrator made with "
                     "`ec2gw admin user add` to ~/.ec2gw, or pass --conf PATH")


def load_conf(explicit: str | None) -> CloudConf:
    path = find_conf(explicit)
    cp = configparser.ConfigParser(interpolation=None)
    try:
        cp.read(path)
    except configparser.Error as exc:
        raise CloudError(f"{path} is not a valid cloud.conf ({exc.message}); write it again from your bundle") from None
    if not cp.has_section("cloud"):
        raise CloudError(f"{path} has no [cloud] section; use the cloud.conf from your bundle")
    sec = cp["cloud"]
    missing = [k for k in ("ec2_endpoint", "s3_endpoint") if not sec.get(k, "").strip()]
    if missing:
        raise CloudError(f"{path} does not say {' and '.join(missing)}; add the service's URLs to its [cloud] section")
    access, secret = sec.get("access_key_id", "").strip(), sec.get("secret_access_key", "").strip()
    if not access or not secret:
        raise CloudError(f"{path} has no credentials: set access_key_id and secret_access_key in its [cloud] "
                         "section (they are in the bundle from `ec2gw admin user add`)")
    ca = sec.get("ca_bundle", "").strip() or None
    if ca:
        ca_path = (path.parent / Path(ca).expanduser()).resolve()
        if not ca_path.is_file():
            raise CloudError(f"the CA certificate {ca_path} named by ca_bundle in {path} is missing; "
                             "copy ca.pem from your bundle next to cloud.conf")
        ca = str(ca_path)
    return CloudConf(
        path=path, user=sec.get("user", "").strip() or access, ec2_endpoint=sec["ec2_endpoint"].strip(),
        s3_endpoint=sec["s3_endpoint"].strip(), region=sec.get("region", "us-east-1").strip() or "us-east-1",
        access_key_id=access, secret_access_key=secret, image_bucket=sec.get("image_bucket", "Repo").strip() or "Repo",
        image_prefix=sec.get("image_prefix", "VMS").strip().strip("/") or "VMS", ca_bundle=ca,
    )


def clients(conf: CloudConf) -> tuple[Any, Any]:
    """(ec2, s3) boto3 clients for the configured endpoints."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id=conf.access_key_id,
                                    aws_secret_access_key=conf.secret_access_key, region_name=conf.region)
    common: dict[str, Any] = {"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 10,
                              "read_timeout": 300}
    ec2 = session.client("ec2", endpoint_url=conf.ec2_endpoint, verify=conf.verify, config=Config(**common))
    s3 = session.client("s3", endpoint_url=conf.s3_endpoint, verify=conf.verify,
                        config=Config(s3={"addressing_style": "path"}, **common))
    return ec2, s3


def _endpoint_of(exc: Exception, conf: CloudConf) -> str:
    url = getattr(exc, "kwargs", {}).get("endpoint_url") or ""
    return str(url)


def explain_client_error(code: str, message: str, conf: CloudConf) -> str:
    if code in _AUTH_CODES:
        return (f"the service refused your credentials ({code}: {message}); check access_key_id and "
                f"secret_access_key in {conf.path}, or ask the administrator whether your account is active")
    if code in _QUOTA_CODES:
        return f"refused by your quota ({code}): {message}"
    if code in ("InvalidAction", "NotImplemented", "UnsupportedOperation"):
        return f"this cloud does not support that request ({code}: {message})"
    return f"{code}: {message}"


@contextmanager
def translated(conf: CloudConf) -> Iterator[None]:
    """Turn boto3/botocore failures into CloudError sentences."""
    from boto3.exceptions import S3UploadFailedError
    from botocore import exceptions as bx

    try:
        yield
    except bx.SSLError as exc:
        raise CloudError(f"TLS verification of {_endpoint_of(exc, conf) or 'the service'} failed ({exc}); set "
                         f"ca_bundle in {conf.path} to the ca.pem of your bundle") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError) as exc:
        raise CloudError(f"cannot reach {_endpoint_of(exc, conf) or 'the service'} (connection refused or timed "
                         f"out); check that the service is running and that the endpoints in {conf.path} "
                         "are right") from None
    except (bx.ReadTimeoutError, bx.ConnectionClosedError) as exc:
        raise CloudError(f"the service at {_endpoint_of(exc, conf) or 'its endpoint'} stopped answering ({exc}); "
                         "try again later") from None
    except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
        raise CloudError(f"missing credentials ({exc}); set access_key_id and secret_access_key in {conf.path}") from None
    except bx.ClientError as exc:
        err = exc.response.get("Error", {})
        raise CloudError(explain_client_error(str(err.get("Code", "Error")), str(err.get("Message", exc)), conf)) from None
    except S3UploadFailedError as exc:
        ctx = exc.__context__
        if isinstance(ctx, bx.ClientError):
            err = ctx.response.get("Error", {})
            raise CloudError("upload failed: " + explain_client_error(str(err.get("Code")), str(err.get("Message")), conf)) from None
        raise CloudError(f"upload failed: {exc}") from None
    except bx.BotoCoreError as exc:
        raise CloudError(f"{exc}") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--conf", "conf_path", default=None, metavar="FILE",
              help=f"cloud.conf to use [default: ${CONF_ENV}, ./cloud.conf, ~/.ec2gw/cloud.conf].")
@click.option("--list", "verb_list", is_flag=True, help="List your images and public ones (name, id, size, public or own).")
@click.option("--transfer", "verb_transfer", is_flag=True, help="Upload --sourcefile to Cumulus and register it as an image.")
@click.option("--delete", "verb_delete", is_flag=True, help="Deregister image --name and delete its file.")
@click.option("--run", "verb_run", is_flag=True, help="Run instances of image --name (lease: --hours).")
@click.option("--status", "verb_status", is_flag=True, help="Show your instances (or --handle): state, image, addresses, lease end.")
@click.option("--save", "verb_save", is_flag=True, help="Save instance --handle as a new image (--newname).")
@click.option("--terminate", "verb_terminate", is_flag=True, help="Terminate instance --handle.")
@click.option("--sourcefile", type=click.Path(dir_okay=False), default=None, help="Image file for --transfer.")
@click.option("--name", default=None, help="Image name (--transfer: default the file's name; --delete, --run).")
@click.option("--common", is_flag=True, help="--transfer: publish for everyone under <prefix>/common/ (administrators).")
@click.option("--hours", type=float, default=None, help="--run: lease in hours (default and maximum: the cloud's).")
@click.option("--count", type=click.IntRange(1, 1000), default=1, show_default=True, help="--run: how many instances.")
@click.option("--type", "instance_type", default=None, help="--run: instance type, e.g. m1.small.")
@click.option("--key", "key_name", default=None, help="--run: name of your key pair for SSH.")
@click.option("--handle", default=None, help="Instance id (i-...) for --status, --save, --terminate.")
@click.option("--newname", default=None, help="--save: name of the new image.")
def cli(conf_path: str | None, sourcefile: str | None, name: str | None, common: bool, hours: float | None,
        count: int, instance_type: str | None, key_name: str | None, handle: str | None, newname: str | None,
        **verbs: bool) -> None:
    """Run virtual machines in an ec2gw (or any EC2 + S3 compatible) cloud, Nimbus style.

    \b
    cloud-client --list
    cloud-client --transfer --sourcefile disk.img [--name NAME] [--common]
    cloud-client --run --name NAME [--hours H] [--count N] [--type TYPE] [--key KEYNAME]
    cloud-client --status [--handle ID]
    cloud-client --save --handle ID [--newname NAME]
    cloud-client --terminate --handle ID
    cloud-client --delete --name NAME
    """
    from ec2gw.cli import cloud_verbs as v  # CLI start-up: `cloud-client --help` skips the verbs' imports

    chosen = [k.removeprefix("verb_") for k, on in verbs.items() if on]
    if len(chosen) != 1:
        raise click.UsageError(f"give exactly one of {', '.join('--' + x for x in VERBS)}"
                               + (f" (not {', '.join('--' + x for x in chosen)})" if chosen else ""))
    verb = chosen[0]
    needs = {"transfer": ("sourcefile", sourcefile), "delete": ("name", name), "run": ("name", name),
             "save": ("handle", handle), "terminate": ("handle", handle)}
    if verb in needs and not needs[verb][1]:
        raise click.UsageError(f"--{verb} needs --{needs[verb][0]}")
    if hours is not None and verb != "run":
        raise click.UsageError("--hours goes with --run")
    if hours is not None and hours <= 0:
        raise click.UsageError("--hours must be more than 0")
    if verb == "transfer" and not Path(str(sourcefile)).is_file():
        raise CloudError(f"{sourcefile}: no such file; pass --sourcefile the image file to upload")
    conf = load_conf(conf_path)
    ec2, s3 = clients(conf)
    with translated(conf):
        if verb == "list":
            v.list_images(conf, ec2, s3)
        elif verb == "transfer":
            v.transfer(conf, ec2, s3, Path(str(sourcefile)), name, common)
        elif verb == "delete":
            v.delete(conf, ec2, s3, str(name))
        elif verb == "run":
            v.run(conf, ec2, str(name), hours, count, instance_type, key_name)
        elif verb == "status":
            v.status(conf, ec2, handle)
        elif verb == "save":
            v.save(conf, ec2, str(handle), newname)
        else:
            v.terminate(conf, ec2, str(handle))


def main() -> None:
    try:
        cli(prog_name="cloud-client", standalone_mode=False)
    except CloudError as exc:
        click.echo(f"cloud-client: {exc}", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("cloud-client: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("cloud-client: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
