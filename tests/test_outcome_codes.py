"""The core's remembered-outcome path: ``outcome_code``, ``recall_outcome`` and ``recall_outcomes``.

A policy keys what it remembers of a host by the code of how a chain matched
(ext/CORE_SPEC.md section 2.2). A code must name one outcome exactly: were two
outcomes to share one, a chain that should be refused could be answered with a
remembered match. So the codes are checked against their definition on many
random (chain, PinSet) pairs, on both cores, and the two cores must agree.
"""

from __future__ import annotations

import importlib
import os
import random
import threading
from types import ModuleType
from typing import Any

import pytest

import pinengine
from pinengine import Pin, PinPolicy
from pinengine._errors import CertificateParseError
from pinengine.metrics import Metrics
from tests.certs import cached_chain, certifi_ders

pytestmark = pytest.mark.both_cores

_NO_EXTENSIONS = os.environ.get("PINENGINE_NO_EXTENSIONS", "") not in ("", "0")


def expected_code(verified: bool, n: int, pairs: list[tuple[int, int]]) -> int:
    """The definition of CORE_SPEC 2.2, written out independently of both cores."""
    if n >= 64 or len(pairs) > 5 or any(i >= 8 or j >= 64 for i, j in pairs):
        return -1
    fields = [(int(verified), 1), (n, 6), (len(pairs), 3)] + [((i << 6) | j, 9) for i, j in pairs]
    code, shift = 0, 0
    for value, width in fields:
        assert 0 <= value < (1 << width)
        code |= value << shift
        shift += width
    return code


def certificates() -> list[bytes]:
    ders = list(certifi_ders()[:12])
    for key_type in ("p256", "rsa2048"):
        ders += cached_chain(key_type, "codes.example").ders
    return ders


def random_case(rng: random.Random, pool: list[bytes], core: ModuleType) -> tuple[list[bytes], Any, bool]:
    n = rng.choice((1, 2, 3, 3, 4, 9, 12, 64, 70)) if rng.random() < 0.15 else rng.randint(1, 5)
    chain = [rng.choice(pool) for _ in range(n)]
    pins = []
    for _ in range(rng.choice((1, 2, 3, 6, 70))):
        der = rng.choice(chain) if rng.random() < 0.8 else rng.choice(pool)
        kind = rng.choice((core.KIND_SPKI, core.KIND_SPKI, core.KIND_CERT))
        digest = pinengine.spki_sha256(der) if kind == core.KIND_SPKI else pinengine.cert_sha256(der)
        pins.append((kind, "sha256", digest, rng.randint(1, core.POS_ANY)))
    return chain, core.PinSet(pins), rng.random() < 0.7


def test_codes_follow_their_definition_and_name_one_outcome_each(core: ModuleType) -> None:
    rng = random.Random(20261203)
    pool = certificates()
    seen: dict[int, tuple[bool, int, tuple[tuple[int, int], ...]]] = {}
    uncoded = coded = 0
    for _ in range(600 if core.BACKEND == "compiled" else 150):
        chain, pinset, verified = random_case(rng, pool, core)
        pairs = core.match_chain(chain, pinset, True)
        code = core.outcome_code(chain, pinset, verified)
        assert code == expected_code(verified, len(chain), pairs), (verified, len(chain), pairs)
        if code < 0:
            uncoded += 1
            continue
        coded += 1
        outcome = (verified, len(chain), tuple(pairs))
        assert seen.setdefault(code, outcome) == outcome, f"code {code} names two outcomes"
    assert coded > 100 and uncoded > 5  # both kinds were exercised


@pytest.mark.skipif(_NO_EXTENSIONS, reason="PINENGINE_NO_EXTENSIONS=1: no compiled core to compare with")
def test_both_cores_give_the_same_codes() -> None:
    compiled = importlib.import_module("pinengine._core")
    twin = importlib.import_module("pinengine._core_py")
    rng = random.Random(7)
    pool = certificates()
    for _ in range(200):
        n = rng.randint(1, 6)
        chain = [rng.choice(pool) for _ in range(n)]
        spec = [(0, "sha256", pinengine.spki_sha256(rng.choice(chain)), rng.randint(1, 7)) for _ in range(3)]
        verified = rng.random() < 0.5
        assert compiled.outcome_code(chain, compiled.PinSet(spec), verified) == twin.outcome_code(
            chain, twin.PinSet(spec), verified
        )


def test_outcome_code_fails_as_match_chain_does(core: ModuleType) -> None:
    chain = cached_chain("p256", "codes.example").ders
    pinset = core.PinSet([(core.KIND_SPKI, "sha256", pinengine.spki_sha256(chain[1]), core.POS_ANY)])
    with pytest.raises(CertificateParseError):
        core.outcome_code([], pinset, True)
    with pytest.raises(CertificateParseError):
        core.outcome_code([chain[0][:-1], chain[1]], pinset, True)
    with pytest.raises(TypeError):
        core.outcome_code(chain[0], pinset, True)


class _Result:
    """Stands for a remembered VerificationResult: the core hands it back by identity."""


