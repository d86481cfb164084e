"""A hostile tenant (bob) and the anonymous caller against the Describe paths that share their
checks: DescribeVolumes / DescribeVolumeStatus / DescribeVolumesModifications (one id check, id and
NextToken narrowing, not-found check and paged answer), DescribeImages' Owner.N and
DescribeSnapshots' OwnerId.N (one owners condition), and the authentication failures of CloudWatch
and STS (one table of codes).

Alice owns seven volumes (one being modified), a private snapshot and a private image made from it;
bob owns one volume. Bob must not see, page through, filter to or learn the existence of any of
hers by ids, NextTokens (hers, tampered, of another operation), owner values or MaxResults edges.
"""

from __future__ import annotations

import datetime
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import botocore.auth
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.functional.tools import wait_for
from tests.security import raw_answer, refused
from tests.security.conftest import Tenant, World, unique

BAD_TOKEN = {"InvalidParameterValue", "InvalidNextToken"}
VOLUME_NF = {"InvalidVolume.NotFound"}
SNAP_NF = {"InvalidSnapshot.NotFound"}
IMAGE_NF = {"InvalidAMIID.NotFound"}
FAST = {"Delay": 1, "MaxAttempts": 60}


@dataclass
class Hers:
    w: World
    volumes: list[str]  # alice's, sorted
    modified: str  # one of them, with a modification
    snapshot: str  # private
    image: str  # private, from the snapshot
    account: str  # alice's account id
    bobs: str  # bob's volume


def _account(t: Tenant) -> str:
    sts = t.client("sts")
    try:
        return str(sts.get_caller_identity()["Account"])
    finally:
        sts.close()


