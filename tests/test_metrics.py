"""Metrics: counters per host and entry, the latency histogram, pinengine.stats(), Prometheus."""

from __future__ import annotations

import http.client
import threading
from typing import Any

import pytest

import pinengine
from pinengine import CertificateParseError, Pin, PinMismatchError, PinPolicy, metrics
from pinengine.hooks.ssl import create_pinned_context
from pinengine.metrics import Metrics
from pinengine.reporting import Reporter
from tests.certs import Chain
from tests.tls import TLSServer

THREADS = 4
ROUNDS = 150


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


@pytest.fixture(autouse=True)
def fresh_metrics() -> None:
    metrics.reset()


@pytest.fixture
def policy(chain: Chain, other: Chain) -> PinPolicy:
    """One entry per outcome; a reporter with no sinks (these tests count, they do not report)."""
    good = [pin(chain.ders[1]), pin(other.ders[1])]
    bad = [pin(other.ders[0]), pin(other.ders[1])]
    leaf_cert = [str(Pin.from_certificate(chain.ders[0], kind="certificate")), pin(other.ders[0])]
    return PinPolicy.from_mapping(
        {
            "domains": [
                {"host": "match.example", "pins": good},
                {"host": "**.leaf.example", "pins": leaf_cert},
                {"host": "report.example", "pins": bad, "mode": "report-only"},
                {"host": "refuse.example", "pins": bad},
                {"host": "old.example", "pins": bad, "expires": "2020-01-01"},
            ]
        },
        reporter=Reporter(),
    )


def one_of_each(policy: PinPolicy, chain: Chain) -> None:
    """Seven decisions: match (twice, two kinds), report-only, mismatch, not-pinned, expired, parse error."""
    assert policy.verify("match.example", chain.ders).status == "match"
    assert policy.verify("a.leaf.example", chain.ders).status == "match"
    assert policy.verify("report.example", chain.ders).status == "report-only"
    with pytest.raises(PinMismatchError):
        policy.verify("refuse.example", chain.ders)
    assert policy.verify("nobody.example", chain.ders).status == "not-pinned"
    assert policy.verify("old.example", chain.ders).status == "expired"
    with pytest.raises(CertificateParseError):
        policy.verify("match.example", [chain.ders[0][:-1]])


def row(stats: dict[str, Any], host: str, entry: str) -> dict[str, Any]:
    return stats["hosts"][host][entry]


def test_counters_agree_with_what_four_threads_did(policy: PinPolicy, chain: Chain, caplog: Any) -> None:
    caplog.set_level("ERROR", logger="pinengine")  # the policy warns on each report-only / expired decision
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(ROUNDS):
                one_of_each(policy, chain)
        except BaseException as exc:  # pragma: no cover - shown below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    n = THREADS * ROUNDS
    stats = pinengine.stats()
    assert stats is not None and stats["backend"] == pinengine.backend()
    zero = dict.fromkeys(metrics.COUNTERS, 0)
    match = row(stats, "match.example", "match.example")
    assert match == {**zero, "verifications": 2 * n, "matches": n, "parse_errors": n,
                     "matches_by_kind": {"intermediate/spki/static": n}}
    leaf = row(stats, "a.leaf.example", "**.leaf.example")
    assert leaf == {**zero, "verifications": n, "matches": n, "matches_by_kind": {"leaf/certificate/static": n}}
    assert row(stats, "report.example", "report.example") == {
        **zero, "verifications": n, "report_only": n, "matches_by_kind": {}}
    assert row(stats, "refuse.example", "refuse.example") == {
        **zero, "verifications": n, "mismatches": n, "matches_by_kind": {}}
    assert row(stats, "old.example", "old.example") == {
        **zero, "verifications": n, "expired_passes": n, "matches_by_kind": {}}
    # hosts no entry covers are counted together
    assert row(stats, "", "") == {**zero, "verifications": n, "not_pinned": n, "matches_by_kind": {}}
    assert "nobody.example" not in stats["hosts"]
    assert stats["totals"] == {**zero, "verifications": 7 * n, "matches": 2 * n, "report_only": n, "mismatches": n,
                               "not_pinned": n, "expired_passes": n, "parse_errors": n}
    latency = stats["latency"]
    assert latency["count"] == 7 * n == latency["buckets"][-1][1]
    assert latency["sum"] > 0
    counts = [c for _, c in latency["buckets"]]
    assert counts == sorted(counts)  # cumulative


def test_batches_are_counted_per_item(policy: PinPolicy, chain: Chain, caplog: Any) -> None:
    caplog.set_level("ERROR", logger="pinengine")
    items = [("match.example", chain.ders), ("refuse.example", chain.ders), ("nobody.example", chain.ders),
             ("match.example", [b"\x00"]), ("bad host name!", chain.ders)]
    results = policy.verify_batch(items)
    assert [type(r).__name__ for r in results] == [
        "VerificationResult", "PinMismatchError", "VerificationResult", "CertificateParseError", "HostnameError"]
    assert isinstance(results[4], ValueError)
    totals = pinengine.stats()["totals"]
    assert totals["verifications"] == 4  # a host name that is not one is never a decision
    assert totals["matches"] == totals["mismatches"] == totals["not_pinned"] == totals["parse_errors"] == 1


