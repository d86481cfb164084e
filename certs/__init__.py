"""The installation's certificate authority and the certificates it issues.

* ``certs.ca``     -- ``CertificateAuthority.load_or_create(directory)``: ca.key + ca.pem
* ``certs.server`` -- ``ensure_server_certificate(...)``: the gateway's TLS certificate
* ``certs.user``   -- ``issue_user_certificate(...)``: usercert.pem + userkey.pem per user
* ``certs.dn``     -- distinguished names in OpenSSL one-line or RFC 4514 form
"""

from __future__ import annotations

from certs.ca import CertificateAuthority, CertificateAuthorityError
from certs.dn import format_dn, parse_dn
from certs.server import ensure_server_certificate
from certs.user import default_dn, issue_user_certificate

__all__ = [
    "CertificateAuthority",
    "CertificateAuthorityError",
    "default_dn",
    "ensure_server_certificate",
    "format_dn",
    "issue_user_certificate",
    "parse_dn",
]
