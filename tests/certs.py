"""Certificates for the tests, made with `cryptography` (root -> intermediate -> leaf).

They are what a strict verifier accepts (OpenSSL's X509_V_FLAG_X509_STRICT,
which ``ssl.create_default_context()`` sets from CPython 3.13 on): every
certificate carries a Subject Key Identifier and an Authority Key Identifier,
a critical Basic Constraints and a critical Key Usage fit for its role; leaves
say serverAuth and clientAuth in their Extended Key Usage. The helpers work
with cryptography 38 (Debian 12's, used on armv7, which has no wheel) and up.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_TYPES = ("rsa2048", "rsa4096", "p256", "p384", "ed25519")


def new_key(key_type: str) -> Any:
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(key_type)


def _sign_hash(key: Any) -> Any:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _key_usage(*, ca: bool, rsa_key: bool) -> x509.KeyUsage:
    """Certificate and CRL signing for a CA; signing (and, for RSA, key transport) for a leaf."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_key and not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_cert(
    subject_cn: str,
    key: Any,
    issuer_cert: x509.Certificate | None,
    issuer_key: Any,
    *,
    ca: bool,
    sans: tuple[str, ...] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pinengine tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, subject_cn),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                x509.SubjectKeyIdentifier.from_public_key(issuer_key.public_key())
            ),
            critical=False,
        )
        .add_extension(_key_usage(ca=ca, rsa_key=isinstance(key, rsa.RSAPrivateKey)), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    if sans:
        names: list[x509.GeneralName] = []
        for s in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                names.append(x509.DNSName(s))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, _sign_hash(issuer_key))


@dataclass
class Chain:
    """A generated hierarchy; ``ders`` is leaf, intermediate, root."""

    leaf: x509.Certificate
    intermediate: x509.Certificate
    root: x509.Certificate
    leaf_key: Any
    intermediate_key: Any
    root_key: Any

    @property
    def certs(self) -> list[x509.Certificate]:
        return [self.leaf, self.intermediate, self.root]

    @property
    def ders(self) -> list[bytes]:
        return [c.public_bytes(serialization.Encoding.DER) for c in self.certs]


def make_chain(
    key_type: str = "p256", hostname: str = "example.com", extra_sans: tuple[str, ...] = ()
) -> Chain:
    root_key = new_key(key_type)
    root = make_cert("pinengine test root", root_key, None, root_key, ca=True)
    inter_key = new_key(key_type)
    inter = make_cert("pinengine test intermediate", inter_key, root, root_key, ca=True)
    leaf_key = new_key(key_type)
    leaf = make_cert(hostname, leaf_key, inter, inter_key, ca=False, sans=(hostname, *extra_sans))
    return Chain(leaf, inter, root, leaf_key, inter_key, root_key)


def rotated(chain: Chain, hostname: str) -> Chain:
    """A key rotation: a new leaf with a new key for ``hostname``, from the same intermediate."""
    key = new_key("p256")
    leaf = make_cert(hostname, key, chain.intermediate, chain.intermediate_key, ca=False, sans=(hostname,))
    return Chain(leaf, chain.intermediate, chain.root, key, chain.intermediate_key, chain.root_key)


@cache
def cached_chain(key_type: str = "p256", hostname: str = "example.com") -> Chain:
    """One chain per key type for the whole session (RSA-4096 keys are slow to make)."""
    return make_chain(key_type, hostname)


def not_valid_before(cert: x509.Certificate) -> dt.datetime:
    """``cert.not_valid_before_utc`` (cryptography >= 42), also on older releases."""
    if hasattr(cert, "not_valid_before_utc"):
        return cert.not_valid_before_utc
    return cert.not_valid_before.replace(tzinfo=dt.timezone.utc)


def not_valid_after(cert: x509.Certificate) -> dt.datetime:
    """``cert.not_valid_after_utc`` (cryptography >= 42), also on older releases."""
    if hasattr(cert, "not_valid_after_utc"):
        return cert.not_valid_after_utc
    return cert.not_valid_after.replace(tzinfo=dt.timezone.utc)


def spki_der(cert: x509.Certificate) -> bytes:
    """The SubjectPublicKeyInfo as `cryptography` (an independent parser) encodes it."""
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


_PEM_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


@lru_cache(maxsize=1)
def certifi_ders() -> tuple[bytes, ...]:
    """Every certificate of the certifi bundle, as DER."""
    with open(certifi.where(), encoding="ascii") as f:
        text = f.read()
    return tuple(ssl.PEM_cert_to_DER_cert(m.group(0)) for m in _PEM_RE.finditer(text))


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
