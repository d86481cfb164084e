"""Security groups enforced on a real QEMU node, on a running guest, driven through boto3.

Set-up as in test_vm_lifecycle.py: the tiny guest, a private libvirtd (tests/vmhost.py) registered
as node `sg1` (qemu), an isolated pool, the guest's kernel, ramdisk and disk imported. One guest
boots for the whole module, in a group `web` that starts with no ingress rule. The client is the
node's own network namespace, the pool network's host side (its gateway address), as a person on
the node would try it: a TCP connection to the guest with a timeout, run with nsenter.

A connection either succeeds, or is refused by the guest (both: the packet reached it), or gets
no answer within the timeout (the node dropped it). Port 80 (the guest's HTTP server) is
unreachable until AuthorizeSecurityGroupIngress opens tcp/80 for the gateway's /32, answers then
(while port 22 stays closed), and is unreachable again after RevokeSecurityGroupIngress, all on
the running guest, without a restart. Anti-spoofing: the guest adds an address of its own choosing
(the guest's setip CGI): it cannot send from it (its ping from it fails) and is not reachable at
it, while its own address answers. Membership: ModifyInstanceAttribute and
ModifyNetworkInterfaceAttribute `Groups` open and close a port through another group's rule.

Elastic addresses: the node also has a public pool (`sgpub`, isolated, served by no node until an
address of it is associated). AssociateAddress makes the running guest lease the elastic address
on a new NIC on that pool's network (its console shows the NIC and the lease on it), whose filter
is the instance's: the guest's HTTP on the elastic address answers the node (the public network's
gateway) once a rule admits that source, not before. DisassociateAddress unplugs the NIC (the
console shows it go), removes its DHCP entry, and the address answers no more.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from lxml import etree

from tests.live import LiveServer
from tests.vmhost import VmHost, build_guest, wait_for

pytestmark = [pytest.mark.vm, pytest.mark.timeout(400)]

POOL_FILE = """# security group tests: isolated network, two addresses
none
sg-a 10.99.9.10 10.99.9.1 10.99.9.255 255.255.255.0
sg-b 10.99.9.11 10.99.9.1 10.99.9.255 255.255.255.0
"""
GATEWAY = "10.99.9.1"
PUBLIC_POOL_FILE = """# elastic addresses for the security group tests: isolated network
none
sg-pub-a 10.99.19.20 10.99.19.1 10.99.19.255 255.255.255.0
sg-pub-b 10.99.19.21 10.99.19.1 10.99.19.255 255.255.255.0
"""
PUBLIC_GATEWAY = "10.99.19.1"
BOOT = 120.0  # seconds a TCG guest may take to its lease on a loaded 2-core machine
#: seconds a rule change may take to reach the guest: the worker's next pass plus libvirt's
#: re-instantiation (about 2 s each on a busy node)
APPLY = 45.0
PROBE_TIMEOUT = 3.0

_HTTP = """
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode().strip())
except Exception as exc:
    print(f"failed: {exc}")
"""
_PROBE = """
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open")
except ConnectionRefusedError:
    print("refused")
except (socket.timeout, TimeoutError):
    print("timeout")
except OSError as exc:
    print(f"error {exc.errno}")
