"""Apache libcloud, unmodified, against a live server: its compute drivers (Nimbus, Eucalyptus, EC2
with SigV2 and SigV4) and its storage drivers (S3 pointed at the host and port, MinIO)."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from libcloud.compute.drivers.ec2 import EC2NodeDriver, EucNodeDriver, NimbusNodeDriver
from libcloud.compute.types import NodeState
from libcloud.storage.drivers.minio import MinIOStorageDriver
from libcloud.storage.drivers.s3 import S3StorageDriver

from backends.libvirt.testing import make_test_node_uri
from ec2gw.app import load_providers
from ec2gw.config import DEFAULT_INSTANCE_TYPES
from tests.live import Creds, LiveServer
from tests.member_order import order_problems


def public_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " libcloud@test"


@pytest.fixture(scope="module")
def carol(server: LiveServer) -> Creds:
    return server.make_user("libcloud-carol")  # the session server is shared: a name no other module uses


@pytest.fixture(scope="module")
def image_id(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("img") / "libcloud.img"
    path.write_bytes(b"\0" * (1 << 20))
    out = server.cli("admin", "image", "import", "libcloud-image", str(path), "--public", "--json")
    return str(json.loads(out.stdout)["image_id"])


# --------------------------------------------------------------------------- compute


def compute_driver(kind: str, server: LiveServer, creds: Creds) -> Any:
    """libcloud's drivers as their users write them: pointed at the service's host and port."""
    where: dict[str, Any] = {"secure": False, "host": "127.0.0.1", "port": server.ec2_port}
    if kind == "nimbus":
        return NimbusNodeDriver(creds.access_key, creds.secret_key, **where)
    if kind == "eucalyptus":
        return EucNodeDriver(creds.access_key, creds.secret_key, **where)
    return EC2NodeDriver(creds.access_key, creds.secret_key, signature_version=kind[-1], **where)


COMPUTE_DRIVERS = ["nimbus", "eucalyptus", "ec2-sigv2", "ec2-sigv4"]


def _wait_state(driver: Any, node_id: str, state: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        node = {n.id: n for n in driver.list_nodes(ex_node_ids=[node_id])}.get(node_id)
        if node is not None and node.state == state:
            return node
        if time.monotonic() > deadline:
            raise AssertionError(f"{node_id} is {node and node.state}, not {state}, after {timeout} s")
        time.sleep(0.2)


@pytest.mark.parametrize("kind", COMPUTE_DRIVERS)
def test_compute_walk(server: LiveServer, kind: str, image_id: str) -> None:
    """images, sizes, locations, key pairs, create, list, reboot, destroy, each through libcloud's own call."""
    creds = server.make_user(f"lc-{kind}")
    driver = compute_driver(kind, server, creds)

    images = driver.list_images()
    assert image_id in [i.id for i in images]
    assert driver.get_image(image_id).name == "libcloud-image"

    sizes = {s.id: s for s in driver.list_sizes()}
    if kind == "eucalyptus":  # asked from the service (DescribeInstanceTypes in Eucalyptus's form)
        assert set(sizes) == set(DEFAULT_INSTANCE_TYPES)
        assert (sizes["m1.large"].ram, sizes["m1.large"].extra["cpu"], sizes["m1.large"].disk) == (7680, 2, 0)
    size = sizes["m1.small"]  # libcloud's own Nimbus and EC2 tables hold it too

    if kind == "eucalyptus":  # libcloud's Eucalyptus driver has no list_locations
        zones = [z.name for z in driver.ex_list_availability_zones()]
    else:  # the Nimbus driver filters on its own region name, "nimbus"
        zones = [loc.name for loc in driver.list_locations()]
    assert zones == ["us-east-1a"]

    key = driver.create_key_pair(f"made-{kind}")
    assert key.private_key.startswith("-----BEGIN")
    imported = driver.import_key_pair_from_string(f"imported-{kind}", public_key())
    assert sorted(k.name for k in driver.list_key_pairs()) == sorted([key.name, imported.name])
    assert driver.get_key_pair(imported.name).fingerprint == imported.fingerprint

    location = None if kind == "eucalyptus" else driver.list_locations()[0]
    node = driver.create_node(name=f"web-{kind}", image=driver.get_image(image_id), size=size,
                              location=location, ex_keyname=key.name)
    assert node.id.startswith("i-") and node.extra["instance_type"] == "m1.small"
    assert node.extra["key_name"] == key.name

    running = _wait_state(driver, node.id, NodeState.RUNNING)
    assert running.private_ips and running.extra["availability"] == "us-east-1a"
    if kind != "nimbus":  # libcloud's Nimbus driver skips CreateTags: it tags nothing
        assert running.name == f"web-{kind}"
    assert node.id in [n.id for n in driver.list_nodes()]

    assert driver.reboot_node(running) is True
    assert driver.destroy_node(running) is True  # TerminateInstances: currentState comes first
    _wait_state(driver, node.id, NodeState.TERMINATED)

    assert driver.delete_key_pair(key) and driver.delete_key_pair(imported)
    assert driver.list_key_pairs() == []


