"""The installation CA, the server certificate and user certificates (package ``certs``).

Certificates are checked with the real ``openssl`` command and with a real TLS handshake
through Python's ``ssl``, not only with the library that made them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

import certs._files
from certs.ca import CertificateAuthority, CertificateAuthorityError
from certs.dn import format_dn, parse_dn
from certs.server import ensure_server_certificate
from certs.user import default_dn, issue_user_certificate

E = TypeVar("E", bound=x509.ExtensionType)

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0


# ---------------------------------------------------------------- helpers


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca")


@pytest.fixture
def other_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "other-ca", common_name="someone else's CA")


@pytest.fixture
def umask_zero():
    """Run with umask 0, so a file created without an explicit mode would be world-readable."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


# ---------------------------------------------------------------- the CA


def test_ca_is_created_once_and_reloaded_identically(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    first = CertificateAuthority.load_or_create(directory, common_name="Test Cloud CA")
    files = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (first.cert_path, first.key_path)}

    second = CertificateAuthority.load_or_create(directory, common_name="ignored once created")

    assert second.certificate == first.certificate
    assert second.certificate.public_bytes(serialization.Encoding.DER) == first.certificate.public_bytes(
        serialization.Encoding.DER
    )
    assert second.private_key.private_numbers() == first.private_key.private_numbers()
    assert {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (second.cert_path, second.key_path)
    } == files
    assert first.certificate.subject.rfc4514_string() == "CN=Test Cloud CA"
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == ["ca.key", "ca.pem"]
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_ca_certificate_extensions(ca: CertificateAuthority) -> None:
    cert = ca.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ec2gw CA"
    assert isinstance(ca.private_key, ec.EllipticCurvePrivateKey)
    assert ca.private_key.curve.name == "secp256r1"

    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca is True
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        ca.private_key.public_key()
    )
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime < dt.timedelta(days=3651)
    cert.verify_directly_issued_by(cert)  # self-signed, signature valid
    # openssl agrees it is a usable CA
    assert openssl("verify", "-x509_strict", "-CAfile", ca.cert_path, ca.cert_path).returncode == 0


_RACE = """
import pathlib, sys, time, hashlib
from cryptography.hazmat.primitives import serialization
from certs.ca import CertificateAuthority

directory, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
deadline = time.monotonic() + 30
while not go.exists():  # start line: every process is imported and waiting
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.0005)
ca = CertificateAuthority.load_or_create(directory)
der = ca.certificate.public_bytes(serialization.Encoding.DER)
key = ca.private_key.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
print(hashlib.sha256(der).hexdigest(), hashlib.sha256(key).hexdigest())
"""


