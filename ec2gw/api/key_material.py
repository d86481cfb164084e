"""SSH key material for key pairs: generation, parsing of imported public keys, fingerprints.

Pure functions (no database), so the fingerprints can be checked against what AWS prints:
- a key pair EC2 creates, RSA: SHA-1 of the DER PKCS#8 private key, as colon-separated hex;
- an imported RSA or ECDSA public key: MD5 of the DER SubjectPublicKeyInfo, colon-separated hex;
- ED25519, created or imported: base64 of the SHA-256 of the OpenSSH key blob, '=' padding kept
  (what `ssh-keygen -l` prints, but with the padding).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ec2gw.errors import ServiceError

RSA_BITS = 2048
#: RSA sizes EC2 accepts on import
RSA_IMPORT_BITS = (1024, 4096)
MAX_MATERIAL = 16384


@dataclass(frozen=True)
class NewKey:
    """A key pair just generated: what CreateKeyPair returns and what is stored."""

    key_type: str
    private_key: str  # what the user saves (KeyMaterial)
    public_key: str  # OpenSSH line "ssh-rsa AAAA..." without comment
    fingerprint: str


@dataclass(frozen=True)
class ImportedKey:
    key_type: str  # rsa | ed25519 | ecdsa
    public_key: str
    fingerprint: str


def colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)


def openssh_blob(openssh_line: str) -> bytes:
    return base64.b64decode(openssh_line.split()[1])


def sha256_fingerprint(openssh_line: str) -> str:
    return base64.b64encode(hashlib.sha256(openssh_blob(openssh_line)).digest()).decode()


def _openssh_public(public_key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _spki_md5(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return colon_hex(hashlib.md5(der, usedforsecurity=False).digest())


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(n: int) -> bytes:
    return _string(n.to_bytes((n.bit_length() + 8) // 8, "big"))


def _lines(data: bytes) -> list[str]:
    text = base64.b64encode(data).decode()
    return [text[i : i + 64] for i in range(0, len(text), 64)]


def to_ppk(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, comment: str) -> str:
    """The private key as an unencrypted PuTTY key file (PPK version 2, read by every PuTTY)."""
    public_line = _openssh_public(key.public_key())
    algorithm, public_blob = public_line.split()[0], openssh_blob(public_line)
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        private_blob = _mpint(n.d) + _mpint(n.p) + _mpint(n.q) + _mpint(n.iqmp)
    else:
        private_blob = _string(
            key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        )
    mac_key = hashlib.sha1(b"putty-private-key-file-mac-key", usedforsecurity=False).digest()
    mac_data = b"".join(_string(x) for x in (algorithm.encode(), b"none", comment.encode(), public_blob, private_blob))
    mac = hmac.new(mac_key, mac_data, hashlib.sha1).hexdigest()
    pub, priv = _lines(public_blob), _lines(private_blob)
    out = [f"PuTTY-User-Key-File-2: {algorithm}", "Encryption: none", f"Comment: {comment}",
           f"Public-Lines: {len(pub)}", *pub, f"Private-Lines: {len(priv)}", *priv, f"Private-MAC: {mac}"]
    return "\n".join(out) + "\n"


def generate(key_type: str, key_format: str = "pem", comment: str = "") -> NewKey:
    """A new key pair as EC2 makes it: RSA 2048 in PKCS#1 PEM, ED25519 in OpenSSH's private format,
    or either as a PuTTY .ppk file. The fingerprint does not depend on the format."""
    none = serialization.NoEncryption()
    if key_type == "rsa":
        rkey = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pem = rkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, none)
        pkcs8 = rkey.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, none)
        fingerprint = colon_hex(hashlib.sha1(pkcs8, usedforsecurity=False).digest())
        material = to_ppk(rkey, comment) if key_format == "ppk" else pem.decode()
        return NewKey("rsa", material, _openssh_public(rkey.public_key()), fingerprint)
    ekey = ed25519.Ed25519PrivateKey.generate()
    pem = ekey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, none)
    public = _openssh_public(ekey.public_key())
    material = to_ppk(ekey, comment) if key_format == "ppk" else pem.decode()
    return NewKey("ed25519", material, public, sha256_fingerprint(public))


def _bad_format(why: str) -> ServiceError:
    return ServiceError(
        "InvalidKey.Format",
        f"Key is not in valid OpenSSH public key format: {why}. Pass the contents of a public key file "
        "such as ~/.ssh/id_ed25519.pub (one line 'ssh-ed25519 AAAA... comment').",
    )


def _rfc4716_line(text: str) -> str:
    """An RFC 4716 ('---- BEGIN SSH2 PUBLIC KEY ----') key as an OpenSSH line."""
    lines = [ln.strip() for ln in text.splitlines()]
    try:
        body = lines[1 : lines.index("---- END SSH2 PUBLIC KEY ----")]
    except ValueError:
        raise _bad_format("the RFC 4716 block has no END line") from None
    b64: list[str] = []
    continued = False
    for ln in body:
        if continued or ":" in ln:
            continued = ln.endswith("\\")
            continue
        b64.append(ln)
    blob = base64.b64decode("".join(b64), validate=True)
    (length,) = struct.unpack(">I", blob[:4])
    algorithm = blob[4 : 4 + length].decode("ascii")
    return f"{algorithm} {base64.b64encode(blob).decode()}"


def _load(material: bytes) -> object:
    if len(material) > MAX_MATERIAL:
        raise _bad_format(f"the material is {len(material)} bytes long, more than any public key")
    try:
        text = material.decode("ascii").strip()
    except UnicodeDecodeError:
        raise _bad_format("the material is not ASCII text") from None
    if not text:
        raise _bad_format("the material is empty")
    try:
        if text.startswith("---- BEGIN SSH2 PUBLIC KEY ----"):
            text = _rfc4716_line(text)
        if text.startswith("-----BEGIN PUBLIC KEY-----"):
            body = text.removeprefix("-----BEGIN PUBLIC KEY-----").partition("-----END PUBLIC KEY-----")[0]
            return _load_spki(base64.b64decode("".join(body.split()), validate=True))
        fields = text.split()
        if fields[0] == "ssh-dss":
            raise UnsupportedAlgorithm("DSA")
        if fields[0].startswith(("ssh-", "ecdsa-")) and len(fields) >= 2:
            return serialization.load_ssh_public_key(f"{fields[0]} {fields[1]}".encode())
        return _load_spki(base64.b64decode("".join(fields), validate=True))
    except UnsupportedAlgorithm:
        raise _bad_format("the key type is not supported (use RSA, ED25519 or ECDSA)") from None
    except (ValueError, TypeError, IndexError, struct.error, binascii.Error, UnicodeDecodeError):
        raise _bad_format("the key could not be decoded") from None


# SubjectPublicKeyInfo algorithm identifiers of the key types EC2 imports: rsaEncryption,
# id-ecPublicKey, id-Ed25519 (DER of the OID, tag and length included)
_SPKI_ALGORITHMS = (
    bytes.fromhex("06092a864886f70d010101"),
    bytes.fromhex("06072a8648ce3d0201"),
    bytes.fromhex("06032b6570"),
)


def _der_item(der: bytes, at: int) -> tuple[int, int]:
    """(offset of the contents, offset after the item) of the DER item starting at ``at``."""
    length = der[at + 1]
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("DER length out of range")
        length = int.from_bytes(der[start:start + count], "big")
        start += count
    if start + length > len(der):
        raise ValueError("DER item runs past the end")
    return start, start + length


def _load_spki(der: bytes) -> object:
    """A DER SubjectPublicKeyInfo, refused before parsing unless it holds RSA, EC or Ed25519.

    Checking the algorithm first keeps other key types (DSA among them) away from the
    cryptography library, which warns on DSA and may drop it."""
    if der[:1] != b"\x30":
        raise ValueError("not a SubjectPublicKeyInfo")
    spki, _ = _der_item(der, 0)
    if der[spki:spki + 1] != b"\x30":
        raise ValueError("not a SubjectPublicKeyInfo")
    algorithm, _ = _der_item(der, spki)
    if der[algorithm:algorithm + 1] != b"\x06":
        raise ValueError("no algorithm identifier")
    _, oid_end = _der_item(der, algorithm)
    if der[algorithm:oid_end] not in _SPKI_ALGORITHMS:
        raise UnsupportedAlgorithm("public key algorithm")
    return serialization.load_der_public_key(der)


def parse_public(material: bytes) -> ImportedKey:
    """An imported public key (OpenSSH line, RFC 4716, PEM or base64 DER), with AWS's fingerprint."""
    key = _load(material)
    if isinstance(key, rsa.RSAPublicKey):
        low, high = RSA_IMPORT_BITS
        if not low <= key.key_size <= high:
            raise _bad_format(f"RSA keys must have {low} to {high} bits, this one has {key.key_size}")
        return ImportedKey("rsa", _openssh_public(key), _spki_md5(key))
    if isinstance(key, ed25519.Ed25519PublicKey):
        public = _openssh_public(key)
        return ImportedKey("ed25519", public, sha256_fingerprint(public))
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise _bad_format(f"the ECDSA curve {key.curve.name} is not supported (use nistp256, nistp384 or nistp521)")
        return ImportedKey("ecdsa", _openssh_public(key), _spki_md5(key))
    raise _bad_format(f"{type(key).__name__.replace('PublicKey', '')} keys are not supported (use RSA, ED25519 or ECDSA)")