# --------------------------------------------------------------------------- storage


STORAGE_DRIVERS = {"s3": S3StorageDriver, "minio": MinIOStorageDriver}


@pytest.mark.parametrize("kind", sorted(STORAGE_DRIVERS))
def test_storage_walk(server: LiveServer, carol: Creds, kind: str, tmp_path: Any) -> None:
    """create container, upload (stream and file), list, download, delete objects, delete container."""
    driver = STORAGE_DRIVERS[kind](carol.access_key, carol.secret_key, secure=False, host="127.0.0.1",
                                   port=server.s3_port)
    container = driver.create_container(f"libcloud-{kind}")
    assert container.name in [c.name for c in driver.list_containers()]

    streamed = driver.upload_object_via_stream(io.BytesIO(b"stream " * 5000), container, "dir/streamed.txt")
    assert streamed.size == 35000
    path = tmp_path / "file.bin"
    path.write_bytes(bytes(range(256)) * 64)
    uploaded = driver.upload_object(str(path), container, "dir/file.bin")
    assert uploaded.size == 16384
    assert sorted(o.name for o in driver.list_container_objects(container)) == ["dir/file.bin", "dir/streamed.txt"]
    assert [o.name for o in driver.list_container_objects(container, prefix="dir/f")] == ["dir/file.bin"]

    got = driver.get_object(container.name, "dir/file.bin")
    assert got.size == 16384
    assert b"".join(driver.download_object_as_stream(got)) == path.read_bytes()
    target = tmp_path / "back.txt"
    assert driver.download_object(driver.get_object(container.name, "dir/streamed.txt"), str(target))
    assert target.read_bytes() == b"stream " * 5000

    assert driver.delete_object(streamed) and driver.delete_object(uploaded)
    assert list(driver.list_container_objects(container)) == []
    assert driver.delete_container(container)
    assert container.name not in [c.name for c in driver.list_containers()]


