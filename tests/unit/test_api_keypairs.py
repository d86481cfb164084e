"""Key pairs through botocore and the real gateway: fingerprints as AWS computes them, errors as EC2 gives them."""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import subprocess
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.unit.ec2_inprocess import World, error_of, make_world

DATA = Path(__file__).resolve().parent.parent / "data"

NONE = serialization.NoEncryption()


@pytest.fixture
def w(tmp_path: Path) -> World:
    return make_world(tmp_path)


def openssh_public(key: object) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)  # type: ignore[attr-defined]


def colon(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)


# --- CreateKeyPair ---------------------------------------------------------------------------


def test_create_rsa_returns_pkcs1_pem_with_aws_fingerprint(w: World, tmp_path: Path) -> None:
    r = w.a.create_key_pair(KeyName="deploy")
    assert r["KeyName"] == "deploy" and r["KeyPairId"].startswith("key-") and len(r["KeyPairId"]) == 21
    pem = r["KeyMaterial"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, NONE)
    assert r["KeyFingerprint"] == colon(hashlib.sha1(pkcs8).digest())
    # the same, computed the way AWS's documentation tells users to check it
    if shutil.which("openssl"):
        path = tmp_path / "deploy.pem"
        path.write_text(pem)
        out = subprocess.run(
            f"openssl pkcs8 -in {path} -inform PEM -outform DER -topk8 -nocrypt | openssl sha1 -c",
            shell=True, capture_output=True, text=True, check=True,
        ).stdout
        assert out.strip().split()[-1] == r["KeyFingerprint"]
    # the stored public key belongs to the private key
    desc = w.a.describe_key_pairs(KeyNames=["deploy"], IncludePublicKey=True)["KeyPairs"][0]
    assert desc["PublicKey"] == openssh_public(key).decode() + " deploy"
    assert desc["KeyType"] == "rsa" and desc["KeyFingerprint"] == r["KeyFingerprint"]


def test_create_ed25519_returns_openssh_private_key_and_sha256_fingerprint(w: World, tmp_path: Path) -> None:
    r = w.a.create_key_pair(KeyName="ed", KeyType="ed25519")
    key = serialization.load_ssh_private_key(r["KeyMaterial"].encode(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    blob = base64.b64decode(openssh_public(key).split()[1])
    expected = base64.b64encode(hashlib.sha256(blob).digest()).decode()
    assert expected.endswith("=") and r["KeyFingerprint"] == expected
    if shutil.which("ssh-keygen"):
        path = tmp_path / "ed"
        path.write_text(r["KeyMaterial"])
        path.chmod(0o600)
        out = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True, text=True, check=True).stdout
        assert out.split()[1] == "SHA256:" + r["KeyFingerprint"].rstrip("=")
    assert w.a.describe_key_pairs(KeyPairIds=[r["KeyPairId"]])["KeyPairs"][0]["KeyType"] == "ed25519"


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
def test_create_in_putty_format(w: World, tmp_path: Path, key_type: str) -> None:
    r = w.a.create_key_pair(KeyName="putty", KeyType=key_type, KeyFormat="ppk")
    ppk = r["KeyMaterial"]
    algorithm = {"rsa": "ssh-rsa", "ed25519": "ssh-ed25519"}[key_type]
    assert ppk.startswith(f"PuTTY-User-Key-File-2: {algorithm}\nEncryption: none\nComment: putty\n")
    lines = ppk.splitlines()
    count = int(lines[3].split(": ")[1])
    public = w.a.describe_key_pairs(KeyNames=["putty"], IncludePublicKey=True)["KeyPairs"][0]["PublicKey"]
    assert "".join(lines[4 : 4 + count]) == public.split()[1]
    assert lines[-1].startswith("Private-MAC: ") and len(lines[-1].split()[1]) == 40
    # PuTTY itself reads it (it checks the MAC) and finds the same public key; make test installs putty-tools
    assert shutil.which("puttygen"), "puttygen is missing: run scripts/install-system-deps.sh (package putty-tools)"
    path = tmp_path / "putty.ppk"
    path.write_text(ppk)
    out = subprocess.run(["puttygen", str(path), "-L"], capture_output=True, text=True, check=True,
                         stdin=subprocess.DEVNULL).stdout
    assert out.split()[:2] == public.split()[:2]


def test_create_with_tags_and_dry_run(w: World) -> None:
    r = w.a.create_key_pair(
        KeyName="tagged",
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": [{"Key": "team", "Value": "ops"}]}],
    )
    assert r["Tags"] == [{"Key": "team", "Value": "ops"}]
    found = w.a.describe_key_pairs(Filters=[{"Name": "tag:team", "Values": ["o*"]}])["KeyPairs"]
    assert [k["KeyName"] for k in found] == ["tagged"] and found[0]["Tags"] == [{"Key": "team", "Value": "ops"}]
    assert error_of(w.a.create_key_pair, KeyName="dry", DryRun=True)[0] == "DryRunOperation"
    assert w.a.describe_key_pairs(Filters=[{"Name": "key-name", "Values": ["dry"]}])["KeyPairs"] == []


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"KeyName": "x" * 256}, "InvalidParameterValue"),
        ({"KeyName": "clé"}, "InvalidParameterValue"),
        ({"KeyName": " padded "}, "InvalidParameterValue"),
        ({"KeyName": ""}, "InvalidParameterValue"),
        ({"KeyName": "ok", "KeyType": "dsa"}, "InvalidParameterValue"),
        ({"KeyName": "ok", "KeyFormat": "der"}, "InvalidParameterValue"),
        ({"KeyName": "ok", "TagSpecifications": [{"ResourceType": "key-pair", "Tags": [{"Key": "aws:x", "Value": "1"}]}]},
         "InvalidParameterValue"),
    ],
)
def test_create_rejects_bad_input(w: World, kwargs: dict[str, object], code: str) -> None:
    assert error_of(w.a.create_key_pair, **kwargs)[0] == code
    assert w.a.describe_key_pairs()["KeyPairs"] == []


