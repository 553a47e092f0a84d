"""Red team on remembered outcomes recalled in the core (outcome_code, recall_outcome, recall_outcomes).

A policy remembers, per host name, the result each way a chain matched, keyed
by the core's outcome code; a repeated decision for a known host is answered
from that memory. Each test here pits that memory against what a fresh policy
decides on the same input, or against the other core: a remembered outcome
may only save work, never turn a refusal into a match, lose a report or a
counted decision. Every test runs on both cores.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import itertools
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import pytest

from pinengine import CertificateParseError, Pin, PinMismatchError, PinPolicy
from pinengine import _core_py as twin
from pinengine import policy as policy_module
from pinengine._types import KIND_CERT, KIND_SPKI, POS_ANY, POS_LEAF, Status, outcome_code_of
from tests.certs import Chain, cached_chain, make_chain
from tests.collector import Recorder

pytestmark = pytest.mark.both_cores

HOST = "bank.test"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def backup(seed: int) -> str:
    """A pin that no certificate here has (a backup key kept offline)."""
    return "sha256/" + base64.b64encode(hashlib.sha256(b"backup %d" % seed).digest()).decode()


@pytest.fixture(scope="module")
def good() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def evil() -> Chain:
    return make_chain("p256", HOST)


def mapping(good: Chain, *, blocked: Sequence[bytes] = (), **entry: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"domains": [{"host": HOST, "pins": [pin(good.ders[1]), pin(good.ders[2])], **entry}]}
    if blocked:
        m["blocked_pins"] = [pin(d) for d in blocked]
    return m


def leaf_mapping(good: Chain) -> dict[str, Any]:
    """Only the leaf key is pinned (with an offline backup)."""
    return {"domains": [{"host": HOST, "pins": [pin(good.ders[0]), backup(0)]}]}


def outcome(call: Callable[[], Any]) -> str:
    try:
        result = call()
    except PinMismatchError as exc:
        return f"refused:{exc.result.status}"  # type: ignore[attr-defined]
    except (CertificateParseError, ValueError, TypeError) as exc:
        return type(exc).__name__
    if isinstance(result, list):
        (result,) = result
        if isinstance(result, PinMismatchError):
            return f"refused:{result.result.status}"  # type: ignore[attr-defined]
        if isinstance(result, Exception):
            return type(result).__name__
    return str(result.status)


def fresh(m: dict[str, Any], host: str, chain: Sequence[bytes], verified: bool = True) -> str:
    return outcome(lambda: PinPolicy.from_mapping(m, reporter=Recorder()).verify(host, list(chain), verified=verified))


# -- a chain read more than once must not decide one way and be remembered another


class Shifting(list):  # type: ignore[type-arg]
    """A chain (a list subclass) whose every full read gives the next of ``reads``.

    What a wrapper around a certificate store, or a list another thread is
    filling in, can look like to the policy: each read of the chain may see
    other certificates. Whatever the policy decides from one read must be
    remembered under that read's outcome, not another's.
    """

    def __init__(self, reads: Sequence[Sequence[bytes]]) -> None:
        super().__init__(reads[0])
        self.reads = list(reads)
        self.count = 0

    def __iter__(self) -> Iterator[bytes]:
        chain = self.reads[self.count % len(self.reads)]
        self.count += 1
        return iter(list(chain))


def _shifting_reads(good: Chain, evil: Chain) -> list[list[list[bytes]]]:
    # every order of "the good chain once, the evil chain otherwise" over a few reads
    reads = []
    for n in (2, 3, 4):
        for k in range(n):
            reads.append([good.ders if i == k else evil.ders for i in range(n)])
    return reads


def _label(reads: Sequence[Sequence[bytes]], good: Chain) -> str:
    return "".join("G" if list(r) == good.ders else "E" for r in reads)


@pytest.mark.parametrize("via", ["verify", "verify_batch"])
def test_a_chain_that_reads_differently_never_leaves_a_remembered_match_for_the_evil_chain(
    good: Chain, evil: Chain, via: str
) -> None:
    m = leaf_mapping(good)
    for reads in _shifting_reads(good, evil):
        rec = Recorder()
        policy = PinPolicy.from_mapping(m, reporter=rec)
        assert policy.verify(HOST, good.ders).status == Status.MATCH  # the host is known
        chain = Shifting(reads)
        label = _label(reads, good)
        if via == "verify":
            outcome(lambda: policy.verify(HOST, chain))  # noqa: B023
        else:
            outcome(lambda: policy.verify_batch([(HOST, chain)]))  # noqa: B023
        # the plain evil chain, from any caller afterwards: refused and reported, both paths
        for _ in range(2):
            assert outcome(lambda: policy.verify(HOST, list(evil.ders))) == "refused:mismatch", label  # noqa: B023
            got = outcome(lambda: policy.verify_batch([(HOST, tuple(evil.ders))]))  # noqa: B023
            assert got == "refused:mismatch", label
        assert policy.verify(HOST, good.ders).status == Status.MATCH


def test_a_chain_that_reads_differently_never_leaves_a_match_for_an_unverified_forged_leaf(
    good: Chain, evil: Chain
) -> None:
    # The leaf and the CA pinned: unverified, only the leaf may match, so the
    # good chain matches and a forged leaf under the real CA is refused.
    m = {"domains": [{"host": HOST, "pins": [pin(good.ders[0]), pin(good.ders[1])]}]}
    forged = [evil.ders[0], good.ders[1], good.ders[2]]
    for via in ("verify", "verify_batch"):
        policy = PinPolicy.from_mapping(m, reporter=Recorder())
        assert policy.verify(HOST, good.ders, verified=False).status == Status.MATCH
        assert fresh(m, HOST, forged, verified=False) == "refused:mismatch"
        chain = Shifting([forged, good.ders, forged, good.ders])
        if via == "verify":
            outcome(lambda: policy.verify(HOST, chain, verified=False))  # noqa: B023
        else:
            outcome(lambda: policy.verify_batch([(HOST, chain)], verified=False))  # noqa: B023
        for _ in range(2):
            assert outcome(lambda: policy.verify(HOST, forged, verified=False)) == "refused:mismatch", via  # noqa: B023
            got = outcome(lambda: policy.verify_batch([(HOST, forged)], verified=False))  # noqa: B023
            assert got == "refused:mismatch", via


def test_a_chain_list_changed_by_another_thread_never_poisons_the_memory(good: Chain, evil: Chain) -> None:
    # A plain list that another thread rewrites while the policy reads it: each
    # decision may see either chain, but no later call may be answered with a
    # match for the evil chain.
    policy = PinPolicy.from_mapping(leaf_mapping(good), reporter=Recorder())
    assert policy.verify(HOST, good.ders).status == Status.MATCH
    shared = list(good.ders)
    stop = threading.Event()

    def rewrite() -> None:
        while not stop.is_set():
            shared[0] = evil.ders[0]
            shared[0] = good.ders[0]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=rewrite)
    thread.start()
    poisoned = None
    try:
        deadline = time.monotonic() + 3.0
        for k in itertools.count():
            if time.monotonic() > deadline:
                break
            outcome(lambda: policy.verify(HOST, shared))
            outcome(lambda: policy.verify_batch([(HOST, shared)]))
            if outcome(lambda: policy.verify(HOST, list(evil.ders))) != "refused:mismatch":
                poisoned = k
                break
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert poisoned is None, f"a match for the evil chain was remembered after {poisoned} rounds"


# -- refusals after a remembered match, every chain form and both paths


def _forms() -> list[tuple[str, Callable[[Sequence[bytes]], Sequence[Any]]]]:
    return [
        ("list", list),
        ("tuple", tuple),
        ("bytearrays", lambda c: [bytearray(x) for x in c]),
        ("memoryviews", lambda c: tuple(memoryview(x) for x in c)),
    ]


def test_every_refusal_after_remembered_matches_agrees_with_a_fresh_policy(good: Chain, evil: Chain) -> None:
    blocked_inter = make_chain("p256", HOST)
    # the good leaf, reissued under a blocked intermediate, with the pinned root
    blocked_chain = [good.ders[0], blocked_inter.ders[1], good.ders[2]]
    m = mapping(good, blocked=[blocked_inter.ders[1]])
    g = good.ders
    candidates: dict[str, tuple[list[bytes], bool]] = {
        "good": (g, True),
        "good-unverified-leaf-only": (g, False),
        "evil": (evil.ders, True),
        "forged-leaf-unverified": ([evil.ders[0], g[1], g[2]], False),
        "blocked": (blocked_chain, True),
        "blocked-unverified": (blocked_chain, False),
        "blocked-leaf-only": ([blocked_inter.ders[1]], True),
        "duplicates": ([g[0], g[1], g[1], g[2], g[2]], True),
        "duplicates-unverified": ([evil.ders[0], g[1], g[1], g[2]], False),
        "reversed": (list(reversed(g)), True),
        "reversed-unverified": (list(reversed(g)), False),
        "nine": ([g[0]] + [g[1]] * 7 + [g[2]], True),
        "nine-late-match-unverified": ([evil.ders[0]] * 8 + [g[1]], False),
        "nine-late-match": ([evil.ders[0]] * 8 + [g[1]], True),
        "six-matches": ([g[0]] + [g[1]] * 5 + [g[2]], True),
        "long-64": ([g[0]] + [g[1]] * 62 + [g[2]], True),
        "long-64-unverified": ([evil.ders[0]] + [g[1]] * 62 + [g[2]], False),
        "long-65-blocked": ([g[0], g[1]] + [blocked_inter.ders[1]] * 62 + [g[2]], True),
        "truncated-cert": ([g[0][:-1], g[1], g[2]], True),
        "junk-middle": ([g[0], b"\x30\x03\x02\x01\x01", g[2]], True),
        "empty-cert": ([b"", g[1], g[2]], True),
        "empty": ([], True),
        "empty-unverified": ([], False),
    }
    want = {name: fresh(m, HOST, chain, verified) for name, (chain, verified) in candidates.items()}
    for name in ("evil", "forged-leaf-unverified", "blocked", "blocked-unverified", "blocked-leaf-only"):
        assert want[name].startswith("refused"), name
    for name in ("truncated-cert", "junk-middle", "empty-cert", "empty"):
        assert want[name] == "CertificateParseError", name

    for form_name, form in _forms():
        rec = Recorder()
        policy = PinPolicy.from_mapping(m, reporter=rec)
        expected_reports = 0
        for round_ in range(3):
            for name, (chain, verified) in candidates.items():
                c = form(chain)
                got = outcome(lambda: policy.verify(HOST, c, verified=verified))  # noqa: B023
                assert got == want[name], (form_name, round_, name, "verify")
                for item in ((HOST, c), [HOST, c]):
                    got = outcome(lambda: policy.verify_batch([item], verified=verified))  # noqa: B023
                    assert got == want[name], (form_name, round_, name, "verify_batch", type(item).__name__)
                expected_reports += 3 * want[name].startswith("refused")
            # all of them in one batch, in an order that puts the known matches first
            items = [(HOST, form(chain)) for name, (chain, verified) in candidates.items() if verified]
            results = policy.verify_batch(items)
            names = [name for name, (_, verified) in candidates.items() if verified]
            for name, result in zip(names, results):
                assert outcome(lambda: [result]) == want[name], (form_name, round_, name, "whole batch")  # noqa: B023
                expected_reports += want[name].startswith("refused")
        assert len(rec.events) == expected_reports, form_name


def test_unpinned_host_remembered_not_pinned_still_refuses_a_blocked_key(good: Chain, evil: Chain) -> None:
    m = mapping(good, blocked=[evil.ders[1]])
    policy = PinPolicy.from_mapping(m, reporter=Recorder())
    for _ in range(3):
        assert policy.verify("other.test", good.ders).status == Status.NOT_PINNED
        assert policy.verify("other.test", evil.ders[:1] + good.ders[1:]).status == Status.NOT_PINNED
        for verified in (True, False):
            with pytest.raises(PinMismatchError):
                policy.verify("other.test", evil.ders, verified=verified)
            (out,) = policy.verify_batch([("other.test", evil.ders)], verified=verified)
            assert isinstance(out, PinMismatchError)


def test_pin_and_blocked_indices_past_the_code_fields_decide_right(good: Chain, evil: Chain) -> None:
    # 70 backup pins before the real one: every match has j >= 64 (no code, never remembered),
    # and the blocked pins come after all of them.
    pins = [backup(i) for i in range(70)] + [pin(good.ders[1])]
    m = {"domains": [{"host": HOST, "pins": pins}], "blocked_pins": [pin(evil.ders[1])]}
    short = {"domains": [{"host": HOST, "pins": [backup(0), pin(good.ders[1])]}], "blocked_pins": [pin(evil.ders[1])]}
    chains = {
        "good": (good.ders, True),
        "forged-unverified": ([evil.ders[0], good.ders[1], good.ders[2]], False),
        "blocked": ([good.ders[0], good.ders[1], evil.ders[1], good.ders[2]], True),
        "evil": (evil.ders, True),
    }
    for spec in (m, short):
        policy = PinPolicy.from_mapping(spec, reporter=Recorder())
        for _ in range(3):
            for name, (chain, verified) in chains.items():
                want = fresh(spec, HOST, chain, verified)
                assert outcome(lambda: policy.verify(HOST, chain, verified=verified)) == want, name  # noqa: B023
                assert outcome(lambda: policy.verify_batch([(HOST, chain)], verified=verified)) == want, name  # noqa: B023
        assert fresh(spec, HOST, good.ders) == "match"
        assert fresh(spec, HOST, chains["blocked"][0]).startswith("refused")
        assert fresh(spec, HOST, chains["forged-unverified"][0], False).startswith("refused")


# -- the codes themselves: the same on both cores, never shared by two outcomes


def _pinsets(core: Any, good: Chain, evil: Chain) -> list[Any]:
    def p(kind: int, der: bytes, positions: int = POS_ANY) -> tuple[int, str, bytes, int]:
        if kind == KIND_CERT:
            return (kind, "sha256", hashlib.sha256(der).digest(), positions)
        return (kind, "sha256", twin.spki_sha256(der), positions)

    g, e = good.ders, evil.ders
    specs = [
        [p(KIND_SPKI, g[1]), p(KIND_SPKI, g[2])],
        [p(KIND_SPKI, g[0], POS_LEAF), p(KIND_CERT, g[0]), p(KIND_SPKI, e[1])],
        [p(KIND_SPKI, d) for d in (*g, *e)],
        [p(KIND_SPKI, e[0])] * 61 + [p(KIND_SPKI, g[1]), p(KIND_SPKI, g[0]), p(KIND_SPKI, g[2])],
        [p(KIND_SPKI, g[1])] * 6,
    ]
    return [core.PinSet(s) for s in specs]


def _chains(good: Chain, evil: Chain) -> list[list[bytes]]:
    g, e = good.ders, evil.ders
    return [
        g, e, g[:1], g[1:], list(reversed(g)), [e[0], g[1], g[2]], g + g, [g[0]] * 5, [g[0]] * 6,
        [e[0]] * 7 + [g[1]], [e[0]] * 8 + [g[1]], [g[0]] + [g[1]] * 62, [g[0]] + [g[1]] * 63, [g[0]] + [g[1]] * 64,
    ]


def test_outcome_codes_agree_between_cores_and_never_collide(backend: str, good: Chain, evil: Chain) -> None:
    # (a pure-Python install has no compiled core to import)
    cores = [twin] if backend == "python" else [importlib.import_module("pinengine._core"), twin]
    seen: dict[int, tuple[Any, ...]] = {}
    for k, (chain, verified) in enumerate(itertools.product(_chains(good, evil), (True, False))):
        for s in range(5):
            codes = set()
            for core in cores:
                ps = _pinsets(core, good, evil)[s]
                for form in (list, tuple, lambda c: [bytearray(x) for x in c], lambda c: [memoryview(x) for x in c]):
                    codes.add(core.outcome_code(form(chain), ps, verified))
                pairs = tuple(core.match_chain(chain, ps, True))
            assert len(codes) == 1, (k, s, codes)
            (code,) = codes
            fits = len(chain) < 64 and len(pairs) <= 5 and all(i < 8 and j < 64 for i, j in pairs)
            assert (code >= 0) == fits, (k, s, code)
            # the policy remembers a decision under the code of the very pairs it decided on
            assert outcome_code_of(list(pairs), len(chain), verified) == code, (k, s)
            if code >= 0:
                what = (bool(verified), len(chain), pairs)
                assert seen.setdefault(code, what) == what, (code, what, seen[code])
    assert len(seen) > 40


def test_recall_outcomes_agrees_between_cores_on_odd_items(backend: str, good: Chain, evil: Chain) -> None:
    if backend == "python":
        pytest.skip("the compiled core is what the twin is compared with")
    compiled = importlib.import_module("pinengine._core")
    results = []
    for core in (compiled, twin):
        ps = _pinsets(core, good, evil)[0]
        code = core.outcome_code(good.ders, ps, True)
        marker = object()
        tally = core.Tally(())
        plans = {HOST: (HOST, object(), ps, {code: (marker, tally)}), "u.test": (HOST, None, ps, {code: (marker, tally)})}

        def make_items() -> list[Any]:
            return [
                (HOST, good.ders), (HOST, tuple(good.ders)), [HOST, good.ders], (HOST, []), (HOST, [b"junk"]),
                (HOST.encode(), good.ders), ("BANK.TEST", good.ders), (HOST, evil.ders), ("u.test", good.ders),
                (HOST, (x for x in good.ders)), (HOST, [bytearray(x) for x in good.ders]), (HOST,), (HOST, good.ders, 1),
            ]

        for skip in (False, True):
            before = tally.read()[0]
            res, misses = core.recall_outcomes(make_items(), plans, True, skip)
            items = make_items()
            found = [r is marker for r in res]
            assert tally.read()[0] - before == sum(found)  # every result handed back was counted once
            results.append((found, misses))
            one = [core.recall_outcome(plans, *it, True, skip) if type(it) is tuple and len(it) == 2 else None for it in items]
            assert [o is marker for o in one] == found
            assert misses == [k for k, r in enumerate(res) if r is not marker]
    assert results[:2] == results[2:]


# -- host names


def test_spellings_and_odd_host_objects_decide_as_a_fresh_policy(good: Chain, evil: Chain) -> None:
    class Name(str):
        pass

    m = mapping(good)
    hosts: list[Any] = [HOST, "BANK.TEST", "bank.test.", "Bank.Test.", Name(HOST), Name("BANK.test"), HOST.encode(), None, 7]
    rec = Recorder()
    policy = PinPolicy.from_mapping(m, reporter=rec)
    forged = [evil.ders[0], good.ders[1], good.ders[2]]
    for round_ in range(3):
        for host in hosts:
            for chain, verified in ((good.ders, True), (evil.ders, True), (forged, False), (good.ders, False)):
                want = fresh(m, host, chain, verified)
                got = outcome(lambda: policy.verify(host, chain, verified=verified))  # noqa: B023
                assert got == want, (round_, host, verified)
                got = outcome(lambda: policy.verify_batch([(host, chain)], verified=verified))  # noqa: B023
                assert got == want, (round_, host, verified, "batch")


def test_a_host_object_that_hashes_and_compares_as_another_host_gets_its_own_pins(
    good: Chain, evil: Chain
) -> None:
    # A str subclass whose hash and equality are another name's, and whose text is its own: the pins
    # that apply are those of its text (what a fresh policy decides), never those of the name it
    # poses as, whose plan is remembered first.
    class Posing(str):
        def __hash__(self) -> int:
            return hash(HOST)

        def __eq__(self, other: object) -> bool:
            return str.__eq__(HOST, other) if isinstance(other, str) else NotImplemented

    m = {"domains": [
        {"host": HOST, "pins": [pin(good.ders[1]), backup(1)]},
        {"host": "other.test", "pins": [pin(evil.ders[1]), backup(2)]},
    ]}
    policy = PinPolicy.from_mapping(m)
    policy.verify(HOST, good.ders)  # HOST's plan and its matched outcome are remembered
    policy.verify_batch([(HOST, good.ders)])
    for host in (Posing("other.test"), Posing("OTHER.test.")):
        want = fresh(m, host, good.ders, True)
        assert want == "refused:mismatch"
        for _ in range(2):
            assert outcome(lambda: policy.verify(host, good.ders)) == want  # noqa: B023
            assert outcome(lambda: policy.verify_batch([(host, good.ders)])) == want  # noqa: B023


# -- threads: floods of names, hpkp switched, reports and metrics


def test_threads_flooding_names_and_switching_hpkp_never_pass_an_evil_chain(good: Chain, evil: Chain) -> None:
    rec = Recorder()
    policy = PinPolicy.from_mapping(mapping(good), reporter=rec)
    forged = [evil.ders[0], good.ders[1], good.ders[2]]
    errors: list[str] = []
    refusals = [0] * 3
    stop = threading.Event()

    def checker(t: int) -> None:
        for _ in range(120):
            items: list[Any] = [(HOST, good.ders), (HOST, evil.ders), ["BANK.TEST", list(good.ders)], (HOST, forged)]
            out = policy.verify_batch(items * 3)
            for k, r in enumerate(out):
                good_item = k % 4 != 1  # (the forged leaf is under the pinned CA, and verified here)
                if good_item and (isinstance(r, Exception) or r.status != Status.MATCH):
                    errors.append(f"good item {k} decided {r!r}")
                if not good_item:
                    if not isinstance(r, PinMismatchError):
                        errors.append(f"evil item {k} decided {r!r}")
                    refusals[t] += 1
            try:
                policy.verify(HOST, forged, verified=False)
                errors.append("forged leaf accepted")
            except PinMismatchError:
                refusals[t] += 1

    def flood() -> None:
        n = 0
        while not stop.is_set():
            policy.verify_batch([(f"n{n + k}.flood.example", evil.ders) for k in range(300)])
            n += 300

    def switch() -> None:
        while not stop.is_set():
            policy.hpkp = not policy.hpkp
            time.sleep(0.0005)

    side = [threading.Thread(target=flood), threading.Thread(target=switch)]
    workers = [threading.Thread(target=checker, args=(t,)) for t in range(3)]
    for th in side + workers:
        th.start()
    for th in workers:
        th.join()
    stop.set()
    for th in side:
        th.join()
    assert errors == []
    assert len(policy._plans) <= policy_module.PLAN_CACHE_SIZE
    assert len(rec.events) == sum(refusals)


def test_batch_decisions_are_counted_once_each_with_their_key(good: Chain, evil: Chain) -> None:
    from pinengine.metrics import METRICS

    host = "counted-recall.bank.test"
    policy = PinPolicy.from_mapping(mapping(good, include_subdomains=True), reporter=Recorder())
    items: list[Any] = [
        (host, good.ders), ("unpinned-recall.example", good.ders), (host, evil.ders),
        [host, tuple(good.ders)], (host, [b"junk"]), ("bad..name", good.ders),
    ]
    before = METRICS.stats()
    rounds, n_threads = 40, 3

    def worker() -> None:
        for _ in range(rounds):
            policy.verify_batch(items * 4)
            policy.verify(host, good.ders)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    after = METRICS.stats()
    total = rounds * n_threads
    delta = {k: after["totals"][k] - before["totals"][k] for k in after["totals"]}
    assert delta["matches"] == total * (4 * 2 + 1)
    assert delta["not_pinned"] == total * 4
    assert delta["mismatches"] == total * 4
    assert delta["verifications"] == total * (4 * 5 + 1)  # the bad name is no decision
    host_row = after["hosts"][host]
    before_row = before["hosts"].get(host, {})
    for entry, row in host_row.items():
        was = before_row.get(entry, {}).get("matches", 0)
        assert row["matches"] - was == total * 9
    assert after["latency"]["count"] - before["latency"]["count"] == delta["verifications"]


class Flipping:
    """A ``verified`` flag whose truth changes every time it is read (a caller's bug, or worse)."""

    def __init__(self, phase: int) -> None:
        self.reads = phase

    def __bool__(self) -> bool:
        self.reads += 1
        return self.reads % 2 == 0


def test_a_verified_flag_that_reads_differently_never_leaves_a_match_for_a_forged_leaf(good: Chain, evil: Chain) -> None:
    m = {"domains": [{"host": HOST, "pins": [pin(good.ders[0]), pin(good.ders[1])]}]}
    forged = [evil.ders[0], good.ders[1], good.ders[2]]
    for phase in range(4):
        for via in ("verify", "verify_batch"):
            policy = PinPolicy.from_mapping(m, reporter=Recorder())
            assert policy.verify(HOST, good.ders, verified=False).status == Status.MATCH
            flag = Flipping(phase)
            if via == "verify":
                outcome(lambda: policy.verify(HOST, forged, verified=flag))  # type: ignore[arg-type] # noqa: B023
            else:
                outcome(lambda: policy.verify_batch([(HOST, forged)], verified=flag))  # type: ignore[arg-type] # noqa: B023
            for _ in range(2):
                got = outcome(lambda: policy.verify(HOST, forged, verified=False))  # noqa: B023
                assert got == "refused:mismatch", (phase, via)
                got = outcome(lambda: policy.verify_batch([(HOST, forged)], verified=False))  # noqa: B023
                assert got == "refused:mismatch", (phase, via)


def test_now_and_expiring_entries_are_decided_anew_in_batches(good: Chain, evil: Chain) -> None:
    import datetime as dt

    m = mapping(good)
    m["domains"].append({"host": "exp.test", "pins": [pin(good.ders[1]), pin(good.ders[2])], "expires": "2030-01-01"})
    after = dt.datetime(2030, 1, 2, tzinfo=dt.timezone.utc)
    policy = PinPolicy.from_mapping(m, reporter=Recorder())
    items = [(HOST, good.ders), (HOST, evil.ders), ("exp.test", good.ders), ("exp.test", evil.ders)]
    for _ in range(3):
        plain = [outcome(lambda: [r]) for r in policy.verify_batch(items)]  # noqa: B023
        assert plain == ["match", "refused:mismatch", "match", "refused:mismatch"]
        later = [outcome(lambda: [r]) for r in policy.verify_batch(items, now=after)]  # noqa: B023
        assert later == ["match", "refused:mismatch", "expired", "expired"]
        assert outcome(lambda: policy.verify("exp.test", evil.ders, now=after)) == "expired"
        assert outcome(lambda: policy.verify(HOST, evil.ders, now=after)) == "refused:mismatch"
        assert outcome(lambda: policy.verify("exp.test", evil.ders)) == "refused:mismatch"