"""


class Cloud:
    def __init__(self, server: LiveServer, host: VmHost) -> None:
        self.server, self.host = server, host
        self.ec2 = server.client("ec2")
        self.ids: dict[str, str] = {}

    def cli_json(self, *args: str) -> Any:
        out = self.server.cli(*args, "--json", check=False, timeout=120)
        assert out.returncode == 0, f"ec2gw {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    def instance(self, iid: str) -> dict[str, Any]:
        return self.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]

    def wait_running(self, iid: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            inst = self.instance(iid)
            assert inst["State"]["Name"] in ("pending", "running"), \
                f"{iid}: {inst['State']} {inst.get('StateReason')}\nserver log:\n{self.server.log()[-4000:]}"
            return inst if inst["State"]["Name"] == "running" else None
        return wait_for(f"{iid} running", check, BOOT)

    def console(self, iid: str) -> str:
        return self.ec2.get_console_output(InstanceId=iid, Latest=True).get("Output") or ""

    def wait_console(self, iid: str, text: str, timeout: float = BOOT, after: int = 0) -> None:
        """Wait for ``text`` on the console, past its first ``after`` characters."""
        try:
            wait_for(f"console of {iid} shows {text!r}", lambda: text in self.console(iid)[after:], timeout, 0.5)
        except TimeoutError:
            raise AssertionError(f"{text!r} not on the console of {iid}:\n{self.console(iid)[-3000:]}\n"
                                 f"server log:\n{self.server.log()[-3000:]}") from None

    def in_node(self, *argv: str, timeout: float = 30.0) -> str:
        """Run a command in the node's network namespace (where the pool's bridge is)."""
        assert self.host.daemon.process is not None
        out = subprocess.run(["nsenter", f"--net=/proc/{self.host.daemon.process.pid}/ns/net", *argv],
                             capture_output=True, text=True, timeout=timeout, check=False)
        assert out.returncode == 0, f"{argv}: {out.stderr}"
        return out.stdout.strip()

    def probe(self, ip: str, port: int) -> str:
        """'open' or 'refused' (the guest answered), 'timeout' or 'error N' (it did not)."""
        return self.in_node(sys.executable, "-c", _PROBE, ip, str(port), str(PROBE_TIMEOUT))

    def http(self, url: str, timeout: float = 10.0) -> str:
        """GET ``url`` from the node's namespace: the body, or "failed: ..."."""
        return self.in_node(sys.executable, "-c", _HTTP, url, str(timeout), timeout=timeout + 20)

    def reachable(self, ip: str, port: int) -> bool:
        return self.probe(ip, port) in ("open", "refused")

    def wait_reachable(self, ip: str, port: int, wanted: bool, what: str) -> float:
        """Seconds until the port's reachability is ``wanted``."""
        started = time.monotonic()
        try:
            wait_for(what, lambda: self.reachable(ip, port) == wanted, APPLY, 0.5)
        except TimeoutError:
            raise AssertionError(f"{what}: port {port} of {ip} still {'un' if wanted else ''}reachable after {APPLY} s "
                                 f"({self.probe(ip, port)})\nserver log:\n{self.server.log()[-3000:]}") from None
        return time.monotonic() - started

    def libvirt(self) -> Any:
        return libvirt.open(self.host.uri)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    guest = build_guest()
    root = Path(tmp_path_factory.mktemp("vmsg"))
    host = VmHost(root / "node")
    server = LiveServer(root / "data", env={"EC2GW_NODE_STORAGE_DIR": str(root / "node-storage"),
                                             "EC2GW_STOP_TIMEOUT": "30", "EC2GW_WORKER_INTERVAL": "0.1"})
    try:
        host.start()
        server.start()
        c = Cloud(server, host)
        (root / "pool.txt").write_text(POOL_FILE)
        c.cli_json("admin", "pool", "add", "sgnet", str(root / "pool.txt"), "--network-mode", "isolated")
        (root / "public.txt").write_text(PUBLIC_POOL_FILE)
        c.cli_json("admin", "pool", "add", "sgpub", str(root / "public.txt"), "--network-mode", "isolated", "--public")
        c.cli_json("admin", "node", "add", "sg1", "--uri", host.uri, "--domain-type", "qemu", "--pools", "sgnet",
                   "--memory", "8192", "--vcpus", "4")
        aki = c.cli_json("admin", "image", "import", "sg-kernel", str(guest.kernel), "--kind", "kernel")["image_id"]
        ari = c.cli_json("admin", "image", "import", "sg-initrd", str(guest.initrd), "--kind", "ramdisk")["image_id"]
        c.ids["ami"] = c.cli_json("admin", "image", "import", "sg-disk", str(guest.disk), "--kernel", aki,
                                  "--ramdisk", ari)["image_id"]
        c.ids["web"] = c.ec2.create_security_group(GroupName="vm-web", Description="web servers")["GroupId"]
        res = c.ec2.run_instances(ImageId=c.ids["ami"], MinCount=1, MaxCount=1, InstanceType="t2.micro",
                                  SecurityGroupIds=[c.ids["web"]])
        iid = c.ids["guest"] = res["Instances"][0]["InstanceId"]
        c.ids["ip"] = c.wait_running(iid)["PrivateIpAddress"]
        c.wait_console(iid, "EC2GW-READY")
        yield c
    finally:
        server.stop()
        host.stop()


