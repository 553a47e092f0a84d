"""Memory: no leaked references or allocations, and flat resident memory over many verifications.

Reference counts of every object handed to the core are unchanged after
thousands of calls (the Cython code must release what it takes, on error
paths too); tracemalloc, which also traces the PyMem_Raw* memory the compiled
core allocates, sees no growth; resident memory stays flat while verifying
many chains. The million-chain run is benchmarks/bench_memory.py.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pinengine
from pinengine._errors import CertificateParseError, PinMismatchError
from pinengine.policy import PinPolicy

# Core and policy behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores

ROOT = Path(__file__).resolve().parent.parent
CHAIN = pinengine.load_certificates((ROOT / "examples" / "chain.pem").read_bytes())
TRUNCATED = CHAIN[1][: len(CHAIN[1]) // 2]


def _calls(core: ModuleType) -> list[tuple[str, Callable[[], Any]]]:
    """Every API entry point, on success and on failure paths."""
    leaf, inter, root = CHAIN
    spki = core.extract_spki(leaf)
    digest = core.spki_sha256(inter)
    pinset = core.PinSet([(core.KIND_SPKI, "sha256", digest, core.POS_ANY), (core.KIND_CERT, "sha384", b"\1" * 48, 1)])
    chain = list(CHAIN)
    bad_chain = [leaf, TRUNCATED, root]

    def expect(exc: type[BaseException], fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        def call() -> None:
            try:
                fn(*args)
            except exc:
                return
            raise AssertionError(f"{fn.__name__}{args!r} did not raise {exc.__name__}")

        return call

    return [
        ("spki_sha256", lambda: core.spki_sha256(leaf)),
        ("cert_sha256(bytearray)", lambda: core.cert_sha256(bytearray(leaf))),
        ("spki_digest", lambda: core.spki_digest(memoryview(inter), "sha512")),
        ("cert_digest", lambda: core.cert_digest(root, "sha1")),
        ("extract_spki", lambda: core.extract_spki(leaf)),
        ("validate_spki", lambda: core.validate_spki(spki)),
        ("parse_certificate", lambda: core.parse_certificate(inter)),
        ("hash_bytes", lambda: core.hash_bytes(leaf, "sha256")),
        ("spki_sha256(truncated)", expect(CertificateParseError, core.spki_sha256, TRUNCATED)),
        ("parse_certificate(truncated)", expect(CertificateParseError, core.parse_certificate, TRUNCATED)),
        ("validate_spki(bad)", expect(CertificateParseError, core.validate_spki, spki[:-1])),
        ("spki_sha256(str)", expect(TypeError, core.spki_sha256, "not bytes")),
        ("hash_bytes(bad algorithm)", expect(ValueError, core.hash_bytes, leaf, "md5")),
        ("PinSet", lambda: core.PinSet([(core.KIND_SPKI, "sha256", digest, 7)] * 3)),
        ("PinSet(bad digest)", expect(ValueError, core.PinSet, [(core.KIND_SPKI, "sha256", b"short", 7)])),
        ("PinSet(bad kind)", expect(TypeError, core.PinSet, [("spki", "sha256", digest, 7)])),
        ("match_chain", lambda: core.match_chain(chain, pinset)),
        ("match_chain(unverified)", lambda: core.match_chain(chain, pinset, False)),
        ("match_chain(bad)", expect(CertificateParseError, core.match_chain, bad_chain, pinset)),
        ("match_chain(empty)", expect(CertificateParseError, core.match_chain, [], pinset)),
        ("match_chain(str cert)", expect(TypeError, core.match_chain, [leaf, "x"], pinset)),
        ("match_chains", lambda: core.match_chains([(chain, pinset), (bad_chain, pinset), ([], pinset)] * 4)),
        ("match_chains(bad job)", expect(TypeError, core.match_chains, [(chain, pinset), (chain, "not a pinset")])),
    ]


def _refcounts(objs: list[Any]) -> list[int]:
    return [sys.getrefcount(o) for o in objs]


def test_reference_counts_and_allocations_do_not_grow(core: ModuleType, backend: str) -> None:
    """Each call, repeated, leaves no reference and no allocation behind."""
    leaf, inter, root = CHAIN
    watched = [leaf, inter, root, TRUNCATED]
    # The Cython code is what can leak references; the twin gets a shorter sanity run.
    repeat = 2000 if backend == "compiled" else 200
    for name, call in _calls(core):
        for _ in range(50):  # warm up caches, interned strings, freelists
            call()
        gc.collect()
        before_refs = _refcounts(watched)
        tracemalloc.start()
        try:
            gc.collect()
            before, _ = tracemalloc.get_traced_memory()
            for _ in range(repeat):
                call()
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert _refcounts(watched) == before_refs, f"{name}: reference counts changed"
        # 2000 calls: a per-call leak of even one small object (>= 32 bytes) shows up as >= 64 KiB.
        assert after - before < 16 * 1024, f"{name}: traced memory grew by {after - before} bytes over {repeat} calls"


def _rss() -> int:
    """Resident set size in bytes: /proc on Linux, the working set on Windows, else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pass
    if sys.platform == "win32":
        return _windows_working_set()
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _windows_working_set() -> int:
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [
            ("cb", wintypes.DWORD),
            ("PageFaultCount", wintypes.DWORD),
            ("PeakWorkingSetSize", ctypes.c_size_t),
            ("WorkingSetSize", ctypes.c_size_t),
            ("QuotaPeakPagedPoolUsage", ctypes.c_size_t),
            ("QuotaPagedPoolUsage", ctypes.c_size_t),
            ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
            ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
            ("PagefileUsage", ctypes.c_size_t),
            ("PeakPagefileUsage", ctypes.c_size_t),
        ]

    counters = Counters()
    counters.cb = ctypes.sizeof(counters)
    windll = ctypes.windll  # type: ignore[attr-defined,unused-ignore]
    process = windll.kernel32.GetCurrentProcess()
    if not windll.psapi.GetProcessMemoryInfo(process, ctypes.byref(counters), counters.cb):
        pytest.skip("GetProcessMemoryInfo failed")
    return int(counters.WorkingSetSize)


