"""The certificate the gateway serves TLS with, signed by the installation's CA.

``ensure_server_certificate`` is meant to be called at every start (by every worker): it
leaves a good certificate alone and issues a new one only when needed, i.e. when the names
the server is reached by are not all in it, it expires within ``renew_before``, it was not
signed by this CA, or it does not match the key. A re-issued certificate keeps the existing
key, so a process that read the old certificate a moment earlier still holds a matching
certificate/key pair; delete ``server.key`` to get a new key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs._files import PRIVATE, PUBLIC, ensure_directory, locked, write_atomically
from certs.ca import CertificateAuthority, certificate_pem, utcnow
from certs.keys import generate_private_key, load_private_key, private_key_pem, public_key_der

SERVER_VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# one DNS label: letters, digits, hyphens inside (underscores tolerated, some internal names
# use them); a wildcard is only allowed as the whole leftmost label
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")


def ensure_server_certificate(
    ca: CertificateAuthority,
    directory: Path,
    hostnames: list[str],
    addresses: list[str],
    *,
    valid_for: dt.timedelta = SERVER_VALIDITY,
    renew_before: dt.timedelta = RENEW_BEFORE,
    basename: str = "server",
) -> tuple[Path, Path]:
    """Make sure ``<basename>.pem``/``<basename>.key`` in ``directory`` are a usable server pair.

    The certificate carries every name in ``hostnames`` as a DNS SubjectAlternativeName and
    every address in ``addresses`` as an IP one (clients check the SAN, not the CN), with
    ExtendedKeyUsage serverAuth. A re-issued certificate names exactly what was asked for.
    Returns (certificate path, key path). ValueError for an invalid name or address, or when
    both lists are empty.
    """
    names = normalise_hostnames(hostnames)
    ips = normalise_addresses(addresses)
    if not names and not ips:
        raise ValueError("a server certificate needs at least one hostname or IP address")
    directory = ensure_directory(Path(directory))
    cert_path, key_path = directory / f"{basename}.pem", directory / f"{basename}.key"
    if _is_current(ca, cert_path, key_path, names, ips, renew_before):
        return cert_path, key_path
    with locked(directory):
        if _is_current(ca, cert_path, key_path, names, ips, renew_before):
            return cert_path, key_path  # another process renewed it while we waited for the lock
        key = _existing_or_new_key(key_path)
        san = x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in names] + [x509.IPAddress(ip) for ip in ips]
        )
        cert = ca.issue(
            _subject(names, ips),
            key.public_key(),
            valid_for=valid_for,
            extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
            extensions=[san],
        )
        write_atomically(cert_path, certificate_pem(cert), PUBLIC)
    return cert_path, key_path


def normalise_hostnames(hostnames: Iterable[str]) -> list[str]:
    """Lower-cased, without a trailing dot, duplicates dropped, order kept; ValueError if invalid.

    Names must be ASCII (IDNA A-labels such as ``xn--bcher-kva.example``); an IP address is
    refused here, it belongs in ``addresses`` (clients only match it against IP SANs).
    """
    result: list[str] = []
    for raw in hostnames:
        name = raw.strip().lower().removesuffix(".")
        if _is_ip(name):
            raise ValueError(f"{raw!r} is an IP address: pass it in addresses, not hostnames")
        if len(name) > 253 or not name.isascii() or not _HOSTNAME.fullmatch(name):
            raise ValueError(
                f"{raw!r} is not a valid DNS name (ASCII labels of letters, digits and hyphens, "
                "an optional leading '*.', internationalised names in their xn-- form)"
            )
        if name not in result:
            result.append(name)
    return result


def normalise_addresses(addresses: Iterable[str]) -> list[IPAddress]:
    """Parsed IPv4/IPv6 addresses, duplicates dropped, order kept; ValueError if one is invalid."""
    result: list[IPAddress] = []
    for raw in addresses:
        try:
            ip = ipaddress.ip_address(raw.strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not an IPv4 or IPv6 address") from None
        if ip not in result:
            result.append(ip)
    return result


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _subject(names: list[str], ips: list[IPAddress]) -> x509.Name:
    """CN = the first name (informational only; a CN is limited to 64 characters)."""
    first = names[0] if names else str(ips[0])
    common_name = first if len(first) <= 64 else "ec2gw server"
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _is_current(
    ca: CertificateAuthority,
    cert_path: Path,
    key_path: Path,
    names: list[str],
    ips: list[IPAddress],
    renew_before: dt.timedelta,
) -> bool:
    """Whether the pair on disk can be served as it is for these names."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = load_private_key(key_path)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False  # missing or unreadable: issue a new one
    now = utcnow()
    return (
        ca.issued(cert)
        and public_key_der(cert.public_key()) == public_key_der(key.public_key())
        and cert.not_valid_before_utc <= now
        and cert.not_valid_after_utc - now > renew_before
        and set(names) <= {n.lower() for n in san.get_values_for_type(x509.DNSName)}
        and set(ips) <= set(san.get_values_for_type(x509.IPAddress))
    )


def _existing_or_new_key(key_path: Path) -> ec.EllipticCurvePrivateKey:
    """The server key already on disk if it is a usable EC key, else a new one, written 0600."""
    try:
        key = load_private_key(key_path)
    except (OSError, ValueError):
        key = None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key
    key = generate_private_key()
    write_atomically(key_path, private_key_pem(key), PRIVATE)
    return key
