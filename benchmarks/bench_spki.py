"""1. SPKI SHA-256 of one certificate, over every certifi root, four contestants.

Each round processes the whole certifi list; report.py divides by
``extra_info["items"]`` for the per-certificate time.

  compiled           pinengine._core.spki_sha256(der)
  python_twin        pinengine._core_py.spki_sha256(der)
  cryptography       load_der_x509_certificate(der).public_key().public_bytes(DER, SPKI) + hashlib.sha256
  hashlib_precut     hashlib.sha256(spki).digest() over SPKI bytes cut out beforehand (no parsing at all)

Targets (checked by report.py, never asserted here): compiled >= 50x faster
than cryptography, and faster than hashlib_precut.

The "spki-breakdown" group splits the compiled call into its parts (parse
only, hash only, per-call floors) to show where the time goes.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from types import ModuleType
from typing import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.utils import CryptographyDeprecationWarning

GROUP = "spki-sha256: whole certifi list per round"
BREAKDOWN = "spki-breakdown: compiled call split up, whole certifi list per round"


@pytest.fixture(scope="module")
def expected(certifi_ders: tuple[bytes, ...]) -> list[bytes]:
    """Reference digests, from hashlib over SPKI bytes that cryptography re-encodes."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for der in certifi_ders:
            spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
                Encoding.DER, PublicFormat.SubjectPublicKeyInfo
            )
            out.append(hashlib.sha256(spki).digest())
    return out


@pytest.fixture(scope="module")
def precut(certifi_ders: tuple[bytes, ...], twin: ModuleType) -> list[bytes]:
    """The SPKI TLV of every certificate, cut out in Python (the twin's extract_spki)."""
    return [twin.extract_spki(der) for der in certifi_ders]


def _info(benchmark, items: int, contestant: str) -> None:
    benchmark.extra_info.update(items=items, unit="certificate", contestant=contestant)


def _interleaved(runs: dict[str, Callable[[], list[bytes]]], base: str, pairs: int = 15) -> dict[str, list[float]]:
    """Cross-check of the ratios that does not depend on when each test ran.

    pytest-benchmark runs one contestant after the other, so a change of
    machine load in between (and longer rounds being preempted more often on
    a busy machine) skews their ratio. Here one round of every contestant
    runs back to back, ``pairs`` times; each time gives one ratio other/base.
    """
    out: dict[str, list[float]] = {name: [] for name in runs if name != base}
    for _ in range(pairs):
        times = {}
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name] = time.perf_counter() - start
        for name in out:
            out[name].append(round(times[name] / times[base], 3))
    return out


# -- the four contestants -------------------------------------------------------


@pytest.fixture(scope="module")
def runs(compiled: ModuleType, twin: ModuleType, certifi_ders, precut) -> dict[str, Callable[[], list[bytes]]]:
    """One round of each contestant: the whole certifi list, one digest per certificate."""
    ders = certifi_ders
    spkis = precut
    compiled_spki = compiled.spki_sha256
    twin_spki = twin.spki_sha256
    load = x509.load_der_x509_certificate
    sha256 = hashlib.sha256
    der_enc, spki_fmt = Encoding.DER, PublicFormat.SubjectPublicKeyInfo

    def run_compiled() -> list[bytes]:
        return [compiled_spki(d) for d in ders]

    def run_twin() -> list[bytes]:
        return [twin_spki(d) for d in ders]

    def run_cryptography() -> list[bytes]:
        # A few certifi roots have a non-positive serial: cryptography warns on
        # each load. Silenced once per round (one context for ~150 certificates).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return [sha256(load(d).public_key().public_bytes(der_enc, spki_fmt)).digest() for d in ders]

    def run_hashlib_precut() -> list[bytes]:
        return [sha256(s).digest() for s in spkis]

    return {
        "compiled": run_compiled,
        "python_twin": run_twin,
        "cryptography": run_cryptography,
        "hashlib_precut": run_hashlib_precut,
    }