def test_names_up_to_255_ascii_characters_are_fine(w: World) -> None:
    name = "k" * 255
    assert w.a.create_key_pair(KeyName=name)["KeyName"] == name
    assert w.a.create_key_pair(KeyName="with spaces & symbols!")["KeyName"] == "with spaces & symbols!"


def test_duplicates_are_per_user(w: World) -> None:
    w.a.create_key_pair(KeyName="same")
    code, msg = error_of(w.a.create_key_pair, KeyName="same")
    assert code == "InvalidKeyPair.Duplicate" and "same" in msg
    pub = openssh_public(ed25519.Ed25519PrivateKey.generate())
    assert error_of(w.a.import_key_pair, KeyName="same", PublicKeyMaterial=pub)[0] == "InvalidKeyPair.Duplicate"
    w.b.create_key_pair(KeyName="same")  # bob has his own namespace
    assert len(w.a.describe_key_pairs()["KeyPairs"]) == 1


# --- ImportKeyPair ---------------------------------------------------------------------------


def test_import_rsa_fingerprint_is_md5_of_subject_public_key_info(w: World, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    r = w.a.import_key_pair(KeyName="mine", PublicKeyMaterial=openssh_public(key) + b" me@host\n")
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert r["KeyFingerprint"] == colon(hashlib.md5(spki).digest())
    assert "KeyMaterial" not in r
    if shutil.which("openssl"):
        path = tmp_path / "mine.pem"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, NONE))
        out = subprocess.run(f"openssl rsa -in {path} -pubout -outform DER | openssl md5 -c", shell=True,
                             capture_output=True, text=True, check=True).stdout
        assert out.strip().split()[-1] == r["KeyFingerprint"]
    desc = w.a.describe_key_pairs(KeyNames=["mine"], IncludePublicKey=True)["KeyPairs"][0]
    assert desc["PublicKey"] == openssh_public(key).decode() + " mine"


