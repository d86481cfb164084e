"""Ansible's amazon.aws collection, unmodified, against a live server: one playbook (connection
local) that creates a key pair, creates a tagged bucket, puts (with tags), gets, lists and deletes objects, then
removes the bucket with `force: true` (which lists the object versions and deletes them) and the
key pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.live import Creds, LiveServer

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    amazon.aws.ec2_key: {{endpoint_url: "{ec2}", region: us-east-1}}
    amazon.aws.s3_bucket: {{endpoint_url: "{s3}", region: us-east-1}}
    amazon.aws.s3_object: {{endpoint_url: "{s3}", region: us-east-1}}
  tasks:
    - name: key pair
      amazon.aws.ec2_key: {{name: "{key}"}}
      register: key
    - assert: {{that: ["key is changed", "key.key.private_key is defined"]}}
    - name: bucket
      amazon.aws.s3_bucket: {{name: "{bucket}", state: present, tags: {{team: storage}}}}
      register: bucket
    - assert: {{that: ["bucket is changed", "bucket.tags == {{'team': 'storage'}}"]}}
    - name: bucket again, same tags
      amazon.aws.s3_bucket: {{name: "{bucket}", state: present, tags: {{team: storage}}}}
      register: again
    - assert: {{that: ["again is not changed"]}}
    - name: put
      amazon.aws.s3_object:
        {{bucket: "{bucket}", object: dir/hello.txt, mode: put, content: "hello from ansible", tags: {{kind: greeting}}}}
    - name: put a second object (left for the forced bucket removal)
      amazon.aws.s3_object: {{bucket: "{bucket}", object: dir/second.txt, mode: put, content: "second"}}
    - name: get
      amazon.aws.s3_object: {{bucket: "{bucket}", object: dir/hello.txt, mode: getstr}}
      register: got
    - assert: {{that: ["got.contents == 'hello from ansible'"]}}
    - name: list
      amazon.aws.s3_object: {{bucket: "{bucket}", mode: list, prefix: dir/}}
      register: listed
    - assert: {{that: ["listed.s3_keys | sort == ['dir/hello.txt', 'dir/second.txt']"]}}
    - name: delete an object
      amazon.aws.s3_object: {{bucket: "{bucket}", object: dir/hello.txt, mode: delobj}}
    - name: remove the bucket and what it holds
      amazon.aws.s3_bucket: {{name: "{bucket}", state: absent, force: true}}
      register: gone
    - assert: {{that: ["gone is changed"]}}
    - name: remove the key pair
      amazon.aws.ec2_key: {{name: "{key}", state: absent}}
      register: nokey
    - assert: {{that: ["nokey is changed"]}}
"""


@pytest.fixture(scope="module")
def dana(server: LiveServer) -> Creds:
    return server.make_user(f"dana{uuid.uuid4().hex[:6]}")