@pytest.mark.benchmark(group=GROUP)
def test_spki_compiled(benchmark, runs, certifi_ders, expected) -> None:
    _info(benchmark, len(certifi_ders), "pinengine._core.spki_sha256")
    assert benchmark(runs["compiled"]) == expected
    # Cross-check with the rounds interleaved (see _interleaved); report.py prints it.
    benchmark.extra_info["interleaved_ratios"] = _interleaved(runs, "compiled")


@pytest.mark.benchmark(group=GROUP)
def test_spki_python_twin(benchmark, runs, certifi_ders, expected) -> None:
    _info(benchmark, len(certifi_ders), "pinengine._core_py.spki_sha256")
    assert benchmark(runs["python_twin"]) == expected


@pytest.mark.benchmark(group=GROUP)
def test_spki_cryptography(benchmark, runs, certifi_ders, expected) -> None:
    _info(benchmark, len(certifi_ders), "cryptography load + public_bytes(SPKI) + hashlib.sha256")
    assert benchmark(runs["cryptography"]) == expected


@pytest.mark.benchmark(group=GROUP)
def test_spki_hashlib_precut(benchmark, runs, precut, expected) -> None:
    _info(benchmark, len(precut), "hashlib.sha256 over pre-cut SPKI bytes")
    assert benchmark(runs["hashlib_precut"]) == expected


# -- where the compiled call's time goes -----------------------------------------


@pytest.mark.benchmark(group=BREAKDOWN)
def test_breakdown_compiled_extract_spki(benchmark, compiled: ModuleType, certifi_ders, precut) -> None:
    """Parse (full §1 walk) + copy the SPKI out as bytes; no hashing."""
    _info(benchmark, len(certifi_ders), "compiled extract_spki (parse + slice, no hash)")
    extract = compiled.extract_spki
    ders = certifi_ders

    def run() -> list[bytes]:
        return [extract(d) for d in ders]

    assert benchmark(run) == precut


@pytest.mark.benchmark(group=BREAKDOWN)
def test_breakdown_compiled_hash_precut(benchmark, compiled: ModuleType, precut, expected) -> None:
    """The compiled SHA-256 (SHA-NI where present) over the pre-cut SPKI bytes; no parsing."""
    _info(benchmark, len(precut), "compiled hash_bytes(spki, 'sha256') (hash only)")
    hash_bytes = compiled.hash_bytes
    spkis = precut

    def run() -> list[bytes]:
        return [hash_bytes(s, "sha256") for s in spkis]

    assert benchmark(run) == expected


@pytest.mark.benchmark(group=BREAKDOWN)
def test_breakdown_compiled_hash_empty(benchmark, compiled: ModuleType, precut) -> None:
    """Per-call floor of a compiled digest call: argument checks, buffer, bytes result."""
    _info(benchmark, len(precut), "compiled hash_bytes(b'', 'sha256') (call floor)")
    hash_bytes = compiled.hash_bytes
    empties = [b""] * len(precut)

    def run() -> list[bytes]:
        return [hash_bytes(s, "sha256") for s in empties]

    benchmark(run)


@pytest.mark.benchmark(group=BREAKDOWN)
def test_breakdown_hashlib_empty(benchmark, precut) -> None:
    """Per-call floor of hashlib (OpenSSL EVP context set-up and teardown)."""
    _info(benchmark, len(precut), "hashlib.sha256(b'').digest() (call floor)")
    sha256 = hashlib.sha256
    empties = [b""] * len(precut)

    def run() -> list[bytes]:
        return [sha256(s).digest() for s in empties]

    benchmark(run)


@pytest.mark.benchmark(group=BREAKDOWN)
def test_breakdown_compiled_noop_call(benchmark, compiled: ModuleType, precut) -> None:
    """A compiled function that does nothing per call (returns a short str): the Python call floor."""
    _info(benchmark, len(precut), "compiled sha256_implementation() (empty call)")
    noop = compiled.sha256_implementation
    n = range(len(precut))

    def run() -> list[str]:
        return [noop() for _ in n]

    benchmark(run)
