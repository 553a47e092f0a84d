"""Tests of what only the compiled core has: C-held PinSets, the GIL released in
match_chains, buffer handling in C, the SHA-256 dispatch switch.

Behaviour both cores share is tested in test_core_*.py; every test here is
skipped on the pure-Python backend.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from types import ModuleType
from typing import Any, List, Tuple

import pytest
from cryptography.hazmat.primitives import serialization

from pinengine._errors import CertificateParseError
from tests.certs import cached_chain, certifi_ders, make_cert, make_chain


@pytest.fixture
def cc(backend: str, core: ModuleType) -> ModuleType:
    """The compiled core; skips the test on the pure-Python backend."""
    if backend != "compiled":
        pytest.skip("compiled-core specific")
    return core


def spki_pin(core: ModuleType, der: bytes, algorithm: str = "sha256", positions: int = 7) -> Tuple[Any, ...]:
    return (core.KIND_SPKI, algorithm, hashlib.new(algorithm, core.extract_spki(der)).digest(), positions)


def cert_pin(core: ModuleType, der: bytes, algorithm: str = "sha256", positions: int = 7) -> Tuple[Any, ...]:
    return (core.KIND_CERT, algorithm, hashlib.new(algorithm, der).digest(), positions)


def make_jobs(core: ModuleType) -> List[Tuple[Any, Any]]:
    """A mix of matching, non-matching and broken jobs over several key types."""
    jobs: List[Tuple[Any, Any]] = []
    chains = [cached_chain(k).ders for k in ("p256", "ed25519", "rsa2048")]
    for n, ders in enumerate(chains):
        pins = core.PinSet(
            [
                spki_pin(core, ders[0], "sha256", core.POS_LEAF),
                cert_pin(core, ders[1], "sha384", core.POS_INTERMEDIATE),
                spki_pin(core, ders[2], "sha512", core.POS_ANY),
                spki_pin(core, chains[(n + 1) % 3][0], "sha1", core.POS_ANY),
            ]
        )
        jobs.append((ders, pins))
        jobs.append(([bytearray(d) for d in ders], pins))
        jobs.append((ders[:1], pins))
        jobs.append(([ders[0], ders[2]], pins))
        jobs.append(([ders[0], ders[1][:-1], ders[2]], pins))  # broken intermediate
        jobs.append(([], pins))
        jobs.append((chains[(n + 2) % 3], pins))  # nothing matches
    return jobs


def as_comparable(results: List[Any]) -> List[Any]:
    return [("error", str(r)) if isinstance(r, CertificateParseError) else r for r in results]


def test_match_chains_from_threads(cc: ModuleType) -> None:
    """Four Python threads calling match_chains (which releases the GIL) get the serial results."""
    jobs = make_jobs(cc) * 20
    for verified in (True, False):
        want = as_comparable(cc.match_chains(jobs, verified=verified))
        assert want == as_comparable(
            [_single(cc, chain, pins, verified) for chain, pins in jobs]
        )
        got: List[Any] = [None] * 4
        errors: List[BaseException] = []

        def work(k: int) -> None:
            try:
                for _ in range(10):
                    got[k] = as_comparable(cc.match_chains(jobs, verified=verified))
                    assert got[k] == want
            except BaseException as exc:  # surfaced in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert got == [want] * 4


def _single(core: ModuleType, chain: Any, pins: Any, verified: bool) -> Any:
    try:
        return core.match_chain(chain, pins, verified=verified)
    except CertificateParseError as exc:
        return exc


def test_shared_pinset_and_large_hashes_from_threads(cc: ModuleType) -> None:
    """One PinSet shared by threads; hash_bytes on large inputs (hashed without the GIL)."""
    ders = cached_chain("p256").ders
    pins = cc.PinSet([spki_pin(cc, d) for d in ders])
    big = bytearray(os.urandom(1 << 20))
    want_big = hashlib.sha256(big).digest()
    errors: List[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                assert cc.match_chain(ders, pins) == [(0, 0), (1, 1), (2, 2)]
                assert cc.match_chains([(ders, pins)] * 8) == [[(0, 0), (1, 1), (2, 2)]] * 8
            for _ in range(5):
                assert cc.hash_bytes(big, "sha256") == want_big
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_many_matches_per_job(cc: ModuleType) -> None:
    """Result arrays grow in C: hundreds of matching pins per certificate."""
    ders = cached_chain("p256").ders
    pins = cc.PinSet([spki_pin(cc, ders[i % 3]) for i in range(300)] + [cert_pin(cc, ders[0], "sha1")])
    want = [(i, j) for i in range(3) for j in range(300) if j % 3 == i]
    want.insert(100, (0, 300))
    assert cc.match_chain(ders, pins) == want
    assert cc.match_chains([(ders, pins)] * 3) == [want] * 3
    assert cc.match_chains([(ders, pins)], verified=False) == [[p for p in want if p[0] == 0]]


def test_certifi_chains_in_bulk(cc: ModuleType) -> None:
    """Every certifi root as a one-certificate chain, pinned by SPKI and certificate digests.

    Real bundles hold re-issued roots: two certificates of one key (Debian's
    certifi bundle does). A root then matches the SPKI pin of its twin too, so
    the expected matches are worked out from the digests, not from positions;
    a generated root and its re-issue make sure the case is always there.
    """
    reissued = make_chain("p256")
    twin = make_cert("pinengine test root", reissued.root_key, None, reissued.root_key, ca=True)
    ders = [*certifi_ders(), reissued.ders[2], twin.public_bytes(serialization.Encoding.DER)]
    pin_specs = [spki_pin(cc, d, "sha256", cc.POS_LEAF) for d in ders[::2]] + [
        cert_pin(cc, d, "sha512", cc.POS_LEAF) for d in ders[1::2]
    ]
    pins = cc.PinSet(pin_specs)

    def expected(der: bytes) -> List[Tuple[int, int]]:
        own = {cc.KIND_SPKI: hashlib.sha256(cc.extract_spki(der)).digest(), cc.KIND_CERT: hashlib.sha512(der).digest()}
        return [(0, j) for j, (kind, _, digest, _) in enumerate(pin_specs) if own[kind] == digest]

    results = cc.match_chains([([d], pins) for d in ders])
    shared = 0
    for i, (der, got) in enumerate(zip(ders, results)):
        own_pin = i // 2 if i % 2 == 0 else len(ders[::2]) + i // 2
        assert (0, own_pin) in got, i
        assert got == expected(der), i
        shared += len(got) > 1
    assert shared >= 1  # the generated root and its re-issue: at least the one pinned by SPKI


def test_non_contiguous_buffers_are_copied(cc: ModuleType) -> None:
    der = cached_chain("p256").ders[0]
    doubled = bytes(b for byte in der for b in (byte, 0xEE))
    strided = memoryview(doubled)[::2]
    assert not strided.contiguous
    assert cc.spki_sha256(strided) == cc.spki_sha256(der)
    assert cc.cert_sha256(strided) == hashlib.sha256(der).digest()
    assert cc.parse_certificate(strided).der == der
    assert cc.hash_bytes(memoryview(b"abcdef")[::2], "sha1") == hashlib.sha1(b"ace").digest()
    pins = cc.PinSet([spki_pin(cc, der)])
    assert cc.match_chain([strided], pins) == [(0, 0)]
    assert cc.match_chains([([strided], pins)]) == [[(0, 0)]]


def test_pinset_is_immutable(cc: ModuleType) -> None:
    der = cached_chain("p256").ders[0]
    pins = cc.PinSet([spki_pin(cc, der)])
    pins.__init__([])  # construction happens once, in __cinit__
    assert len(pins) == 1
    with pytest.raises(AttributeError):
        pins.extra = 1
    assert cc.match_chain([der], pins) == [(0, 0)]


def test_buffers_released(cc: ModuleType) -> None:
    """Every Py_buffer is released, also on errors: the bytearrays can be resized afterwards."""
    ders = cached_chain("p256").ders
    pins = cc.PinSet([spki_pin(cc, ders[0])])
    arrays = [bytearray(d) for d in ders]
    cc.match_chain(arrays, pins)
    cc.match_chains([(arrays, pins), ([arrays[0], b"\x30\x80"], pins)])
    with pytest.raises(TypeError):
        cc.match_chains([(arrays, pins), ([arrays[1], "text"], pins)])
    with pytest.raises(CertificateParseError):
        cc.match_chain([arrays[0], bytearray(b"\x30\x00")], pins)
    cc.spki_sha256(arrays[0])
    cc.parse_certificate(arrays[1])
    with pytest.raises(CertificateParseError):
        cc.validate_spki(arrays[2])
    for a in arrays:
        a.append(0)  # BufferError if a view were still exported
        del a[-1]


def test_portable_sha256_by_environment(cc: ModuleType) -> None:
    """PINENGINE_SHA256=portable at import selects the portable path for the process."""
    der = cached_chain("p256").ders[0]
    code = (
        "import sys, pinengine._core as c;"
        "der = bytes.fromhex(sys.argv[1]);"
        "print(c.sha256_implementation(), c.spki_sha256(der).hex(), c.cert_sha256(der).hex())"
    )
    env = dict(os.environ, PINENGINE_SHA256="portable")
    out = subprocess.run(
        [sys.executable, "-c", code, der.hex()], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["portable", cc.spki_sha256(der).hex(), hashlib.sha256(der).hexdigest()]


def test_sha256_extras_argument_types(cc: ModuleType) -> None:
    assert cc._sha256_available("portable") is True
    assert cc._sha256_available("portable\0") is False
    with pytest.raises(TypeError):
        cc._sha256_with(b"portable", b"")
    with pytest.raises(TypeError):
        cc._sha256_with("portable", "text")
    with pytest.raises(ValueError):
        cc._sha256_with("portable\0", b"")
