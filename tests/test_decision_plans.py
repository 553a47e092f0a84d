"""What a policy remembers between decisions (its per-host plans and their results) never changes a decision.

``PinPolicy.verify`` keeps, per host name, the entry, its PinSet and the
results its chain matches gave, and hands a repeated match back without
building it again. Every case where something besides the match decides (a
blocked key, an unvalidated chain, report-only, expiry, HPKP, ``now=``) must
still be decided anew, and every decision must still be counted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import pytest

import pinengine
from pinengine import DomainEntry, Pin, PinMismatchError, PinPolicy
from pinengine.metrics import Metrics, decision_key
from tests.certs import Chain, cached_chain, make_cert, new_key
from tests.collector import Recorder

pytestmark = pytest.mark.both_cores

HOST = "plans.example"
# Pins of keys nobody holds.
PIN_A, PIN_B, PIN_C = (str(Pin("sha256", bytes([n]) * 32)) for n in (1, 2, 3))


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


def ders(chain: Chain, leaf: Any = None) -> list[bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding

    first = (leaf or chain.leaf).public_bytes(Encoding.DER)
    return [first, *chain.ders[1:]]


def pin_of(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def sibling_leaf(chain: Chain, host: str = HOST) -> tuple[Any, Any]:
    """Another leaf for ``host`` from the same intermediate, with a key of its own."""
    key = new_key("p256")
    return make_cert(host, key, chain.intermediate, chain.intermediate_key, ca=False, sans=(host,)), key


def verifications(host: str, entry: str) -> int:
    return int(pinengine.stats()["hosts"].get(host, {}).get(entry, {}).get("verifications", 0))


def test_a_repeated_match_gives_the_same_result_and_is_counted_each_time(chain: Chain) -> None:
    policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": [pin_of(chain.ders[1]), pin_of(chain.ders[2])]}]})
    before = verifications(HOST, HOST)
    results = [policy.verify(HOST, chain.ders) for _ in range(5)]
    assert all(r == results[0] for r in results)
    assert results[0].status == "match"
    assert [(m.index, m.role) for m in results[0].matches] == [(1, "intermediate"), (2, "root")]
    assert verifications(HOST, HOST) - before == 5
    # The same host written another way is its own plan, and the same decision.
    assert policy.verify(HOST.upper() + ".", chain.ders) == results[0]


def test_a_blocked_key_after_a_match_is_refused_and_the_match_still_passes(chain: Chain) -> None:
    bad_leaf, _ = sibling_leaf(chain)
    bad = ders(chain, bad_leaf)
    policy = PinPolicy.from_mapping(
        {"blocked_pins": [pin_of(bad[0])], "domains": [{"host": HOST, "pins": [pin_of(chain.ders[1]), pin_of(chain.ders[2])]}]}
    )
    for _ in range(3):
        assert policy.verify(HOST, chain.ders).status == "match"
        with pytest.raises(PinMismatchError, match="blocked key"):
            policy.verify(HOST, bad)
    # Unpinned names are refused for a blocked key too, after passing.
    assert policy.verify("unpinned.example", chain.ders).status == "not-pinned"
    with pytest.raises(PinMismatchError, match="blocked key"):
        policy.verify("unpinned.example", bad)


def test_an_unvalidated_chain_is_judged_on_its_leaf_after_a_validated_match(chain: Chain) -> None:
    policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": [pin_of(chain.ders[1]), pin_of(chain.ders[2])]}]})
    assert policy.verify(HOST, chain.ders).status == "match"
    with pytest.raises(PinMismatchError, match="not validated"):
        policy.verify(HOST, chain.ders, verified=False)
    assert policy.verify(HOST, chain.ders).status == "match"
    # A shorter chain is another outcome: the root is now the intermediate's place.
    short = policy.verify(HOST, chain.ders[:2])
    assert [(m.index, m.role) for m in short.matches] == [(1, "root")]


def test_report_only_violations_are_reported_every_time(chain: Chain) -> None:
    other_leaf, _ = sibling_leaf(chain)
    recorder = Recorder()
    policy = PinPolicy.from_mapping(
        {"domains": [{"host": HOST, "mode": "report-only", "pins": [pin_of(ders(chain, other_leaf)[0]), PIN_A]}]},
        reporter=recorder,
    )
    for _ in range(4):
        assert policy.verify(HOST, chain.ders).status == "report-only"
    assert [e.status for e in recorder.events] == ["report-only"] * 4
    # ... and a match for that entry, once remembered, is not reported.
    assert policy.verify(HOST, ders(chain, other_leaf)).status == "match"
    assert policy.verify(HOST, ders(chain, other_leaf)).status == "match"
    assert len(recorder.events) == 4


def test_an_entry_that_expires_is_judged_by_the_clock_each_time(chain: Chain) -> None:
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1.5)
    wrong = [PIN_A, PIN_B]
    policy = PinPolicy([DomainEntry(HOST, tuple(wrong), expires=expires), DomainEntry("ok." + HOST, (pin_of(chain.ders[1]), wrong[0]), expires=expires)])
    with pytest.raises(PinMismatchError):
        policy.verify(HOST, chain.ders)
    assert policy.verify("ok." + HOST, chain.ders).status == "match"
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 0.1)
    assert policy.verify(HOST, chain.ders).status == "expired"
    assert policy.verify("ok." + HOST, chain.ders).status == "expired"


def test_now_is_honoured_after_the_host_was_remembered(chain: Chain) -> None:
    expires = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    policy = PinPolicy([DomainEntry(HOST, (pin_of(chain.ders[1]), pin_of(chain.ders[2])))])
    assert policy.verify(HOST, chain.ders).status == "match"
    later = PinPolicy([DomainEntry(HOST, (pin_of(chain.ders[1]), pin_of(chain.ders[2])), expires=expires)])
    assert later.verify(HOST, chain.ders).status == "match"
    assert later.verify(HOST, chain.ders, now=expires + dt.timedelta(days=1)).status == "expired"
    assert later.verify(HOST, chain.ders).status == "match"


def test_hpkp_switched_on_makes_an_unpinned_name_checked_again(chain: Chain) -> None:
    policy = PinPolicy.from_mapping({"domains": [{"host": "other.example", "pins": [pin_of(chain.ders[1]), pin_of(chain.ders[2])]}]})
    assert policy.verify(HOST, chain.ders).status == "not-pinned"
    assert policy.verify(HOST, chain.ders).status == "not-pinned"
    seen: list[str] = []
    policy._noted_entry = lambda name: seen.append(name)  # type: ignore[method-assign]  # what hpkp=True consults
    policy.hpkp = True
    assert policy.verify(HOST, chain.ders).status == "not-pinned"
    assert seen == [HOST.lower()] or seen == [HOST]


def test_verify_batch_agrees_with_verify_on_every_outcome(chain: Chain) -> None:
    bad_leaf, _ = sibling_leaf(chain)
    policy = PinPolicy.from_mapping(
        {"blocked_pins": [pin_of(ders(chain, bad_leaf)[0])],
         "domains": [{"host": HOST, "pins": [pin_of(chain.ders[1]), pin_of(chain.ders[2])]},
                     {"host": "ro." + HOST, "mode": "report-only", "pins": [PIN_A, PIN_B]}]}
    )
    items = [(HOST, chain.ders), (HOST, ders(chain, bad_leaf)), ("ro." + HOST, chain.ders), ("free.example", chain.ders),
             ("bad host name!", chain.ders), (HOST, [b"\x30\x03junk"])] * 3
    for _ in range(2):  # once to remember, once from what was remembered
        batch = policy.verify_batch(items)
        for (host, chain_ders), got in zip(items, batch):
            try:
                want: Any = policy.verify(host, chain_ders)
            except (ValueError, pinengine.CertificateParseError, PinMismatchError) as exc:
                want = exc
            if isinstance(want, Exception):
                assert type(got) is type(want) and str(got) == str(want)
            else:
                assert got == want


def test_entries_read_from_a_file_are_the_entries_built_in_code() -> None:
    pins = [PIN_A, PIN_B]
    item = {"host": "*.Files.Example.", "pins": [pins[0], {"pin": pins[1], "position": "root"}], "mode": "report-only",
            "expires": "2031-02-03T04:05:06Z", "report_uri": "https://collector.example/r", "blocked_pins": [PIN_C],
            "require_backup_pin": False}
    read = PinPolicy.from_mapping({"domains": [item]}).entries[0]
    built = DomainEntry("*.files.example", (pins[0], pins[1]), positions=(0, 3), mode="report-only",
                        expires=dt.datetime(2031, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
                        report_uri=("https://collector.example/r",), blocked_pins=(Pin.parse(PIN_C),),
                        require_backup_pin=False)
    assert read.positions == built.positions or read.positions[0] != built.positions[0]
    built = dataclasses.replace(built, positions=read.positions)
    for field in dataclasses.fields(DomainEntry):
        assert getattr(read, field.name) == getattr(built, field.name), field.name


def test_pins_of_a_document_are_parsed_once_and_shared() -> None:
    pins = [PIN_A, PIN_B]
    policy = PinPolicy.from_mapping({"domains": [{"host": f"h{i}.example", "pins": pins} for i in range(50)]})
    assert len({id(e.pins) for e in policy.entries}) == 1
    assert len({id(p) for e in policy.entries for p in e.pins}) == 2


def test_metrics_series_stay_bounded_for_policies_larger_than_the_cap() -> None:
    m = Metrics(max_series=3)
    entries = [DomainEntry(f"h{i}.example", (PIN_A, PIN_B)) for i in range(20)]
    for e in entries:
        m.count_decision(decision_key(e.host, e, "mismatch", ()), 0.001)
    hosts = m.stats()["hosts"]
    series = [(h, e) for h, by_entry in hosts.items() for e in by_entry]
    assert len(series) <= 2 * 3 + 1
    assert hosts["_other"]["_other"]["mismatches"] == 20 - 3 - 3
    assert sum(row["mismatches"] for by_entry in hosts.values() for row in by_entry.values()) == 20
