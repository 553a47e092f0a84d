"""A tarpit collector must not hold the report sender: every attempt has a total deadline.

The attack (issue 11, finding 9): a collector that answers one byte every
0.5 s never trips a per-read timeout, so the single report worker was held
forever and later reports never left. Here real tarpits on loopback (an HTTP
collector that trickles its answer, a TCP listener that trickles a TLS record)
sit beside a healthy collector, which must get its reports at once; the
tarpit's attempt must end at the sink's deadline; ``close`` must return within
its timeout.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any, Iterator

import pytest

import pinengine
from pinengine import Pin, PinPolicy, metrics, reporting
from pinengine._observe import VerificationEvent
from pinengine.policy import DomainEntry
from pinengine.reporting import HTTPSink, Reporter, _destinations
from tests.certs import Chain, cached_chain, make_chain, pem, rotated
from tests.collector import Collector, Tarpit

HOST = "localhost"
DEADLINE = 3.0  # the sink's per-attempt deadline in these tests
PROMPT = DEADLINE  # a healthy collector gets its reports within this: before the tarpit's attempt ends
SLACK = 2.0  # how much later than the deadline a hang-up may be seen (the tarpits notice within 0.5 s)


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def other() -> Chain:
    return make_chain("p256", HOST)


@pytest.fixture(autouse=True)
def fresh_metrics() -> None:
    metrics.reset()


@pytest.fixture
def healthy() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def event(chain: Chain, other: Chain, uris: tuple[str, ...] = (), *, noted: bool = False) -> VerificationEvent:
    entry = DomainEntry(HOST, (str(Pin.from_certificate(other.ders[0])), str(Pin.from_certificate(other.ders[1]))),
                        mode="report-only", noted=noted, report_uri=uris)
    return VerificationEvent(
        policy=PinPolicy([]), hostname=HOST, port=443, status="report-only", entry=entry,
        validated_chain=chain.ders, served_chain=chain.ders[:2], verified=True, matches=(), blocked=(),
        message="", seconds=0.0,
    )


def counts() -> dict[str, Any]:
    row = pinengine.stats()["hosts"].get(HOST, {}).get(HOST, {})
    return {k: row.get(k, 0) for k in ("reports_sent", "reports_failed", "reports_dropped", "reports_suppressed")}


def test_a_trickling_collector_does_not_starve_a_healthy_one(
    chain: Chain, other: Chain, healthy: Collector
) -> None:
    with Collector(trickle=0.5) as tarpit:
        sink = HTTPSink([tarpit.url, healthy.url], timeout=DEADLINE, retries=0, host_limit=1000)
        reporter = Reporter(sink)
        started = time.monotonic()
        for _ in range(2):
            reporter.report(event(rotated(chain, HOST), other))
        # Every report reaches the healthy collector while the tarpit still holds its first attempt.
        assert healthy.wait_for(2, timeout=PROMPT), healthy.posts
        assert tarpit.wait_for(1) and tarpit.hung_up == []
        # The tarpit's first attempt ends at the deadline (the tarpit sees the hang-up), not never.
        assert tarpit.wait_hung_up(1, timeout=DEADLINE + SLACK)
        assert tarpit.hung_up[0] - started < DEADLINE + SLACK
        # The second tarpit report follows: one attempt at a time per destination.
        assert tarpit.wait_hung_up(2, timeout=DEADLINE + SLACK)
        assert tarpit.connections == 2
        assert tarpit.accepted[1] - tarpit.accepted[0] >= DEADLINE * 0.9
        assert sink.close(10)
    c = counts()
    assert c["reports_sent"] == 2 and c["reports_failed"] == 2


def test_a_trickling_https_collector_is_cut_at_the_deadline(chain: Chain, other: Chain, healthy: Collector) -> None:
    tls = cached_chain("p256", HOST)
    context = ssl.create_default_context(cadata=pem(tls.root).decode())
    with Collector(trickle=0.5, tls=tls) as tarpit:
        sink = HTTPSink([tarpit.url, healthy.url], timeout=DEADLINE, retries=0, ssl_context=context)
        Reporter(sink).report(event(chain, other))
        assert healthy.wait_for(1, timeout=PROMPT)
        assert tarpit.wait_for(1)
        assert tarpit.wait_hung_up(1, timeout=DEADLINE + SLACK)
        assert sink.close(10)
    assert counts()["reports_failed"] == 1 and counts()["reports_sent"] == 1


def test_a_tls_handshake_tarpit_is_cut_at_the_deadline(chain: Chain, other: Chain, healthy: Collector) -> None:
    with Tarpit(interval=0.5) as tarpit:
        sink = HTTPSink([tarpit.url(), healthy.url], timeout=DEADLINE, retries=0)
        Reporter(sink).report(event(chain, other))
        assert healthy.wait_for(1, timeout=PROMPT)
        assert tarpit.wait_hung_up(1, timeout=DEADLINE + SLACK)
        assert tarpit.hung_up[0] - tarpit.accepted[0] < DEADLINE + SLACK
        assert sink.close(10)
    assert counts()["reports_failed"] == 1 and counts()["reports_sent"] == 1


def test_close_returns_within_its_timeout_while_a_tarpit_holds_an_attempt(
    chain: Chain, other: Chain, healthy: Collector
) -> None:
    with Collector(trickle=0.5) as tarpit:
        sink = HTTPSink([tarpit.url, healthy.url], timeout=60.0, retries=0, host_limit=1000)
        reporter = Reporter(sink)
        for _ in range(3):
            reporter.report(event(rotated(chain, HOST), other))
        assert healthy.wait_for(3, timeout=5)
        assert tarpit.wait_for(1)
        started = time.monotonic()
        assert sink.close(0.5) is False  # the tarpit still holds its first attempt
        assert time.monotonic() - started < 0.5 + SLACK
        assert counts()["reports_dropped"] == 2  # the tarpit's two queued reports
        reporter.report(event(rotated(chain, HOST), other))  # after close: dropped, counted
        assert counts()["reports_dropped"] == 4
    assert sink.close(10)  # the tarpit closed: its attempt ends, the worker stops


def test_many_server_chosen_tarpits_leave_a_worker_for_the_operators_collector(
    chain: Chain, other: Chain, healthy: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Server-chosen destinations (allowed; these names "resolve" to a tarpit that counts as public)
    # may take all workers but one.
    names = [f"t{i}.reports.example.net" for i in range(6)]
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.2", int(port)))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    real_problem = _destinations.address_problem
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(_destinations, "address_problem",
                        lambda ip: None if str(ip) == "127.0.0.2" else real_problem(ip))
    with Tarpit(interval=0.5, host="127.0.0.2") as tarpit:
        sink = HTTPSink([healthy.url], timeout=30.0, retries=0, workers=3, allow_server_report_uris=True,
                        host_limit=1000)
        reporter = Reporter(sink)
        for name in names:
            reporter.report(event(rotated(chain, HOST), other, (f"https://{name}:{tarpit.port}/pins",), noted=True))
        assert healthy.wait_for(len(names), timeout=5)
        assert tarpit.wait_accepted(2)
        time.sleep(0.3)
        assert len(tarpit.accepted) == 2  # workers - 1 server-chosen attempts at once
        assert sink.close(0.5) is False
    assert counts()["reports_sent"] == len(names)


def test_an_endless_answer_is_cut_at_the_size_bound(chain: Chain, other: Chain) -> None:
    bound = reporting.MAX_RESPONSE_HEAD
    status = b"HTTP/1.1 200 OK\r\nX-Pad: "
    # An answer head of exactly the bound is read; one byte more and the attempt fails (no endless read).
    exact = status + b"a" * (bound - len(status) - 4) + b"\r\n\r\n"
    assert len(exact) == bound
    over = status + b"a" * (bound - len(status) - 3) + b"\r\n\r\n"
    for head, outcome in ((exact, "reports_sent"), (over, "reports_failed")):
        metrics.reset()
        with Tarpit(interval=0.0, data=head) as fast:  # sends the head, then zeros, as fast as it can
            sink = HTTPSink([fast.url("http", "127.0.0.1")], timeout=30.0, retries=0)
            Reporter(sink).report(event(chain, other))
            assert sink.close(10)
        assert counts()[outcome] == 1, (len(head), counts())


class SlowDNS:
    """A resolver that hangs on some names (until released) and maps others to 127.0.0.1."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, slow: set[str], fast: set[str]) -> None:
        self.release = threading.Event()
        self.hung = 0
        self._lock = threading.Lock()
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host in slow:
                with self._lock:
                    self.hung += 1
                self.release.wait(30)
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            if host in fast:
                return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", int(port)))]
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_name_lookup_that_hangs_is_cut_at_the_deadline(
    chain: Chain, other: Chain, healthy: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns = SlowDNS(monkeypatch, slow={"slow.collector.example"}, fast={"collector.example"})
    try:
        sink = HTTPSink(["http://slow.collector.example/pins", f"http://collector.example:{healthy.port}/pins"],
                        timeout=DEADLINE, retries=0)
        Reporter(sink).report(event(chain, other))
        assert healthy.wait_for(1, timeout=PROMPT)
        started = time.monotonic()
        assert sink.close(DEADLINE + SLACK)  # the hung lookup's attempt ended at its deadline
        assert time.monotonic() - started < DEADLINE + SLACK
        assert dns.hung == 1
    finally:
        dns.release.set()
    assert counts()["reports_failed"] == 1 and counts()["reports_sent"] == 1


def test_hung_lookups_of_server_chosen_names_do_not_block_the_operators(
    chain: Chain, other: Chain, healthy: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lookups of server-chosen names that hang outlive their attempts and fill the lookup pool
    # for server-chosen names; the operator's lookups have a pool of their own.
    slow = sorted(f"s{i:02}.reports.example.net" for i in range(reporting.MAX_LOOKUPS + 4))
    dns = SlowDNS(monkeypatch, slow=set(slow), fast={"collector.example"})
    try:
        sink = HTTPSink(timeout=0.5, retries=0, workers=4, allow_server_report_uris=True, host_limit=1000)
        reporter = Reporter(sink)
        for name in slow:
            reporter.report(event(rotated(chain, HOST), other, (f"https://{name}/pins",), noted=True))
        deadline = time.monotonic() + 30
        while dns.hung < reporting.MAX_LOOKUPS and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.6)  # past the deadline of the attempts that wait for a place in the pool
        assert dns.hung == reporting.MAX_LOOKUPS  # full: later server-chosen lookups could not start
        reporter.report(event(chain, other, (f"http://collector.example:{healthy.port}/pins",)))
        assert healthy.wait_for(1, timeout=PROMPT)
    finally:
        dns.release.set()
    assert sink.close(10)
    assert counts()["reports_sent"] == 1 and counts()["reports_failed"] == len(slow)
