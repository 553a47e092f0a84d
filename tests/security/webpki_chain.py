"""Chains that `cryptography`'s X.509 verifier accepts: the extensions a web PKI chain carries.

``tests/certs.py`` makes chains without key identifiers or key usage, which
OpenSSL accepts and ``cryptography.x509.verification`` refuses; the offline
``pinengine verify --cafile`` uses the latter.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pinengine import Pin


def _usage(*, sign_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not sign_certificates, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=sign_certificates,
        crl_sign=sign_certificates, encipher_only=False, decipher_only=False,
    )


def issue(
    cn: str,
    key: Any,
    issuer: x509.Certificate | None,
    issuer_key: Any,
    *,
    ca: bool,
    san: str | None = None,
    days: int = 30,
    start: dt.datetime | None = None,
) -> x509.Certificate:
    """A certificate ``issuer_key`` signs (self-signed when ``issuer`` is None)."""
    start = start or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_usage(sign_certificates=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if san is not None:
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(san))
        except ValueError:
            name = x509.DNSName(san)
        builder = builder.add_extension(x509.SubjectAlternativeName([name]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def new_key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Hierarchy:
    """root -> intermediate -> leaf for ``host``."""

    host: str
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    root_key: Any
    intermediate_key: Any

    def pin(self, cert: x509.Certificate) -> str:
        return str(Pin.from_certificate(der(cert)))


def hierarchy(host: str = "www.example.com") -> Hierarchy:
    root_key, inter_key = new_key(), new_key()
    root = issue("pinengine security root", root_key, None, root_key, ca=True)
    inter = issue("pinengine security intermediate", inter_key, root, root_key, ca=True)
    leaf = issue(host, new_key(), inter, inter_key, ca=False, san=host)
    return Hierarchy(host, root, inter, leaf, root_key, inter_key)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path