def test_recall_outcomes_answers_only_what_was_remembered(core: ModuleType) -> None:
    chain = list(cached_chain("p256", "codes.example").ders)
    inter = pinengine.spki_sha256(chain[1])
    pinset = core.PinSet([(core.KIND_SPKI, "sha256", inter, core.POS_ANY)])
    verified_code = core.outcome_code(chain, pinset, True)
    hit, key = _Result(), ("codes.example", "codes.example", "match")
    plans: dict[Any, Any] = {
        "known.example": ("known.example", "entry", pinset, {verified_code: (hit, key)}),
        "fresh.example": ("fresh.example", "entry", pinset, {}),
        "dynamic.example": ("dynamic.example", "entry", pinset, None),
        "unpinned.example": ("unpinned.example", None, pinset, {verified_code: (hit, key)}),
    }
    broken = [chain[0][:-3], chain[1]]
    items: list[Any] = [
        ("known.example", chain),  # 0: remembered
        ("known.example", tuple(chain)),  # 1: remembered (any sequence of certificates)
        ("known.example", chain[:2]),  # 2: another outcome (a chain of 2)
        ("known.example", [chain[0], chain[2], chain[1]]),  # 3: another outcome (the match moved)
        ("known.example", broken),  # 4: does not parse
        ("fresh.example", chain),  # 5: nothing remembered yet
        ("dynamic.example", chain),  # 6: not remembered for this host
        ("nobody.example", chain),  # 7: no plan
        ["known.example", chain],  # 8: not a tuple
        (b"known.example", chain),  # 9: not a str
        ("unpinned.example", chain),  # 10: remembered unless unpinned names are skipped
    ]
    results, keys, misses = core.recall_outcomes(items, plans, True, False)
    assert [r is hit for r in results] == [True, True] + [False] * 8 + [True]
    assert keys == [key, key, key]
    assert misses == [2, 3, 4, 5, 6, 7, 8, 9]
    # Unverified is another outcome; skip_unpinned leaves the unpinned plan to Python.
    results, keys, misses = core.recall_outcomes(items, plans, False, True)
    assert results == [None] * len(items) and keys == []
    assert core.recall_outcome(plans, "known.example", chain, True, False) == (hit, key)
    assert core.recall_outcome(plans, "known.example", chain, False, False) is None
    assert core.recall_outcome(plans, "known.example", broken, True, False) is None
    assert core.recall_outcome(plans, "unpinned.example", chain, True, True) is None
    with pytest.raises(TypeError):
        core.recall_outcomes("known.example", plans)
    with pytest.raises(TypeError):
        core.recall_outcomes([("known.example", 5)], plans)


def test_recall_holds_its_plans_while_another_thread_drops_them(core: ModuleType) -> None:
    """The compiled core matches without the GIL: the plans it read must outlive a clear() meanwhile."""
    chain = tuple(cached_chain("p256", "codes.example").ders)
    hit, key = _Result(), ("k",)
    plans: dict[Any, Any] = {}

    def refill() -> None:
        for i in range(300):
            pinset = core.PinSet([(core.KIND_SPKI, "sha256", pinengine.spki_sha256(chain[1]), core.POS_ANY)])
            plans[f"h{i}"] = (f"h{i}", "entry", pinset, {core.outcome_code(chain, pinset, True): (hit, key)})

    refill()
    items = [(f"h{i}", chain) for i in range(300)] * 4
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            plans.clear()
            refill()

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(30):
            results, keys, misses = core.recall_outcomes(items, plans, True, False)
            assert len(keys) + len(misses) == len(items)
            assert all(r is hit for r in results if r is not None)
            assert misses == [k for k, r in enumerate(results) if r is None]
    finally:
        stop.set()
        thread.join()


def test_verify_batch_takes_any_iterable_and_remembers_what_it_decided() -> None:
    chain = cached_chain("p256", "batch.codes.example")
    hosts = [f"h{i}.batch.codes.example" for i in range(20)]
    policy = PinPolicy.from_mapping(
        {"domains": [{"host": "batch.codes.example", "include_subdomains": True,
                      "pins": [str(Pin.from_certificate(chain.ders[1])), str(Pin("sha256", b"\1" * 32))]}]}
    )
    first = policy.verify_batch((h, chain.ders) for h in hosts)  # a generator: read once
    assert [r.status for r in first] == ["match"] * 20  # type: ignore[union-attr]
    # Decided once in Python, and remembered then: the next batch is answered in the core.
    assert all(len(policy._plans[h][3] or {}) == 1 for h in hosts)
    again = policy.verify_batch([(h, chain.ders) for h in hosts])
    assert all(a is b for a, b in zip(first, again))


def test_a_batch_is_counted_as_its_decisions_one_by_one() -> None:
    one, many = Metrics(), Metrics()
    keys = [("a", "a", "match", "leaf", "spki", "static")] * 3 + [("b", "b", "not-pinned")] * 2
    for key in keys:
        one.count_decision(key, 0.0004)
    many.count_decisions(keys, 0.0004)
    assert one.stats()["hosts"] == many.stats()["hosts"]
    assert one.stats()["latency"]["buckets"] == many.stats()["latency"]["buckets"]
    assert one.stats()["latency"]["count"] == many.stats()["latency"]["count"] == 5
    assert many.stats()["latency"]["sum"] == pytest.approx(0.002)
