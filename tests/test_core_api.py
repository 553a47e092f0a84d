"""The core's module API (ext/CORE_SPEC.md §2): constants, digests, parsing, validate_spki, on both cores."""

from __future__ import annotations

import hashlib
import re
import warnings
from types import ModuleType

import pytest
from cryptography import x509

from pinengine import _types
from pinengine._errors import CertificateParseError
from tests.certs import KEY_TYPES, cached_chain, certifi_ders, not_valid_after, not_valid_before, spki_der
from tests.der import leaf_der, nested, parse_tree, prim, seq, sha256

# Core behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores


# --------------------------------------------------------------------------
# Module surface
# --------------------------------------------------------------------------


def test_module_constants(core: ModuleType, backend: str) -> None:
    assert core.BACKEND == backend
    assert (core.KIND_SPKI, core.KIND_CERT) == (0, 1)
    assert (core.POS_LEAF, core.POS_INTERMEDIATE, core.POS_ROOT, core.POS_ANY) == (1, 2, 4, 7)
    assert tuple(core.ALGORITHMS) == ("sha1", "sha256", "sha384", "sha512")
    if backend == "python":
        assert core.sha256_implementation() == "hashlib"
    else:
        assert core.sha256_implementation() in ("sha-ni", "armv8", "portable")


HASH_LENGTHS = [0, 1, 3, 55, 56, 63, 64, 65, 111, 112, 119, 120, 127, 128, 129, 1000, 100_000]


@pytest.mark.parametrize("algorithm", _types.ALGORITHMS)
def test_hash_bytes(core: ModuleType, algorithm: str) -> None:
    for n in HASH_LENGTHS:
        data = bytes((i * 31 + 7) & 0xFF for i in range(n))
        want = hashlib.new(algorithm, data).digest()
        assert core.hash_bytes(data, algorithm) == want
        assert core.hash_bytes(bytearray(data), algorithm) == want
        assert core.hash_bytes(memoryview(data), algorithm) == want


def test_hash_bytes_errors(core: ModuleType) -> None:
    for bad in ("md5", "SHA256", "sha-256", ""):
        with pytest.raises(ValueError):
            core.hash_bytes(b"x", bad)
    for data in ("text", 1, None, [1, 2]):
        with pytest.raises(TypeError):
            core.hash_bytes(data, "sha256")


def test_sha256_implementations(core: ModuleType, backend: str) -> None:
    """Compiled only (CORE_SPEC §3): every SHA-256 path this CPU has agrees with hashlib."""
    if backend == "python":
        pytest.skip("_sha256_with is a compiled-core extra")
    names = [n for n in ("portable", "sha-ni", "armv8") if core._sha256_available(n)]
    assert "portable" in names
    for n in HASH_LENGTHS:
        data = bytes((i * 131 + 3) & 0xFF for i in range(n))
        for name in names:
            assert core._sha256_with(name, data) == sha256(data), (name, n)
    for name in ("sha-ni", "armv8"):
        if name not in names:
            with pytest.raises(ValueError):
                core._sha256_with(name, b"")
    with pytest.raises(ValueError):
        core._sha256_with("nonsense", b"")


# --------------------------------------------------------------------------
# Real certificates
# --------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_generated_chain_digests(core: ModuleType, key_type: str) -> None:
    chain = cached_chain(key_type)
    for cert, der in zip(chain.certs, chain.ders):
        spki = spki_der(cert)
        assert core.extract_spki(der) == spki
        assert core.spki_sha256(der) == sha256(spki)
        assert core.cert_sha256(der) == sha256(der)
        core.validate_spki(spki)
        for alg in _types.ALGORITHMS:
            assert core.spki_digest(der, alg) == hashlib.new(alg, spki).digest()
            assert core.cert_digest(der, alg) == hashlib.new(alg, der).digest()
        for unknown in ("md5", "SHA256"):
            with pytest.raises(ValueError):
                core.spki_digest(der, unknown)
            with pytest.raises(ValueError):
                core.cert_digest(der, unknown)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_generated_chain_parse(core: ModuleType, key_type: str) -> None:
    chain = cached_chain(key_type)
    for cert, der in zip(chain.certs, chain.ders):
        info = core.parse_certificate(der)
        assert isinstance(info, _types.CertificateInfo)
        assert info.der == der
        assert info.version == 3
        assert info.serial_number == cert.serial_number
        assert info.subject == cert.subject.rfc4514_string()
        assert info.issuer == cert.issuer.rfc4514_string()
        assert info.not_before == not_valid_before(cert)
        assert info.not_after == not_valid_after(cert)
        assert info.spki == spki_der(cert)
        assert info.subject_der == cert.subject.public_bytes()
        assert info.issuer_der == cert.issuer.public_bytes()
    assert core.parse_certificate(chain.ders[0]).subject == "CN=example.com,O=pinengine tests"


