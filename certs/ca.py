"""The installation's certificate authority.

As in the Nimbus toolkit, an installation has its own CA: it signs the certificate the
gateway serves TLS with and one certificate per user, and clients trust the installation by
trusting ``ca.pem`` alone. The CA lives in one directory as ``ca.key`` (0600) and ``ca.pem``;
it is created on first use and loaded afterwards, never replaced behind the operator's back
(every certificate out there chains to it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID, ObjectIdentifier

from certs._files import PRIVATE, PUBLIC, ensure_directory, locked, write_atomically
from certs.keys import SigningKey, generate_private_key, load_private_key, private_key_pem, public_key_der

CA_KEY = "ca.key"
CA_CERT = "ca.pem"
CA_VALIDITY = dt.timedelta(days=3650)
#: certificates start this long before "now", so a client whose clock is a little behind
#: does not reject a certificate issued a second ago as "not yet valid"
CLOCK_SKEW = dt.timedelta(minutes=5)


class CertificateAuthorityError(RuntimeError):
    """The CA directory is in a state the CA cannot be used from; the message says what to do."""


def certificate_pem(certificate: x509.Certificate) -> bytes:
    """``certificate`` in PEM, the form every file here holds."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (what cryptography's ``*_utc`` accessors return)."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CertificateAuthority:
    """A loaded CA: its certificate and the key it signs with."""

    directory: Path
    certificate: x509.Certificate
    private_key: SigningKey

    @property
    def cert_path(self) -> Path:
        """``ca.pem``: what clients put in their trust store (e.g. ``AWS_CA_BUNDLE``)."""
        return self.directory / CA_CERT

    @property
    def key_path(self) -> Path:
        """``ca.key`` (0600): the signing key; whoever reads it can mint certificates."""
        return self.directory / CA_KEY

    @classmethod
    def load_or_create(cls, directory: Path, *, common_name: str = "ec2gw CA") -> CertificateAuthority:
        """Load the CA in ``directory``, creating it (key and self-signed certificate) if absent.

        Safe to call from several processes at once: creation happens under the directory's
        lock and the state is re-checked there, so exactly one CA comes out. ``common_name``
        only matters when the CA is created.
        """
        directory = ensure_directory(Path(directory))
        if (directory / CA_CERT).exists() and (directory / CA_KEY).exists():
            return cls._load(directory)  # the common case; files appear atomically, no lock needed
        with locked(directory):
            if (directory / CA_CERT).exists():
                if not (directory / CA_KEY).exists():
                    raise CertificateAuthorityError(
                        f"{directory / CA_CERT} exists but {directory / CA_KEY} is missing: restore the key, "
                        "or remove ca.pem to create a new CA (every issued certificate then has to be re-issued)"
                    )
                return cls._load(directory)
            return cls._create(directory, common_name)

    @classmethod
    def _load(cls, directory: Path) -> CertificateAuthority:
        """Read and check ``ca.pem`` and ``ca.key``."""
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = load_private_key(directory / CA_KEY)
        if public_key_der(key.public_key()) != public_key_der(cert.public_key()):
            raise CertificateAuthorityError(f"{directory / CA_KEY} is not the key of {directory / CA_CERT}")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise CertificateAuthorityError(
                f"{directory / CA_CERT} is not a CA certificate (BasicConstraints CA)"
            )
        return cls(directory, cert, key)

    @classmethod
    def _create(cls, directory: Path, common_name: str) -> CertificateAuthority:
        """Create the CA; the caller holds the directory lock.

        A ``ca.key`` without ``ca.pem`` is what an interrupted creation leaves behind (the key
        is written first); nothing can chain to it yet, so it is reused.
        """
        key_path = directory / CA_KEY
        if key_path.exists():
            key = load_private_key(key_path)
        else:
            key = generate_private_key()
            write_atomically(key_path, private_key_pem(key), PRIVATE)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        now = utcnow()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_VALIDITY)
            # path_length=0: this CA signs end-entity certificates only, never another CA
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        write_atomically(directory / CA_CERT, certificate_pem(cert), PUBLIC)
        return cls(directory, cert, key)

    def issue(
        self,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        *,
        valid_for: dt.timedelta,
        extended_key_usage: Sequence[ObjectIdentifier],
        extensions: Sequence[x509.ExtensionType] = (),
    ) -> x509.Certificate:
        """Sign an end-entity certificate for ``public_key``.

        The certificate gets BasicConstraints CA=False and KeyUsage digitalSignature (both
        critical; ECDSA keys sign the TLS handshake), the given ExtendedKeyUsage, Subject and
        Authority Key Identifiers, and ``extensions`` (non-critical). Its validity ends after
        ``valid_for`` or when the CA's does, whichever is first: a certificate cannot usefully
        outlive its issuer.
        """
        if valid_for <= dt.timedelta(0):
            raise ValueError(f"valid_for must be positive, not {valid_for}")
        now = utcnow()
        ca_end = self.certificate.not_valid_after_utc
        if ca_end <= now:
            raise CertificateAuthorityError(
                f"the CA in {self.directory} expired on {ca_end:%Y-%m-%d}; create a new one and re-issue certificates"
            )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(min(now + valid_for, ca_end))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._authority_key_identifier(), critical=False)
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(self.private_key, hashes.SHA256())

    def _authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        """The AKI for issued certificates: the CA's SKI (a CA brought by the operator may lack one)."""
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key())
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def issued(self, certificate: x509.Certificate) -> bool:
        """Whether ``certificate`` was signed by this CA (signature and issuer name checked)."""
        try:
            certificate.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    """A KeyUsage extension with only the named bits set."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )
