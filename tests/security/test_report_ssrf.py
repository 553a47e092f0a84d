"""Server-chosen report URIs (HPKP ``report-uri``) must not turn the HTTP sink into an SSRF tool.

The attack (issue 11, finding 8): any HTTPS site can answer with
``Public-Key-Pins-Report-Only: ...; report-uri="http://127.0.0.1:PORT/admin/..."``.
The sink then POSTed there, with the operator's own collector headers
(``Authorization``). Here a real "victim" service listens on loopback and must
receive nothing, not even a connection; the operator's real collector must
still get every report, with its credentials.

A few tests stand in for the world outside loopback: a patched resolver (DNS),
a patched ``reporting._destinations.address_problem`` that counts 127.0.0.2 as a public address, and
a patched TLS context for server-chosen URIs that trusts the test root (the
system trust store). Everything else is real: sockets, TLS, HTTP.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any, Callable, Iterator

import pytest

import pinengine
from pinengine import Pin, PinMismatchError, PinPolicy, metrics, reporting
from pinengine._observe import VerificationEvent
from pinengine.hpkp import note_response
from pinengine.policy import DomainEntry
from pinengine.reporting import HTTPSink, Reporter, ViolationReport, _destinations
from pinengine.stores import MemoryStore
from tests.certs import Chain, cached_chain, make_chain, pem, rotated
from tests.collector import Collector

HOST = "localhost"
SECRET = "Bearer operator-secret"
PUBLIC_NAME = "reports.example.net"  # resolves (in these tests) to PUBLIC_IP
PUBLIC_IP = "127.0.0.2"  # counted as a public address by the `public_ip` fixture
STANDARD_HEADERS = {"host", "content-type", "content-length", "user-agent", "connection"}


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def other() -> Chain:
    return make_chain("p256", HOST)


@pytest.fixture(scope="module")
def public_chain() -> Chain:
    """The certificate of the (pretend) public collector at PUBLIC_NAME."""
    return make_chain("p256", PUBLIC_NAME, extra_sans=("other." + PUBLIC_NAME,))


@pytest.fixture(autouse=True)
def fresh_metrics() -> None:
    metrics.reset()


@pytest.fixture
def operator() -> Iterator[Collector]:
    """The operator's own collector."""
    with Collector() as c:
        yield c


@pytest.fixture
def victim() -> Iterator[Collector]:
    """An internal service on loopback that an attacker would like to reach."""
    with Collector(path="/admin/shutdown") as c:
        yield c


class FakeDNS:
    """Answers for a few names; every other name goes to the real resolver."""

    def __init__(self) -> None:
        self.answers: dict[str, Callable[[int], list[str]]] = {}
        self.calls: list[str] = []

    def add(self, name: str, *addresses: str) -> None:
        self.answers[name] = lambda n: list(addresses)

    def rebind(self, name: str, first: str, then: str) -> None:
        """``first`` for the first lookup of ``name``, ``then`` for every later one."""
        self.answers[name] = lambda n: [first] if n == 1 else [then]

    def lookups(self, name: str) -> int:
        return self.calls.count(name)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        key = name.lower().rstrip(".") if isinstance(name, str) else name
        if key in fake.answers:
            fake.calls.append(key)
            answer = fake.answers[key](fake.calls.count(key))
            result: list[Any] = []
            for address in answer:
                if ":" in address:
                    result.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                                   (address, int(port or 0), 0, 0)))
                else:
                    result.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                                   (address, int(port or 0))))
            return result
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return fake


@pytest.fixture
def public_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Count PUBLIC_IP (a loopback address) as public; every other address gets the real check."""
    real = _destinations.address_problem

    def problem(ip: Any) -> str | None:
        return None if str(ip) == PUBLIC_IP else real(ip)  # type: ignore[no-any-return]

    monkeypatch.setattr(_destinations, "address_problem", problem)


@pytest.fixture
def public_trust(monkeypatch: pytest.MonkeyPatch, public_chain: Chain) -> None:
    """The system trust store, for server-chosen URIs, holds the public collector's root."""
    context = ssl.create_default_context(cadata=pem(public_chain.root).decode())
    monkeypatch.setattr(HTTPSink, "_server_tls_context", lambda self: context, raising=False)


def event(chain: Chain, other: Chain, uris: tuple[str, ...], *, noted: bool = True) -> VerificationEvent:
    """A report-only violation of an entry carrying ``uris`` (server-chosen when ``noted``)."""
    entry = DomainEntry(HOST, (str(Pin.from_certificate(other.ders[0])), str(Pin.from_certificate(other.ders[1]))),
                        mode="report-only", noted=noted, report_uri=uris)
    return VerificationEvent(
        policy=PinPolicy([]), hostname=HOST, port=443, status="report-only", entry=entry,
        validated_chain=chain.ders, served_chain=chain.ders[:2], verified=True, matches=(), blocked=(),
        message="", seconds=0.0,
    )


def counts() -> dict[str, Any]:
    row = pinengine.stats()["hosts"].get(HOST, {}).get(HOST, {})
    return {k: row.get(k, 0) for k in ("reports_sent", "reports_failed", "reports_dropped", "reports_suppressed",
                                        "reports_refused")}


def untouched(victim: Collector) -> bool:
    """True when the victim never saw a connection (after giving a late one time to arrive)."""
    time.sleep(0.2)
    return victim.connections == 0 and victim.requests == []


def operator_got_it_with_credentials(operator: Collector, n: int = 1) -> None:
    assert operator.wait_for(n)
    assert len(operator.reports) == n
    for _, headers, _, _ in operator.requests:
        assert headers["Authorization"] == SECRET


def operator_sink(operator: Collector, **options: Any) -> HTTPSink:
    options.setdefault("retries", 0)
    return HTTPSink([operator.url], headers={"Authorization": SECRET}, **options)


# -- the rule: entries with noted=True carry server-chosen URIs ------------------------------------


def test_noted_entries_put_their_report_uri_apart(chain: Chain, other: Chain) -> None:
    server = ViolationReport.from_event(event(chain, other, ("https://r.example/pkp",)))
    assert server.report_uri == () and server.server_report_uri == ("https://r.example/pkp",)
    own = ViolationReport.from_event(event(chain, other, ("https://ops.example/pins",), noted=False))
    assert own.report_uri == ("https://ops.example/pins",) and own.server_report_uri == ()
    # where a report goes is not part of the report
    a, b = server.to_dict(), own.to_dict()
    del a["date-time"], b["date-time"]
    assert a == b


# -- off by default --------------------------------------------------------------------------------


