"""The aws CLI (`aws s3`, `aws s3api`) against Cumulus as a subprocess, and the shared aws-cli scenario."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tests.functional.s3_fixtures import alice, new_bucket_name  # noqa: F401 - fixtures
from tests.live import Creds, LiveServer


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def test_cp_multipart_up_and_down_ls_and_rm(server: LiveServer, alice: Creds, tmp_path: Path) -> None:
    b = new_bucket_name("cli")
    server.aws("s3", "mb", f"s3://{b}", creds=alice)
    # 20 MiB: three 8 MiB parts; the 50 MiB round trip is the scenario's (test_awscli_scenario_s3)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.writelines(os.urandom(1 << 20) for _ in range(20))
    server.aws("s3", "cp", str(big), f"s3://{b}/dir/big.bin", creds=alice)
    head = json.loads(server.aws("s3api", "head-object", "--bucket", b, "--key", "dir/big.bin", creds=alice).stdout)
    assert head["ContentLength"] == 20 << 20 and head["ETag"].endswith('-3"')  # 8 MiB parts
    back = tmp_path / "back.bin"
    server.aws("s3", "cp", f"s3://{b}/dir/big.bin", str(back), creds=alice)
    assert sha256(back) == sha256(big)
    listing = server.aws("s3", "ls", f"s3://{b}/", creds=alice).stdout
    assert "PRE dir/" in listing
    assert f"{20 << 20} dir/big.bin" in server.aws("s3", "ls", "--recursive", f"s3://{b}/", creds=alice).stdout
    server.aws("s3", "rm", "--recursive", f"s3://{b}/", creds=alice)
    assert server.aws("s3", "ls", "--recursive", f"s3://{b}/", creds=alice, check=False).stdout.strip() == ""
    server.aws("s3", "rb", f"s3://{b}", creds=alice)


def test_sync_both_ways(server: LiveServer, alice: Creds, tmp_path: Path) -> None:
    b = new_bucket_name("sync")
    server.aws("s3", "mb", f"s3://{b}", creds=alice)
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(70000), "sub/deeper/c with space.txt": b"gamma",
             "ünïcode.txt": b"utf8"}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    out = server.aws("s3", "sync", str(src), f"s3://{b}/tree", creds=alice).stdout
    assert out.count("upload:") == len(files)
    again = server.aws("s3", "sync", str(src), f"s3://{b}/tree", creds=alice).stdout
    assert "upload:" not in again  # nothing changed: sizes and times agree
    (src / "a.txt").write_bytes(b"alpha, changed")
    assert server.aws("s3", "sync", str(src), f"s3://{b}/tree", creds=alice).stdout.count("upload:") == 1
    dst = tmp_path / "dst"
    server.aws("s3", "sync", f"s3://{b}/tree", str(dst), creds=alice)
    for rel in files:
        assert (dst / rel).read_bytes() == (src / rel).read_bytes()
    (src / "sub" / "b.bin").unlink()
    out = server.aws("s3", "sync", "--delete", str(src), f"s3://{b}/tree", creds=alice).stdout
    assert "delete:" in out
    keys = json.loads(server.aws("s3api", "list-objects-v2", "--bucket", b, creds=alice).stdout)["Contents"]
    assert sorted(k["Key"] for k in keys) == sorted(f"tree/{r}" for r in files if r != "sub/b.bin")
    server.aws("s3", "rb", "--force", f"s3://{b}", creds=alice)


def test_s3api_calls(server: LiveServer, alice: Creds, tmp_path: Path) -> None:
    b = new_bucket_name("api")
    server.aws("s3api", "create-bucket", "--bucket", b, creds=alice)
    body = tmp_path / "body.txt"
    body.write_bytes(b"s3api body")
    put = json.loads(server.aws("s3api", "put-object", "--bucket", b, "--key", "k", "--body", str(body),
                                "--content-type", "text/plain", "--metadata", "a=1", creds=alice).stdout)
    assert put["ETag"] == f'"{hashlib.md5(b"s3api body").hexdigest()}"'
    out = tmp_path / "out.txt"
    got = json.loads(server.aws("s3api", "get-object", "--bucket", b, "--key", "k", "--range", "bytes=0-4", str(out),
                                creds=alice).stdout)
    assert out.read_bytes() == b"s3api" and got["ContentRange"] == "bytes 0-4/10"
    meta = json.loads(server.aws("s3api", "head-object", "--bucket", b, "--key", "k", creds=alice).stdout)
    assert meta["Metadata"] == {"a": "1"} and meta["ContentType"] == "text/plain"
    missing = server.aws("s3api", "get-object", "--bucket", b, "--key", "nope", str(out), creds=alice, check=False)
    assert missing.returncode != 0 and "NoSuchKey" in missing.stderr
    server.aws("s3api", "delete-object", "--bucket", b, "--key", "k", creds=alice)
    server.aws("s3api", "delete-bucket", "--bucket", b, creds=alice)
