"""Violation reports: RFC 7469 JSON, sinks, and delivery to a real HTTP collector.

End to end: a real HTTPS server on loopback serves a chain the policy's pins
do not match; the pinned context's handshake emits the violation, and a real
HTTP collector on loopback receives the reports (tests/collector.py).
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import re
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import pinengine
from pinengine import Pin, PinMismatchError, PinPolicy, metrics
from pinengine.hooks.ssl import create_pinned_context
from pinengine.reporting import (
    CallbackSink,
    HTTPSink,
    LoggingSink,
    Reporter,
    ViolationReport,
    default_reporter,
    set_default_reporter,
)
from tests.certs import Chain, cached_chain, pem, rotated
from tests.collector import Collector
from tests.tls import TLSServer

HOST = "localhost"
EXPIRES = "2099-12-31"  # a date: pins hold through that day, so the entry expires at the next midnight UTC
EXPIRES_AT = "2100-01-01T00:00:00Z"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def hpkp(der: bytes) -> str:
    return Pin.from_certificate(der).hpkp


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


@pytest.fixture(autouse=True)
def fresh_metrics() -> None:
    metrics.reset()


@pytest.fixture
def reports_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="pinengine")
    return caplog


def pin_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "pinengine.reports" and hasattr(r, "pin_report")]


def policy_for(
    other: Chain, *, mode: str = "report-only", report_uri: Any = (), reporter: Any = None, **extra: Any
) -> PinPolicy:
    entry = {"host": HOST, "pins": [pin(other.ders[0]), pin(other.ders[1])], "mode": mode, "expires": EXPIRES}
    if report_uri:
        entry["report_uri"] = report_uri
    entry.update(extra)
    return PinPolicy.from_mapping({"domains": [entry]}, reporter=reporter)


def fetch(ctx: ssl.SSLContext, port: int) -> float:
    """One HTTPS request on a new connection (a full handshake); the seconds it took."""
    started = time.perf_counter()
    conn = http.client.HTTPSConnection(HOST, port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/")
        body = conn.getresponse().read()
    finally:
        conn.close()
    assert body.startswith(b"hello")
    return time.perf_counter() - started


def expected_report(chain: Chain, other: Chain, port: int | None, backend: str, *, mode: str = "report-only") -> dict[str, Any]:
    served = chain.ders[:2]  # TLSServer sends the leaf and the intermediate
    return {
        "hostname": HOST,
        "port": port,
        "effective-expiration-date": EXPIRES_AT,
        "include-subdomains": False,
        "noted-hostname": HOST,
        "served-certificate-chain": [ssl.DER_cert_to_PEM_cert(d) for d in served],
        "validated-certificate-chain": [ssl.DER_cert_to_PEM_cert(d) for d in chain.ders],
        "known-pins": [hpkp(other.ders[0]), hpkp(other.ders[1])],
        "pinengine": {
            "status": "report-only" if mode == "report-only" else "mismatch",
            "mode": mode,
            "entry": HOST,
            "reason": "no-pin-matched",
            "verified": True,
            "blocked-pins": [],
            "served-chain-pins": [pin(d) for d in served],
            "backend": backend,
            "version": pinengine.__version__,
        },
    }


def check_date_time(report: dict[str, Any]) -> dict[str, Any]:
    """Pop ``date-time`` after checking its form (RFC 3339, UTC, whole seconds) and that it is now."""
    report = dict(report)
    value = report.pop("date-time")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value), value
    when = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) < 300
    return report


def host_stats() -> dict[str, Any]:
    return pinengine.stats()["hosts"].get(HOST, {}).get(HOST, {})


# -- the report ----------------------------------------------------------------------


def test_report_has_the_rfc7469_fields_and_pinengine_ones_apart(
    backend: str, chain: Chain, other: Chain
) -> None:
    got: list[ViolationReport] = []
    policy = policy_for(other, reporter=Reporter(CallbackSink(got.append)))
    result = policy.verify(HOST, chain.ders, port=8443, served_chain=chain.ders[:2])
    assert result.status == "report-only"
    assert len(got) == 1
    data = got[0].to_dict()
    assert list(data)[:9] == [
        "date-time", "hostname", "port", "effective-expiration-date", "include-subdomains",
        "noted-hostname", "served-certificate-chain", "validated-certificate-chain", "known-pins",
    ]
    assert check_date_time(data) == expected_report(chain, other, 8443, backend)
    import json

    assert json.loads(got[0].to_json()) == data


def test_report_for_patterns_blocked_keys_and_unvalidated_chains(backend: str, chain: Chain, other: Chain) -> None:
    got: list[ViolationReport] = []
    reporter = Reporter(CallbackSink(got.append))
    policy = PinPolicy.from_mapping(
        {
            "blocked_pins": [pin(chain.ders[1])],
            "domains": [
                {"host": "**.example.com", "pins": [pin(other.ders[0]), {"pin": str(Pin.from_certificate(
                    other.ders[1], kind="certificate")), "position": "intermediate"}]},
            ],
        },
        reporter=reporter,
    )
    with pytest.raises(PinMismatchError):
        policy.verify("api.example.com", chain.ders[:1], verified=False)
    with pytest.raises(PinMismatchError):
        policy.verify("unpinned.example.org", chain.ders)  # no entry, but a blocked key
    first, second = (r.to_dict() for r in got)
    assert first["noted-hostname"] == "example.com" and first["include-subdomains"] is True
    assert first["hostname"] == "api.example.com" and first["port"] is None
    assert first["validated-certificate-chain"] == []  # nothing was validated
    assert first["served-certificate-chain"] == [ssl.DER_cert_to_PEM_cert(chain.ders[0])]
    cert_pin = Pin.from_certificate(other.ders[1], kind="certificate")
    cert_b64 = str(cert_pin).split("/", 1)[1]
    assert first["known-pins"] == [hpkp(other.ders[0]), f'cert-sha256="{cert_b64}"']
    assert first["effective-expiration-date"] is None
    assert first["pinengine"]["verified"] is False and first["pinengine"]["entry"] == "**.example.com"
    assert second["noted-hostname"] == "unpinned.example.org" and second["known-pins"] == []
    assert second["pinengine"]["reason"] == "blocked-key"
    assert second["pinengine"]["blocked-pins"] == [pin(chain.ders[1])]
    assert second["pinengine"]["entry"] is None and second["pinengine"]["mode"] == "enforce"


def test_matches_and_parse_errors_are_not_reported(chain: Chain, other: Chain) -> None:
    got: list[ViolationReport] = []
    reporter = Reporter(CallbackSink(got.append))
    policy = PinPolicy.from_mapping(
        {"domains": [{"host": HOST, "pins": [pin(chain.ders[1]), pin(other.ders[1])]}]}, reporter=reporter
    )
    assert policy.verify(HOST, chain.ders).status == "match"
    assert policy.verify("elsewhere.example", chain.ders).status == "not-pinned"
    with pytest.raises(pinengine.CertificateParseError):
        policy.verify(HOST, [b"\x30\x03\x02\x01\x00"])
    assert got == []


def test_a_broken_sink_does_not_break_verification_or_the_other_sinks(
    chain: Chain, other: Chain, reports_log: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def send(self, report: ViolationReport) -> None:
            raise RuntimeError("sink is down")

    got: list[ViolationReport] = []
    policy = policy_for(other, mode="enforce", reporter=Reporter(Broken(), CallbackSink(got.append)))
    with pytest.raises(PinMismatchError):  # the pin failure, not the sink's error
        policy.verify(HOST, chain.ders)
    assert len(got) == 1
    assert "sink" in reports_log.text and "sink is down" in reports_log.text


def test_logging_sink_one_structured_record_per_distinct_violation(
    chain: Chain, other: Chain, reports_log: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    policy = policy_for(other, reporter=Reporter(LoggingSink(clock=lambda: now[0])))
    for _ in range(3):  # one handshake after another, the same violation
        policy.verify(HOST, chain.ders, port=443)
    records = pin_records(reports_log)
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].pin_report["hostname"] == HOST  # type: ignore[attr-defined]
    message = records[0].getMessage()
    assert "\n" not in message
    assert f"pin violation for {HOST}:443 (allowed, report-only)" in message
    assert pin(chain.ders[0]) in message and pin(other.ders[0]) in message
    assert "validated chain: " in message  # the chain shown is the one checked (no served chain known)
    now[0] += 61  # past the de-duplication interval: logged again, saying what was left out
    policy.verify(HOST, chain.ders, port=443)
    records = pin_records(reports_log)
    assert len(records) == 2
    assert records[1].pin_reports_suppressed == 2  # type: ignore[attr-defined]
    assert f"(2 more for {HOST} not logged since the last record)" in records[1].getMessage()


def test_logging_sink_rate_limits_a_host_that_makes_a_new_chain_each_time(
    other: Chain, reports_log: pytest.LogCaptureFixture
) -> None:
    # A MITM box minting a leaf per connection: every report differs, the
    # per-host limit still bounds the log.
    from tests.certs import make_chain

    chains = [make_chain("p256", HOST) for _ in range(4)]
    policy = policy_for(other, reporter=Reporter(LoggingSink(host_limit=2, clock=lambda: 5.0)))
    for c in chains:
        policy.verify(HOST, c.ders)
    assert len(pin_records(reports_log)) == 2
    every = policy_for(other, reporter=Reporter(LoggingSink(dedupe_interval=0, host_limit=None)))
    for c in chains:
        every.verify(HOST, c.ders)
    assert len(pin_records(reports_log)) == 2 + 4


def test_no_log_output_unless_the_application_asks() -> None:
    # A report-only violation in a program that configured no logging: the
    # package's NullHandler keeps Python's last-resort handler quiet.
    import subprocess
    import sys

    code = (
        "from pinengine import PinPolicy; from pinengine.reporting import Reporter, LoggingSink\n"
        "from tests.certs import make_chain\n"
        "a, b = make_chain(), make_chain()\n"
        "from pinengine import Pin\n"
        "p = PinPolicy.from_mapping({'domains': [{'host': 'example.com', 'mode': 'report-only',"
        " 'pins': [str(Pin.from_certificate(b.ders[0])), str(Pin.from_certificate(b.ders[1]))]}]},"
        " reporter=Reporter(LoggingSink()))\n"
        "print(p.verify('example.com', a.ders).status)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=str(Path(__file__).resolve().parent.parent))
    assert done.stdout == "report-only\n", done.stderr
    assert done.stderr == ""


def test_default_reporter_logs_and_posts_to_the_policys_report_uri(
    chain: Chain, other: Chain, collector: Collector, reports_log: pytest.LogCaptureFixture
) -> None:
    # Following the rollout steps (report_uri in the policy, nothing in code)
    # gets reports to the collector, as TrustKit does (issue 15, item 9).
    policy = policy_for(other, report_uri=collector.url)  # no reporter: the default one
    assert policy.reporter is None
    previous = set_default_reporter(None)  # the suite's conftest keeps reports in the process
    try:
        reporter = default_reporter()
        assert [type(s) for s in reporter.sinks] == [LoggingSink, HTTPSink]
        policy.verify(HOST, chain.ders)
        assert reporter.flush(10)
        assert collector.posts == 1
        assert len(pin_records(reports_log)) == 1
        # The switch to keep reports in the process.
        set_default_reporter(Reporter(LoggingSink()))
        policy.verify(HOST, make_chain_other_leaf(chain).ders)
        assert collector.posts == 1
    finally:
        set_default_reporter(previous)
        reporter.close()


def make_chain_other_leaf(chain: Chain) -> Chain:
    from tests.certs import rotated

    return rotated(chain, HOST)


# -- end to end: a real HTTPS server and a real collector -----------------------------------


def test_collector_receives_exactly_the_expected_json_deduplicated_and_rate_limited(
    backend: str, server: TLSServer, chain: Chain, other: Chain, collector: Collector,
    reports_log: pytest.LogCaptureFixture,
) -> None:
    sink = HTTPSink(host_limit=2)
    every = LoggingSink(dedupe_interval=0, host_limit=None)  # log every violation, to count them below
    policy = policy_for(other, report_uri=collector.url, reporter=Reporter(every, sink))
    ctx = create_pinned_context(policy, cafile=server.cafile)
    try:
        for _ in range(3):  # the same chain three times: one report
            fetch(ctx, server.port)
        second = rotated(chain, HOST)
        with TLSServer(second) as server2:  # another chain: a second report
            for _ in range(2):
                fetch(ctx, server2.port)
            port2 = server2.port
        with TLSServer(rotated(chain, HOST)) as server3:  # a third chain: over the per-host limit of 2
            fetch(ctx, server3.port)
        assert sink.flush(10)
    finally:
        assert sink.close(5)
    reports = collector.reports
    assert len(reports) == 2
    assert check_date_time(reports[0]) == expected_report(chain, other, server.port, backend)
    assert check_date_time(reports[1]) == expected_report(second, other, port2, backend)
    path, headers, _, _ = collector.requests[0]
    assert path == "/pins" and headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"pinengine/{pinengine.__version__}"
    # every violation is in the logs, reported or not
    assert len(pin_records(reports_log)) == 6
    counts = host_stats()
    assert counts["verifications"] == counts["report_only"] == 6
    assert counts["reports_sent"] == 2
    assert counts["reports_suppressed"] == 4  # two repeats of the first chain, one of the second, one over the limit
    assert counts["reports_dropped"] == counts["reports_failed"] == 0


def test_enforce_mode_refuses_and_reports(
    backend: str, server: TLSServer, chain: Chain, other: Chain, collector: Collector
) -> None:
    second = Collector()
    sink = HTTPSink()
    policy = policy_for(
        other, mode="enforce", report_uri=[collector.url, second.url], reporter=Reporter(sink)
    )
    ctx = create_pinned_context(policy, cafile=server.cafile)
    try:
        for _ in range(2):
            with pytest.raises(PinMismatchError):
                fetch(ctx, server.port)
        assert sink.close(10)
    finally:
        second.close()
    expected = expected_report(chain, other, server.port, backend, mode="enforce")
    for c in (collector, second):  # every report_uri gets it, once
        assert [check_date_time(r) for r in c.reports] == [expected]
    counts = host_stats()
    assert counts["mismatches"] == 2 and counts["reports_sent"] == 2 and counts["reports_suppressed"] == 1


def _timed_handshakes(ctx: ssl.SSLContext, port: int, n: int) -> list[float]:
    return [fetch(ctx, port) for _ in range(n)]


def test_a_hanging_collector_does_not_delay_handshakes_or_lose_violations(
    server: TLSServer, chain: Chain, other: Chain, reports_log: pytest.LogCaptureFixture
) -> None:
    baseline_ctx = create_pinned_context(policy_for(other, reporter=Reporter(LoggingSink())), cafile=server.cafile)
    _timed_handshakes(baseline_ctx, server.port, 2)  # warm up
    baseline = _timed_handshakes(baseline_ctx, server.port, 6)
    with Collector(hang=8.0) as slow:
        # No de-duplication: every violation is a report, so the queue (2) fills behind the hung POST.
        sink = HTTPSink(timeout=10.0, queue_size=2, dedupe_interval=0, host_limit=10**6)
        policy = policy_for(other, report_uri=slow.url, reporter=Reporter(LoggingSink(dedupe_interval=0, host_limit=None), sink))
        ctx = create_pinned_context(policy, cafile=server.cafile)
        before = len(pin_records(reports_log))
        times = [fetch(ctx, server.port)]
        assert slow.wait_for(1)  # the worker is now stuck in that POST (for 8 s)
        times += _timed_handshakes(ctx, server.port, 5)
        # 6 violations: one POST hanging, two queued, three dropped (queue full), none blocking
        assert max(times) < max(baseline) + 0.5, (times, baseline)
        assert len(pin_records(reports_log)) - before == 6
        counts = host_stats()
        assert counts["report_only"] == 14  # 2 + 6 baseline, 6 here
        assert counts["reports_dropped"] == 3
        assert "queue is full" in reports_log.text
        assert sink.close(0.3) is False  # could not deliver: the collector still hangs
        assert slow.posts == 1
        assert host_stats()["reports_dropped"] == 5  # and the two queued ones are dropped at close
    # The collector answers at last (closing it releases the hung request): the worker ends.
    assert sink.close(10)
    assert host_stats()["reports_sent"] == 1


def test_a_refusing_collector_does_not_delay_handshakes_or_lose_violations(
    server: TLSServer, chain: Chain, other: Chain, reports_log: pytest.LogCaptureFixture
) -> None:
    baseline_ctx = create_pinned_context(policy_for(other, reporter=Reporter(LoggingSink())), cafile=server.cafile)
    _timed_handshakes(baseline_ctx, server.port, 2)
    baseline = _timed_handshakes(baseline_ctx, server.port, 6)
    sink = HTTPSink(retries=2, backoff=0.01, timeout=2.0)
    policy = policy_for(other, report_uri=Collector.refusing(), reporter=Reporter(LoggingSink(dedupe_interval=0, host_limit=None), sink))
    ctx = create_pinned_context(policy, cafile=server.cafile)
    before = len(pin_records(reports_log))
    times = _timed_handshakes(ctx, server.port, 6)
    assert max(times) < max(baseline) + 0.5, (times, baseline)
    assert sink.flush(10)
    sink.close()
    assert len(pin_records(reports_log)) - before == 6
    counts = host_stats()
    assert counts["reports_failed"] == 1 and counts["reports_sent"] == 0 and counts["reports_suppressed"] == 5
    assert "could not deliver pin violation report" in reports_log.text
    assert "after 3 attempt(s)" in reports_log.text


# -- delivery: retries, flush, close, rate limits ----------------------------------------------


def _reports(n: int, other: Chain) -> list[ViolationReport]:
    """n reports for n different chains, collected from a real verification."""
    got: list[ViolationReport] = []
    policy = policy_for(other, reporter=Reporter(CallbackSink(got.append)))
    base = cached_chain("p256", HOST)
    for _ in range(n):
        policy.verify(HOST, rotated(base, HOST).ders)
    return got


def test_retries_with_backoff_then_delivers(other: Chain) -> None:
    (report,) = _reports(1, other)
    with Collector(statuses=[503, 429]) as flaky:
        sink = HTTPSink([flaky.url], backoff=0.05)
        sink.send(report)
        assert sink.flush(10)
        sink.close()
        assert [status for *_, status in flaky.requests] == [503, 429, 200]
        assert len(flaky.reports) == 1
    counts = host_stats()
    assert counts["reports_sent"] == 1 and counts["reports_failed"] == 0


def test_client_errors_are_not_retried(other: Chain) -> None:
    (report,) = _reports(1, other)
    with Collector(statuses=[400]) as picky:
        sink = HTTPSink([picky.url], backoff=0.01)
        sink.send(report)
        assert sink.close(10)
        assert picky.posts == 1
    assert host_stats()["reports_failed"] == 1


def test_close_flushes_queued_reports_and_pending_retries(other: Chain) -> None:
    reports = _reports(5, other)
    with Collector(statuses=[503]) as c:
        sink = HTTPSink([c.url], backoff=60.0)  # the retry would wait a minute; close sends it at once
        for r in reports:
            sink.send(r)
        assert sink.close(10)  # within 10 s: the retry did not wait out its backoff
        assert len(c.reports) == 5
        sink.send(reports[0])  # after close: dropped, counted
    counts = host_stats()
    assert counts["reports_sent"] == 5 and counts["reports_dropped"] == 1


def test_deduplication_interval_and_per_host_rate_limit(other: Chain, collector: Collector) -> None:
    now = [1000.0]
    sink = HTTPSink([collector.url], host_limit=3, host_window=3600, clock=lambda: now[0])
    a, b, c, d = _reports(4, other)
    try:
        for _ in range(3):
            sink.send(a)  # the same chain: once a day
        now[0] += 86399
        sink.send(a)
        assert sink.flush(10) and collector.posts == 1
        now[0] += 2  # a day has passed
        sink.send(a)
        assert sink.flush(10) and collector.posts == 2
        # the host window restarted at the last send; three reports per window
        sink.send(b)
        sink.send(c)
        sink.send(d)  # over the limit
        assert sink.flush(10) and collector.posts == 4
        now[0] += 3600
        sink.send(d)
        assert sink.flush(10) and collector.posts == 5
    finally:
        sink.close()
    counts = host_stats()
    assert counts["reports_sent"] == 5 and counts["reports_suppressed"] == 4


def test_reports_from_many_threads_are_each_counted_once(other: Chain, collector: Collector) -> None:
    reports = _reports(8, other)
    sink = HTTPSink([collector.url], host_limit=1000)

    def work() -> None:
        for r in reports:
            sink.send(r)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sink.close(10)
    assert collector.posts == 8
    counts = host_stats()
    assert counts["reports_sent"] == 8 and counts["reports_suppressed"] == 24


# -- report-only through the clients ------------------------------------------------------------


def _report_only_setup(other: Chain, collector: Collector) -> tuple[PinPolicy, HTTPSink]:
    sink = HTTPSink()
    return policy_for(other, report_uri=collector.url, reporter=Reporter(LoggingSink(dedupe_interval=0, host_limit=None), sink)), sink


def _assert_reported_per_connection(
    sink: HTTPSink, collector: Collector, reports_log: pytest.LogCaptureFixture, expected: dict[str, Any],
    connections: int,
) -> None:
    """One log record and one count per connection; one report posted (the rest are the same report)."""
    assert connections == 2
    assert sink.close(10)
    assert [check_date_time(r) for r in collector.reports] == [expected]
    assert len(pin_records(reports_log)) == connections
    assert host_stats()["report_only"] == connections


def test_report_only_through_requests(
    backend: str, server: TLSServer, chain: Chain, other: Chain, collector: Collector,
    reports_log: pytest.LogCaptureFixture,
) -> None:
    from pinengine.hooks.requests import pinned_session

    policy, sink = _report_only_setup(other, collector)
    connections = server.connections
    for _ in range(2):  # two sessions: two connections, two handshakes
        with pinned_session(policy) as session:
            for _ in range(3):
                response = session.get(server.url(), verify=server.cafile, timeout=10)
                assert response.status_code == 200 and response.content.startswith(b"hello")
    expected = expected_report(chain, other, server.port, backend)
    _assert_reported_per_connection(sink, collector, reports_log, expected, server.connections - connections)


def test_report_only_through_httpx(
    backend: str, server: TLSServer, chain: Chain, other: Chain, collector: Collector,
    reports_log: pytest.LogCaptureFixture,
) -> None:
    httpx = pytest.importorskip("httpx")
    policy, sink = _report_only_setup(other, collector)
    ctx = create_pinned_context(policy, cafile=server.cafile)
    connections = server.connections
    for _ in range(2):
        with httpx.Client(verify=ctx, timeout=10) as client:
            for _ in range(3):
                response = client.get(server.url())
                assert response.status_code == 200 and response.content.startswith(b"hello")
    expected = expected_report(chain, other, server.port, backend)
    _assert_reported_per_connection(sink, collector, reports_log, expected, server.connections - connections)


def test_report_only_through_grpc_channels(
    backend: str, chain: Chain, other: Chain, collector: Collector, reports_log: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("grpc")
    from pinengine.hooks import grpc as pgrpc
    from tests import grpc_server

    policy, sink = _report_only_setup(other, collector)
    with grpc_server.GrpcServer(chain) as server:
        established = 0
        for _ in range(2):  # two channels: two connections
            with pgrpc.secure_channel(f"{HOST}:{server.port}", policy, root_certificates=pem(chain.root)) as channel:
                call = channel.unary_unary(grpc_server.UNARY)
                for _ in range(3):
                    assert call(b"ping", timeout=10) == b"ping"
                established += channel.connections_established
        # The forwarder's TLS runs on an SSLObject (memory BIOs); the forwarder gives it the port.
        expected = expected_report(chain, other, server.port, backend)
        _assert_reported_per_connection(sink, collector, reports_log, expected, established)


# -- the docs ------------------------------------------------------------------------------


def test_docs_rollout_example_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "reporting.md").read_text()
    block = re.search(r"# Rolling pinning out safely.*?```python\n(.*?)```", text, re.DOTALL)
    assert block, "docs/reporting.md has no python example under 'Rolling pinning out safely'"
    monkeypatch.chdir(root)
    exec(compile(block.group(1), "docs/reporting.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [
        "report-only",
        'www.example.com pin-sha256="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="',
        "True",
        "1",
    ]


def test_https_collector(other: Chain) -> None:
    (report,) = _reports(1, other)
    tls = cached_chain("p256", HOST)
    with Collector(tls=tls) as secure:
        context = ssl.create_default_context(cadata=pem(tls.root).decode())
        sink = HTTPSink([secure.url], ssl_context=context)
        sink.send(report)
        assert sink.close(10)
        assert len(secure.reports) == 1 and secure.reports[0]["hostname"] == HOST
        # a collector the trust store does not validate gets nothing (after the retries)
        untrusted = HTTPSink([secure.url], retries=1, backoff=0.01)
        untrusted.send(report)
        assert untrusted.close(10)
        assert len(secure.reports) == 1
    counts = host_stats()
    assert counts["reports_sent"] == 1 and counts["reports_failed"] == 1