def _port80(ip: str) -> list[dict[str, Any]]:
    return [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": f"{ip}/32"}]}]


def test_the_node_enforces_and_the_guest_got_its_lease_through_the_filter(cloud: Cloud) -> None:
    iid, ip = cloud.ids["guest"], cloud.ids["ip"]
    assert cloud.cli_json("admin", "node", "show", "sg1")["enforces_security_groups"] is True
    cloud.wait_console(iid, f"EC2GW-LEASE ip={ip} ")  # DHCP passes the filter
    conn = cloud.libvirt()
    try:
        names = sorted(f.name() for f in conn.listAllNWFilters(0) if f.name().startswith("ec2gw-"))
        assert names == [f"ec2gw-i-{iid}", f"ec2gw-sg-{cloud.ids['web']}"]
        xml = conn.lookupByName(iid).XMLDesc(0)
    finally:
        conn.close()
    assert f"<filterref filter='ec2gw-i-{iid}'>" in xml and f"<parameter name='IP' value='{ip}'/>" in xml


def test_port_80_opens_with_authorize_and_closes_with_revoke_on_the_running_guest(cloud: Cloud) -> None:
    iid, ip, web = cloud.ids["guest"], cloud.ids["ip"], cloud.ids["web"]
    assert cloud.probe(ip, 80) == "timeout", "no ingress rule yet: the node drops the connection"
    cloud.ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=_port80(GATEWAY))
    opened = cloud.wait_reachable(ip, 80, True, "port 80 after AuthorizeSecurityGroupIngress")
    assert cloud.http(f"http://{ip}/").startswith("EC2GW-WEB"), "the guest's HTTP server answers"
    assert cloud.probe(ip, 22) == "timeout", "only tcp/80 was opened"
    cloud.ec2.revoke_security_group_ingress(GroupId=web, IpPermissions=_port80(GATEWAY))
    closed = cloud.wait_reachable(ip, 80, False, "port 80 after RevokeSecurityGroupIngress")
    assert cloud.instance(iid)["State"]["Name"] == "running"
    print(f"\nrule change reached the guest: authorize {opened:.1f} s, revoke {closed:.1f} s")


def test_a_rule_for_another_source_does_not_open_the_port(cloud: Cloud) -> None:
    ip, web = cloud.ids["ip"], cloud.ids["web"]
    cloud.ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=_port80("10.99.9.200"))
    cloud.ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 81, "ToPort": 81, "IpRanges": [{"CidrIp": f"{GATEWAY}/32"}]}])
    cloud.wait_reachable(ip, 81, True, "port 81, opened for the gateway")  # the change has arrived ...
    assert cloud.probe(ip, 80) == "timeout"  # ... and port 80 is still closed to the gateway


def test_a_guest_cannot_send_from_an_address_it_gives_itself(cloud: Cloud) -> None:
    ip, web = cloud.ids["ip"], cloud.ids["web"]
    cloud.ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=_port80(GATEWAY))
    cloud.wait_reachable(ip, 80, True, "port 80, opened for the gateway")
    spoofed = "10.99.9.50"
    answer = cloud.http(f"http://{ip}/cgi-bin/setip?ip={spoofed}", timeout=30)
    assert answer.startswith(f"setip ip={spoofed} dev=eth0 to={GATEWAY}"), answer
    # its ping to the gateway from the new address never leaves the node (egress allows all traffic)
    assert answer.endswith("ping=fail"), answer
    assert not cloud.reachable(spoofed, 80), "the guest answers for an address that is not its own"
    assert cloud.http(f"http://{ip}/").startswith("EC2GW-WEB"), "its own address still answers"
    assert cloud.http(f"http://{ip}/cgi-bin/setip?ip={spoofed}&del=1", timeout=30).startswith("delip")