def _signed_with_empty_region(url: str, creds: Creds, service: str, method: str, body: bytes,
                              headers: dict[str, str]) -> tuple[int, bytes]:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(creds.access_key, creds.secret_key), service, "").add_auth(request)
    assert "//" + service + "/aws4_request" in request.headers["Authorization"]
    prepared = urllib.request.Request(url, data=body or None, method=method, headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(prepared, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_an_empty_region_in_the_credential_scope_is_accepted_on_both_endpoints(server: LiveServer, carol: Creds) -> None:
    form = b"Action=DescribeRegions&Version=2016-11-15"
    status, body = _signed_with_empty_region(server.ec2_url + "/", carol, "ec2", "POST", form,
                                             {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and b"<regionName>us-east-1</regionName>" in body, body
    status, body = _signed_with_empty_region(server.s3_url + "/", carol, "s3", "GET", b"",
                                             {"x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})
    assert status == 200 and b"ListAllMyBucketsResult" in body, body


# --------------------------------------------------------------------------- member order, every action


def test_every_served_action_answers_members_in_model_order(server: LiveServer, image_id: str) -> None:
    """Each action the service serves, called through boto3; each raw answer is checked against
    botocore's model: every structure's members in the model's order, as AWS writes them."""
    creds = server.make_user("order-walk")
    ec2 = server.client("ec2", creds)
    seen: dict[str, list[str]] = {}

    def check(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        if response_dict["status_code"] == 200:
            seen.setdefault(operation_model.name, []).extend(order_problems(operation_model, response_dict["body"]))

    ec2.meta.events.register("before-parse.ec2.*", check)
    ec2.describe_regions()
    ec2.describe_availability_zones()
    ec2.describe_account_attributes()
    ec2.describe_instance_types()
    ec2.describe_security_groups()
    ec2.describe_addresses()
    ec2.create_key_pair(KeyName="order-made")
    ec2.import_key_pair(KeyName="order-imported", PublicKeyMaterial=public_key().encode())
    ec2.describe_key_pairs()
    ec2.describe_images(ImageIds=[image_id])
    ec2.describe_image_attribute(ImageId=image_id, Attribute="description")
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=image_id, MinCount=2, MaxCount=2, InstanceType="t2.micro", KeyName="order-made",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "order"}]}])["Instances"]]
    fast = {"Delay": 1, "MaxAttempts": 60}
    ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=fast)
    ec2.describe_instances(InstanceIds=ids)
    ec2.describe_instance_status(InstanceIds=ids)
    ec2.monitor_instances(InstanceIds=ids[:1])
    ec2.unmonitor_instances(InstanceIds=ids[:1])
    ec2.describe_vpcs()
    ec2.describe_subnets()
    ec2.describe_network_interfaces()
    pool_file = server.data_dir / "order-public.pool"
    pool_file.write_text("none\norder0 203.0.113.10 203.0.113.1 203.0.113.255 255.255.255.0\n")
    server.cli("admin", "pool", "add", "order-public", str(pool_file), "--network-mode", "isolated", "--public")
    eip = ec2.allocate_address(Domain="vpc")
    assoc = ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=ids[0])["AssociationId"]
    ec2.describe_addresses()
    ec2.describe_instances(InstanceIds=ids[:1])
    ec2.describe_network_interfaces()
    ec2.disassociate_address(AssociationId=assoc)
    ec2.release_address(AllocationId=eip["AllocationId"])
    eni = ec2.describe_instances(InstanceIds=ids[:1])["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni["NetworkInterfaceId"], SourceDestCheck={"Value": True})
    group = ec2.create_security_group(GroupName="order-group", Description="member order")["GroupId"]
    rule = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.0/24"}]}]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=rule)
    ec2.authorize_security_group_egress(GroupId=group, IpPermissions=rule)
    ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])
    ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=rule)
    ec2.revoke_security_group_egress(GroupId=group, IpPermissions=rule)
    ec2.delete_security_group(GroupId=group)
    for refused_call, kwargs in ((ec2.create_vpc, {"CidrBlock": "10.0.0.0/16"}),
                                 (ec2.delete_vpc, {"VpcId": ec2.describe_vpcs()["Vpcs"][0]["VpcId"]}),
                                 (ec2.create_subnet, {"VpcId": ec2.describe_vpcs()["Vpcs"][0]["VpcId"]}),
                                 (ec2.delete_subnet, {"SubnetId": ec2.describe_subnets()["Subnets"][0]["SubnetId"]})):
        assert _code(refused_call, **kwargs) == "UnsupportedOperation"
    zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
    vol = ec2.create_volume(AvailabilityZone=zone, Size=1, TagSpecifications=[
        {"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "order"}]}])["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=fast)
    ec2.attach_volume(VolumeId=vol, InstanceId=ids[1], Device="/dev/sdf")
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[vol], WaiterConfig=fast)
    ec2.describe_volumes(VolumeIds=[vol])
    ec2.describe_volume_status(VolumeIds=[vol])
    ec2.modify_volume_attribute(VolumeId=vol, AutoEnableIO={"Value": True})
    ec2.describe_volume_attribute(VolumeId=vol, Attribute="autoEnableIO")
    ec2.modify_volume(VolumeId=vol, VolumeType="gp3")
    ec2.describe_volumes_modifications(VolumeIds=[vol])
    ec2.detach_volume(VolumeId=vol)
    ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=fast)
    snap = ec2.create_snapshot(VolumeId=vol, Description="order",
                               TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "Name", "Value": "order"}]}])
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap["SnapshotId"]], WaiterConfig=fast)
    ec2.describe_snapshots(SnapshotIds=[snap["SnapshotId"]])
    ec2.modify_snapshot_attribute(SnapshotId=snap["SnapshotId"], Attribute="createVolumePermission",
                                  OperationType="add", GroupNames=["all"])
    ec2.describe_snapshot_attribute(SnapshotId=snap["SnapshotId"], Attribute="createVolumePermission")
    ec2.reset_snapshot_attribute(SnapshotId=snap["SnapshotId"], Attribute="createVolumePermission")
    ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])
    ec2.delete_volume(VolumeId=vol)
    ec2.describe_instance_attribute(InstanceId=ids[0], Attribute="instanceType")
    ec2.get_console_output(InstanceId=ids[0])
    ec2.create_tags(Resources=ids, Tags=[{"Key": "tier", "Value": "web"}])
    ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": ids}])
    ec2.delete_tags(Resources=ids, Tags=[{"Key": "tier"}])
    ec2.reboot_instances(InstanceIds=ids)
    ec2.stop_instances(InstanceIds=ids[:1])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=ids[:1], WaiterConfig=fast)
    ec2.modify_instance_attribute(InstanceId=ids[0], InstanceType={"Value": "t2.small"})
    saved = ec2.create_image(InstanceId=ids[0], Name="order-saved")["ImageId"]
    ec2.modify_image_attribute(ImageId=saved, Description={"Value": "saved"})
    ec2.start_instances(InstanceIds=ids[:1])
    ec2.terminate_instances(InstanceIds=ids)
    s3 = server.client("s3", creds)
    s3.create_bucket(Bucket="order-walk")
    s3.put_object(Bucket="order-walk", Key="disk.img", Body=b"\0" * 4096)
    registered = ec2.register_image(Name="order-registered", ImageLocation="order-walk/disk.img")["ImageId"]
    ec2.deregister_image(ImageId=registered)
    ec2.delete_key_pair(KeyName="order-made")

    # VPCs and subnets are the operator's: these always answer UnsupportedOperation (called above)
    always_refused = {"CreateVpc", "DeleteVpc", "CreateSubnet", "DeleteSubnet"}
    assert set(seen) == set(load_providers().names()) - always_refused, "every served action is called above"
    assert {name: problems for name, problems in seen.items() if problems} == {}


