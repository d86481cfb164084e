"""Private keys: which kind, how they are serialised, how they are read back.

Every key this package generates (the CA's, servers', users') is ECDSA on NIST P-256:

* 128-bit security, the same as RSA-3072, with 32-byte keys and 64-byte signatures;
* generated in well under a millisecond, where RSA-3072 takes around a second (CA creation,
  server start-up and the test suite stay fast);
* accepted everywhere this service is used from: OpenSSL 1.0.1+, Python's ``ssl``, botocore
  and urllib3, curl, Go, Java 7+ and every browser, for TLS 1.2 (ECDHE-ECDSA) and TLS 1.3.

Keys are stored as unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY"), which every one of those
reads; their protection is the 0600 file mode (see ``certs._files``). A CA brought by the
operator may also use an RSA key: ``load_private_key`` accepts both.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

#: the kinds of private key that can sign certificates here
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

CURVE = ec.SECP256R1


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 private key."""
    return ec.generate_private_key(CURVE())


def private_key_pem(key: SigningKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(path: Path) -> SigningKey:
    """Read an unencrypted PEM private key; ValueError if it is not an EC or RSA key."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        # ValueError like every other "this file is not a usable key" case
        raise ValueError(f"{path}: unsupported key type {type(key).__name__} (expected EC or RSA)")  # noqa: TRY004
    return key


def public_key_der(key: CertificatePublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER of a public key, to compare a key with a certificate's."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