def test_group_membership_changes_reach_the_running_guest(cloud: Cloud) -> None:
    """ModifyInstanceAttribute Groups and ModifyNetworkInterfaceAttribute Groups change what the
    node lets in: port 82 (nothing listens: the guest refuses it once packets reach it) is open in
    another group only."""
    iid, ip, web = cloud.ids["guest"], cloud.ids["ip"], cloud.ids["web"]
    extra = cloud.ec2.create_security_group(GroupName="vm-extra", Description="port 82")["GroupId"]
    cloud.ec2.authorize_security_group_ingress(GroupId=extra, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 82, "ToPort": 82, "IpRanges": [{"CidrIp": f"{GATEWAY}/32"}]}])
    assert cloud.probe(ip, 82) == "timeout", "port 82 is in no group of the instance yet"
    cloud.ec2.modify_instance_attribute(InstanceId=iid, Groups=[web, extra])
    joined = cloud.wait_reachable(ip, 82, True, "port 82 after ModifyInstanceAttribute Groups")
    assert cloud.probe(ip, 82) == "refused", "the packet reaches the guest, where nothing listens on 82"
    eni = cloud.instance(iid)["NetworkInterfaces"][0]["NetworkInterfaceId"]
    cloud.ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[web])
    left = cloud.wait_reachable(ip, 82, False, "port 82 after ModifyNetworkInterfaceAttribute Groups")
    assert [g["GroupId"] for g in cloud.instance(iid)["SecurityGroups"]] == [web]
    cloud.ec2.delete_security_group(GroupId=extra)
    print(f"\nmembership change reached the guest: join {joined:.1f} s, leave {left:.1f} s")


def _public_nics(cloud: Cloud, iid: str, saved: bool = False) -> list[tuple[str, str]]:
    """(MAC, filter IP parameter) of the domain's NICs on the public pool's network, in the running
    domain or (``saved``) its saved definition."""
    conn = cloud.libvirt()
    try:
        root = etree.fromstring(conn.lookupByName(iid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if saved else 0))
    finally:
        conn.close()
    out = []
    for nic in root.iterfind("devices/interface"):
        if nic.find("source").get("network") == "ec2gw-sgpub":
            param = nic.find("filterref/parameter[@name='IP']")
            assert nic.find("filterref").get("filter") == f"ec2gw-i-{iid}", etree.tostring(nic)
            out.append((nic.find("mac").get("address"), param.get("value") if param is not None else ""))
    return out


def test_an_elastic_address_is_leased_on_a_new_nic_and_goes_with_disassociate(cloud: Cloud) -> None:
    iid, web = cloud.ids["guest"], cloud.ids["web"]
    started = time.monotonic()
    eip = cloud.ec2.allocate_address(Domain="vpc")
    ip, alloc = eip["PublicIp"], eip["AllocationId"]
    assert eip["PublicIpv4Pool"] == "sgpub" and ip.startswith("10.99.19.")
    assert "PublicIpAddress" not in cloud.instance(iid)
    mark = len(cloud.console(iid))
    assoc = cloud.ec2.associate_address(AllocationId=alloc, InstanceId=iid)["AssociationId"]
    assert cloud.instance(iid)["PublicIpAddress"] == ip
    cloud.wait_console(iid, "EC2GW-NIC-ADD eth1 mac=", 60, after=mark)
    cloud.wait_console(iid, f"EC2GW-LEASE ip={ip} ", 60, after=mark)
    assert re.search(rf"EC2GW-LEASE ip={re.escape(ip)} mask=255\.255\.255\.0 router=\S* if=eth1\r?\n",
                     cloud.console(iid)[mark:]), "the lease is on the new NIC"
    leased = time.monotonic() - started
    ((mac, filter_ip),) = _public_nics(cloud, iid)
    assert filter_ip == ip, "the elastic NIC's filter knows its own address (anti-spoofing)"
    assert _public_nics(cloud, iid, saved=True) == [(mac, ip)], "the saved definition has the NIC too"
    assert f"EC2GW-NIC-ADD eth1 mac={mac}" in cloud.console(iid)[mark:]
    assert mac in cloud.host.dhcp_hosts("ec2gw-sgpub")
    assert cloud.instance(iid)["State"]["Name"] == "running"

    # the instance's groups guard the elastic NIC too: tcp/80 is open for the private gateway only
    assert cloud.probe(ip, 80) == "timeout", "no rule admits the public network's gateway yet"
    cloud.ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=_port80(PUBLIC_GATEWAY))
    cloud.wait_reachable(ip, 80, True, "port 80 of the elastic address after AuthorizeSecurityGroupIngress")
    assert cloud.http(f"http://{ip}/").startswith("EC2GW-WEB"), "the guest's HTTP answers on the elastic address"

    mark = len(cloud.console(iid))
    cloud.ec2.disassociate_address(AssociationId=assoc)
    assert "PublicIpAddress" not in cloud.instance(iid)
    cloud.wait_console(iid, "EC2GW-NIC-DEL eth1", 60, after=mark)
    # the guest saw it go; libvirt drops it from the live XML when QEMU confirms, the worker then
    # removes the DHCP entry
    wait_for("the NIC out of the domain (live and saved) and its DHCP entry gone",
             lambda: (_public_nics(cloud, iid), _public_nics(cloud, iid, saved=True),
                      mac in cloud.host.dhcp_hosts("ec2gw-sgpub")) == ([], [], False), APPLY, 0.5)
    assert cloud.probe(ip, 80) == "timeout", "nothing answers on the elastic address any more"
    assert cloud.http(f"http://{cloud.ids['ip']}/").startswith("EC2GW-WEB"), "eth0 still answers"
    cloud.ec2.release_address(AllocationId=alloc)
    print(f"\nelastic address leased on eth1 {leased:.1f} s after AllocateAddress")