def test_resident_memory_flat_over_many_verifications(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_batch over many chains (matches, mismatches, malformed ones): RSS stays flat."""
    # Report-only violations log a warning each; pytest would keep every record.
    monkeypatch.setattr(logging.getLogger("pinengine"), "disabled", True)
    monkeypatch.setattr(logging.getLogger("pinengine.reports"), "disabled", True)
    pins = [str(pinengine.Pin.from_certificate(der)) for der in CHAIN]
    backup = "sha256/Jk/89oF70FMmSjqayyXnWUP4QunzgnOAYSXKU5Jakg4="
    policy = PinPolicy.from_mapping(
        {
            "domains": [
                {"host": "**.example.com", "pins": [pins[1], backup]},
                {"host": "api.example.org", "pins": [pins[2], backup], "position": "leaf", "mode": "report-only"},
            ]
        }
    )
    leaf, _, root = CHAIN
    items = [
        ("www.example.com", CHAIN),  # match
        ("api.example.org", CHAIN),  # report-only
        ("www.example.com", [leaf]),  # mismatch: PinMismatchError with its message
        ("www.example.com", [leaf, TRUNCATED, root]),  # malformed
        ("unpinned.example.net", CHAIN),  # not pinned
    ] * 40
    rounds = 100 if backend == "compiled" else 10
    for _ in range(5):
        policy.verify_batch(items)
    gc.collect()
    start = _rss()
    for _ in range(rounds):
        results = policy.verify_batch(items)
    gc.collect()
    grown = _rss() - start
    kinds = {type(r).__name__ for r in results}
    assert {"VerificationResult", "PinMismatchError", "CertificateParseError"} <= kinds, kinds
    assert isinstance(results[2], PinMismatchError)
    # rounds * 200 verifications; a leak of a few bytes each would show.
    assert grown < 4 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB over {rounds * len(items)} verifications"
