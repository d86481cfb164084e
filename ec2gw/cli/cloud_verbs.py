"""The verbs of cloud-client, each a few boto3 calls (EC2 for instances and images, S3 for files).

Images follow the Nimbus layout in the image bucket (default Repo): a user's under
`<prefix>/<user>/<name>`, shared ones under `<prefix>/common/<name>`; the image's Name is the file
name, its id an ami- id. Instances are named by their instance ids ("handles"); a lease is asked for
with the `lease:hours` tag and shown from the `lease:end` tag.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ec2gw.cli.cloud_client import CloudConf, CloudError

MiB = 1 << 20
_AMI_RE = re.compile(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?$")
_INSTANCE_RE = re.compile(r"^i-[0-9a-f]{8}([0-9a-f]{9})?$")


def human(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [headers, *rows])


def split_location(location: str) -> tuple[str, str] | None:
    bucket, _, key = location.removeprefix("s3://").lstrip("/").partition("/")
    return (bucket, key) if bucket and key else None


def image_key(conf: CloudConf, name: str, common: bool) -> str:
    return f"{conf.image_prefix}/{'common' if common else conf.user}/{name}"


# --------------------------------------------------------------------------- images

def own_images(ec2: Any, name: str | None = None) -> list[dict[str, Any]]:
    kw: dict[str, Any] = {"Owners": ["self"]}
    if name is not None:
        kw["Filters"] = [{"Name": "name", "Values": [name]}]
    return list(ec2.describe_images(**kw)["Images"])


def public_images(ec2: Any, name: str | None = None) -> list[dict[str, Any]]:
    kw: dict[str, Any] = {"ExecutableUsers": ["all"]}
    if name is not None:
        kw["Filters"] = [{"Name": "name", "Values": [name]}]
    return list(ec2.describe_images(**kw)["Images"])


def find_image(ec2: Any, name: str) -> dict[str, Any]:
    """The image to run: an ami- id, else your image of that name, else the public one of that name."""
    if _AMI_RE.match(name):
        found = ec2.describe_images(ImageIds=[name])["Images"]
        if found:
            return dict(found[0])
    own = own_images(ec2, name)
    if own:
        return own[0]
    public = public_images(ec2, name)
    if len(public) == 1:
        return public[0]
    if len(public) > 1:
        ids = ", ".join(i["ImageId"] for i in public)
        raise CloudError(f"several public images are named {name!r} ({ids}); pass one of those ids as --name")
    raise CloudError(f"no image named {name!r}; `cloud-client --list` shows the images you can run")


def object_size(s3: Any, location: str) -> int | None:
    from botocore.exceptions import ClientError

    where = split_location(location or "")
    if where is None:
        return None
    try:
        return int(s3.head_object(Bucket=where[0], Key=where[1])["ContentLength"])
    except ClientError:
        return None


def list_images(conf: CloudConf, ec2: Any, s3: Any) -> None:
    own = {i["ImageId"]: i for i in own_images(ec2)}
    public = {i["ImageId"]: i for i in public_images(ec2)}
    rows = []
    for image_id, img in sorted({**public, **own}.items(), key=lambda kv: (kv[0] not in own, kv[1].get("Name", ""))):
        whose = ("own, public" if img.get("Public") else "own") if image_id in own else "public"
        rows.append([img.get("Name", ""), image_id, human(object_size(s3, img.get("ImageLocation", ""))), whose,
                     img.get("State", "")])
    if not rows:
        click.echo("(no images; upload one with cloud-client --transfer --sourcefile FILE)")
        return
    click.echo(table(["NAME", "IMAGE", "SIZE", "VISIBILITY", "STATE"], rows))


def transfer(conf: CloudConf, ec2: Any, s3: Any, source: Path, name: str | None, common: bool) -> None:
    """Upload (multipart for large files, with a progress bar), then RegisterImage; undo the upload if that fails."""
    from boto3.exceptions import S3UploadFailedError
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError
    from tqdm import tqdm

    name = name or source.name
    existing = own_images(ec2, name)
    if existing:
        raise CloudError(f"you already have an image named {name!r} ({existing[0]['ImageId']}); choose another "
                         "--name or delete it first with cloud-client --delete --name " + name)
    bucket, key = conf.image_bucket, image_key(conf, name, common)
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            raise CloudError(f"the image bucket {bucket!r} does not exist at {conf.s3_endpoint}; ask the administrator "
                             f"to create it, or set image_bucket in {conf.path} to a bucket of yours") from None
        raise
    size = source.stat().st_size
    config = TransferConfig(multipart_threshold=16 * MiB, multipart_chunksize=16 * MiB, max_concurrency=4)
    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"transfer {name}", file=sys.stderr,
              mininterval=0.5, leave=True) as bar:
        try:
            s3.upload_file(str(source), bucket, key, Config=config, Callback=bar.update)
        except S3UploadFailedError as exc:
            cause = exc.__context__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == "AccessDenied":
                raise CloudError(
                    f"the store refused writing {bucket}/{key} (AccessDenied); you may upload only under "
                    f"{conf.image_prefix}/{conf.user}/" + (", and --common needs an administrator" if common else "")
                ) from None
            raise
    try:
        image_id = ec2.register_image(Name=name, ImageLocation=f"{bucket}/{key}",
                                      Description=f"uploaded by cloud-client from {source.name}")["ImageId"]
        if common:
            ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]})
    except ClientError:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except ClientError:
            pass
        raise
    click.echo(f"transferred {source} ({human(size)}) to {bucket}/{key}; image {name} is {image_id}"
               + (" (public)" if common else ""))


def delete(conf: CloudConf, ec2: Any, s3: Any, name: str) -> None:
    from botocore.exceptions import ClientError

    mine = [i for i in own_images(ec2) if i.get("Name") == name or i["ImageId"] == name]
    if not mine:
        if public_images(ec2, name):
            raise CloudError(f"image {name!r} is a public image of another user; only its owner can delete it")
        raise CloudError(f"you have no image named {name!r}; `cloud-client --list` shows your images")
    img = mine[0]
    ec2.deregister_image(ImageId=img["ImageId"])
    where = split_location(img.get("ImageLocation", ""))
    note = ""
    if where is not None:
        try:
            s3.delete_object(Bucket=where[0], Key=where[1])
            note = f" and deleted {where[0]}/{where[1]}"
        except ClientError as exc:
            note = f"; its file {where[0]}/{where[1]} could not be deleted ({exc.response['Error'].get('Code')})"
    click.echo(f"deregistered {img.get('Name')} ({img['ImageId']}){note}")


# --------------------------------------------------------------------------- instances

def _tag(inst: dict[str, Any], key: str) -> str | None:
    for t in inst.get("Tags") or []:
        if t.get("Key") == key:
            return str(t.get("Value"))
    return None


def _image_names(ec2: Any, image_ids: set[str]) -> dict[str, str]:
    from botocore.exceptions import ClientError

    if not image_ids:
        return {}
    try:
        return {i["ImageId"]: i.get("Name", i["ImageId"]) for i in ec2.describe_images(ImageIds=sorted(image_ids))["Images"]}
    except ClientError:  # one of them was deregistered: ask one by one
        names = {}
        for iid in image_ids:
            try:
                found = ec2.describe_images(ImageIds=[iid])["Images"]
            except ClientError:
                continue
            if found:
                names[iid] = found[0].get("Name", iid)
        return names


def print_instances(ec2: Any, instances: list[dict[str, Any]]) -> None:
    names = _image_names(ec2, {i["ImageId"] for i in instances if i.get("ImageId")})
    rows = []
    for i in instances:
        addrs = ", ".join(a for a in (i.get("PublicIpAddress"), i.get("PrivateIpAddress")) if a) or "-"
        reason = (i.get("StateReason") or {}).get("Code", "") if i["State"]["Name"] in ("shutting-down", "terminated", "stopped") else ""
        image = i.get("ImageId", "")
        rows.append([i["InstanceId"], i["State"]["Name"], names.get(image, image), addrs,
                     _tag(i, "lease:end") or "-", reason])
    click.echo(table(["HANDLE", "STATE", "IMAGE", "ADDRESSES", "LEASE END", "REASON"], rows))


def _check_handle(handle: str) -> str:
    if not _INSTANCE_RE.match(handle):
        raise CloudError(f"{handle!r} is not an instance handle (i- and 8 or 17 hex digits); "
                         "`cloud-client --status` lists yours")
    return handle


def run(conf: CloudConf, ec2: Any, name: str, hours: float | None, count: int, instance_type: str | None,
        key_name: str | None) -> None:
    img = find_image(ec2, name)
    kw: dict[str, Any] = {"ImageId": img["ImageId"], "MinCount": count, "MaxCount": count}
    if instance_type:
        kw["InstanceType"] = instance_type
    if key_name:
        kw["KeyName"] = key_name
    if hours is not None:
        kw["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [{"Key": "lease:hours", "Value": f"{hours:g}"}]}]
    resp = ec2.run_instances(**kw)
    print_instances(ec2, list(resp["Instances"]))
    click.echo(f"launched {len(resp['Instances'])} instance(s) of {img.get('Name', img['ImageId'])}; "
               "`cloud-client --status` shows when they are running")


def status(conf: CloudConf, ec2: Any, handle: str | None) -> None:
    from botocore.exceptions import ClientError

    kw: dict[str, Any] = {}
    if handle:
        kw["InstanceIds"] = [_check_handle(handle)]
    try:
        pages = ec2.get_paginator("describe_instances").paginate(**kw)
        instances = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
    except ClientError as exc:
        if handle and exc.response["Error"].get("Code", "").startswith("InvalidInstanceID"):
            raise CloudError(f"you have no instance {handle}; `cloud-client --status` lists yours") from None
        raise
    if not instances:
        click.echo("(no instances; start one with cloud-client --run --name IMAGE)")
        return
    print_instances(ec2, instances)


def _instance(ec2: Any, handle: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    try:
        res = ec2.describe_instances(InstanceIds=[_check_handle(handle)])["Reservations"]
    except ClientError as exc:
        if exc.response["Error"].get("Code", "").startswith("InvalidInstanceID"):
            raise CloudError(f"you have no instance {handle}; `cloud-client --status` lists yours") from None
        raise
    if not res or not res[0]["Instances"]:
        raise CloudError(f"you have no instance {handle}; `cloud-client --status` lists yours")
    return dict(res[0]["Instances"][0])


def save(conf: CloudConf, ec2: Any, handle: str, newname: str | None) -> None:
    inst = _instance(ec2, handle)
    if inst["State"]["Name"] in ("shutting-down", "terminated"):
        raise CloudError(f"instance {handle} is {inst['State']['Name']}; only running or stopped instances can be saved")
    if not newname:
        base = _image_names(ec2, {inst["ImageId"]}).get(inst["ImageId"], handle)
        newname = f"{base}-saved-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    image_id = ec2.create_image(InstanceId=handle, Name=newname,
                                Description=f"saved by cloud-client from {handle}")["ImageId"]
    click.echo(f"saving {handle} as image {newname} ({image_id}); `cloud-client --list` shows when it is available")


def terminate(conf: CloudConf, ec2: Any, handle: str) -> None:
    _instance(ec2, handle)
    for change in ec2.terminate_instances(InstanceIds=[handle])["TerminatingInstances"]:
        click.echo(f"{change['InstanceId']}: {change['PreviousState']['Name']} -> {change['CurrentState']['Name']}")
