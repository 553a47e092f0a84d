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
from pinengine._types import outcome_code_of
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
        # What the policy remembers a decision under (pinengine._types) is the core's code.
        assert outcome_code_of(pairs, len(chain), verified) == code
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
    hit, tally = _Result(), core.Tally((1e-3, 1.0))
    plans: dict[Any, Any] = {
        "known.example": ("known.example", "entry", pinset, {verified_code: (hit, tally)}),
        "fresh.example": ("fresh.example", "entry", pinset, {}),
        "dynamic.example": ("dynamic.example", "entry", pinset, None),
        "unpinned.example": ("unpinned.example", None, pinset, {verified_code: (hit, tally)}),
        "untallied.example": ("untallied.example", "entry", pinset, {verified_code: (hit, "not a Tally")}),
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
        ("untallied.example", chain),  # 11: what is remembered is not counted: not used
    ]
    results, misses = core.recall_outcomes(items, plans, True, False)
    assert [r is hit for r in results] == [True, True] + [False] * 8 + [True, False]
    assert misses == [2, 3, 4, 5, 6, 7, 8, 9, 11]
    count, buckets, seconds = tally.read()
    assert count == 3 and sum(buckets) == 3 and 0 < seconds < 1.0
    # Unverified is another outcome; skip_unpinned leaves the unpinned plan to Python.
    results, misses = core.recall_outcomes(items, plans, False, True)
    assert results == [None] * len(items) and misses == list(range(len(items)))
    assert core.recall_outcome(plans, "known.example", chain, True, False) is hit
    assert tally.read()[0] == 4
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
    hit, tally = _Result(), core.Tally(())
    plans: dict[Any, Any] = {}

    def refill() -> None:
        for i in range(300):
            pinset = core.PinSet([(core.KIND_SPKI, "sha256", pinengine.spki_sha256(chain[1]), core.POS_ANY)])
            plans[f"h{i}"] = (f"h{i}", "entry", pinset, {core.outcome_code(chain, pinset, True): (hit, tally)})

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
        counted = 0
        for _ in range(30):
            results, misses = core.recall_outcomes(items, plans, True, False)
            assert all(r is hit for r in results if r is not None)
            counted += len(items) - len(misses)
            assert tally.read()[0] == counted
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


def test_recalled_decisions_are_counted_as_decisions_made_in_python(core: ModuleType) -> None:
    """A Tally read with the shards gives what count_decision would have given, and reset zeroes it."""
    one, other = Metrics(max_series=1), Metrics(max_series=1)
    keys = [("a", "a", "match", "leaf", "spki", "static")] * 3 + [("b", "b", "not-pinned")] * 2
    for key in keys:
        one.count_decision(key, 0.0004)
    for key in keys:
        other.tally(key).add(0.0004)
    assert other.tally(keys[0]) is other.tally(keys[0])
    a, b = one.stats(), other.stats()
    assert a["hosts"] == b["hosts"] and set(b["hosts"]) == {"a", "_other"}  # the series cap holds for tallies too
    assert a["latency"]["buckets"] == b["latency"]["buckets"]
    assert a["latency"]["count"] == b["latency"]["count"] == 5
    assert b["latency"]["sum"] == pytest.approx(0.002)
    assert one.prometheus_text() == other.prometheus_text()
    other.reset()
    assert other.stats()["totals"]["verifications"] == 0 and other.stats()["latency"]["count"] == 0
    other.tally(keys[3]).add(0.5)
    assert set(other.stats()["hosts"]) == {"_other"}  # still admitted after the reset: the cap is kept


def test_a_tally_refuses_what_it_cannot_count(core: ModuleType) -> None:
    with pytest.raises(ValueError):
        core.Tally((1.0, 0.5))
    with pytest.raises(TypeError):
        core.Tally((1, 2))
    with pytest.raises(TypeError):
        core.Tally([1.0, 2.0])
    tally = core.Tally((0.001, 0.01))
    for odd in (float("nan"), float("inf"), -1.0, 1e300):
        tally.add(odd)
    count, buckets, seconds = tally.read()
    assert count == 4 and buckets == [2, 0, 2] and seconds == pytest.approx(2e6)
    tally.clear()
    assert tally.read() == (0, [0, 0, 0], 0.0)
    # More buckets than a Tally holds in itself.
    many = core.Tally(tuple(float(b) for b in range(1, 41)))
    for seconds in (0.5, 1, 1.5, 40, 41):
        many.add(seconds)
    count, buckets, _ = many.read()
    assert count == 5 and len(buckets) == 41 and buckets[0] == 2 and buckets[1] == 1 and buckets[39] == 1
    assert buckets[40] == 1
