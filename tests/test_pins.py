"""Pin: parsing every written form, canonical output, and pins made from certificates and keys."""

from __future__ import annotations

import base64
import hashlib
import warnings

import pytest
from cryptography.hazmat.primitives import serialization

from pinengine import CertificateParseError, InsecurePinWarning, Pin, PinFormatError
from tests.certs import cached_chain, certifi_ders, spki_der

# Core and policy behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores

DIGEST = hashlib.sha256(b"pinengine").digest()
B64 = base64.b64encode(DIGEST).decode()


def test_okhttp_form_round_trips() -> None:
    pin = Pin.parse(f"sha256/{B64}")
    assert pin == Pin("sha256", DIGEST)
    assert pin.kind == "spki"
    assert str(pin) == f"sha256/{B64}"
    assert Pin.parse(str(pin)) == pin


def test_curl_double_slash_form() -> None:
    assert Pin.parse(f"sha256//{B64}") == Pin("sha256", DIGEST)


def test_base64_starting_with_slash_is_not_taken_for_curl_form() -> None:
    digest = b"\xfe" + DIGEST[1:]
    b64 = base64.b64encode(digest).decode()
    assert b64.startswith("/")
    assert Pin.parse(f"sha256/{b64}") == Pin("sha256", digest)
    assert Pin.parse(f"sha256//{b64}") == Pin("sha256", digest)
    assert str(Pin("sha256", digest)) == f"sha256/{b64}"


def test_hpkp_header_form() -> None:
    assert Pin.parse(f'pin-sha256="{B64}"') == Pin("sha256", DIGEST)
    assert Pin.parse(f"pin-sha256={B64}") == Pin("sha256", DIGEST)
    assert Pin.parse(f'PIN-SHA256 = "{B64}"') == Pin("sha256", DIGEST)
    assert Pin("sha256", DIGEST).hpkp == f'pin-sha256="{B64}"'


def test_hex_forms_with_and_without_colons() -> None:
    plain = DIGEST.hex()
    colons = ":".join(f"{b:02X}" for b in DIGEST)
    assert Pin.parse(plain) == Pin("sha256", DIGEST)
    assert Pin.parse(colons) == Pin("sha256", DIGEST)
    cert = Pin.parse(colons, kind="certificate")
    assert cert.kind == "certificate"
    assert str(cert) == f"cert-sha256/{B64}"


def test_certificate_pin_form() -> None:
    pin = Pin.parse(f"cert-sha256/{B64}")
    assert pin.kind == "certificate"
    assert pin != Pin("sha256", DIGEST)
    assert str(pin) == f"cert-sha256/{B64}"


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_longer_algorithms(algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"x").digest()
    text = f"{algorithm}/{base64.b64encode(digest).decode()}"
    assert Pin.parse(text) == Pin(algorithm, digest)
    assert Pin.parse(digest.hex()).algorithm == algorithm


def test_sha1_refused_unless_allowed() -> None:
    digest = hashlib.sha1(b"x").digest()
    text = f"sha1/{base64.b64encode(digest).decode()}"
    with pytest.raises(PinFormatError, match="SHA-1 pins are refused"):
        Pin.parse(text)
    with pytest.raises(PinFormatError, match="SHA-1"):
        Pin.parse(digest.hex())
    with pytest.warns(InsecurePinWarning):
        assert Pin.parse(text, allow_sha1=True).algorithm == "sha1"


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("sha256/", "digest is empty"),
        (f"sha256/{B64[:-4]}", "bad base64|wrong length"),
        ("sha256/" + base64.b64encode(DIGEST[:31]).decode(), "wrong length for sha256: 31 bytes"),
        ("sha256/" + base64.b64encode(DIGEST + b"x").decode(), "wrong length for sha256: 33 bytes"),
        ("sha384/" + B64, "wrong length for sha384"),
        ("sha256/" + B64.replace("=", ""), "not a multiple of 4"),
        ("sha256/" + base64.urlsafe_b64encode(b"\xfb" * 32).decode(), "URL-safe"),
        ("sha256/" + B64[:-2] + "B=", "non-canonical|bad base64"),
        ("sha256/" + B64 + "!", "bad base64"),
        ("md5/" + B64, "unknown algorithm 'md5'"),
        ("sha3-256/" + B64, "unknown algorithm"),
        ('pin-md5="abc"', "unknown algorithm"),
        (f'pin-sha256="{B64}', "unbalanced quotes"),
        ("abcd", "wrong length for a hex digest: 2 bytes"),
        ("hello world", "not a pin"),
        (DIGEST.hex()[:-1], "not a pin"),
    ],
)
def test_bad_pins_are_rejected_with_the_text_and_the_reason(text: str, why: str) -> None:
    with pytest.raises(PinFormatError) as info:
        Pin.parse(text)
    message = str(info.value)
    assert repr(text) in message
    assert __import__("re").search(why, message), message


