"""User certificates, as Nimbus handed them out: ``usercert.pem`` and ``userkey.pem``.

A user proves who they are to the gateway with a client certificate signed by the
installation's CA; the certificate's subject DN is the user's identity (what a grid-mapfile
or the user table maps to an account).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs._files import PRIVATE, PUBLIC, ensure_directory, locked, write_atomically
from certs.ca import CertificateAuthority, certificate_pem
from certs.dn import parse_dn
from certs.keys import generate_private_key, private_key_pem

USER_CERT = "usercert.pem"
USER_KEY = "userkey.pem"
USER_VALIDITY = dt.timedelta(days=365)


def default_dn(username: str) -> str:
    """The DN a user gets unless told otherwise: ``/O=ec2gw/OU=users/CN=<username>``.

    ValueError if ``username`` is empty, longer than a CN may be (64 bytes in UTF-8) or
    contains control characters; ``/``, ``+`` and ``\\`` are escaped so that ``parse_dn`` reads the
    name back unchanged.
    """
    if not username or not username.strip():
        raise ValueError("a username must not be empty")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in username):
        raise ValueError(f"username {username!r} contains control characters")
    try:
        x509.NameAttribute(NameOID.COMMON_NAME, username)  # cryptography enforces the CN size limit
    except ValueError:
        raise ValueError(
            f"username {username!r} is too long for a certificate CN (64 bytes in UTF-8)"
        ) from None
    escaped = "".join("\\" + c if c in "\\/+" else c for c in username)
    return f"/O=ec2gw/OU=users/CN={escaped}"


def issue_user_certificate(
    ca: CertificateAuthority,
    dn: str,
    directory: Path,
    *,
    valid_for: dt.timedelta = USER_VALIDITY,
) -> tuple[Path, Path]:
    """Issue a new key and certificate for ``dn`` into ``directory``; returns (cert, key) paths.

    ``dn`` is in OpenSSL one-line or RFC 4514 form (see ``certs.dn``); ValueError if it is
    malformed. The certificate has ExtendedKeyUsage clientAuth and is valid for ``valid_for``
    (a year by default). Existing ``usercert.pem``/``userkey.pem`` are replaced: this is how
    a user's certificate is renewed.
    """
    subject = parse_dn(dn)  # before touching anything on disk
    directory = ensure_directory(Path(directory))
    cert_path, key_path = directory / USER_CERT, directory / USER_KEY
    key = generate_private_key()
    cert = ca.issue(
        subject,
        key.public_key(),
        valid_for=valid_for,
        extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    with locked(directory):
        write_atomically(key_path, private_key_pem(key), PRIVATE)
        write_atomically(cert_path, certificate_pem(cert), PUBLIC)
    return cert_path, key_path