# --------------------------------------------------------------------------- what the drivers ask besides


def _code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return str(err.value.response["Error"]["Code"])


def test_describe_addresses_answers_the_empty_list(server: LiveServer, carol: Creds) -> None:
    """libcloud's EC2 and Eucalyptus list_nodes ask DescribeAddresses on every listing; no Elastic IP
    is allocated here, so every account holds none."""
    ec2 = server.client("ec2", carol)
    assert ec2.describe_addresses()["Addresses"] == []
    filters = [{"Name": "domain", "Values": ["standard"]}, {"Name": "instance-id", "Values": ["i-0123456789abcdef0"]},
               {"Name": "tag:Name", "Values": ["x*"]}, {"Name": "public-ip", "Values": ["192.0.2.1"]}]
    assert ec2.describe_addresses(Filters=filters)["Addresses"] == []
    assert _code(ec2.describe_addresses, Filters=[{"Name": "colour", "Values": ["red"]}]) == "InvalidParameterValue"
    assert _code(ec2.describe_addresses, PublicIps=["192.0.2.1"]) == "InvalidAddress.NotFound"
    assert _code(ec2.describe_addresses, PublicIps=["not-an-ip"]) == "InvalidParameterValue"
    assert _code(ec2.describe_addresses, AllocationIds=["eipalloc-12345678"]) == "InvalidAllocationID.NotFound"
    assert _code(ec2.describe_addresses, AllocationIds=["alloc-1"]) == "InvalidAllocationID.Malformed"
    assert _code(ec2.describe_addresses, DryRun=True) == "DryRunOperation"