@pytest.mark.timeout(120)
def test_concurrent_creation_from_several_processes_yields_one_ca(tmp_path: Path) -> None:
    directory, go, ready = tmp_path / "ca", tmp_path / "go", []
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, str(directory), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        time.sleep(1.5)  # let them import cryptography and reach the start line
        go.touch()
        for process in processes:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            ready.append(tuple(out.split()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert len(set(ready)) == 1, ready  # every process got the same certificate and key
    on_disk = CertificateAuthority.load_or_create(directory)
    assert (
        ready[0][0]
        == hashlib.sha256(on_disk.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    )


def test_ca_refuses_a_certificate_without_its_key(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    CertificateAuthority.load_or_create(directory)
    (directory / "ca.key").unlink()
    with pytest.raises(CertificateAuthorityError, match="ca.key is missing"):
        CertificateAuthority.load_or_create(directory)


def test_ca_refuses_a_key_that_does_not_match(tmp_path: Path) -> None:
    one = CertificateAuthority.load_or_create(tmp_path / "one")
    two = CertificateAuthority.load_or_create(tmp_path / "two")
    (two.directory / "ca.key").write_bytes(one.key_path.read_bytes())
    with pytest.raises(CertificateAuthorityError, match="is not the key of"):
        CertificateAuthority.load_or_create(two.directory)


def test_interrupted_creation_reuses_the_key_left_behind(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    first = CertificateAuthority.load_or_create(directory)
    first.cert_path.unlink()  # as if the process died between writing the key and the certificate
    second = CertificateAuthority.load_or_create(directory)
    assert second.private_key.private_numbers() == first.private_key.private_numbers()
    assert second.certificate.public_key() == first.certificate.public_key()


# ---------------------------------------------------------------- server certificate


def test_server_certificate_verifies_with_openssl_and_carries_the_sans(
    ca: CertificateAuthority, other_ca: CertificateAuthority, tmp_path: Path
) -> None:
    cert_path, key_path = ensure_server_certificate(
        ca, tmp_path / "server", ["localhost", "Cloud.Example.ORG."], ["127.0.0.1", "::1"]
    )
    assert (cert_path.name, key_path.name) == ("server.pem", "server.key")

    result = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca.cert_path, cert_path)
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result
    # and it is really the CA that makes it verify
    assert openssl("verify", "-CAfile", other_ca.cert_path, cert_path).returncode != 0

    cert = load_cert(cert_path)
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "cloud.example.org"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert "DNS:localhost" in openssl("x509", "-noout", "-ext", "subjectAltName", "-in", cert_path).stdout
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ext(cert, x509.BasicConstraints).value.ca is False
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == (
        ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest
    )
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()


def test_server_certificate_is_left_alone_while_it_covers_the_names(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    directory = tmp_path / "server"
    cert_path, _ = ensure_server_certificate(ca, directory, ["localhost", "cloud.example.org"], ["127.0.0.1"])
    original = cert_path.read_bytes()
    ensure_server_certificate(ca, directory, ["localhost", "cloud.example.org"], ["127.0.0.1"])
    ensure_server_certificate(ca, directory, ["LOCALHOST."], [])  # a subset, spelled differently
    ensure_server_certificate(ca, directory, [], ["127.0.0.1"])
    assert cert_path.read_bytes() == original


def test_server_certificate_is_reissued_when_names_change(ca: CertificateAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "server"
    cert_path, key_path = ensure_server_certificate(ca, directory, ["localhost"], ["127.0.0.1"])
    before = load_cert(cert_path)
    key_before = key_path.read_bytes()

    ensure_server_certificate(ca, directory, ["localhost", "new.example.org"], ["127.0.0.1", "10.0.0.5"])
    after = load_cert(cert_path)

    assert after.serial_number != before.serial_number
    san = ext(after, x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "new.example.org"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.0.0.5"}
    # the key is kept, so a process holding the old certificate still has a matching pair
    assert key_path.read_bytes() == key_before
    assert openssl("verify", "-purpose", "sslserver", "-CAfile", ca.cert_path, cert_path).returncode == 0


def test_server_certificate_is_reissued_when_it_expires_soon(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    directory = tmp_path / "server"
    cert_path, _ = ensure_server_certificate(
        ca, directory, ["localhost"], [], valid_for=dt.timedelta(days=10)
    )
    short = load_cert(cert_path)
    assert short.not_valid_after_utc - short.not_valid_before_utc < dt.timedelta(days=11)

    ensure_server_certificate(ca, directory, ["localhost"], [])
    renewed = load_cert(cert_path)
    assert renewed.serial_number != short.serial_number
    assert renewed.not_valid_after_utc - renewed.not_valid_before_utc > dt.timedelta(days=360)


def test_server_certificate_is_reissued_for_a_new_ca(
    ca: CertificateAuthority, other_ca: CertificateAuthority, tmp_path: Path
) -> None:
    directory = tmp_path / "server"
    cert_path, _ = ensure_server_certificate(ca, directory, ["localhost"], [])
    ensure_server_certificate(other_ca, directory, ["localhost"], [])
    assert openssl("verify", "-CAfile", other_ca.cert_path, cert_path).returncode == 0
    assert openssl("verify", "-CAfile", ca.cert_path, cert_path).returncode != 0


@pytest.mark.parametrize(
    ("hostnames", "addresses", "message"),
    [
        ([], [], "at least one"),
        (["bad name"], [], "not a valid DNS name"),
        (["-leading.example"], [], "not a valid DNS name"),
        (["bücher.example"], [], "xn--"),
        (["127.0.0.1"], [], "pass it in addresses"),
        ([], ["999.1.1.1"], "not an IPv4 or IPv6 address"),
        ([], ["localhost"], "not an IPv4 or IPv6 address"),
    ],
)
def test_server_certificate_rejects_invalid_names(
    ca: CertificateAuthority, tmp_path: Path, hostnames: list[str], addresses: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ensure_server_certificate(ca, tmp_path / "server", hostnames, addresses)
    assert not (tmp_path / "server").exists()


# ---------------------------------------------------------------- user certificates


@pytest.mark.parametrize("dn", ["/O=ec2gw/OU=users/CN=alice", "CN=alice,OU=users,O=ec2gw"])
def test_user_certificate_verifies_with_openssl_and_has_the_dn(
    ca: CertificateAuthority, other_ca: CertificateAuthority, tmp_path: Path, dn: str
) -> None:
    cert_path, key_path = issue_user_certificate(ca, dn, tmp_path / "alice")
    assert (cert_path.name, key_path.name) == ("usercert.pem", "userkey.pem")

    result = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", ca.cert_path, cert_path)
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result
    assert openssl("verify", "-CAfile", other_ca.cert_path, cert_path).returncode != 0
    # a client certificate is not good for serving TLS
    assert openssl("verify", "-purpose", "sslserver", "-CAfile", ca.cert_path, cert_path).returncode != 0

    subject = openssl("x509", "-noout", "-subject", "-nameopt", "compat", "-in", cert_path)
    assert subject.stdout.strip() == "subject=/O=ec2gw/OU=users/CN=alice"
    subject = openssl("x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", cert_path)
    assert subject.stdout.strip() == "subject=CN=alice,OU=users,O=ec2gw"

    cert = load_cert(cert_path)
    assert format_dn(cert.subject) == "/O=ec2gw/OU=users/CN=alice"
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=365) <= lifetime <= dt.timedelta(days=366)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()


def test_user_certificate_validity_is_a_parameter_and_reissue_replaces(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    directory = tmp_path / "bob"
    cert_path, key_path = issue_user_certificate(
        ca, default_dn("bob"), directory, valid_for=dt.timedelta(days=30)
    )
    first_cert, first_key = cert_path.read_bytes(), key_path.read_bytes()
    cert = load_cert(cert_path)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < dt.timedelta(days=31)

    issue_user_certificate(ca, default_dn("bob"), directory)
    assert cert_path.read_bytes() != first_cert and key_path.read_bytes() != first_key
    assert openssl("verify", "-purpose", "sslclient", "-CAfile", ca.cert_path, cert_path).returncode == 0


@pytest.mark.parametrize(
    "dn",
    [
        "",
        "   ",
        "alice",
        "/",
        "/CN",
        "/CN=",
        "/O=ec2gw//CN=alice",
        "/O=ec2gw/CN=alice/",
        "/FOO=bar/CN=alice",
        "/C=USA/CN=alice",
        "/CN=alice\\",
        "/O=ec2gw/OU=users",  # no CN
        "CN=alice,,O=ec2gw",
        "CN=alice,",
        "CN=alice, O=ec2gw",
        "NOPE=x,CN=alice",
        "O=ec2gw",
        "/CN=" + "a" * 65,
    ],
)
def test_malformed_dn_is_rejected_with_the_accepted_forms(
    ca: CertificateAuthority, tmp_path: Path, dn: str
) -> None:
    with pytest.raises(ValueError) as excinfo:
        issue_user_certificate(ca, dn, tmp_path / "user")
    message = str(excinfo.value)
    assert '"/O=ec2gw/OU=users/CN=alice"' in message and '"CN=alice,OU=users,O=ec2gw"' in message
    assert not (tmp_path / "user").exists()


def test_dn_forms_are_equivalent() -> None:
    oneline = parse_dn("/DC=org/DC=example/O=ec2gw/OU=users/CN=alice+UID=1001")
    rfc = parse_dn("cn=alice+uid=1001,OU=users,o=ec2gw,DC=example,DC=org")
    assert oneline == rfc
    assert format_dn(oneline) == "/DC=org/DC=example/O=ec2gw/OU=users/CN=alice+UID=1001"
    assert (
        parse_dn(r"/O=ec2gw/CN=a\/b\+c=d").get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "a/b+c=d"
    )


def test_default_dn() -> None:
    assert default_dn("alice") == "/O=ec2gw/OU=users/CN=alice"
    assert default_dn("a" * 64).endswith("=" + "a" * 64)
    for bad in ["", " ", "a" * 65, "é" * 33, "tab\there"]:
        with pytest.raises(ValueError):
            default_dn(bad)


@settings(database=None, max_examples=200)
@given(
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=64).filter(
        lambda s: s.strip() and len(s.encode()) <= 64
    )
)
def test_default_dn_round_trips_any_username(username: str) -> None:
    """Any name that fits a CN survives default_dn -> parse_dn -> format_dn (escaping included)."""
    dn = default_dn(username)
    name = parse_dn(dn)
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == username
    assert format_dn(name) == dn


# ---------------------------------------------------------------- key files


def test_private_keys_are_0600_from_creation(
    tmp_path: Path, umask_zero: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[str, int, int]] = []
    real_open = os.open

    def spying_open(path, flags, mode=0o777, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).endswith(".tmp"):
            created.append((str(path), flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(certs._files.os, "open", spying_open)

    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    server_cert, server_key = ensure_server_certificate(ca, tmp_path / "server", ["localhost"], ["127.0.0.1"])
    user_cert, user_key = issue_user_certificate(ca, default_dn("alice"), tmp_path / "alice")

    for key in (ca.key_path, server_key, user_key):
        assert mode(key) == 0o600, key
    for cert in (ca.cert_path, server_cert, user_cert):
        assert mode(cert) == 0o644, cert
    for directory in (ca.directory, tmp_path / "server", tmp_path / "alice"):
        assert mode(directory) == 0o700
        assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    # every file was born 0600 and exclusively ours (even with umask 0), before any data went in
    assert len(created) == 6
    assert all(m == 0o600 and f & os.O_EXCL and f & os.O_CREAT for _, f, m in created)


# ---------------------------------------------------------------- TLS


def handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, server_hostname: str
) -> tuple[bytes, dict[str, object]]:
    """Connect ``client_context`` to a server on 127.0.0.1 using ``server_context``.

    Returns what the server sent and what the server thread saw ('peer' certificate or
    'error'). Every socket has a timeout, and the server thread is joined, so a broken
    handshake fails the test instead of hanging it.
    """
    seen: dict[str, object] = {}
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            with server_context.wrap_socket(conn, server_side=True) as tls:
                seen["peer"] = tls.getpeercert()
                tls.sendall(b"ok")
        except OSError as exc:  # ssl.SSLError and socket timeouts included
            seen["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
            client_context.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            data = tls.recv(2)
    finally:
        thread.join(TIMEOUT)
        listener.close()
    assert not thread.is_alive(), "server thread did not finish"
    return data, seen


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A client trusting only ``ca_file`` (not the system store), checking the hostname."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=ca_file)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    return context


@pytest.mark.timeout(60)
@pytest.mark.parametrize("server_hostname", ["127.0.0.1", "localhost"])
def test_tls_handshake_with_the_server_certificate(
    ca: CertificateAuthority, tmp_path: Path, server_hostname: str
) -> None:
    cert, key = ensure_server_certificate(ca, tmp_path / "server", ["localhost"], ["127.0.0.1"])
    data, seen = handshake(server_context(cert, key), client_context(ca.cert_path), server_hostname)
    assert data == b"ok"
    assert "error" not in seen


@pytest.mark.timeout(60)
def test_tls_handshake_fails_for_a_name_not_in_the_certificate(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    cert, key = ensure_server_certificate(ca, tmp_path / "server", ["localhost"], ["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|doesn't match"):
        handshake(server_context(cert, key), client_context(ca.cert_path), "other.example.org")


@pytest.mark.timeout(60)
def test_tls_handshake_fails_for_a_client_trusting_another_ca(
    ca: CertificateAuthority, other_ca: CertificateAuthority, tmp_path: Path
) -> None:
    cert, key = ensure_server_certificate(ca, tmp_path / "server", ["localhost"], ["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(server_context(cert, key), client_context(other_ca.cert_path), "localhost")


@pytest.mark.timeout(60)
def test_mutual_tls_with_a_user_certificate(ca: CertificateAuthority, tmp_path: Path) -> None:
    cert, key = ensure_server_certificate(ca, tmp_path / "server", ["localhost"], ["127.0.0.1"])
    user_cert, user_key = issue_user_certificate(ca, "/O=ec2gw/OU=users/CN=alice", tmp_path / "alice")
    server = server_context(cert, key)
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cafile=ca.cert_path)
    client = client_context(ca.cert_path)
    client.load_cert_chain(user_cert, user_key)

    data, seen = handshake(server, client, "127.0.0.1")

    assert data == b"ok", seen
    peer = seen["peer"]
    assert isinstance(peer, dict)
    assert peer["subject"] == (
        (("organizationName", "ec2gw"),),
        (("organizationalUnitName", "users"),),
        (("commonName", "alice"),),
    )