def test_import_ed25519_and_ecdsa(w: World) -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    r = w.a.import_key_pair(KeyName="ed", PublicKeyMaterial=openssh_public(ed) + b" comment")
    blob = base64.b64decode(openssh_public(ed).split()[1])
    assert r["KeyFingerprint"] == base64.b64encode(hashlib.sha256(blob).digest()).decode()
    ecd = ec.generate_private_key(ec.SECP256R1())
    r = w.a.import_key_pair(KeyName="ec", PublicKeyMaterial=openssh_public(ecd))
    spki = ecd.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert r["KeyFingerprint"] == colon(hashlib.md5(spki).digest())
    types = {k["KeyName"]: k["KeyType"] for k in w.a.describe_key_pairs()["KeyPairs"]}
    assert types == {"ed": "ed25519", "ec": "ecdsa"}


def test_import_accepts_rfc4716_pem_and_der(w: World) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key()
    blob_b64 = openssh_public(key).split()[1].decode()
    rfc4716 = "---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"2048-bit RSA, a \\\n continued comment\"\n"
    rfc4716 += "\n".join(blob_b64[i : i + 70] for i in range(0, len(blob_b64), 70)) + "\n---- END SSH2 PUBLIC KEY ----\n"
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der_b64 = base64.b64encode(pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    prints = {
        w.a.import_key_pair(KeyName=name, PublicKeyMaterial=material)["KeyFingerprint"]
        for name, material in (("rfc", rfc4716.encode()), ("pem", pem), ("der", der_b64))
    }
    assert len(prints) == 1


def _small_rsa_line(bits: int) -> bytes:
    def mpint(n: int) -> bytes:
        raw = n.to_bytes((n.bit_length() + 8) // 8, "big")
        return struct.pack(">I", len(raw)) + raw

    blob = struct.pack(">I", 7) + b"ssh-rsa" + mpint(65537) + mpint((1 << (bits - 1)) | 1)
    return b"ssh-rsa " + base64.b64encode(blob)


@pytest.mark.parametrize(
    "material",
    [
        b"not a key",
        b"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== broken",
        b"",
        "ssh-ed25519 \xe9t\xe9".encode("latin-1"),
        _small_rsa_line(512),
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n",
    ],
)
def test_import_rejects_what_is_not_a_public_key(w: World, material: bytes) -> None:
    code, msg = error_of(w.a.import_key_pair, KeyName="bad", PublicKeyMaterial=material)
    assert code == "InvalidKey.Format" and "OpenSSH" in msg
    assert w.a.describe_key_pairs()["KeyPairs"] == []


def test_import_rejects_dsa(w: World) -> None:
    # a fixed 1024-bit DSA key (made once with `openssl gendsa`), as an OpenSSH line and as PEM
    # SubjectPublicKeyInfo: no DSA code of the cryptography library runs in the test
    for name in ("dsa1024.pub", "dsa1024.pub.pem"):
        material = (DATA / name).read_bytes()
        assert material.startswith((b"ssh-dss ", b"-----BEGIN PUBLIC KEY-----"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the product must not touch deprecated DSA support either
            code, msg = error_of(w.a.import_key_pair, KeyName="dsa", PublicKeyMaterial=material)
        assert code == "InvalidKey.Format" and "not supported" in msg
    assert w.a.describe_key_pairs()["KeyPairs"] == []


def test_import_requires_material(w: World) -> None:
    assert error_of(w.a.import_key_pair, KeyName="none", PublicKeyMaterial=b"")[0] in ("InvalidKey.Format", "MissingParameter")


# --- DescribeKeyPairs / DeleteKeyPair --------------------------------------------------------


def test_describe_filters_and_lookups(w: World) -> None:
    rsa_key = w.a.create_key_pair(KeyName="alpha")
    ed_key = w.a.create_key_pair(KeyName="beta", KeyType="ed25519")
    names = lambda **kw: [k["KeyName"] for k in w.a.describe_key_pairs(**kw)["KeyPairs"]]
    assert names() == ["alpha", "beta"]
    assert names(Filters=[{"Name": "key-type", "Values": ["ed25519"]}]) == ["beta"]
    assert names(Filters=[{"Name": "fingerprint", "Values": [rsa_key["KeyFingerprint"]]}]) == ["alpha"]
    assert names(Filters=[{"Name": "key-name", "Values": ["a*", "zzz"]}]) == ["alpha"]
    assert names(Filters=[{"Name": "key-pair-id", "Values": [ed_key["KeyPairId"]]}]) == ["beta"]
    assert names(KeyNames=["beta"]) == ["beta"]
    assert names(KeyPairIds=[rsa_key["KeyPairId"]]) == ["alpha"]
    # filters narrow a lookup by name without making it an error
    assert names(KeyNames=["alpha"], Filters=[{"Name": "key-type", "Values": ["ed25519"]}]) == []
    assert "PublicKey" not in w.a.describe_key_pairs()["KeyPairs"][0]
    assert w.a.describe_key_pairs()["KeyPairs"][0]["CreateTime"].year >= 2024


def test_describe_errors(w: World) -> None:
    w.a.create_key_pair(KeyName="alpha")
    code, msg = error_of(w.a.describe_key_pairs, KeyNames=["alpha", "nope"])
    assert code == "InvalidKeyPair.NotFound" and "nope" in msg
    assert error_of(w.a.describe_key_pairs, KeyPairIds=["key-0123456789abcdef0"])[0] == "InvalidKeyPair.NotFound"
    assert error_of(w.a.describe_key_pairs, KeyPairIds=["key-xyz"])[0] == "InvalidKeyPair.Malformed"
    code, msg = error_of(w.a.describe_key_pairs, Filters=[{"Name": "colour", "Values": ["red"]}])
    assert code == "InvalidParameterValue" and "colour" in msg
    assert error_of(w.a.describe_key_pairs, Filters=[{"Name": "key-name", "Values": []}])[0] == "InvalidParameterValue"


def test_other_users_keys_are_invisible(w: World) -> None:
    k = w.a.create_key_pair(KeyName="private")
    assert w.b.describe_key_pairs()["KeyPairs"] == []
    assert error_of(w.b.describe_key_pairs, KeyNames=["private"])[0] == "InvalidKeyPair.NotFound"
    assert error_of(w.b.describe_key_pairs, KeyPairIds=[k["KeyPairId"]])[0] == "InvalidKeyPair.NotFound"
    assert error_of(w.b.delete_key_pair, KeyPairId=k["KeyPairId"])[0] == "InvalidKeyPair.NotFound"
    w.b.delete_key_pair(KeyName="private")  # succeeds and deletes nothing, as on EC2
    assert [x["KeyName"] for x in w.a.describe_key_pairs()["KeyPairs"]] == ["private"]


def test_delete_by_name_or_id(w: World) -> None:
    first = w.a.create_key_pair(KeyName="one", TagSpecifications=[{"ResourceType": "key-pair", "Tags": [{"Key": "k", "Value": "v"}]}])
    w.a.create_key_pair(KeyName="two")
    r = w.a.delete_key_pair(KeyName="one")
    assert r["Return"] is True and r["KeyPairId"] == first["KeyPairId"]
    assert w.a.describe_tags()["Tags"] == []  # its tags went with it
    assert w.a.delete_key_pair(KeyName="one")["Return"] is True  # a missing name is not an error
    two = w.a.describe_key_pairs(KeyNames=["two"])["KeyPairs"][0]["KeyPairId"]
    assert w.a.delete_key_pair(KeyPairId=two)["KeyPairId"] == two
    assert w.a.describe_key_pairs()["KeyPairs"] == []
    assert error_of(w.a.delete_key_pair, KeyPairId=two)[0] == "InvalidKeyPair.NotFound"
    assert error_of(w.a.delete_key_pair, KeyPairId="key-nothex!")[0] == "InvalidKeyPair.Malformed"
    assert error_of(w.a.delete_key_pair)[0] == "MissingParameter"
    assert error_of(w.a.delete_key_pair, KeyName="two", DryRun=True)[0] == "DryRunOperation"