@pytest.fixture(scope="module")
def libcloud_public_pool(server: LiveServer) -> str:
    """A public pool of this module's own on the shared server, for elastic addresses."""
    pool_file = server.data_dir / "libcloud-public.pool"
    pool_file.write_text("none\nlc-pub0 198.51.100.20 198.51.100.1 198.51.100.255 255.255.255.0\n"
                         "lc-pub1 198.51.100.21 198.51.100.1 198.51.100.255 255.255.255.0\n")
    server.cli("admin", "pool", "add", "libcloud-public", str(pool_file), "--network-mode", "isolated", "--public")
    return "libcloud-public"


@pytest.mark.parametrize("kind", ["eucalyptus", "ec2-sigv4"])
def test_list_nodes_shows_an_elastic_address_while_it_is_associated(
    server: LiveServer, kind: str, image_id: str, libcloud_public_pool: str,
) -> None:
    """libcloud's list_nodes adds each node's elastic addresses (DescribeAddresses) to its
    public_ips; the address is allocated, associated, disassociated and released through
    libcloud's own calls."""
    driver = compute_driver(kind, server, server.make_user(f"lc-eip-{kind}"))
    location = None if kind == "eucalyptus" else driver.list_locations()[0]
    size = {s.id: s for s in driver.list_sizes()}["m1.small"]
    node = driver.create_node(name=f"eip-{kind}", image=driver.get_image(image_id), size=size, location=location)
    running = _wait_state(driver, node.id, NodeState.RUNNING)
    eip = driver.ex_allocate_address(domain="vpc")
    assert eip.extra["allocation_id"].startswith("eipalloc-") and eip.ip not in running.public_ips
    assert driver.ex_associate_address_with_node(running, eip, domain="vpc").startswith("eipassoc-")
    listed = {n.id: n for n in driver.list_nodes()}[node.id]
    assert eip.ip in listed.public_ips
    assert driver.ex_describe_addresses([listed]) == {node.id: [eip.ip]}  # DescribeAddresses by instance-id
    (held,) = driver.ex_describe_all_addresses(only_associated=True)
    assert (held.ip, held.instance_id, held.domain) == (eip.ip, node.id, "vpc")
    assert driver.ex_disassociate_address(held, domain="vpc") is True
    assert eip.ip not in {n.id: n for n in driver.list_nodes()}[node.id].public_ips
    assert driver.ex_describe_addresses([listed]) == {node.id: []}
    assert driver.ex_release_address(eip, domain="vpc") is True
    assert driver.ex_describe_all_addresses() == []
    assert driver.destroy_node(listed) is True


def test_a_client_naming_its_own_region_finds_the_zones(server: LiveServer, carol: Creds) -> None:
    """The one region also answers to the names in region_aliases (default: nimbus, the fixed region of
    libcloud's Nimbus driver), and is shown under the alias a client asked for."""
    ec2 = server.client("ec2", carol)

    def zones(region: str) -> list[tuple[str, str]]:
        found = ec2.describe_availability_zones(Filters=[{"Name": "region-name", "Values": [region]},
                                                         {"Name": "state", "Values": ["available"]}])
        return [(z["ZoneName"], z["RegionName"]) for z in found["AvailabilityZones"]]

    assert zones("us-east-1") == [("us-east-1a", "us-east-1")]
    assert zones("nimbus") == [("us-east-1a", "nimbus")]
    assert zones("eu-west-9") == []
    assert [r["RegionName"] for r in ec2.describe_regions()["Regions"]] == ["us-east-1"]
    assert [r["RegionName"] for r in ec2.describe_regions(RegionNames=["nimbus"])["Regions"]] == ["nimbus"]
    assert _code(ec2.describe_regions, RegionNames=["eu-west-9"]) == "InvalidParameterValue"