def test_ansible_key_bucket_and_object_walk(server: LiveServer, dana: Creds, tmp_path: Path) -> None:
    bucket, key = f"ansible-{uuid.uuid4().hex[:10]}", f"ansible-{uuid.uuid4().hex[:6]}"
    playbook = tmp_path / "walk.yml"
    playbook.write_text(PLAYBOOK.format(ec2=server.ec2_url, s3=server.s3_url, bucket=bucket, key=key))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANSIBLE_"))}
    env.update(AWS_ACCESS_KEY_ID=dana.access_key, AWS_SECRET_ACCESS_KEY=dana.secret_key,
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               ANSIBLE_HOME=str(tmp_path / "ansible"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "tmp"), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, _failures(run)
    s3 = server.client("s3", dana)
    with pytest.raises(ClientError) as info:
        s3.head_bucket(Bucket=bucket)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    ec2 = server.client("ec2", dana)
    assert key not in [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]


def _failures(run: subprocess.CompletedProcess[str]) -> str:
    """The failed tasks' messages (the json callback's report), else the raw output."""
    try:
        report: dict[str, Any] = json.loads(run.stdout)
    except ValueError:
        return run.stdout[-6000:] + run.stderr[-4000:]
    failed = []
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                if result.get("failed") or result.get("unreachable"):
                    failed.append(f"{task['task']['name']} on {host}: {result.get('msg')} "
                                  f"{str(result.get('exception', ''))[-1500:]}")
    return "\n".join(failed) or run.stdout[-6000:] + run.stderr[-4000:]


EC2_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    amazon.aws.ec2_security_group: {{endpoint_url: "{ec2}", region: us-east-1}}
    amazon.aws.ec2_instance: {{endpoint_url: "{ec2}", region: us-east-1}}
    amazon.aws.ec2_instance_info: {{endpoint_url: "{ec2}", region: us-east-1}}
    amazon.aws.ec2_eip: {{endpoint_url: "{ec2}", region: us-east-1}}
  tasks:
    - name: security group
      amazon.aws.ec2_security_group:
        name: "{group}"
        description: web servers
        rules: [{{proto: tcp, ports: [80], cidr_ip: 0.0.0.0/0}}]
      register: group
    - assert: {{that: ["group is changed", "group.group_id is match('sg-')"]}}
    - name: instance
      amazon.aws.ec2_instance:
        name: "{name}"
        image_id: "{image}"
        instance_type: t2.micro
        security_group: "{group}"
        state: running
        wait: true
        wait_timeout: 120
      register: inst
    - assert: {{that: ["inst is changed", "inst.instance_ids | length == 1"]}}
    - name: instance info
      amazon.aws.ec2_instance_info: {{instance_ids: "{{{{ inst.instance_ids }}}}"}}
      register: info
    - assert:
        that:
          - "info.instances | length == 1"
          - "info.instances[0].state.name == 'running'"
          - "info.instances[0].security_groups[0].group_name == '{group}'"
    - name: elastic address for the instance
      amazon.aws.ec2_eip: {{device_id: "{{{{ inst.instance_ids[0] }}}}", in_vpc: true, state: present}}
      register: eip
    - assert: {{that: ["eip is changed", "eip.public_ip is defined", "eip.allocation_id is match('eipalloc-')"]}}
    - name: the instance shows it
      amazon.aws.ec2_instance_info: {{instance_ids: "{{{{ inst.instance_ids }}}}"}}
      register: shown
    - assert: {{that: ["shown.instances[0].public_ip_address == eip.public_ip"]}}
    - name: elastic address again (no change)
      amazon.aws.ec2_eip: {{device_id: "{{{{ inst.instance_ids[0] }}}}", in_vpc: true, state: present}}
      register: again
    - assert: {{that: ["again is not changed", "again.public_ip == eip.public_ip"]}}
    - name: terminate
      amazon.aws.ec2_instance: {{instance_ids: "{{{{ inst.instance_ids }}}}", state: absent, wait: true, wait_timeout: 120}}
      register: gone
    - assert: {{that: ["gone is changed"]}}
    - name: release the address
      amazon.aws.ec2_eip: {{public_ip: "{{{{ eip.public_ip }}}}", in_vpc: true, state: absent}}
      register: released
    - assert: {{that: ["released is changed"]}}
    - name: remove the group
      amazon.aws.ec2_security_group: {{name: "{group}", state: absent}}
"""


def test_ansible_security_group_instance_and_elastic_address(server: LiveServer, dana: Creds, tmp_path: Path) -> None:
    pool = tmp_path / "public.pool"
    pool.write_text("none\n" + "".join(f"ans{i} 203.0.113.{20 + i} 203.0.113.1 203.0.113.255 255.255.255.0\n"
                                       for i in range(2)))
    server.cli("admin", "pool", "add", f"ansible-{uuid.uuid4().hex[:6]}", str(pool), "--network-mode", "isolated", "--public")
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 65536)
    image = json.loads(server.cli("admin", "image", "import", f"ansible-{uuid.uuid4().hex[:6]}", str(disk), "--public",
                                  "--json").stdout)["image_id"]
    group, name = f"ansible-web-{uuid.uuid4().hex[:6]}", f"ansible-{uuid.uuid4().hex[:6]}"
    playbook = tmp_path / "ec2.yml"
    playbook.write_text(EC2_PLAYBOOK.format(ec2=server.ec2_url, group=group, name=name, image=image))
    run = _run_playbook(playbook, dana, tmp_path)
    assert run.returncode == 0, _failures(run)
    ec2 = server.client("ec2", dana)
    assert ec2.describe_addresses()["Addresses"] == []
    assert group not in [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
    tagged = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])["Reservations"]
    assert {i["State"]["Name"] for r in tagged for i in r["Instances"]} == {"terminated"}


def _run_playbook(playbook: Path, creds: Creds, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANSIBLE_"))}
    env.update(AWS_ACCESS_KEY_ID=creds.access_key, AWS_SECRET_ACCESS_KEY=creds.secret_key,
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               ANSIBLE_HOME=str(tmp_path / "ansible"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "tmp"), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