def test_non_string_pin_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Pin.parse(DIGEST)  # type: ignore[arg-type]


def test_direct_construction_validates() -> None:
    with pytest.raises(PinFormatError, match="wrong length"):
        Pin("sha256", b"\x00" * 31)
    with pytest.raises(PinFormatError, match="unknown pin algorithm"):
        Pin("md5", b"\x00" * 16)
    with pytest.raises(PinFormatError, match="unknown pin kind"):
        Pin("sha256", DIGEST, "key")


@pytest.mark.parametrize("key_type", ["rsa2048", "p256", "ed25519"])
def test_from_certificate_der_and_pem(key_type: str) -> None:
    chain = cached_chain(key_type)
    leaf = chain.leaf
    der = chain.ders[0]
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    want = Pin("sha256", hashlib.sha256(spki_der(leaf)).digest())
    assert Pin.from_certificate(der) == want
    assert Pin.from_certificate(pem) == want
    assert Pin.from_certificate(pem.decode()) == want
    cert_pin = Pin.from_certificate(der, kind="certificate")
    assert cert_pin == Pin("sha256", hashlib.sha256(der).digest(), "certificate")
    assert Pin.from_certificate(der, algorithm="sha512").digest == hashlib.sha512(spki_der(leaf)).digest()


def test_from_public_key() -> None:
    leaf = cached_chain("p384").leaf
    spki = spki_der(leaf)
    pem = leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    want = Pin("sha256", hashlib.sha256(spki).digest())
    assert Pin.from_public_key(spki) == want
    assert Pin.from_public_key(pem) == want
    assert Pin.from_public_key(spki) == Pin.from_certificate(cached_chain("p384").ders[0])
    with pytest.raises(CertificateParseError):
        Pin.from_public_key(spki[:-1])
    with pytest.raises(CertificateParseError):
        Pin.from_public_key(spki + b"\x00")


def test_from_file_bundle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chain = cached_chain("p256")
    bundle = b"# a comment line\n" + b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in chain.certs
    )
    path = tmp_path / "bundle.pem"
    path.write_bytes(bundle)
    pins = Pin.from_file(path)
    assert pins == [Pin("sha256", hashlib.sha256(spki_der(c)).digest()) for c in chain.certs]
    der_path = tmp_path / "chain.der"
    der_path.write_bytes(b"".join(chain.ders))
    assert Pin.from_file(der_path) == pins


def test_from_file_certifi_bundle() -> None:
    import certifi

    pins = Pin.from_file(certifi.where())
    assert len(pins) == len(certifi_ders()) > 100
    assert all(p.kind == "spki" and len(p.digest) == 32 for p in pins)


def test_from_file_errors_name_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(CertificateParseError, match=r"empty\.pem"):
        Pin.from_file(empty)
    broken = tmp_path / "broken.pem"
    der = cached_chain("p256").ders[0]
    broken.write_bytes(
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(der[:-10])
        + b"-----END CERTIFICATE-----\n"
    )
    with pytest.raises(CertificateParseError, match=r"broken\.pem"):
        Pin.from_file(broken)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertificateParseError, match="bad base64"):
        Pin.from_file(garbage)
    mismatched = tmp_path / "mismatched.pem"
    mismatched.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(CertificateParseError, match="ends with END PUBLIC KEY"):
        Pin.from_file(mismatched)


def test_from_certificate_refuses_two() -> None:
    chain = cached_chain("p256")
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain.certs[:2])
    with pytest.raises(CertificateParseError, match="exactly one certificate, found 2"):
        Pin.from_certificate(pem)


def test_no_warning_for_sha256() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Pin.parse(f"sha256/{B64}")


def test_spki_pin_is_the_sha256_public_key_pin_of_a_der_certificate() -> None:
    from pinengine.pins import spki_pin

    for der in cached_chain("p256").ders:
        assert spki_pin(der) == Pin.from_certificate(der)
    with pytest.raises(CertificateParseError):
        spki_pin(b"\x30\x03abc")


def test_chain_role() -> None:
    from pinengine._types import chain_role

    assert [chain_role(i, 3) for i in range(3)] == ["leaf", "intermediate", "root"]
    assert chain_role(0, 1) == "leaf"
    assert [chain_role(i, 2) for i in range(2)] == ["leaf", "root"]