def test_the_issue_attack_server_chosen_uri_gets_nothing_by_default(
    chain: Chain, other: Chain, operator: Collector, victim: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pinengine")
    sink = operator_sink(operator)
    Reporter(sink).report(event(chain, other, (f"http://127.0.0.1:{victim.port}/admin/shutdown",)))
    assert sink.close(10)
    assert untouched(victim)
    operator_got_it_with_credentials(operator)
    assert counts() == {**counts(), "reports_sent": 1, "reports_refused": 1, "reports_failed": 0}
    assert "allow_server_report_uris" in caplog.text  # the log says why, and how to allow them


@pytest.mark.parametrize("allow", [False, True], ids=["default", "allowed"])
def test_hpkp_report_only_header_cannot_aim_reports_at_loopback(
    chain: Chain, other: Chain, operator: Collector, victim: Collector, allow: bool
) -> None:
    sink = operator_sink(operator, allow_server_report_uris=allow)
    policy = PinPolicy([], hpkp=True, store=MemoryStore(), reporter=Reporter(sink))
    conn = {"pin_result": policy.verify(HOST, chain.ders), "pin_chain": chain.ders}
    header = (f"{Pin.from_certificate(other.ders[0]).hpkp}; {Pin.from_certificate(other.ders[1]).hpkp}; "
              f'report-uri="http://127.0.0.1:{victim.port}/admin/shutdown"')
    outcome = note_response(policy, HOST, {"Public-Key-Pins-Report-Only": header}, **conn)
    assert outcome == "report-only: pin validation failed (warning logged)"
    assert sink.close(10)
    assert untouched(victim)
    operator_got_it_with_credentials(operator)
    assert counts()["reports_refused"] == 1


def test_a_noted_hpkp_records_report_uri_is_server_chosen(
    chain: Chain, other: Chain, operator: Collector, victim: Collector
) -> None:
    sink = operator_sink(operator)
    policy = PinPolicy([], hpkp=True, store=MemoryStore(), reporter=Reporter(sink))
    conn = {"pin_result": policy.verify(HOST, chain.ders), "pin_chain": chain.ders}
    backup = Pin("sha256", b"\x01" * 32)
    header = (f"{Pin.from_certificate(chain.ders[1]).hpkp}; {backup.hpkp}; max-age=600; "
              f'report-uri="http://127.0.0.1:{victim.port}/admin/shutdown"')
    assert note_response(policy, HOST, {"Public-Key-Pins": header}, **conn) == "noted"
    with pytest.raises(PinMismatchError):
        policy.verify(HOST, other.ders)  # the noted pins fail: a report, to the server's report-uri?
    assert sink.close(10)
    assert untouched(victim)
    operator_got_it_with_credentials(operator)


# -- allowed: https only, public addresses only ------------------------------------------------------

SPELLINGS = [
    "http://127.0.0.1:{port}/admin/shutdown",  # not https
    "HTTP://127.0.0.1:{port}/admin/shutdown",
    "https://127.0.0.1:{port}/admin/shutdown",
    "https://localhost:{port}/admin/shutdown",
    "https://LOCALHOST.:{port}/admin/shutdown",
    "https://[::1]:{port}/admin/shutdown",
    "https://[::ffff:127.0.0.1]:{port}/admin/shutdown",
    "https://[::ffff:7f00:1]:{port}/admin/shutdown",
    "https://[::127.0.0.1]:{port}/admin/shutdown",
    "https://[64:ff9b::7f00:1]:{port}/admin/shutdown",
    "https://[2002:7f00:1::]:{port}/admin/shutdown",
    "https://[fe80::1%25lo]:{port}/admin/shutdown",
    "https://2130706433:{port}/admin/shutdown",
    "https://0x7f000001:{port}/admin/shutdown",
    "https://0x7f.0.0.1:{port}/admin/shutdown",
    "https://0177.0.0.1:{port}/admin/shutdown",
    "https://127.1:{port}/admin/shutdown",
    "https://0.0.0.0:{port}/admin/shutdown",
    "https://0:{port}/admin/shutdown",
    "https://[::]:{port}/admin/shutdown",
    "https://169.254.169.254:{port}/latest/meta-data",
    "https://10.0.0.1:{port}/admin/shutdown",
    "https://100.64.0.1:{port}/admin/shutdown",
    "https://224.0.0.1:{port}/admin/shutdown",
    "https://255.255.255.255:{port}/admin/shutdown",
    "https://reports.example.net@127.0.0.1:{port}/admin/shutdown",
    "https://127.0.0.1:{port}#@reports.example.net/admin/shutdown",
    "https://127.0.0.1:{port}\\@reports.example.net/admin/shutdown",
    "https://intranet:{port}/admin/shutdown",
    "ftp://reports.example.net:{port}/admin/shutdown",
    "https://reports.example.net:{port}/admin\r\nX-Injected: 1",
    "https://reports.example.net:{port}/admin shutdown",
    "https://repörts.example.net:{port}/admin/shutdown",
    "https://reports.example.net:99999/admin/shutdown",
    "https:///admin/shutdown",
    "https://[::1/admin/shutdown",
    "https://[127.0.0.1]:{port}/admin/shutdown",
    "https://[v1.x]:{port}/admin/shutdown",
    "https://reports.example.net:-1/admin/shutdown",
    "https://reports.example.net:0/admin/shutdown",
    "https://reports-.example.net:{port}/admin/shutdown",
    "https://reports.example.net.:{port}/admin/shutdown",  # a name that passes, resolving to the victim
    "https://reports.example.net:{port}:{port}/admin/shutdown",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_allowed_server_uris_never_reach_internal_addresses(
    chain: Chain, other: Chain, operator: Collector, victim: Collector, dns: FakeDNS, spelling: str
) -> None:
    # Names in these URIs that get past the checks would resolve to the victim.
    for name in (PUBLIC_NAME, "intranet", "repörts.example.net".encode("idna").decode()):
        dns.add(name, "127.0.0.1")
    uri = spelling.format(port=victim.port)
    sink = operator_sink(operator, allow_server_report_uris=True)
    Reporter(sink).report(event(chain, other, (uri,)))
    assert sink.close(10)
    assert untouched(victim)
    operator_got_it_with_credentials(operator)
    assert counts()["reports_refused"] == 1


def test_dns_rebinding_a_public_name_that_resolves_to_loopback_is_refused(
    chain: Chain, other: Chain, operator: Collector, victim: Collector, dns: FakeDNS,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pinengine")
    dns.add(PUBLIC_NAME, "127.0.0.1")
    sink = operator_sink(operator, allow_server_report_uris=True, retries=2, backoff=0.01)
    Reporter(sink).report(event(chain, other, (f"https://{PUBLIC_NAME}:{victim.port}/admin/shutdown",)))
    assert sink.close(10)
    assert untouched(victim)
    operator_got_it_with_credentials(operator)
    assert counts()["reports_refused"] == 1  # refused, not retried
    assert dns.lookups(PUBLIC_NAME) == 1
    assert f"{PUBLIC_NAME} resolves to 127.0.0.1" in caplog.text


def test_any_internal_address_among_the_answers_refuses_the_name(
    chain: Chain, other: Chain, operator: Collector, victim: Collector, dns: FakeDNS, public_ip: None,
) -> None:
    dns.add(PUBLIC_NAME, PUBLIC_IP, "127.0.0.1")
    sink = operator_sink(operator, allow_server_report_uris=True)
    with Collector(host=PUBLIC_IP, port=victim.port) as public:
        Reporter(sink).report(event(chain, other, (f"https://{PUBLIC_NAME}:{victim.port}/admin/shutdown",)))
        assert sink.close(10)
        assert untouched(victim) and untouched(public)
    assert counts()["reports_refused"] == 1


def test_dns_rebinding_the_connection_goes_to_the_address_that_was_checked(
    chain: Chain, other: Chain, public_chain: Chain, operator: Collector, victim: Collector, dns: FakeDNS,
    public_ip: None, public_trust: None,
) -> None:
    # The first answer is public (and checked); any later lookup says 127.0.0.1.
    dns.rebind(PUBLIC_NAME, PUBLIC_IP, "127.0.0.1")
    sink = operator_sink(operator, allow_server_report_uris=True, retries=2, backoff=0.01)
    with Collector(host=PUBLIC_IP, port=victim.port, tls=public_chain, path="/admin/shutdown") as public:
        Reporter(sink).report(event(chain, other, (f"https://{PUBLIC_NAME}:{victim.port}/admin/shutdown",)))
        assert sink.close(10)
        assert len(public.reports) == 1
    assert untouched(victim)
    assert dns.lookups(PUBLIC_NAME) == 1
    operator_got_it_with_credentials(operator)
    assert counts()["reports_sent"] == 2


def test_a_public_collector_cannot_redirect_reports_to_loopback(
    chain: Chain, other: Chain, public_chain: Chain, operator: Collector, victim: Collector, dns: FakeDNS,
    public_ip: None, public_trust: None,
) -> None:
    dns.add(PUBLIC_NAME, PUBLIC_IP)
    sink = operator_sink(operator, allow_server_report_uris=True)
    location = {"Location": f"http://127.0.0.1:{victim.port}/admin/shutdown"}
    with Collector(host=PUBLIC_IP, tls=public_chain, statuses=[307], answer_headers=location) as public:
        Reporter(sink).report(event(chain, other, (f"https://{PUBLIC_NAME}:{public.port}/pins",)))
        assert sink.close(10)
        assert public.posts == 1
    assert untouched(victim)  # redirects are not followed
    assert counts()["reports_failed"] == 1


# -- what a server-chosen URI gets: no credentials -------------------------------------------------------


def test_server_chosen_uris_get_no_operator_headers(
    chain: Chain, other: Chain, public_chain: Chain, operator: Collector, dns: FakeDNS, public_ip: None,
    public_trust: None,
) -> None:
    dns.add(PUBLIC_NAME, PUBLIC_IP)
    sink = HTTPSink([operator.url], headers={"Authorization": SECRET, "X-Api-Key": "k3y"}, retries=0,
                    allow_server_report_uris=True)
    with Collector(host=PUBLIC_IP, tls=public_chain) as public:
        Reporter(sink).report(event(chain, other, (f"https://{PUBLIC_NAME}:{public.port}/pins?site=1",)))
        assert sink.close(10)
        assert len(public.reports) == 1
        path, headers, _, _ = public.requests[0]
    assert path == "/pins?site=1"
    assert {h.lower() for h in headers} == STANDARD_HEADERS
    assert headers["Host"] == f"{PUBLIC_NAME}:{public.port}"
    assert headers["User-Agent"] == f"pinengine/{pinengine.__version__}"
    _, own, _, _ = operator.requests[0]
    assert own["Authorization"] == SECRET and own["X-Api-Key"] == "k3y"


def test_server_chosen_uris_never_use_the_operators_tls_context(
    chain: Chain, other: Chain, public_chain: Chain, operator: Collector, dns: FakeDNS, public_ip: None,
) -> None:
    # The operator's context trusts the collector's root (it could hold a client certificate);
    # the system trust store does not. A server-chosen URI gets the system trust store: no delivery.
    dns.add(PUBLIC_NAME, PUBLIC_IP)
    operator_context = ssl.create_default_context(cadata=pem(public_chain.root).decode())
    sink = HTTPSink([operator.url], ssl_context=operator_context, headers={"Authorization": SECRET}, retries=0,
                    allow_server_report_uris=True)
    with Collector(host=PUBLIC_IP, tls=public_chain) as public:
        Reporter(sink).report(event(chain, other, (f"https://{PUBLIC_NAME}:{public.port}/pins",)))
        assert sink.close(10)
        assert public.connections == 1 and public.requests == []  # the handshake failed
    assert counts()["reports_failed"] == 1 and counts()["reports_sent"] == 1


def test_a_server_uri_equal_to_an_operator_uri_is_sent_once_as_the_operators(
    chain: Chain, other: Chain, operator: Collector
) -> None:
    sink = operator_sink(operator)
    Reporter(sink).report(event(chain, other, (operator.url,)))
    assert sink.close(10)
    operator_got_it_with_credentials(operator)
    assert counts()["reports_refused"] == 0


# -- bounds: rate per destination, URI length -----------------------------------------------------------


def test_server_chosen_uris_are_rate_limited_per_destination(
    chain: Chain, other: Chain, public_chain: Chain, dns: FakeDNS, public_ip: None, public_trust: None,
) -> None:
    dns.add(PUBLIC_NAME, PUBLIC_IP)
    dns.add("other." + PUBLIC_NAME, PUBLIC_IP)
    now = [1000.0]
    sink = HTTPSink(allow_server_report_uris=True, server_uri_limit=2, server_uri_window=60, host_limit=1000,
                    retries=0, clock=lambda: now[0])
    reporter = Reporter(sink)
    with Collector(host=PUBLIC_IP, tls=public_chain) as public:
        uri = f"https://{PUBLIC_NAME}:{public.port}/pins"
        for _ in range(4):  # four different chains: four reports, one destination
            reporter.report(event(rotated(chain, HOST), other, (uri,)))
        assert sink.flush(10) and public.posts == 2
        # the same destination spelt otherwise is the same destination
        reporter.report(event(rotated(chain, HOST), other, (f"https://{PUBLIC_NAME.upper()}.:{public.port}/x",)))
        # another destination has its own budget
        reporter.report(event(rotated(chain, HOST), other, (f"https://other.{PUBLIC_NAME}:{public.port}/pins",)))
        assert sink.flush(10) and public.posts == 3
        now[0] += 60  # a new window
        reporter.report(event(rotated(chain, HOST), other, (uri,)))
        assert sink.close(10) and public.posts == 4
    assert counts()["reports_suppressed"] == 3 and counts()["reports_sent"] == 4


def test_server_uri_length_at_and_past_the_bound(
    chain: Chain, other: Chain, public_chain: Chain, dns: FakeDNS, public_ip: None, public_trust: None,
) -> None:
    dns.add(PUBLIC_NAME, PUBLIC_IP)
    bound = reporting.MAX_REPORT_URI_LENGTH
    sink = HTTPSink(allow_server_report_uris=True, retries=0)
    reporter = Reporter(sink)
    with Collector(host=PUBLIC_IP, tls=public_chain) as public:
        base = f"https://{PUBLIC_NAME}:{public.port}/p"
        at_bound = base + "a" * (bound - len(base))
        assert len(at_bound) == bound
        reporter.report(event(rotated(chain, HOST), other, (at_bound,)))
        reporter.report(event(rotated(chain, HOST), other, (at_bound + "a",)))
        reporter.report(event(rotated(chain, HOST), other, (base + "a" * 10**6,)))
        assert sink.close(10)
        assert public.posts == 1 and public.requests[0][0] == at_bound[len(base) - 2:]
    assert counts()["reports_refused"] == 2 and counts()["reports_sent"] == 1


def test_refusals_are_counted_each_time_and_logged_at_most_once_a_minute(
    chain: Chain, other: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pinengine.reports")
    sink = HTTPSink(dedupe_interval=0, host_limit=10**6)
    reporter = Reporter(sink)
    for i in range(50):
        reporter.report(event(chain, other, (f"http://127.0.0.1:1/admin/{i}",)))
    assert sink.close(10)
    assert counts()["reports_refused"] == 50
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "refused" in r.getMessage()]
    assert len(warnings) == 1
    assert "http://127.0.0.1:1/admin/0" in warnings[0].getMessage()


def test_refusal_log_lines_cannot_be_forged(
    chain: Chain, other: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pinengine.reports")
    sink = HTTPSink()
    Reporter(sink).report(event(chain, other, ("https://a.example/\nCRITICAL forged line" + "x" * 5000,)))
    assert sink.close(10)
    (record,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert "\n" not in record.getMessage() and len(record.getMessage()) < 1000


def test_operator_headers_cannot_inject_lines() -> None:
    for bad in ({"Authorization": "Bearer x\r\nX-Evil: 1"}, {"X Bad": "1"}, {"X-Null": "a\x00b"}, {"": "1"}):
        with pytest.raises(ValueError, match="header"):
            HTTPSink(headers=bad)
    for bad_uri in ("ftp://collector.example/", "https://collector.example/a b", "https:///pins"):
        with pytest.raises(ValueError, match="report URI"):
            HTTPSink([bad_uri])
