"""Attack: a server sends a Public-Key-Pins header built to cost the client time or memory.

Issue 11, finding 10: a 1 MB header took 18.6 s in the request thread (pins
de-duplicated by list scans) and was then noted with every one of its pins.
The header size, the pin count and the report-uri length are now bounded
before anything else is done with the value, the parse is linear, and every
refusal is logged (rate-limited: a server can send one per response) and
counted.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator

import pytest
import requests

from pinengine import PinPolicy
from pinengine.hooks.requests import pinned_session
from pinengine.hpkp import (
    MAX_HEADER_LENGTH,
    MAX_PINS,
    MAX_REPORT_URI_LENGTH,
    HPKPError,
    note_response,
    parse_header,
)
from pinengine.stores import MemoryStore
from tests.certs import Chain, cached_chain
from tests.security.hpkp_peers import counters, fake_pin, grew, header
from tests.tls import TLSServer

HOST = "localhost"
BACKUP = fake_pin(0)


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture
def server(chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(chain) as srv:
        yield srv


def new_policy() -> PinPolicy:
    return PinPolicy([], store=MemoryStore(), hpkp=True)


def anchor(chain: Chain) -> Any:
    from pinengine import Pin

    return Pin.from_certificate(chain.ders[1])


def many_pins(n: int) -> list[Any]:
    return [fake_pin(i) for i in range(1, n + 1)]


def get(session: requests.Session, server: TLSServer) -> None:
    assert session.get(server.url(HOST), timeout=30).status_code == 200


# -- the header of the issue -------------------------------------------------------


def test_megabyte_header_is_refused_at_once_not_parsed(chain: Chain) -> None:
    # ~1 MB of distinct pins, one of them the chain's: noted with all of them before the fix.
    value = header(anchor(chain), *many_pins(18_000))
    assert len(value) > 1_000_000
    policy = new_policy()
    conn = {"pin_result": policy.verify(HOST, chain.ders), "pin_chain": chain.ders}
    before = counters()
    start = time.perf_counter()
    outcome = note_response(policy, HOST, {"Public-Key-Pins": value}, **conn)
    elapsed = time.perf_counter() - start
    assert outcome.startswith("ignored: ") and f"longer than {MAX_HEADER_LENGTH}" in outcome, outcome[:300]
    assert elapsed < 2.0, elapsed  # linear in the bound, not the input: milliseconds (it was 18.6 s)
    assert policy.store.list() == []
    assert grew(before, "hpkp_headers_refused") == 1
    with pytest.raises(HPKPError, match=f"longer than {MAX_HEADER_LENGTH} characters"):
        parse_header(value)


def test_large_header_from_a_real_server_is_refused(server: TLSServer, chain: Chain,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # As large as http.client lets a header line be (64 KiB): ~1100 pins.
    server.httpd.headers["Public-Key-Pins"] = header(anchor(chain), *many_pins(1100))
    assert 60_000 < len(server.httpd.headers["Public-Key-Pins"]) < 65_000
    policy = new_policy()
    before = counters()
    with caplog.at_level(logging.INFO, logger="pinengine"), pinned_session(policy, verify=server.cafile) as s:
        get(s, server)
    assert policy.store.list() == []
    assert grew(before, "hpkp_headers_refused") == 1
    assert f"longer than {MAX_HEADER_LENGTH} characters" in caplog.text


def test_large_header_through_httpx_is_refused(server: TLSServer, chain: Chain) -> None:
    httpx = pytest.importorskip("httpx")
    from pinengine.hooks.httpx import hpkp_event_hook
    from pinengine.hooks.ssl import create_pinned_context

    # Over our bound, under h11's own limit on a header block.
    server.httpd.headers["Public-Key-Pins"] = header(anchor(chain), *many_pins(200))
    assert MAX_HEADER_LENGTH < len(server.httpd.headers["Public-Key-Pins"]) < 16_000
    policy = new_policy()
    before = counters()
    ctx = create_pinned_context(policy, cafile=server.cafile)
    with httpx.Client(verify=ctx, event_hooks={"response": [hpkp_event_hook(policy)]}) as client:
        assert client.get(server.url(HOST)).status_code == 200
    assert policy.store.list() == []
    assert grew(before, "hpkp_headers_refused") == 1


# -- the pin count -------------------------------------------------------------------


def test_pin_count_is_bounded(server: TLSServer, chain: Chain) -> None:
    too_many = header(anchor(chain), *many_pins(MAX_PINS))  # MAX_PINS + 1 distinct pins, short enough
    assert len(too_many) <= MAX_HEADER_LENGTH
    server.httpd.headers["Public-Key-Pins"] = too_many
    policy = new_policy()
    before = counters()
    with pinned_session(policy, verify=server.cafile) as s:
        get(s, server)
    assert policy.store.list() == []
    assert grew(before, "hpkp_headers_refused") == 1
    with pytest.raises(HPKPError, match=f"{MAX_PINS + 1} pin-sha256 pins, more than {MAX_PINS}"):
        parse_header(too_many)
    # exactly at the bound: noted, with every pin
    server.httpd.headers["Public-Key-Pins"] = header(anchor(chain), *many_pins(MAX_PINS - 1))
    policy = new_policy()
    with pinned_session(policy, verify=server.cafile) as s:
        get(s, server)
    (record,) = policy.store.list()
    assert len(record.pins) == MAX_PINS


def test_header_length_bound_is_exact(chain: Chain) -> None:
    value = header(anchor(chain), BACKUP)
    at_bound = value + " " * (MAX_HEADER_LENGTH - len(value))  # trailing whitespace is allowed
    assert len(at_bound) == MAX_HEADER_LENGTH
    assert len(parse_header(at_bound).pins) == 2
    with pytest.raises(HPKPError, match="longer than"):
        parse_header(at_bound + " ")
    policy = new_policy()
    conn = {"pin_result": policy.verify(HOST, chain.ders), "pin_chain": chain.ders}
    assert note_response(policy, HOST, {"Public-Key-Pins": at_bound}, **conn) == "noted"
    assert note_response(policy, HOST, {"Public-Key-Pins": at_bound + " "}, **conn).startswith("ignored: ")
    # a field that ends with a ',' right after the bound still counts as within it
    assert note_response(new_policy(), HOST, {"Public-Key-Pins": at_bound + ", x"}, **conn) == "noted"


def test_repeated_pins_count_once(chain: Chain) -> None:
    # Repeating one pin is allowed (RFC 7469 §2.1); the length bound still holds the directives in check.
    value = header(*([anchor(chain), BACKUP] * 40))
    parsed = parse_header(value)
    assert len(parsed.pins) == 2


def test_report_uri_length_is_bounded(server: TLSServer, chain: Chain) -> None:
    base = "https://reports.example/"
    long_uri = base + "x" * (MAX_REPORT_URI_LENGTH - len(base) + 1)
    server.httpd.headers["Public-Key-Pins"] = header(anchor(chain), BACKUP, extra=f'; max-age=60; report-uri="{long_uri}"')
    policy = new_policy()
    before = counters()
    with pinned_session(policy, verify=server.cafile) as s:
        get(s, server)
    assert policy.store.list() == []
    assert grew(before, "hpkp_headers_refused") == 1
    with pytest.raises(HPKPError, match=f"report-uri is {len(long_uri)} characters, longer than"):
        parse_header(server.httpd.headers["Public-Key-Pins"])
    # at the bound: noted
    ok_uri = long_uri[:-1]
    server.httpd.headers["Public-Key-Pins"] = header(anchor(chain), BACKUP, extra=f'; max-age=60; report-uri="{ok_uri}"')
    policy = new_policy()
    with pinned_session(policy, verify=server.cafile) as s:
        get(s, server)
    (record,) = policy.store.list()
    assert record.report_uri == ok_uri


def test_relative_report_uri_resolved_past_the_bound_is_refused(chain: Chain) -> None:
    # Short in the header, long once resolved against a long request URL.
    value = header(anchor(chain), BACKUP, extra='; max-age=60; report-uri="r"')
    policy = new_policy()
    conn = {"pin_result": policy.verify(HOST, chain.ders), "pin_chain": chain.ders}
    url = "https://localhost/" + "p/" * MAX_REPORT_URI_LENGTH
    outcome = note_response(policy, HOST, {"Public-Key-Pins": value}, url=url, **conn)
    assert outcome.startswith("ignored: ") and "report-uri" in outcome and "longer than" in outcome
    assert policy.store.list() == []


# -- other spellings and paths -------------------------------------------------------


def test_oversized_report_only_header_is_refused(server: TLSServer, chain: Chain) -> None:
    from pinengine.reporting import Reporter

    server.httpd.headers["public-key-pins-report-only"] = header(fake_pin(5000), *many_pins(1100), extra="")
    events: list[Any] = []

    class Collect(Reporter):
        def report(self, event: Any) -> None:
            events.append(event)

    policy = PinPolicy([], store=MemoryStore(), hpkp=True, reporter=Collect())
    before = counters()
    with pinned_session(policy, verify=server.cafile) as s:
        get(s, server)
    assert events == []  # a refused header reports nothing
    assert grew(before, "hpkp_headers_refused") == 1


def test_small_first_field_then_a_huge_one(server: TLSServer, chain: Chain) -> None:
    # Two fields joined with ',' (what requests gives for repeated headers): only the first counts,
    # and what follows it is never scanned.
    good = header(anchor(chain), BACKUP)
    server.httpd.headers["Public-Key-Pins"] = good + ", " + header(*many_pins(1000))
    policy = new_policy()
    with pinned_session(policy, verify=server.cafile) as s:
        get(s, server)
    (record,) = policy.store.list()
    assert len(record.pins) == 2


def test_huge_value_without_a_comma_in_bytes_and_pairs(chain: Chain) -> None:
    policy = new_policy()
    conn = {"pin_result": policy.verify(HOST, chain.ders), "pin_chain": chain.ders}
    value = header(anchor(chain), *many_pins(18_000))
    quoted = 'max-age=1; x="' + "a" * 2_000_000  # an unterminated quoted string: the comma scan must stop
    for headers in ([("public-key-pins", value)], {"Public-Key-Pins": value.encode("latin-1")},
                    {"Public-Key-Pins": quoted}):
        start = time.perf_counter()
        outcome = note_response(policy, HOST, headers, **conn)
        assert time.perf_counter() - start < 2.0
        assert outcome.startswith("ignored: ") and "longer than" in outcome, outcome[:200]
    assert policy.store.list() == []


def _worst(kind: str) -> str:
    room = MAX_HEADER_LENGTH - len("max-age=1;")
    if kind == "empty directives":
        filler = ";" * room
    elif kind == "unknown directives":
        parts: list[str] = []
        used = 0
        while used + 12 <= room:  # distinct names: a repeated one would make the header invalid
            parts.append(f"d{len(parts)}=1;")
            used += len(parts[-1])
        filler = "".join(parts)
    elif kind == "escapes":
        filler = 'x="' + "\\a" * ((room - 4) // 2) + '"'
    else:
        filler = " " * room
    return "max-age=1;" + filler


@pytest.mark.parametrize("kind", ["empty directives", "unknown directives", "escapes", "whitespace"])
def test_worst_headers_under_the_bound_parse_quickly(kind: str) -> None:
    value = _worst(kind)
    assert MAX_HEADER_LENGTH - 10 <= len(value) <= MAX_HEADER_LENGTH
    start = time.perf_counter()
    for _ in range(20):
        assert parse_header(value).max_age == 1
    assert time.perf_counter() - start < 10.0  # a few ms each: generous


def test_refusals_are_counted_each_time_but_logged_rarely(server: TLSServer, chain: Chain,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    server.httpd.headers["Public-Key-Pins"] = header(anchor(chain), *many_pins(MAX_PINS))
    policy = new_policy()
    before = counters()
    with caplog.at_level(logging.INFO, logger="pinengine"), pinned_session(policy, verify=server.cafile) as s:
        for _ in range(30):
            get(s, server)
    assert grew(before, "hpkp_headers_refused") == 30
    lines = [r for r in caplog.records if "more than" in r.getMessage() and "pin-sha256" in r.getMessage()]
    assert 1 <= len(lines) <= 2, [r.getMessage()[:120] for r in lines]