@pytest.fixture(scope="module")
def hers(world: World) -> Iterator[Hers]:
    ec2, w = world.alice.ec2, world
    zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
    tagged = [{"ResourceType": "volume", "Tags": [{"Key": "secret", "Value": "alice"}]}]
    vols = sorted(ec2.create_volume(AvailabilityZone=zone, Size=1, TagSpecifications=tagged)["VolumeId"]
                  for _ in range(7))
    ec2.get_waiter("volume_available").wait(VolumeIds=vols, WaiterConfig=FAST)
    ec2.modify_volume(VolumeId=vols[0], Size=2)
    snap = ec2.create_snapshot(VolumeId=vols[1])["SnapshotId"]
    wait_for("alice's snapshot completed",
             lambda: ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"] == "completed", timeout=90)
    image = ec2.register_image(Name=unique("alice-private"), RootDeviceName="/dev/sda1",
                               BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": snap}}])["ImageId"]
    bobs = w.bob.ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    w.bob.ec2.get_waiter("volume_available").wait(VolumeIds=[bobs], WaiterConfig=FAST)
    yield Hers(w, vols, vols[0], snap, image, _account(w.alice), bobs)
    ec2.deregister_image(ImageId=image)
    ec2.delete_snapshot(SnapshotId=snap)
    wait_for("alice's modifications done", lambda: all(
        m["ModificationState"] not in ("modifying", "optimizing")
        for m in ec2.describe_volumes_modifications()["VolumesModifications"]), timeout=120)
    for v in vols:
        ec2.delete_volume(VolumeId=v)
    w.bob.ec2.delete_volume(VolumeId=bobs)


def flipped(token: str, at: int = 10) -> str:
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1:]


# --------------------------------------------------------------------------- volumes by id


@pytest.mark.parametrize("op", ["describe_volumes", "describe_volume_status", "describe_volumes_modifications"])
def test_her_volume_ids_are_not_found_for_bob(hers: Hers, op: str) -> None:
    bob = getattr(hers.w.bob.ec2, op)
    for vid in (hers.modified, hers.volumes[-1]):
        # alone, beside one of his own, and with a filter that would let any volume through
        # (his own unmodified volume first would be his modification's not-found: that is his to know)
        mine_first = [[hers.bobs, vid]] if op != "describe_volumes_modifications" else []
        for ids in ([vid], [vid, hers.bobs], *mine_first):
            _, status, message = refused(bob, VolumeIds=ids, codes=VOLUME_NF)
            assert status == 400 and vid in message, message
        refused(bob, VolumeIds=[vid], Filters=[{"Name": "volume-id", "Values": [vid]}], codes=VOLUME_NF)
    # alice sees her own the same way (the check is the owner's, not a blanket refusal)
    assert getattr(hers.w.alice.ec2, op)(VolumeIds=[hers.modified])


def test_her_modification_is_not_told_apart_from_a_missing_volume(hers: Hers) -> None:
    """Bob asking for the modification of her volume learns the volume is not found, not that its
    modification is (which would tell him it exists); alice asking for an unmodified volume of hers
    gets the modification's own not-found."""
    code, _, _ = refused(hers.w.bob.ec2.describe_volumes_modifications, VolumeIds=[hers.volumes[-1]])
    assert code == "InvalidVolume.NotFound"
    refused(hers.w.alice.ec2.describe_volumes_modifications, VolumeIds=[hers.volumes[-1]],
            codes={"InvalidVolumeModification.NotFound"})


@pytest.mark.parametrize("op", ["describe_volumes", "describe_volume_status", "describe_volumes_modifications"])
def test_filters_naming_her_volumes_give_bob_nothing(hers: Hers, op: str) -> None:
    bob = getattr(hers.w.bob.ec2, op)
    member = {"describe_volumes": "Volumes", "describe_volume_status": "VolumeStatuses",
              "describe_volumes_modifications": "VolumesModifications"}[op]
    flt = [{"Name": "volume-id", "Values": hers.volumes}]
    seen = {v["VolumeId"] for v in bob(Filters=flt)[member]} | {v["VolumeId"] for v in bob()[member]}
    assert not seen & set(hers.volumes), seen
    if op == "describe_volumes":
        assert bob(Filters=[{"Name": "tag:secret", "Values": ["alice"]}])["Volumes"] == []


# --------------------------------------------------------------------------- NextToken


@pytest.mark.parametrize("op,member", [("describe_volumes", "Volumes"), ("describe_volume_status", "VolumeStatuses")])
def test_her_volume_tokens_do_not_page_for_bob(hers: Hers, op: str, member: str) -> None:
    alice, bob = getattr(hers.w.alice.ec2, op), getattr(hers.w.bob.ec2, op)
    flt = [{"Name": "volume-id", "Values": hers.volumes}]  # the server serves other modules' volumes of hers too
    first = alice(MaxResults=5, Filters=flt)
    token = first["NextToken"]
    assert [v["VolumeId"] for v in first[member]] == hers.volumes[:5]
    for t in (token, flipped(token), token[:-2], token + "AA", "", "x" * 40):
        if not t:
            continue
        _, status, message = refused(bob, MaxResults=5, NextToken=t, Filters=flt, codes=BAD_TOKEN)
        assert status == 400 and "NextToken" in message
    # hers, tampered or cut: refused for her too; with other filters or on the other operation: refused
    for t in (flipped(token), token[:-2]):
        refused(alice, MaxResults=5, NextToken=t, Filters=flt, codes=BAD_TOKEN)
    refused(alice, MaxResults=5, NextToken=token, Filters=[{"Name": "volume-id", "Values": hers.volumes[:6]}],
            codes=BAD_TOKEN)
    other = "describe_volume_status" if op == "describe_volumes" else "describe_volumes"
    refused(getattr(hers.w.alice.ec2, other), MaxResults=5, NextToken=token, Filters=flt, codes=BAD_TOKEN)
    # unchanged, with the same filters, it pages on for her
    rest = alice(MaxResults=5, NextToken=token, Filters=flt)
    assert [v["VolumeId"] for v in rest[member]] == hers.volumes[5:]


def test_modification_tokens_do_not_page_for_bob(hers: Hers) -> None:
    alice, bob = hers.w.alice.ec2, hers.w.bob.ec2
    for v in hers.volumes[2:7]:
        alice.modify_volume(VolumeId=v, Size=2)
    first = alice.describe_volumes_modifications(MaxResults=5)
    token = first["NextToken"]
    for t in (token, flipped(token), token[:-2]):
        refused(bob.describe_volumes_modifications, MaxResults=5, NextToken=t, codes=BAD_TOKEN)
    refused(alice.describe_volumes_modifications, MaxResults=5, NextToken=token,
            Filters=[{"Name": "modification-state", "Values": ["modifying"]}], codes=BAD_TOKEN)
    refused(alice.describe_volumes_modifications, NextToken=token, VolumeIds=[hers.volumes[-1]], codes=BAD_TOKEN)
    rest = alice.describe_volumes_modifications(MaxResults=5, NextToken=token)
    assert {m["VolumeId"] for m in first["VolumesModifications"] + rest["VolumesModifications"]} >= {
        hers.volumes[0], *hers.volumes[2:7]}


@pytest.mark.parametrize("op", ["describe_volumes", "describe_volume_status", "describe_volumes_modifications"])
def test_forged_token_with_her_ids_is_refused(hers: Hers, op: str) -> None:
    """A token made up by bob, or one of alice's, sent with her ids (no MaxResults): refused."""
    call = getattr(hers.w.bob.ec2, op)
    page = getattr(hers.w.alice.ec2, op)(MaxResults=5)
    for t in ["A" * 43, "AAAA", "%%%", *([page["NextToken"]] if "NextToken" in page else [])]:
        refused(call, VolumeIds=[hers.volumes[-1]], NextToken=t, codes=BAD_TOKEN)


# --------------------------------------------------------------------------- MaxResults


@pytest.mark.parametrize("op,high", [("describe_volumes", 500), ("describe_volume_status", 1000),
                                     ("describe_volumes_modifications", 500)])
def test_max_results_edges(hers: Hers, op: str, high: int) -> None:
    bob = getattr(hers.w.bob.ec2, op)
    for bad in (0, 4, high + 1, -1, 2**31 - 1):
        _, status, message = refused(bob, MaxResults=bad, codes={"InvalidParameterValue"})
        assert "MaxResults" in message
    for good in (5, high):
        out = bob(MaxResults=good)
        assert "NextToken" not in out
        assert not {v["VolumeId"] for v in next(iter(x for k, x in out.items() if isinstance(x, list)))} & set(
            hers.volumes)
    if op != "describe_volumes_modifications":
        refused(bob, MaxResults=5, VolumeIds=[hers.volumes[0]], codes={"InvalidParameterCombination"})


# --------------------------------------------------------------------------- owners


def test_describe_images_owners(hers: Hers) -> None:
    bob, alice = hers.w.bob.ec2, hers.w.alice.ec2
    refused(bob.describe_images, ImageIds=[hers.image], codes=IMAGE_NF)
    for owners in ([hers.account], ["self"], ["amazon"], ["aws-marketplace"], ["self", hers.account],
                   [hers.account, "amazon"]):
        seen = {i["ImageId"] for i in bob.describe_images(Owners=owners)["Images"]}
        assert hers.image not in seen, owners
        refused(bob.describe_images, Owners=owners, ImageIds=[hers.image], codes=IMAGE_NF)
    for owners in (["all"], [hers.w.alice.name], ["12345678901"], ["1234567890123"], [""], ["self", "alice"]):
        _, status, message = refused(bob.describe_images, Owners=owners, codes={"InvalidUserID.Malformed"})
        assert status == 400 and "12-digit" in message
    assert [i["ImageId"] for i in alice.describe_images(Owners=["self"], ImageIds=[hers.image])["Images"]] == [
        hers.image]
    assert hers.image in {i["ImageId"] for i in alice.describe_images(Owners=[hers.account])["Images"]}
    flt = [{"Name": "image-id", "Values": [hers.image]}]
    assert bob.describe_images(Filters=flt)["Images"] == []
    assert bob.describe_images(Filters=flt, Owners=[hers.account])["Images"] == []
    assert bob.describe_images(ExecutableUsers=[hers.account], Filters=flt)["Images"] == []


def test_describe_images_tokens(hers: Hers) -> None:
    bob, alice = hers.w.bob.ec2, hers.w.alice.ec2
    page = alice.describe_images(MaxResults=5)
    if "NextToken" in page:
        refused(bob.describe_images, MaxResults=5, NextToken=page["NextToken"], codes=BAD_TOKEN)
    token = bob.describe_images(MaxResults=5).get("NextToken")
    if token:
        refused(bob.describe_images, MaxResults=5, NextToken=token, Owners=[hers.account], codes=BAD_TOKEN)


def test_describe_snapshots_owners(hers: Hers) -> None:
    bob, alice = hers.w.bob.ec2, hers.w.alice.ec2
    refused(bob.describe_snapshots, SnapshotIds=[hers.snapshot], codes=SNAP_NF)
    for owners in ([hers.account], ["self"], ["amazon"], ["self", hers.account]):
        seen = {s["SnapshotId"] for s in bob.describe_snapshots(OwnerIds=owners)["Snapshots"]}
        assert hers.snapshot not in seen, owners
        refused(bob.describe_snapshots, OwnerIds=owners, SnapshotIds=[hers.snapshot], codes=SNAP_NF)
    for owners in (["all"], [hers.w.alice.name], ["12345678901"], [""]):
        _, status, message = refused(bob.describe_snapshots, OwnerIds=owners, codes={"InvalidUserID.Malformed"})
        assert status == 400 and "12-digit" in message
    for users in ([hers.account], ["self"], ["all"]):
        seen = {s["SnapshotId"] for s in bob.describe_snapshots(RestorableByUserIds=users)["Snapshots"]}
        assert hers.snapshot not in seen, users
    assert hers.snapshot in {s["SnapshotId"] for s in alice.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert hers.snapshot in {s["SnapshotId"] for s in alice.describe_snapshots(OwnerIds=[hers.account])["Snapshots"]}
    flt = [{"Name": "snapshot-id", "Values": [hers.snapshot]}]
    assert bob.describe_snapshots(Filters=flt)["Snapshots"] == []
    assert bob.describe_snapshots(Filters=flt, OwnerIds=[hers.account])["Snapshots"] == []
    assert bob.describe_snapshots(Filters=[{"Name": "owner-id", "Values": [hers.account]}])["Snapshots"] == []


def test_snapshot_token_is_hers(hers: Hers) -> None:
    bob, alice = hers.w.bob.ec2, hers.w.alice.ec2
    extra = [alice.create_snapshot(VolumeId=v)["SnapshotId"] for v in hers.volumes[2:7]]
    try:
        page = alice.describe_snapshots(OwnerIds=["self"], MaxResults=5)
        token = page["NextToken"]
        for t in (token, flipped(token), token[:-2]):
            refused(bob.describe_snapshots, OwnerIds=["self"], MaxResults=5, NextToken=t, codes=BAD_TOKEN)
        refused(bob.describe_snapshots, OwnerIds=[hers.account], MaxResults=5, NextToken=token, codes=BAD_TOKEN)
        refused(alice.describe_snapshots, OwnerIds=[hers.account], MaxResults=5, NextToken=token, codes=BAD_TOKEN)
        assert alice.describe_snapshots(OwnerIds=["self"], MaxResults=5, NextToken=token)["Snapshots"]
    finally:
        for sid in extra:
            wait_for("snapshot done", lambda sid=sid: alice.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0][
                "State"] != "pending", timeout=90)
            alice.delete_snapshot(SnapshotId=sid)


# --------------------------------------------------------------------------- the anonymous caller


def test_anonymous_is_refused(hers: Hers) -> None:
    anon = hers.w.anon.ec2
    for call, kw in ((anon.describe_volumes, {"VolumeIds": [hers.volumes[0]]}),
                     (anon.describe_volume_status, {}), (anon.describe_volumes_modifications, {}),
                     (anon.describe_images, {"Owners": [hers.account]}),
                     (anon.describe_snapshots, {"OwnerIds": [hers.account]}),
                     (anon.describe_snapshots, {"SnapshotIds": [hers.snapshot]})):
        code, status, _ = refused(call, **kw)
        assert status in (401, 403) and code in ("AuthFailure", "MissingAuthenticationToken"), (code, status)


# --------------------------------------------------------------------------- CloudWatch and STS signatures


#: what CloudWatch and STS answered for each kind of authentication failure before their tables
#: were merged (26f6ef9: ec2gw/aws/sigv4.py, _CODES["monitoring"] and _CODES["sts"])
QUERY_SERVICE_FAILURES = {
    "missing": ("MissingAuthenticationToken", 403),
    "signature": ("SignatureDoesNotMatch", 403),
    "unknown_key": ("InvalidClientTokenId", 403),
    "malformed": ("IncompleteSignature", 400),
    "skew": ("RequestExpired", 400),
    "unsupported": ("IncompleteSignature", 400),
    "expired": ("RequestExpired", 400),
    "malformed_query": ("IncompleteSignature", 400),
}

_BODIES = {"sts": "Action=GetCallerIdentity&Version=2011-06-15",
           "monitoring": "Action=ListMetrics&Version=2010-08-01"}


def _signed(url: str, service: str, access: str, secret: str, when: datetime.datetime | None = None) -> dict[str, str]:
    req = AWSRequest(method="POST", url=url + "/", data=_BODIES[service],
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    auth = SigV4Auth(Credentials(access, secret), service, "us-east-1")
    if when is None:
        auth.add_auth(req)
    else:  # signed by a client whose clock is off: botocore reads the time through this function
        clock = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: when.replace(tzinfo=None)  # type: ignore[assignment]
        try:
            auth.add_auth(req)
        finally:
            botocore.auth.get_current_datetime = clock
    return dict(req.headers.items())


def _presigned(url: str, service: str, access: str, secret: str, expires: int,
               when: datetime.datetime) -> str:
    """A presigned URL (the action in the query) signed at ``when``, good for ``expires`` seconds."""
    req = AWSRequest(method="GET", url=url + "/?" + _BODIES[service])
    clock = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: when.replace(tzinfo=None)  # type: ignore[assignment]
    try:
        SigV4QueryAuth(Credentials(access, secret), service, "us-east-1", expires=expires).add_auth(req)
    finally:
        botocore.auth.get_current_datetime = clock
    return str(req.url)


def _post(url: str, service: str, headers: dict[str, str]) -> tuple[int, str]:
    return raw_answer(urllib.request.Request(url + "/", data=_BODIES[service].encode(), headers=headers,
                                             method="POST"))


def _code(body: str) -> str:
    m = re.search(r"<Code>([^<]+)</Code>", body)
    return m.group(1) if m else body[:200]


@pytest.mark.parametrize("service", ["sts", "monitoring"])
def test_query_service_authentication_failures_keep_their_codes(world: World, service: str) -> None:
    url, a = world.servers[0].ec2_url, world.alice
    base = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    good = _signed(url, service, a.access_key, a.secret_key)
    assert _post(url, service, good)[0] == 200
    sig = good["Authorization"]
    cases = {
        "missing": base,
        "signature": {**good, "Authorization": sig[:-4] + ("0000" if not sig.endswith("0000") else "1111")},
        "unknown_key": _signed(url, service, "AKIDNOSUCHKEY0000000", a.secret_key),
        "malformed": {**good, "Authorization": sig.split(", Signature=")[0]},
        "skew": _signed(url, service, a.access_key, a.secret_key,
                        datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)),
    }
    cases["unsupported"] = {**good, "Authorization": sig.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512", 1)}
    for kind, headers in cases.items():
        status, body = _post(url, service, headers)
        assert (_code(body), status) == QUERY_SERVICE_FAILURES[kind], (kind, status, body[:300])
    now = datetime.datetime.now(datetime.UTC)
    fresh = _presigned(url, service, a.access_key, a.secret_key, 300, now)
    assert raw_answer(fresh)[0] == 200, raw_answer(fresh)
    stale = _presigned(url, service, a.access_key, a.secret_key, 60, now - datetime.timedelta(minutes=10))
    bad_expiry = fresh.replace("X-Amz-Expires=300", "X-Amz-Expires=soon")
    assert bad_expiry != fresh
    for kind, presigned in (("expired", stale), ("malformed_query", bad_expiry)):
        status, body = raw_answer(presigned)
        assert (_code(body), status) == QUERY_SERVICE_FAILURES[kind], (kind, status, body[:300])
    # cut off anywhere inside the Credential or the header list: still IncompleteSignature, never a 500
    for cut in (len("AWS4-HMAC-SHA256 "), sig.index("/") + 1, sig.index("SignedHeaders=") + 3, len(sig) - 70):
        status, body = _post(url, service, {**good, "Authorization": sig[:cut]})
        assert 400 <= status < 500 and _code(body) in ("IncompleteSignature", "SignatureDoesNotMatch"), (
            cut, status, body[:300])


# --------------------------------------------------------------------------- odd input: 4xx, never a 500


@pytest.mark.parametrize("op", ["describe_volumes", "describe_volume_status", "describe_volumes_modifications"])
def test_odd_ids_and_tokens_are_refused_as_bad_input(hers: Hers, op: str) -> None:
    bob = getattr(hers.w.bob.ec2, op)
    for ids in (["vol-"], ["vol-zz"], ["../" + hers.volumes[0]], [hers.volumes[0] + "%"], [hers.volumes[0].upper()],
                ["vol-" + "a" * 1000], [""], [f"vol-{i:017x}" for i in range(1001)]):
        code, _, _ = refused(bob, VolumeIds=ids)
        assert code in {"InvalidVolume.Malformed", "InvalidVolumeID.Malformed", "InvalidParameterValue",
                        "InvalidVolume.NotFound"}, (ids[:2], code)
    for token in ("x" * 10000, "é" * 20, "=" * 8, "A" * 16 + "=="):
        refused(bob, NextToken=token, MaxResults=5, codes=BAD_TOKEN)


def test_odd_owner_lists_are_refused_as_bad_input(hers: Hers) -> None:
    bob = hers.w.bob.ec2
    many = [hers.account] * 200
    assert hers.image not in {i["ImageId"] for i in bob.describe_images(Owners=many)["Images"]}
    assert hers.snapshot not in {s["SnapshotId"] for s in bob.describe_snapshots(OwnerIds=many)["Snapshots"]}
    for odd in ("self ", " " + hers.account, "SELF", "Amazon", "0" * 13, "%", "*"):
        refused(bob.describe_images, Owners=[odd], codes={"InvalidUserID.Malformed"})
        refused(bob.describe_snapshots, OwnerIds=[odd], codes={"InvalidUserID.Malformed"})


def test_an_account_id_is_twelve_ascii_digits_and_nothing_more(hers: Hers) -> None:
    """An account id with a newline after it, or written in other digits, is malformed wherever an
    account id is taken (Owner.N, OwnerId.N, ExecutableBy.N, RestorableBy.N): it used to pass the
    check (a regular expression ending in `$`, with `\\d`) and be looked up as if it were an id."""
    bob = hers.w.bob.ec2
    other_digits = hers.account.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))  # Arabic-Indic
    for odd in (hers.account + "\n", other_digits, "0" * 12 + "\n"):
        for call, param in ((bob.describe_images, "Owners"), (bob.describe_images, "ExecutableUsers"),
                            (bob.describe_snapshots, "OwnerIds"), (bob.describe_snapshots, "RestorableByUserIds")):
            _, status, message = refused(call, **{param: [odd]}, codes={"InvalidUserID.Malformed"})
            assert status == 400 and "12-digit" in message, (param, message)
    # the id itself is still taken
    assert bob.describe_images(Owners=[hers.account])["Images"] == []
    assert hers.w.alice.ec2.describe_images(Owners=[hers.account], ImageIds=[hers.image])["Images"]