def test_handshakes_from_four_threads(chain: Chain, other: Chain) -> None:
    policy = PinPolicy.from_mapping({"domains": [{"host": "localhost", "pins": [pin(chain.ders[1]), pin(other.ders[1])]}]})
    per_thread = 5
    with TLSServer(chain) as server:
        ctx = create_pinned_context(policy, cafile=server.cafile)

        def work() -> None:
            for _ in range(per_thread):
                conn = http.client.HTTPSConnection("localhost", server.port, context=ctx, timeout=10)
                conn.request("GET", "/")
                assert conn.getresponse().read().startswith(b"hello")
                conn.close()

        threads = [threading.Thread(target=work) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        handshakes = server.connections
    assert handshakes == THREADS * per_thread
    counts = row(pinengine.stats(), "localhost", "localhost")
    assert counts["verifications"] == counts["matches"] == handshakes
    assert counts["matches_by_kind"] == {"intermediate/spki/static": handshakes}


def test_store_errors_and_report_counts(policy: PinPolicy) -> None:
    entry = policy.entry_for("match.example")
    metrics.count_store_error("match.example", entry)
    metrics.count_store_error("match.example", "match.example")
    metrics.count_store_error("x.example")
    metrics.count_report("match.example", entry, "sent", 3)
    with pytest.raises(KeyError):
        metrics.count_report("match.example", entry, "lost")
    stats = pinengine.stats()
    assert row(stats, "match.example", "match.example")["store_errors"] == 2
    assert row(stats, "match.example", "match.example")["reports_sent"] == 3
    assert row(stats, "x.example", "")["store_errors"] == 1
    assert stats["totals"]["store_errors"] == 3


def test_series_are_capped_and_dead_threads_are_folded(policy: PinPolicy, chain: Chain) -> None:
    m = Metrics(max_series=3)
    events: list[Any] = []

    class Capture:
        def record(self, event: Any) -> None:
            events.append(event)

    from pinengine import _observe

    original = _observe._record
    _observe._record = Capture().record
    try:
        for host in ("a", "b", "c", "d", "e"):
            policy.verify(f"{host}.leaf.example", chain.ders)
    finally:
        _observe._record = original
    for event in events:
        t = threading.Thread(target=m.record, args=(event,))  # five short-lived threads
        t.start()
        t.join()
    stats = m.stats()
    assert sorted(stats["hosts"]) == ["_other", "a.leaf.example", "b.leaf.example", "c.leaf.example"]
    assert stats["hosts"]["_other"]["**.leaf.example"]["verifications"] == 2
    assert stats["totals"]["verifications"] == 5
    assert len(m._shards) == 0  # every thread ended: its counts were folded
    m.reset()
    assert m.stats()["totals"]["verifications"] == 0


def _samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_prometheus_exposition(policy: PinPolicy, chain: Chain, caplog: Any) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    caplog.set_level("ERROR", logger="pinengine")
    one_of_each(policy, chain)
    metrics.count_store_error('we"ird\\host\nname', None)
    registry = prometheus_client.CollectorRegistry()
    metrics.register_prometheus(registry)
    exposed = prometheus_client.generate_latest(registry).decode()
    samples = _samples(exposed)
    assert ("pinengine_verifications_total", (("entry", "match.example"), ("host", "match.example")), 2.0) in samples
    assert ("pinengine_matches_total", (("entry", "**.leaf.example"), ("host", "a.leaf.example"),
                                        ("kind", "certificate"), ("position", "leaf"), ("source", "static")),
            1.0) in samples
    assert ("pinengine_report_only_violations_total", (("entry", "report.example"), ("host", "report.example")),
            1.0) in samples
    assert ("pinengine_mismatches_total", (("entry", "refuse.example"), ("host", "refuse.example")), 1.0) in samples
    assert ("pinengine_expired_passes_total", (("entry", "old.example"), ("host", "old.example")), 1.0) in samples
    assert ("pinengine_not_pinned_total", (("entry", ""), ("host", "")), 1.0) in samples
    assert ("pinengine_store_errors_total", (("entry", ""), ("host", 'we"ird\\host\nname')), 1.0) in samples
    assert ("pinengine_pin_check_seconds_count", (), 7.0) in samples
    assert ("pinengine_pin_check_seconds_bucket", (("le", "+Inf"),), 7.0) in samples
    # the dependency-free exposition says exactly the same
    assert _samples(metrics.prometheus_text()) == samples
    assert "# TYPE pinengine_pin_check_seconds histogram" in metrics.prometheus_text()


def test_plain_text_exposition_without_prometheus_client(policy: PinPolicy, chain: Chain) -> None:
    policy.verify("match.example", chain.ders)
    text = metrics.prometheus_text()
    assert 'pinengine_verifications_total{host="match.example",entry="match.example"} 1.0' in text
    assert 'pinengine_pin_check_seconds_bucket{le="+Inf"} 1.0' in text
    assert text.endswith("\n")