def test_eucalyptus_form_of_describe_instance_types_on_its_path(server: LiveServer, carol: Creds) -> None:
    """On /services/Eucalyptus, DescribeInstanceTypes answers as Eucalyptus did (euca2ools'
    euca-describe-instance-types reads the same); on / it is AWS's action."""
    euca = compute_driver("eucalyptus", server, carol)
    body = euca.connection.request("/services/Eucalyptus", params={
        "Action": "DescribeInstanceTypes", "InstanceType.1": "m1.large", "InstanceType.2": "t2.micro",
        "Availability": "true"}).body
    root = ET.fromstring(body)
    ns = "{http://msgs.eucalyptus.com/3.3.0}"
    assert root.tag == f"{ns}DescribeInstanceTypesResponseType"
    items = [{c.tag.removeprefix(ns): c.text for c in item} for item in root.iterfind(f"{ns}instanceTypeDetails/{ns}item")]
    # Availability=true, but no node is registered: the implicit node has no fixed capacity
    assert items == [{"name": "m1.large", "cpu": "2", "disk": "0", "memory": "7680", "availability": None},
                     {"name": "t2.micro", "cpu": "1", "disk": "0", "memory": "1024", "availability": None}]
    body = euca.connection.request("/services/Eucalyptus/", params={
        "Action": "DescribeInstanceTypes", "InstanceType.1": "t2.micro"}).body
    assert "<item><name>t2.micro</name><cpu>1</cpu><disk>0</disk><memory>1024</memory></item>" in body
    aws = EC2NodeDriver(carol.access_key, carol.secret_key, secure=False, host="127.0.0.1", port=server.ec2_port)
    body = aws.connection.request("/", params={"Action": "DescribeInstanceTypes", "InstanceType.1": "m1.large"}).body
    assert "<instanceTypeSet><item><instanceType>m1.large</instanceType>" in body and "instanceTypeDetails" not in body


def test_eucalyptus_capacity_per_zone_follows_the_nodes(tmp_path: Any) -> None:
    """euca-describe-instance-types --show-capacity (Availability=true): per zone, how many instances of
    each type fit on its registered nodes when empty (max) and now (available)."""
    srv = LiveServer(tmp_path / "data").start()
    try:
        (tmp_path / "n1").mkdir()
        srv.cli("admin", "node", "add", "n1", "--uri", make_test_node_uri(tmp_path / "n1", 8192, 4),
                "--vcpus", "4", "--memory", "8192")
        euca = compute_driver("eucalyptus", srv, srv.admin)

        def capacity() -> dict[str, list[tuple[str, str, str]]]:
            body = euca.connection.request("/services/Eucalyptus", params={
                "Action": "DescribeInstanceTypes", "InstanceType.1": "t2.micro", "InstanceType.2": "m1.large",
                "Availability": "true"}).body
            ns = "{http://msgs.eucalyptus.com/3.3.0}"
            return {item.findtext(f"{ns}name", ""): [
                (z.findtext(f"{ns}zoneName", ""), z.findtext(f"{ns}max", ""), z.findtext(f"{ns}available", ""))
                for z in item.iterfind(f"{ns}availability/{ns}item")]
                for item in ET.fromstring(body).iterfind(f"{ns}instanceTypeDetails/{ns}item")}

        # t2.micro: 1 vCPU, 1024 MiB; m1.large: 2 vCPUs, 7680 MiB, on 4 vCPUs and 8192 MiB
        assert capacity() == {"t2.micro": [("us-east-1a", "4", "4")], "m1.large": [("us-east-1a", "1", "1")]}
        path = tmp_path / "img"
        path.write_bytes(b"\0" * 65536)
        image = json.loads(srv.cli("admin", "image", "import", "cap", str(path), "--json").stdout)["image_id"]
        srv.client("ec2").run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t2.micro")
        assert capacity() == {"t2.micro": [("us-east-1a", "4", "3")], "m1.large": [("us-east-1a", "1", "0")]}
    finally:
        srv.stop()
