"""2. PinPolicy.verify of one 3-certificate chain against a 1,000-entry policy.

The policy has 1,000 domain entries for distinct hosts, two SPKI pins each
(any position). The host under test is one of them; its first pin is the
intermediate's key, its second a random backup, so the verification walks
the whole chain (every certificate must parse) and matches at index 1.

The backend is switched per test (``_backend.use``, as tests/conftest.py
does) and the policy is built after the switch, outside the timing; it builds
the entry's PinSet lazily on first use (``PinPolicy._pinset``), which a
warm-up call does before timing.

A second pair of contestants times only the core's part of verify
(``core.match_chain`` with the entry's PinSet) to show how much of a compiled
verify is the Python policy layer (host name normalisation, lookup, results).
"""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from pinengine.policy import PinPolicy

GROUP = "policy-verify: 3-cert chain, 1,000-entry policy, per call"
N_ENTRIES = 1000
TARGET_INDEX = 617
TARGET_HOST = f"svc{TARGET_INDEX:04d}.policy.bench.example"


def _pin(digest: bytes) -> str:
    return "sha256/" + base64.b64encode(digest).decode("ascii")


@pytest.fixture(scope="module")
def chain() -> tuple[bytes, ...]:
    from tests.certs import cached_chain

    return tuple(cached_chain("p256", TARGET_HOST).ders)


@pytest.fixture
def policy(chain: tuple[bytes, ...], use_backend) -> PinPolicy:
    rng = random.Random(20240601)
    domains = []
    for i in range(N_ENTRIES):
        host = f"svc{i:04d}.policy.bench.example"
        pins = [_pin(rng.randbytes(32)), _pin(rng.randbytes(32))]
        if host == TARGET_HOST:
            # the intermediate's key, computed independently of pinengine's cores
            from cryptography import x509

            from tests.certs import spki_der

            inter = x509.load_der_x509_certificate(chain[1])
            pins[0] = _pin(hashlib.sha256(spki_der(inter)).digest())
        domains.append({"host": host, "pins": pins})
    policy = PinPolicy.from_mapping({"version": 1, "domains": domains}, source="<bench>")
    assert len(policy.entries) == N_ENTRIES
    return policy


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("use_backend", ["compiled", "python"], indirect=True)
def test_policy_verify(benchmark, use_backend, policy: PinPolicy, chain) -> None:
    benchmark.extra_info.update(items=1, unit="verification", contestant=f"PinPolicy.verify, {use_backend.BACKEND} core")
    # Warm-up outside the timing: builds the entry's PinSet.
    first = policy.verify(TARGET_HOST, chain)
    assert first.status == "match"
    assert [(m.index, m.role) for m in first.matches] == [(1, "intermediate")]

    result = benchmark(policy.verify, TARGET_HOST, chain)
    assert result.status == "match" and result.matches == first.matches


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("use_backend", ["compiled", "python"], indirect=True)
def test_policy_core_only(benchmark, use_backend, policy: PinPolicy, chain) -> None:
    """Only the core's share of verify: match_chain with the entry's PinSet (no host
    normalisation, lookup or result building), to show what the policy layer adds."""
    benchmark.extra_info.update(items=1, unit="verification", contestant=f"core.match_chain only, {use_backend.BACKEND} core")
    entry = policy.entry_for(TARGET_HOST)
    assert entry is not None
    pinset = policy._pinset(entry)  # this backend's PinSet, as verify uses it
    assert benchmark(use_backend.match_chain, chain, pinset, True) == [(1, 0)]
