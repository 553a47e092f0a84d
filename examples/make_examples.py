"""Regenerate the example chain, root and policy in this folder (needs `cryptography`).

    python examples/make_examples.py

The chain (root -> intermediate -> leaf for www.example.com, P-256, valid
2025-2035) is made up for the README's offline example; nothing trusts it
but ``pinengine verify --cafile examples/root.pem``. The certificates carry
the extensions a web PKI chain has (key identifiers, key usage, the leaf's
serverAuth), which cryptography's X.509 verifier requires.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).parent
START = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
END = dt.datetime(2035, 1, 1, tzinfo=dt.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pinengine example"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _cert(cn, key, issuer, issuer_key, ca, san=None):  # type: ignore[no-untyped-def]
    b = (x509.CertificateBuilder().subject_name(_name(cn))
         .issuer_name(issuer.subject if issuer else _name(cn))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(START).not_valid_after(END)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(_usage(ca), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                        critical=False))
    if not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pin(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def main() -> None:
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    root = _cert("Example Root CA", keys[0], None, keys[0], True)
    inter = _cert("Example Issuing CA", keys[1], root, keys[0], True)
    leaf = _cert("www.example.com", keys[2], inter, keys[1], False, "www.example.com")
    backup = _cert("Example Backup Key", keys[3], None, keys[3], True)
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, inter, root))
    (HERE / "chain.pem").write_bytes(pem)
    (HERE / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (HERE / "policy.toml").write_text(f'''# Example pin policy: see docs/policy-files.md for the schema.

[[domains]]
host = "**.example.com"           # example.com and every name below it
pins = [
    "{_pin(inter)}",   # the issuing CA's key
    "{_pin(backup)}",   # backup: a key kept offline
]
mode = "enforce"
report_uri = "https://reports.example.net/pin-violations"

[[domains]]
host = "api.example.org"
pins = [
    {{ pin = "{_pin(leaf)}", position = "leaf" }},
    "{_pin(backup)}",
]
mode = "report-only"
''')


if __name__ == "__main__":
    main()
