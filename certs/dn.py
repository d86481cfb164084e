"""Distinguished names as people write them.

Two spellings are accepted:

* OpenSSL one-line form, as in ``openssl req -subj`` and Globus/Nimbus grid-mapfiles:
  ``/O=ec2gw/OU=users/CN=alice`` -- most significant RDN first, ``/`` between RDNs, ``+``
  between the attributes of a multi-valued RDN, ``\\`` escaping the next character;
* RFC 4514: ``CN=alice,OU=users,O=ec2gw`` -- the same name, written in the reverse order.

Attribute names are matched case-insensitively, by short (``CN``) or long (``commonName``)
name or as a dotted OID. A name must contain a CN: it is what identifies a user.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

ACCEPTED_FORMS = (
    'expected a distinguished name in OpenSSL one-line form, e.g. "/O=ec2gw/OU=users/CN=alice", '
    'or in RFC 4514 form, e.g. "CN=alice,OU=users,O=ec2gw"'
)

# (short name, long name, OID); the short name is the one ``format_dn`` writes
_ATTRIBUTES: list[tuple[str, str, ObjectIdentifier]] = [
    ("C", "countryName", NameOID.COUNTRY_NAME),
    ("ST", "stateOrProvinceName", NameOID.STATE_OR_PROVINCE_NAME),
    ("L", "localityName", NameOID.LOCALITY_NAME),
    ("street", "streetAddress", NameOID.STREET_ADDRESS),
    ("O", "organizationName", NameOID.ORGANIZATION_NAME),
    ("OU", "organizationalUnitName", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("CN", "commonName", NameOID.COMMON_NAME),
    ("DC", "domainComponent", NameOID.DOMAIN_COMPONENT),
    ("UID", "userId", NameOID.USER_ID),
    ("serialNumber", "serialNumber", NameOID.SERIAL_NUMBER),
    ("emailAddress", "emailAddress", NameOID.EMAIL_ADDRESS),
    ("title", "title", NameOID.TITLE),
    ("GN", "givenName", NameOID.GIVEN_NAME),
    ("SN", "surname", NameOID.SURNAME),
]
_OID_BY_NAME = {n.lower(): oid for short, long, oid in _ATTRIBUTES for n in (short, long)}
_SHORT_NAME = {oid: short for short, _long, oid in _ATTRIBUTES}


class _AttributeNames(Mapping[str, ObjectIdentifier]):
    """Attribute name -> OID, case-insensitively (for cryptography's RFC 4514 parser)."""

    def __getitem__(self, name: str) -> ObjectIdentifier:
        return _OID_BY_NAME[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(_OID_BY_NAME)

    def __len__(self) -> int:
        return len(_OID_BY_NAME)


def parse_dn(dn: str) -> x509.Name:
    """The x509.Name ``dn`` spells; ValueError, naming the accepted forms, if it is malformed."""
    if not isinstance(dn, str) or not dn.strip():
        raise _malformed(dn, "it is empty")
    try:
        name = (
            _parse_oneline(dn) if dn.startswith("/") else x509.Name.from_rfc4514_string(dn, _AttributeNames())
        )
    except ValueError as exc:
        raise _malformed(dn, str(exc) or "it cannot be parsed") from None
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise _malformed(dn, "it has no CN")
    return name


def format_dn(name: x509.Name) -> str:
    """``name`` in OpenSSL one-line form (what grid-mapfiles hold); ``parse_dn`` reads it back."""
    return "".join(
        "/" + "+".join(f"{_SHORT_NAME.get(a.oid, a.oid.dotted_string)}={_escape(str(a.value))}" for a in rdn)
        for rdn in name.rdns
    )


def _escape(value: str) -> str:
    return "".join("\\" + c if c in "\\/+" else c for c in value)


def _parse_oneline(dn: str) -> x509.Name:
    """Parse ``/type=value/type=value+type=value...`` (the leading ``/`` already checked)."""
    rdns: list[list[x509.NameAttribute]] = []
    attributes: list[x509.NameAttribute] = []
    field: list[str] = []
    attribute_type: str | None = None
    chars = iter(dn[1:])
    for c in chars:
        if c == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError("it ends with a lone backslash")
            field.append(escaped)
        elif c == "=" and attribute_type is None:
            attribute_type, field = "".join(field), []
        elif c in "/+":
            attributes.append(_attribute(attribute_type, "".join(field)))
            attribute_type, field = None, []
            if c == "/":
                rdns.append(attributes)
                attributes = []
        else:
            field.append(c)
    attributes.append(_attribute(attribute_type, "".join(field)))
    rdns.append(attributes)
    return x509.Name([x509.RelativeDistinguishedName(rdn) for rdn in rdns])


def _attribute(attribute_type: str | None, value: str) -> x509.NameAttribute:
    if attribute_type is None:
        raise ValueError(f"{value!r} is not of the form type=value" if value else "it has an empty component")
    oid = _oid(attribute_type.strip())
    if not value:
        raise ValueError(f"{attribute_type} has an empty value")
    return x509.NameAttribute(oid, value)


def _oid(attribute_type: str) -> ObjectIdentifier:
    if attribute_type.lower() in _OID_BY_NAME:
        return _OID_BY_NAME[attribute_type.lower()]
    if attribute_type[:1].isdigit():
        try:
            return ObjectIdentifier(attribute_type)
        except ValueError:
            raise ValueError(f"{attribute_type!r} is not a dotted OID") from None
    known = ", ".join(short for short, _long, _oid in _ATTRIBUTES)
    raise ValueError(f"unknown attribute type {attribute_type!r} (known: {known}, or a dotted OID)")


def _malformed(dn: object, why: str) -> ValueError:
    return ValueError(f"malformed distinguished name {dn!r}: {why}; {ACCEPTED_FORMS}")