def test_a_stopped_instance_gets_its_elastic_address_at_start(cloud: Cloud) -> None:
    """Associated while stopped: the NIC goes into the saved definition only, and the guest leases
    the address on it at its next boot (the private NIC stays eth0)."""
    iid = cloud.ids["guest"]
    boot = re.findall(r"EC2GW-BOOT-ID (\S+)", cloud.console(iid))[-1]
    cloud.ec2.stop_instances(InstanceIds=[iid])
    wait_for(f"{iid} stopped", lambda: cloud.instance(iid)["State"]["Name"] == "stopped", BOOT, 0.5)
    eip = cloud.ec2.allocate_address(Domain="vpc")
    ip = eip["PublicIp"]
    assoc = cloud.ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=iid)["AssociationId"]
    assert cloud.instance(iid)["PublicIpAddress"] == ip
    saved = wait_for("the NIC in the stopped domain's saved definition",
                     lambda: _public_nics(cloud, iid, saved=True), APPLY, 0.5)
    assert [nic_ip for _, nic_ip in saved] == [ip]
    cloud.ec2.start_instances(InstanceIds=[iid])
    assert cloud.wait_running(iid).get("PublicIpAddress") == ip

    def after_boot() -> str:
        text = cloud.console(iid)
        ids = list(re.finditer(r"EC2GW-BOOT-ID (\S+)", text))
        return text[ids[-1].start():] if ids and ids[-1].group(1) != boot else ""
    wait_for("a new boot on the console", after_boot, BOOT, 0.5)
    own = cloud.ids["ip"]
    try:  # eth0's and eth1's leases come in either order
        wait_for(f"the leases of {own} and {ip} at boot",
                 lambda: f"EC2GW-LEASE ip={ip} " in after_boot() and f"EC2GW-LEASE ip={own} " in after_boot(), BOOT, 0.5)
    except TimeoutError:
        raise AssertionError(f"no lease of {own} and {ip} after the start:\n{after_boot()[-3000:]}") from None
    text = after_boot()
    assert re.search(rf"EC2GW-LEASE ip={re.escape(cloud.ids['ip'])} mask=\S+ router=\S* if=eth0\r?\n", text), text
    assert re.search(rf"EC2GW-LEASE ip={re.escape(ip)} mask=\S+ router=\S* if=eth1\r?\n", text), text
    assert _public_nics(cloud, iid) == saved, "the running domain has the NIC"
    cloud.ec2.disassociate_address(AssociationId=assoc)
    cloud.ec2.release_address(AllocationId=eip["AllocationId"])
