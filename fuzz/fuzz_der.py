"""Fuzz the strict DER / X.509 walker: compiled core vs pure-Python twin.

The input is one would-be certificate (or SubjectPublicKeyInfo). For every
function of CORE_SPEC §2 that takes one, both cores must give the same value
or both refuse with CertificateParseError; the digests must also equal
hashlib's over the bytes the walker says it hashed. The compiled core must
treat bytes, bytearray and a strided memoryview alike, and every SHA-256
implementation this CPU has must agree with hashlib. PEM input goes through
the PEM reader, and each certificate found is checked the same way.

    python fuzz/fuzz_der.py CORPUS_DIR [libFuzzer flags]
"""

from __future__ import annotations

import hashlib
import sys

from common import Finding, cores, describe, exact_buffer, instrument_if_main, outcome, run

instrument_if_main(__name__, ("pinengine._pem",))

from pinengine import _pem  # noqa: E402
from pinengine._errors import CertificateParseError  # noqa: E402

C, P = cores()
ALGORITHMS = ("sha1", "sha256", "sha384", "sha512")
SHA256_IMPLEMENTATIONS = [name for name in ("portable", "sha-ni", "armv8") if C._sha256_available(name)]
REFUSED = (CertificateParseError,)


def _same(what: str, data: bytes, a: tuple[str, object], b: tuple[str, object]) -> None:
    if a[0] != b[0] or (a[0] == "ok" and a[1] != b[1]):
        raise Finding(describe(what, data, a, b))


def check_certificate(data: bytes) -> bool:
    """The differential on one would-be certificate; True when both cores accepted it."""
    results = {}
    for name in ("spki_sha256", "cert_sha256", "extract_spki", "parse_certificate"):
        a = outcome(getattr(C, name), data, refusals=REFUSED)
        b = outcome(getattr(P, name), data, refusals=REFUSED)
        _same(name, data, a, b)
        results[name] = a
    accepted = {r[0] for r in results.values()}
    if len(accepted) != 1:  # one function accepted what another refused
        raise Finding(f"inconsistent decisions within the compiled core on {data.hex()}: {results}")
    if accepted != {"ok"}:
        return False

    spki = results["extract_spki"][1]
    info = results["parse_certificate"][1]
    if info.spki != spki or info.der != data:
        raise Finding(f"parse_certificate and extract_spki disagree on {data.hex()}")
    if spki not in data:
        raise Finding(f"extract_spki returned bytes that are not in the certificate: {data.hex()}")
    # Every algorithm on the compiled core; one (chosen by the input) on the slower twin.
    for alg in ALGORITHMS:
        want_spki = hashlib.new(alg, spki).digest()
        want_cert = hashlib.new(alg, data).digest()
        for core in (C, P) if alg == ALGORITHMS[len(data) % 4] else (C,):
            if core.spki_digest(data, alg) != want_spki or core.cert_digest(data, alg) != want_cert:
                raise Finding(f"{core.BACKEND} {alg} digest is not hashlib's on {data.hex()}")
    if results["spki_sha256"][1] != hashlib.sha256(spki).digest():
        raise Finding(f"spki_sha256 is not SHA-256 of the SPKI on {data.hex()}")
    # The extracted SPKI must stand on its own as a valid SubjectPublicKeyInfo.
    C.validate_spki(spki)
    P.validate_spki(spki)
    return True


def check_buffers(data: bytes) -> None:
    """The compiled core reads bytes, bytearray and non-contiguous buffers alike.

    One copy sits in a heap block of exactly its size (common.exact_buffer):
    under ASan a read one byte past the input is reported there.
    """
    want = outcome(C.spki_sha256, data, refusals=REFUSED)
    doubled = bytearray(2 * len(data))
    doubled[::2] = data
    with exact_buffer(data) as exact:
        for view in (exact, bytearray(data), memoryview(data), memoryview(doubled)[::2]):
            got = outcome(C.spki_sha256, view, refusals=REFUSED)
            if got[0] != want[0] or (got[0] == "ok" and got[1] != want[1]):
                raise Finding(describe(f"spki_sha256({type(view).__name__})", data, got, want))
        spki = outcome(C.validate_spki, exact, refusals=REFUSED)
        if spki[0] != outcome(C.validate_spki, data, refusals=REFUSED)[0]:
            raise Finding(f"validate_spki decides differently on an exact-size buffer: {data.hex()}")


def check_spki(data: bytes) -> None:
    a = outcome(C.validate_spki, data, refusals=REFUSED)
    b = outcome(P.validate_spki, data, refusals=REFUSED)
    _same("validate_spki", data, a, b)


def check_hashes(data: bytes) -> None:
    for alg in ALGORITHMS:
        want = hashlib.new(alg, data).digest()
        if C.hash_bytes(data, alg) != want or P.hash_bytes(data, alg) != want:
            raise Finding(f"hash_bytes({alg}) is not hashlib's on {len(data)} bytes {data[:64].hex()}")
    want = hashlib.sha256(data).digest()
    for name in SHA256_IMPLEMENTATIONS:
        if C._sha256_with(name, data) != want:
            raise Finding(f"SHA-256 implementation {name} is wrong on {len(data)} bytes {data[:64].hex()}")


def check_pem(data: bytes) -> None:
    """The PEM / DER-bundle reader refuses only with CertificateParseError; what it finds is walked."""
    try:
        blocks = _pem.read_blocks(data)
    except CertificateParseError:
        return
    if len(blocks) == 1 and blocks[0].der == data:
        return  # plain DER: already walked
    for block in blocks[:8]:
        if not isinstance(block.der, bytes) or not isinstance(block.label, str):
            raise Finding(f"read_blocks returned {block!r}")
        check_certificate(block.der)
        check_spki(block.der)


def check(data: bytes) -> None:
    check_certificate(data)
    check_spki(data)
    check_buffers(data)
    check_hashes(data)
    check_pem(data)


if __name__ == "__main__":
    run(check)
    sys.exit(0)