def test_bytes_like_inputs(core: ModuleType) -> None:
    der = leaf_der()
    want = core.spki_sha256(der)
    padded = b"\x00\x00" + der + b"\xff\xff"
    for form in (bytearray(der), memoryview(der), memoryview(padded)[2:-2]):
        assert core.spki_sha256(form) == want
        assert core.cert_sha256(form) == sha256(der)
        assert core.extract_spki(form) == core.extract_spki(der)
        assert core.parse_certificate(form) == core.parse_certificate(der)
        assert core.spki_digest(form, "sha384") == core.spki_digest(der, "sha384")
        assert core.cert_digest(form, "sha1") == core.cert_digest(der, "sha1")
    spki = core.extract_spki(der)
    core.validate_spki(bytearray(spki))
    core.validate_spki(memoryview(spki))


@pytest.mark.parametrize("bad", ["text", 1, None, [0x30, 0x00], 1.5, object()])
def test_non_bytes_arguments(core: ModuleType, bad: object) -> None:
    for fn in (
        core.spki_sha256,
        core.cert_sha256,
        core.parse_certificate,
        core.extract_spki,
        core.validate_spki,
    ):
        with pytest.raises(TypeError):
            fn(bad)
    for alg in ("sha256", "sha512"):
        with pytest.raises(TypeError):
            core.spki_digest(bad, alg)
        with pytest.raises(TypeError):
            core.cert_digest(bad, alg)


# A Name whose every value is "plain" formats identically in pinengine and in
# cryptography. For the few with characters RFC 4514 escapes (or non-ASCII
# text) the two may legitimately differ in which characters get a backslash
# (or a hex escape), so those are compared with the escaping removed.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9 .'()/:_@&-]*")


def _plain(name: x509.Name) -> bool:
    return all(
        isinstance(a.value, str)
        and _PLAIN_VALUE.fullmatch(a.value)
        and not a.value.startswith((" ", "#"))
        and not a.value.endswith(" ")
        for a in name
    )


def _unescaped(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def test_certifi_bundle(core: ModuleType) -> None:
    ders = certifi_ders()
    assert len(ders) > 50
    exact = 0
    for der in ders:
        with warnings.catch_warnings():
            # A few roots have a non-positive serial number: cryptography warns.
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            serial = cert.serial_number
        spki = spki_der(cert)
        where = cert.subject.rfc4514_string()
        assert core.spki_sha256(der) == sha256(spki), where
        assert core.extract_spki(der) == spki, where
        assert core.cert_sha256(der) == sha256(der), where
        info = core.parse_certificate(der)
        assert info.version == cert.version.value + 1, where
        assert info.serial_number == serial, where
        assert info.not_before == not_valid_before(cert), where
        assert info.not_after == not_valid_after(cert), where
        assert info.subject_der == cert.subject.public_bytes(), where
        assert info.issuer_der == cert.issuer.public_bytes(), where
        for mine, name in ((info.subject, cert.subject), (info.issuer, cert.issuer)):
            if _plain(name):
                assert mine == name.rfc4514_string(), where
                exact += 1
            else:
                assert _unescaped(mine) == _unescaped(name.rfc4514_string()), where
    # The exact comparison must cover most names of the bundle, or it proves little.
    assert exact > len(ders)  # out of 2 * len(ders) names


# --------------------------------------------------------------------------
# validate_spki
# --------------------------------------------------------------------------


def test_validate_spki_good(core: ModuleType) -> None:
    for key_type in KEY_TYPES:
        for cert in cached_chain(key_type).certs:
            assert core.validate_spki(spki_der(cert)) is None
    for der in certifi_ders()[:20]:
        core.validate_spki(core.extract_spki(der))
    alg = seq(prim(0x06, b"\x2b\x65\x70"))
    core.validate_spki(seq(alg, prim(0x03, b"\x00")).encode())


def test_validate_spki_bad(core: ModuleType) -> None:
    spki = spki_der(cached_chain("p256").leaf)
    tree = parse_tree(spki)
    assert tree.kids is not None
    alg, key = tree.kids
    bad = [
        b"",
        spki + b"\x00",
        spki + spki,
        spki[:-1],
        spki[:2],
        b"\x31" + spki[1:],
        seq(alg).encode(),
        seq(alg, key, key).encode(),
        seq(key, alg).encode(),
        seq(alg, prim(0x03, b"\x08\x00")).encode(),
        seq(alg, prim(0x03, b"")).encode(),
        seq(alg, prim(0x04, b"\x00\x01")).encode(),
        seq(seq(), key).encode(),
        seq(seq(prim(0x06, b"")), key).encode(),
        seq(seq(prim(0x05, b"")), key).encode(),
        b"\x30\x80" + spki[2:] + b"\x00\x00",
        b"\x30\x81" + spki[1:],
        leaf_der("p256"),  # a certificate is not an SPKI
        nested(40).encode(),
    ]
    for data in bad:
        with pytest.raises(CertificateParseError):
            core.validate_spki(data)
    for wrong in ("text", None, 5, [1]):
        with pytest.raises(TypeError):
            core.validate_spki(wrong)
