"""Backup pins: the pin of a key or a CSR, before any certificate for it exists (issue 15, item 1).

Every expected pin here comes from `cryptography`'s own SubjectPublicKeyInfo
encoding of the key, never from pinengine.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.x509.oid import NameOID

from pinengine import Pin
from pinengine._errors import CertificateParseError
from pinengine._keys import public_keys
from pinengine.cli import main
from tests.certs import cached_chain

PEM, DER = serialization.Encoding.PEM, serialization.Encoding.DER
PKCS8 = serialization.PrivateFormat.PKCS8
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL
NO_ENCRYPTION = serialization.NoEncryption()


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "ed448": ed448.Ed448PrivateKey.generate(),
        "x25519": x25519.X25519PrivateKey.generate(),
    }


def spki_of(key: Any) -> bytes:
    public = key.public_key() if hasattr(key, "public_key") else key
    der: bytes = public.public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def pin_of(key: Any) -> str:
    return "sha256/" + base64.b64encode(hashlib.sha256(spki_of(key)).digest()).decode()


def csr_of(key: Any) -> x509.CertificateSigningRequest:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "next.example")])
    algorithm = None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, algorithm)


# Each case: (key name, file kind reported, bytes of the file).
def cases(keys: dict[str, Any]) -> list[tuple[str, str, bytes]]:
    out: list[tuple[str, str, bytes]] = []
    for name, key in keys.items():
        for encoding in (PEM, DER):
            out.append((name, "private key (PKCS#8)", key.private_bytes(encoding, PKCS8, NO_ENCRYPTION)))
            out.append((name, "public key", key.public_key().public_bytes(
                encoding, serialization.PublicFormat.SubjectPublicKeyInfo)))
            if name in ("rsa", "p256", "p384"):
                kind = "RSA private key (PKCS#1)" if name == "rsa" else "EC private key (SEC1)"
                out.append((name, kind, key.private_bytes(encoding, TRADITIONAL, NO_ENCRYPTION)))
            if name != "x25519":  # X25519 cannot sign a CSR
                out.append((name, "certificate request (PKCS#10)", csr_of(key).public_bytes(encoding)))
    rsa_key = keys["rsa"]
    for encoding in (PEM, DER):
        out.append(("rsa", "RSA public key (PKCS#1)",
                    rsa_key.public_key().public_bytes(encoding, serialization.PublicFormat.PKCS1)))
    return out


def test_every_key_format_gives_the_pin_cryptography_computes(keys: dict[str, Any], tmp_path: Path) -> None:
    for index, (name, kind, data) in enumerate(cases(keys)):
        path = tmp_path / f"key{index}"
        path.write_bytes(data)
        code, out = run("pins", "--format", "json", str(path))
        assert code == 0, (name, kind)
        (doc,) = [json.loads(line) for line in out.splitlines()]
        assert doc["kind"] == kind, (name, kind, doc)
        assert doc["pin"] == pin_of(keys[name]), (name, kind)
        assert Pin.from_file(path) == [Pin.parse(pin_of(keys[name]))], (name, kind)
        code, text = run("pins", str(path))
        assert text == f'{path}[0] {pin_of(keys[name])} kind="{kind}"\n'


def test_key_and_certificate_bundle_in_file_order(keys: dict[str, Any], tmp_path: Path) -> None:
    chain = cached_chain("p256")
    key = keys["p256"]
    path = tmp_path / "bundle.pem"
    path.write_bytes(
        chain.certs[0].public_bytes(PEM)
        + b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
        + key.private_bytes(PEM, TRADITIONAL, NO_ENCRYPTION)
        + csr_of(key).public_bytes(PEM)
    )
    code, out = run("pins", "--format", "json", str(path))
    assert code == 0
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["kind"] for d in docs] == ["certificate", "EC private key (SEC1)", "certificate request (PKCS#10)"]
    assert docs[0]["pin"] == pin_of(chain.certs[0].public_key())
    assert docs[1]["pin"] == docs[2]["pin"] == pin_of(key)


def test_private_material_is_never_printed(keys: dict[str, Any], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    key = keys["p256"]
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    pem = key.private_bytes(PEM, PKCS8, NO_ENCRYPTION)
    broken = pem.replace(b"-----END PRIVATE KEY-----", b"-----END RSA PRIVATE KEY-----")
    for data in (pem, broken, pem[:-40] + b"\n-----END PRIVATE KEY-----\n"):
        path = tmp_path / "k.pem"
        path.write_bytes(data)
        run("pins", "--format", "json", str(path))
        seen = capsys.readouterr()
        text = seen.out + seen.err
        for form in (secret.hex(), base64.b64encode(secret).decode(), secret.hex().upper()):
            assert form not in text


def test_encrypted_key_needs_its_passphrase(keys: dict[str, Any], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    key = keys["rsa"]
    path = tmp_path / "enc.pem"
    path.write_bytes(key.private_bytes(PEM, PKCS8, serialization.BestAvailableEncryption(b"s3cret")))
    code, _ = run("pins", str(path))
    assert code == 2
    assert "encrypted" in capsys.readouterr().err
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"nope\n")
    code, _ = run("pins", "--passphrase-file", str(wrong), str(path))
    assert code == 2
    assert "wrong passphrase" in capsys.readouterr().err
    good = tmp_path / "good"
    good.write_bytes(b"s3cret\n")
    code, out = run("pins", "--format", "json", "--passphrase-file", str(good), str(path))
    assert code == 0
    doc = json.loads(out)
    assert (doc["kind"], doc["pin"]) == ("encrypted private key (PKCS#8)", pin_of(key))


def _sec1_without_public_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    # ECPrivateKey { version 1, privateKey, [0] curve } and no [1] publicKey.
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    p256 = bytes.fromhex("06082a8648ce3d030107")
    body = b"\x02\x01\x01" + b"\x04\x20" + scalar + b"\xa0" + bytes([len(p256)]) + p256
    return b"\x30" + bytes([len(body)]) + body


def test_keys_without_their_public_half_need_cryptography(keys: dict[str, Any], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sec1 = _sec1_without_public_key(keys["p256"])
    ed = keys["ed25519"].private_bytes(DER, PKCS8, NO_ENCRYPTION)
    # With cryptography, the public key is derived.
    assert [k.spki for k in public_keys(sec1)] == [spki_of(keys["p256"])]
    assert [k.spki for k in public_keys(ed)] == [spki_of(keys["ed25519"])]
    # Keys that carry their public half need nothing else.
    rsa_der = keys["rsa"].private_bytes(DER, TRADITIONAL, NO_ENCRYPTION)
    p256_der = keys["p256"].private_bytes(DER, PKCS8, NO_ENCRYPTION)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    assert [k.spki for k in public_keys(rsa_der)] == [spki_of(keys["rsa"])]
    assert [k.spki for k in public_keys(p256_der)] == [spki_of(keys["p256"])]
    for data in (sec1, ed):
        with pytest.raises(CertificateParseError, match=r"pinengine\[cryptography\]"):
            public_keys(data)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x30\x03\x02\x01\x00", "not a certificate, public key, private key or certificate request"),
        (b"\x30\x05\x02\x01\x00\x02\x05", "longer than its container"),
        (b"\x30\x04\x30\x80\x00\x00", "indefinite"),
        (b"\x30\x81\x03\x02\x01\x00", "shortest form"),
        (b"\x30\x04\x1f\x01\x01\x00", "high-number"),
        (b"\x30\x06\x30\x00\x03\x02\x00\x00", "SPKI|algorithm|AlgorithmIdentifier|spki"),
        (b"-----BEGIN PRIVATE KEY-----\nMAoGCCqGSM49AwEH\n-----END PRIVATE KEY-----\n", r"object 0 \(PRIVATE KEY\): not a"),
        (b"-----BEGIN RSA PRIVATE KEY-----\nMAYCAQACAQE=\n-----END RSA PRIVATE KEY-----\n", "says RSA private"),
        (b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n", "no certificate"),
    ],
)
def test_malformed_keys_get_a_specific_error(data: bytes, message: str) -> None:
    with pytest.raises(CertificateParseError, match=message):
        public_keys(data)


def test_label_must_match_content(keys: dict[str, Any]) -> None:
    spki_pem = keys["p256"].public_key().public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    relabelled = spki_pem.replace(b"PUBLIC KEY", b"PRIVATE KEY")
    with pytest.raises(CertificateParseError, match="the PEM label says private key"):
        public_keys(relabelled)
