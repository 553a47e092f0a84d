"""HPKP (RFC 7469): header parsing edge cases, the noting rules, and end to end over real TLS servers."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from pinengine import Pin, PinengineError, PinMismatchError, PinPolicy, VerificationResult
from pinengine.hooks.requests import pinned_session
from pinengine.hooks.ssl import create_pinned_context
from pinengine.hpkp import (
    MAX_AGE_CAP,
    HPKPError,
    HPKPHeader,
    note_response,
    parse_header,
)
from pinengine.stores import MemoryStore, PinRecord, SQLiteStore, StoreError
from tests.certs import Chain, cached_chain, make_cert, new_key, pem
from tests.tls import TLSServer

HOST = "localhost"


def digest(i: int) -> bytes:
    return hashlib.sha256(b"hpkp test pin %d" % i).digest()


def b64(i: int) -> str:
    return base64.b64encode(digest(i)).decode()


def spki(der: bytes) -> Pin:
    return Pin.from_certificate(der)


def hdr(*pins: Pin, extra: str = "; max-age=600") -> str:
    return "; ".join(p.hpkp for p in pins) + extra


BACKUP = Pin("sha256", digest(99))  # a key kept offline: in no chain


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def other() -> Chain:
    """Another hierarchy for the same host name: different keys and CA names (both CAs are trusted at once)."""
    root_key, inter_key, leaf_key = new_key("p256"), new_key("p256"), new_key("p256")
    root = make_cert("hpkp impostor root", root_key, None, root_key, ca=True)
    inter = make_cert("hpkp impostor intermediate", inter_key, root, root_key, ca=True)
    leaf = make_cert(HOST, leaf_key, inter, inter_key, ca=False, sans=(HOST,))
    return Chain(leaf, inter, root, leaf_key, inter_key, root_key)


# -- parsing --------------------------------------------------------------------


def test_parse_full_header_and_canonical_form() -> None:
    value = (
        f'pin-sha256="{b64(1)}"; pin-sha256="{b64(2)}"; max-age=5184000; includeSubDomains; '
        'report-uri="https://reports.example.net/hpkp"'
    )
    h = parse_header(value)
    assert h == HPKPHeader(
        (Pin("sha256", digest(1)), Pin("sha256", digest(2))), 5184000, True, "https://reports.example.net/hpkp", False
    )
    assert str(h) == value
    assert parse_header(str(h)) == h


def test_directive_names_are_case_insensitive() -> None:
    h = parse_header(f'PIN-SHA256="{b64(1)}"; Pin-Sha256="{b64(2)}"; MAX-AGE=10; includesubdomains; '
                     'REPORT-URI="https://r.example/"')
    assert h.pins == (Pin("sha256", digest(1)), Pin("sha256", digest(2)))
    assert (h.max_age, h.include_subdomains, h.report_uri) == (10, True, "https://r.example/")


@pytest.mark.parametrize(
    "value",
    [
        f'  pin-sha256="{b64(1)}";max-age=10  ',
        f'pin-sha256="{b64(1)}"\t;\tmax-age=10',
        f'pin-sha256="{b64(1)}" ; ; ;max-age=10;',  # empty directives and a trailing ';'
        f';pin-sha256="{b64(1)}";;max-age=10',
        f'pin-sha256 = "{b64(1)}"; max-age = 10',  # whitespace around '=' (browsers accepted it)
    ],
)
def test_whitespace_and_empty_directives(value: str) -> None:
    h = parse_header(value)
    assert h.pins == (Pin("sha256", digest(1)),) and h.max_age == 10


def test_quoted_strings_and_escapes() -> None:
    escaped = "".join("\\" + c for c in b64(1))  # every character as a quoted-pair
    h = parse_header(f'pin-sha256="{escaped}"; max-age="60"; ext="a;b\\"c, d"; includeSubDomains')
    assert h.pins == (Pin("sha256", digest(1)),)
    assert h.max_age == 60 and h.include_subdomains  # ';' and ',' inside quotes do not split
    assert parse_header('max-age=1; report-uri="https://r.example/a\\b"').report_uri == "https://r.example/ab"


@pytest.mark.parametrize(
    "value, problem",
    [
        (f'pin-sha256="{b64(1)}; max-age=10', "unterminated quoted string"),
        ('max-age=10; ext="abc\\', "unterminated quoted string"),
        ('max-age=10; ext="a\x01b"', "not allowed in a quoted string"),
        ('max-age=10; ext="a\\\x7fb"', "cannot be escaped"),
        (f"pin-sha256={b64(1)}; max-age=10", "expected ';' after directive 'pin-sha256'"),
        ("pin-sha256=abc; max-age=10", "must be a quoted string"),
        ("max-age=10; report-uri=collector", "must be a quoted string"),
        ("max-age=10; report-uri=https://r.example/", "expected ';' after directive 'report-uri'"),
        ('max-age=10; report-uri="https://r.example/a b"', "is not a URI"),
        ('max-age=10; report-uri=""', "is not a URI"),
        ("max-age=10; report-uri", "report-uri needs a value"),
        ("max-age=10 includeSubDomains", "expected ';' after directive 'max-age'"),
        ('max-age=10; ="x"', "a directive name must come before '='"),
        ("max-age=; includeSubDomains", "has '=' but no value"),
        ("max-age=10, max-age=20", "several header fields joined"),
        ("max-age=10; pin-sha256", "pin-sha256 needs a value"),
    ],
)
def test_syntax_errors_quote_the_header_and_name_the_problem(value: str, problem: str) -> None:
    with pytest.raises(HPKPError) as info:
        parse_header(value)
    message = str(info.value)
    assert message.startswith(f"invalid Public-Key-Pins header {value!r}: ")
    assert problem in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, PinengineError)


@pytest.mark.parametrize(
    "value, name",
    [
        ("max-age=10; max-age=10", "'max-age' appears twice"),
        ("max-age=10; MAX-AGE=20", "'MAX-AGE' appears twice (first as 'max-age')"),
        ("max-age=10; includeSubDomains; includesubdomains", "appears twice"),
        ('max-age=10; report-uri="https://a.example/"; report-uri="https://b.example/"', "'report-uri' appears twice"),
        ("max-age=10; foo=1; Foo=2", "'Foo' appears twice"),  # unknown directives too
    ],
)
def test_duplicate_directives_make_the_header_invalid(value: str, name: str) -> None:
    with pytest.raises(HPKPError, match="only pin-\\* may repeat") as info:
        parse_header(value)
    assert name in str(info.value)


def test_repeated_pins_are_allowed_and_deduplicated() -> None:
    h = parse_header(f'pin-sha256="{b64(1)}"; pin-sha256="{b64(2)}"; pin-sha256="{b64(1)}"; max-age=1')
    assert h.pins == (Pin("sha256", digest(1)), Pin("sha256", digest(2)))


def test_pin_directives_of_other_algorithms_and_unknown_directives_are_ignored() -> None:
    sha1 = base64.b64encode(hashlib.sha1(b"x").digest()).decode()
    sha384 = base64.b64encode(hashlib.sha384(b"x").digest()).decode()
    h = parse_header(
        f'pin-sha1="{sha1}"; pin-sha384="{sha384}"; pin-foo=bar; pin-sha256="{b64(1)}"; '
        'max-age=10; future-directive; another="x"'
    )
    assert h.pins == (Pin("sha256", digest(1)),)
    assert parse_header('pin-sha1="not even base64!"; max-age=1').pins == ()


@pytest.mark.parametrize(
    "value, problem",
    [
        ('pin-sha256="AAAA"; max-age=1', "is 3 bytes, not a SHA-256 digest"),
        ('pin-sha256="not base64!"; max-age=1', "is not valid base64"),
        (f'pin-sha256="{b64(1)[:-1]}"; max-age=1', "not a multiple of 4"),
        (f'pin-sha256="_{b64(1)[1:]}"; max-age=1', "URL-safe alphabet"),
        (f'pin-sha256="{b64(1)[:-2]}B="; max-age=1', "not canonical base64"),
        ('pin-sha256=""; max-age=1', "pin-sha256 is empty"),
    ],
)
def test_malformed_pins_invalidate_the_header(value: str, problem: str) -> None:
    with pytest.raises(HPKPError, match=problem):
        parse_header(value)


def test_max_age_is_required_except_in_report_only() -> None:
    with pytest.raises(HPKPError, match="max-age is missing"):
        parse_header(f'pin-sha256="{b64(1)}"; pin-sha256="{b64(2)}"')
    h = parse_header(f'pin-sha256="{b64(1)}"; report-uri="https://r.example/"', report_only=True)
    assert h.max_age is None and h.report_only
    with pytest.raises(HPKPError, match=r"^invalid Public-Key-Pins-Report-Only header"):
        parse_header("max-age=-1", report_only=True)  # a max-age that is there must still be valid


@pytest.mark.parametrize(
    "value, problem",
    [
        ("max-age=-1", "is negative"),
        ("max-age=abc", "not a number of seconds"),
        ('max-age="1.5"', "not a number of seconds"),
        ("max-age=1e3", "not a number of seconds"),
        ("max-age=+5", "not a number of seconds"),
        ('max-age=""', "not a number of seconds"),
        ('max-age="\u00b2"', "not a number of seconds"),  # "²": a digit to str.isdigit, not to HTTP
        ("max-age", "max-age needs a value"),
    ],
)
def test_bad_max_age(value: str, problem: str) -> None:
    with pytest.raises(HPKPError, match=problem):
        parse_header(value)


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("max-age=0", 0),
        ('max-age="60"', 60),
        ("max-age=007", 7),
        ("max-age=2147483648", 2**31),
        ("max-age=2147483649", 2**31),  # delta-seconds beyond 2**31 read as 2**31 (RFC 7234)
        ("max-age=" + "9" * 5000, 2**31),  # no int() of absurd lengths
    ],
)
def test_max_age_values(value: str, seconds: int) -> None:
    assert parse_header(value).max_age == seconds


def test_include_subdomains_takes_no_value_and_empty_headers() -> None:
    with pytest.raises(HPKPError, match="includeSubDomains takes no value"):
        parse_header("max-age=1; includeSubDomains=true")
    for empty in ("", "   ", " ; ;"):
        with pytest.raises(HPKPError, match="empty: no directives"):
            parse_header(empty)


# -- noting -----------------------------------------------------------------------


def new_policy(**kwargs: Any) -> PinPolicy:
    kwargs.setdefault("store", MemoryStore())
    kwargs.setdefault("hpkp", True)
    return PinPolicy([], **kwargs)


def connection(policy: PinPolicy, chain: Chain, host: str = HOST) -> dict[str, Any]:
    """The pin_result / pin_chain a pinned socket would carry after a handshake with ``chain``."""
    return {"pin_result": policy.verify(host, chain.ders), "pin_chain": chain.ders}


def test_noting_then_enforcing(chain: Chain, other: Chain) -> None:
    policy = new_policy()
    at = time.time()
    header = hdr(spki(chain.ders[1]), BACKUP, extra='; max-age=600; includeSubDomains; report-uri="https://r.example/"')
    assert note_response(policy, HOST, {"Public-Key-Pins": header}, now=at, **connection(policy, chain)) == "noted"
    record = policy.store.get(HOST)
    assert record is not None and record.source == "hpkp"
    assert record.pins == (str(spki(chain.ders[1])), str(BACKUP))
    assert record.expires_at == pytest.approx(at + 600)
    assert record.include_subdomains and record.report_uri == "https://r.example/"
    # noted hosts are enforced: the chain with the pinned intermediate passes, another is refused
    assert policy.verify(HOST, chain.ders).status == "match"
    with pytest.raises(PinMismatchError, match=r"HPKP|Keys recorded"):
        policy.verify(HOST, other.ders)
    with pytest.raises(PinMismatchError):
        policy.verify("api." + HOST, other.ders)  # includeSubDomains
    # a later header (over a connection that passed the noted pins) updates the record, first_seen kept
    later = hdr(spki(chain.ders[0]), BACKUP, extra="; max-age=60")
    assert note_response(policy, HOST, {"public-key-pins": later}, now=at + 5, **connection(policy, chain)) == "noted"
    updated = policy.store.get(HOST)
    assert updated is not None and updated.first_seen == record.first_seen
    assert updated.pins == (str(spki(chain.ders[0])), str(BACKUP)) and not updated.include_subdomains


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def _transact(self, host: str, change: Any) -> Any:
        self.writes += 1
        return super()._transact(host, change)

    def _transact_counted(self, host: str, change: Any, now: float) -> Any:  # how HPKP notes write
        self.writes += 1
        return super()._transact_counted(host, change, now)


def test_a_repeated_header_is_not_rewritten_every_response(chain: Chain) -> None:
    store = CountingStore()
    policy = new_policy(store=store)
    header = {"Public-Key-Pins": hdr(spki(chain.ders[1]), BACKUP)}
    conn = connection(policy, chain)
    at = time.time()
    for delay in (0, 1, 30):
        assert note_response(policy, HOST, header, now=at + delay, **conn) == "noted"
    assert store.writes == 1
    assert note_response(policy, HOST, header, now=at + 61, **conn) == "noted"
    assert store.writes == 2  # the expiry moved on by more than a minute
    record = store.get(HOST)
    assert record is not None and record.expires_at == pytest.approx(at + 61 + 600)


def test_hpkp_off_does_nothing(chain: Chain) -> None:
    policy = new_policy(hpkp=False)
    header = hdr(spki(chain.ders[0]), BACKUP)
    assert note_response(policy, HOST, {"Public-Key-Pins": header}, **connection(policy, chain)) == "hpkp off"
    assert policy.store.list() == []


def test_backup_pin_is_required(chain: Chain) -> None:
    policy = new_policy()
    header = hdr(spki(chain.ders[0]), spki(chain.ders[1]), spki(chain.ders[2]))  # all in the chain
    outcome = note_response(policy, HOST, {"Public-Key-Pins": header}, **connection(policy, chain))
    assert outcome.startswith("ignored: no backup pin")
    assert policy.store.list() == []


def test_a_header_pin_must_match_the_chain(chain: Chain, other: Chain) -> None:
    policy = new_policy()
    header = hdr(spki(other.ders[1]), BACKUP)
    outcome = note_response(policy, HOST, {"Public-Key-Pins": header}, **connection(policy, chain))
    assert outcome == "ignored: no pin of the header matches a key of the validated chain"
    assert policy.store.list() == []


def test_only_validated_connections_that_passed_their_pins_note(chain: Chain) -> None:
    policy = new_policy()
    headers = {"Public-Key-Pins": hdr(spki(chain.ders[0]), BACKUP)}
    cases: dict[str, dict[str, Any]] = {
        "not a pinned TLS connection": dict(pin_result=None, pin_chain=chain.ders),
        "not validated": dict(pin_result=VerificationResult(HOST, "not-pinned", None, verified=False),
                              pin_chain=chain.ders[:1]),
        "status 'report-only'": dict(pin_result=VerificationResult(HOST, "report-only", None), pin_chain=chain.ders),
        "status 'expired'": dict(pin_result=VerificationResult(HOST, "expired", None), pin_chain=chain.ders),
        "checked for example.org": dict(pin_result=VerificationResult("example.org", "not-pinned", None),
                                        pin_chain=chain.ders),
        "chain is not known": dict(pin_result=VerificationResult(HOST, "not-pinned", None), pin_chain=None),
    }
    for why, conn in cases.items():
        outcome = note_response(policy, HOST, headers, **conn)
        assert outcome.startswith("ignored: ") and why in outcome, (why, outcome)
    assert policy.store.list() == []


def test_ip_addresses_are_never_noted(chain: Chain) -> None:
    policy = new_policy()
    outcome = note_response(policy, "127.0.0.1", {"Public-Key-Pins": hdr(spki(chain.ders[0]), BACKUP)},
                            **connection(policy, chain, "127.0.0.1"))
    assert outcome == "ignored: an IP address is never noted (RFC 7469 §2.5)"


def test_hosts_with_a_policy_entry_are_never_noted(chain: Chain) -> None:
    static = PinPolicy.from_mapping(
        {"domains": [{"host": HOST, "pins": [str(spki(chain.ders[1])), str(BACKUP)]},
                     {"host": "tofu.example", "dynamic": True}]},
        store=MemoryStore(), hpkp=True,
    )
    header = {"Public-Key-Pins": hdr(spki(chain.ders[0]), Pin("sha256", digest(7)))}
    assert note_response(static, HOST, header, **connection(static, chain)).startswith(
        "ignored: localhost is covered by the policy entry 'localhost'"
    )
    # a trust-on-first-use entry: its recorded key is never replaced by a header
    tofu_chain = cached_chain("p256", "tofu.example")
    conn = connection(static, tofu_chain, "tofu.example")  # records the leaf (TOFU)
    tofu = static.store.get("tofu.example")
    assert tofu is not None and tofu.source == "tofu"
    header = {"Public-Key-Pins": hdr(spki(tofu_chain.ders[1]), BACKUP)}
    assert note_response(static, "tofu.example", header, **conn).startswith("ignored: tofu.example is covered")
    assert static.store.get("tofu.example") == tofu
    assert static.store.get(HOST) is None


def test_records_of_other_sources_are_not_replaced(chain: Chain) -> None:
    policy = new_policy()
    accepted = PinRecord.create(HOST, [str(BACKUP)], source="accepted")
    policy.store.put(accepted)
    conn: dict[str, Any] = {"pin_result": VerificationResult(HOST, "not-pinned", None), "pin_chain": chain.ders}
    outcome = note_response(policy, HOST, {"Public-Key-Pins": hdr(spki(chain.ders[0]), BACKUP)}, **conn)
    assert outcome == (
        "ignored: the store holds a record of source 'accepted' for localhost; an HPKP header does not replace it"
    )
    assert note_response(policy, HOST, {"Public-Key-Pins": "max-age=0"}, **conn).startswith("ignored: max-age=0")
    assert policy.store.get(HOST) == accepted


def test_max_age_zero_removes_the_noted_host(chain: Chain, other: Chain) -> None:
    policy = new_policy()
    header = {"Public-Key-Pins": hdr(spki(chain.ders[2]), BACKUP)}
    assert note_response(policy, HOST, header, **connection(policy, chain)) == "noted"
    with pytest.raises(PinMismatchError):
        policy.verify(HOST, other.ders)
    # the removal comes over a connection that passed the noted pins; it needs no pins itself
    remove = {"Public-Key-Pins": "max-age=0"}
    assert note_response(policy, HOST, remove, **connection(policy, chain)) == "removed"
    assert policy.store.get(HOST) is None
    assert policy.verify(HOST, other.ders).status == "not-pinned"
    assert note_response(policy, HOST, remove, **connection(policy, chain)) == (
        "ignored: max-age=0 but localhost has no HPKP pins noted"
    )
    # the connection rules still apply to removal
    policy2 = new_policy()
    assert note_response(policy2, HOST, header, **connection(policy2, chain)) == "noted"
    unvalidated = VerificationResult(HOST, "match", None, verified=False)
    assert note_response(policy2, HOST, remove, pin_result=unvalidated, pin_chain=chain.ders[:1]).startswith("ignored")
    assert policy2.store.get(HOST) is not None


def test_expiry_is_honoured(chain: Chain, other: Chain) -> None:
    policy = new_policy()
    header = {"Public-Key-Pins": hdr(spki(chain.ders[1]), BACKUP, extra="; max-age=100")}
    at = time.time() - 1000  # a header received long ago: its max-age has run out
    assert note_response(policy, HOST, header, now=at, **connection(policy, chain)) == "noted"
    assert policy.store.get(HOST) is None
    assert policy.store.get(HOST, now=at + 99) is not None
    assert policy.verify(HOST, other.ders).status == "not-pinned"
    # an aware datetime works too
    policy2 = new_policy()
    when = dt.datetime.now(dt.timezone.utc)
    assert note_response(policy2, HOST, header, now=when, **connection(policy2, chain)) == "noted"
    record = policy2.store.get(HOST)
    assert record is not None and record.expires_at == pytest.approx(when.timestamp() + 100)


def test_max_age_is_capped(chain: Chain) -> None:
    policy = new_policy()
    header = {"Public-Key-Pins": hdr(spki(chain.ders[1]), BACKUP, extra="; max-age=99999999999")}
    at = time.time()
    assert note_response(policy, HOST, header, now=at, **connection(policy, chain)) == "noted"
    record = policy.store.get(HOST)
    assert record is not None and record.expires_at == pytest.approx(at + MAX_AGE_CAP)


def test_invalid_header_is_ignored_whole(chain: Chain) -> None:
    policy = new_policy()
    header = {"Public-Key-Pins": hdr(spki(chain.ders[1]), BACKUP, extra="; max-age=10; max-age=20")}
    outcome = note_response(policy, HOST, header, **connection(policy, chain))
    assert outcome.startswith("ignored: invalid Public-Key-Pins header") and "appears twice" in outcome
    assert policy.store.list() == []
    assert note_response(policy, HOST, {"X-Other": "1"}, **connection(policy, chain)) == (
        "ignored: no Public-Key-Pins header"
    )


def test_only_the_first_header_field_counts(chain: Chain, other: Chain) -> None:
    good = hdr(spki(chain.ders[1]), BACKUP)
    bad = hdr(spki(other.ders[1]), BACKUP)
    forms: list[Any] = [
        {"Public-Key-Pins": f"{good}, {bad}"},  # fields joined with ',' (requests, urllib3 .get)
        [("Public-Key-Pins", good), ("public-key-pins", bad)],  # (name, value) pairs
    ]
    for headers in forms:
        policy = new_policy()
        assert note_response(policy, HOST, headers, **connection(policy, chain)) == "noted"
    for headers in ({"Public-Key-Pins": f"{bad}, {good}"}, [("Public-Key-Pins", bad), ("Public-Key-Pins", good)]):
        policy = new_policy()
        assert note_response(policy, HOST, headers, **connection(policy, chain)).startswith("ignored: no pin")


def test_relative_report_uri_is_resolved(chain: Chain) -> None:
    policy = new_policy()
    header = {"Public-Key-Pins": hdr(spki(chain.ders[1]), BACKUP, extra='; max-age=60; report-uri="/hpkp-report"')}
    assert note_response(policy, HOST, header, url="https://localhost:8443/a/b", **connection(policy, chain)) == "noted"
    record = policy.store.get(HOST)
    assert record is not None and record.report_uri == "https://localhost:8443/hpkp-report"
    policy2 = new_policy()
    assert note_response(policy2, HOST, header, **connection(policy2, chain)) == "noted"  # no URL: dropped
    record2 = policy2.store.get(HOST)
    assert record2 is not None and record2.report_uri is None


class BrokenStore(MemoryStore):
    def _transact(self, host: str, change: Any) -> Any:
        raise StoreError("disk on fire")

    def _transact_counted(self, host: str, change: Any, now: float) -> Any:  # how HPKP notes write
        raise StoreError("disk on fire")


def test_store_errors_are_logged_not_raised(chain: Chain, caplog: pytest.LogCaptureFixture) -> None:
    policy = new_policy(store=BrokenStore())
    conn: dict[str, Any] = {"pin_result": VerificationResult(HOST, "not-pinned", None), "pin_chain": chain.ders}
    with caplog.at_level(logging.ERROR, logger="pinengine"):
        for header in (hdr(spki(chain.ders[1]), BACKUP), "max-age=0"):
            outcome = note_response(policy, HOST, {"Public-Key-Pins": header}, **conn)
            assert outcome == "ignored: the pin store cannot be used: disk on fire"
    assert "disk on fire" in caplog.text


class Collect:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def report(self, event: Any) -> None:
        self.events.append(event)


def test_report_only_is_never_noted(chain: Chain, other: Chain, caplog: pytest.LogCaptureFixture) -> None:
    reporter = Collect()
    policy = new_policy(reporter=reporter)
    conn = connection(policy, chain)
    passing = hdr(spki(chain.ders[1]), BACKUP, extra="")
    with caplog.at_level(logging.WARNING, logger="pinengine"):
        outcome = note_response(policy, HOST, {"Public-Key-Pins-Report-Only": passing}, **conn)
        assert outcome == "report-only: pins valid"
        assert caplog.text == "" and reporter.events == []
        failing = hdr(spki(other.ders[1]), BACKUP, extra='; report-uri="https://r.example/pkp"')
        outcome = note_response(policy, HOST, {"Public-Key-Pins-Report-Only": failing}, **conn)
    assert outcome == "report-only: pin validation failed (warning logged)"
    assert "HPKP report-only pin validation failure for localhost" in caplog.text
    assert str(spki(other.ders[1])) in caplog.text and str(spki(chain.ders[0])) in caplog.text
    assert policy.store.list() == []
    assert len(reporter.events) == 1
    event = reporter.events[0]
    assert event.status == "report-only" and event.hostname == HOST
    assert event.entry.report_uri == ("https://r.example/pkp",) and event.entry.pins == (spki(other.ders[1]), BACKUP)
    assert event.entry.noted  # the report URI is the server's choice, not the operator's
    # an IP address host is reported too (it can never be noted)
    ip_conn = connection(policy, chain, "127.0.0.1")
    ro = {"Public-Key-Pins-Report-Only": failing + "; includeSubDomains"}
    assert note_response(policy, "127.0.0.1", ro, **ip_conn).startswith("report-only: pin validation failed")
    assert reporter.events[-1].hostname == "127.0.0.1"
    # both headers: each is processed on its own
    both = {"Public-Key-Pins": hdr(spki(chain.ders[1]), BACKUP), "Public-Key-Pins-Report-Only": failing}
    assert note_response(policy, HOST, both, **conn) == "noted; report-only: pin validation failed (warning logged)"


def test_sqlite_store(chain: Chain, other: Chain, tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "pins.db") as store:
        policy = new_policy(store=store)
        assert note_response(policy, HOST, {"Public-Key-Pins": hdr(spki(chain.ders[0]), BACKUP)},
                             **connection(policy, chain)) == "noted"
        # another process (another policy on the same file) enforces the noted pins
        with SQLiteStore(tmp_path / "pins.db") as again:
            with pytest.raises(PinMismatchError):
                new_policy(store=again).verify(HOST, other.ders)


# -- end to end ----------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path: Path, chain: Chain, other: Chain) -> str:
    """A CA file trusting both hierarchies: only the pins can tell them apart."""
    path = tmp_path / "cas.pem"
    path.write_bytes(pem(chain.root) + pem(other.root))
    return str(path)


@pytest.fixture
def servers(chain: Chain, other: Chain) -> Iterator[tuple[TLSServer, TLSServer]]:
    with TLSServer(chain) as first, TLSServer(other) as impostor:
        yield first, impostor


def test_requests_end_to_end(servers: tuple[TLSServer, TLSServer], chain: Chain, other: Chain, bundle: str) -> None:
    first, impostor = servers
    policy = new_policy()
    session = pinned_session(policy, verify=bundle)
    # before any header, both servers are accepted (the host is not pinned)
    assert session.get(impostor.url(), timeout=10).status_code == 200
    first.httpd.headers["Public-Key-Pins"] = hdr(spki(chain.ders[1]), BACKUP, extra="; max-age=600")
    assert session.get(first.url(), timeout=10).text.startswith("hello")
    record = policy.store.get(HOST)
    assert record is not None and record.source == "hpkp" and str(BACKUP) in record.pins
    with pytest.raises(PinMismatchError):
        policy.verify(HOST, other.ders)
    # a new connection to a server with another key for the same name is refused
    fresh = pinned_session(policy, verify=bundle)
    with pytest.raises(requests.exceptions.SSLError) as info:
        fresh.get(impostor.url(), timeout=10)
    assert isinstance(info.value.__cause__, PinMismatchError)
    # the pooled connection to the first server notes later headers too: max-age=0 removes the host
    first.httpd.headers["Public-Key-Pins"] = "max-age=0"
    assert session.get(first.url(), timeout=10).status_code == 200
    assert first.connections == 1
    assert policy.store.get(HOST) is None
    assert fresh.get(impostor.url(), timeout=10).status_code == 200
    session.close()
    fresh.close()


def test_requests_report_only_and_hpkp_off(
    servers: tuple[TLSServer, TLSServer], chain: Chain, other: Chain, bundle: str, caplog: pytest.LogCaptureFixture
) -> None:
    first, impostor = servers
    first.httpd.headers["Public-Key-Pins-Report-Only"] = hdr(spki(other.ders[1]), BACKUP, extra="")
    policy = new_policy()
    session = pinned_session(policy, verify=bundle)
    with caplog.at_level(logging.WARNING, logger="pinengine"):
        assert session.get(first.url(), timeout=10).status_code == 200
    assert "HPKP report-only pin validation failure for localhost" in caplog.text
    assert policy.store.list() == []
    assert session.get(impostor.url(), timeout=10).status_code == 200
    # hpkp off: a real header is not noted
    first.httpd.headers["Public-Key-Pins"] = hdr(spki(chain.ders[1]), BACKUP)
    off = new_policy(hpkp=False)
    assert pinned_session(off, verify=bundle).get(first.url(), timeout=10).status_code == 200
    assert off.store.list() == []


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_requests_unvalidated_connection_never_notes(servers: tuple[TLSServer, TLSServer], chain: Chain) -> None:
    first, _ = servers
    first.httpd.headers["Public-Key-Pins"] = hdr(spki(chain.ders[0]), BACKUP)
    policy = new_policy()
    assert pinned_session(policy, verify=False).get(first.url(), timeout=10).status_code == 200
    assert policy.store.list() == []


def test_httpx_end_to_end(servers: tuple[TLSServer, TLSServer], chain: Chain, other: Chain, bundle: str) -> None:
    httpx = pytest.importorskip("httpx")
    from pinengine.hooks.httpx import async_hpkp_event_hook, hpkp_event_hook

    first, impostor = servers
    first.httpd.headers["Public-Key-Pins"] = hdr(spki(chain.ders[2]), BACKUP, extra="; max-age=600")
    policy = new_policy()
    ctx = create_pinned_context(policy, cafile=bundle)
    with httpx.Client(verify=ctx, event_hooks={"response": [hpkp_event_hook(policy)]}) as client:
        assert client.get(first.url()).text.startswith("hello")
        record = policy.store.get(HOST)
        assert record is not None and record.source == "hpkp"
        with pytest.raises(httpx.ConnectError, match="pinning failure"):
            client.get(impostor.url())
    # the async client, on a fresh policy: anyio's SSLObject carries the pin result
    apolicy = new_policy()
    actx = create_pinned_context(apolicy, cafile=bundle)

    async def run() -> None:
        async with httpx.AsyncClient(verify=actx, event_hooks={"response": [async_hpkp_event_hook(apolicy)]}) as c:
            assert (await c.get(first.url())).status_code == 200
            assert apolicy.store.get(HOST) is not None
            with pytest.raises(httpx.ConnectError, match="pinning failure"):
                await c.get(impostor.url())

    asyncio.run(run())
    with pytest.raises(TypeError):
        hpkp_event_hook(object())  # type: ignore[arg-type]


def test_hooks_glue_looks_no_further_than_it_must(chain: Chain) -> None:
    """note_pinned_response (what the requests adapter and the httpx hook call) stops at the first reason.

    An httpx Response made by hand has no request: the glue must not ask for
    the request URL, nor walk the connection objects, before it has to.
    """
    from pinengine.hpkp import note_pinned_response

    asked: list[str] = []

    def request(url: str) -> Callable[[], tuple[str | None, str]]:
        def give() -> tuple[str | None, str]:
            asked.append("request")
            return urllib.parse.urlsplit(url).hostname, url
        return give

    def connections(*objects: object) -> Iterator[object]:
        for obj in objects:
            asked.append("connection")
            yield obj

    pkp = {"Public-Key-Pins": hdr(spki(chain.ders[0]), BACKUP)}
    assert note_pinned_response(new_policy(hpkp=False), pkp, request("https://localhost/"), connections()) == "hpkp off"
    assert note_pinned_response(new_policy(), {"Server": "x"}, request("https://localhost/"), connections()) == (
        "ignored: no Public-Key-Pins header"
    )
    assert note_pinned_response(new_policy(), None, request("https://localhost/"), connections()) == (
        "ignored: no Public-Key-Pins header"
    )
    assert asked == []
    assert note_pinned_response(new_policy(), pkp, request("http://localhost/"), connections(None)) == (
        "ignored: not an https response"
    )
    assert asked == ["request"]
    # over https, without a pinned connection among the objects: never noted
    asked.clear()
    policy = new_policy()
    outcome = note_pinned_response(policy, pkp, request("https://localhost/"), connections(None, object()))
    assert outcome == "ignored: the connection's pins were not checked (not a pinned TLS connection)"
    assert asked == ["request", "connection", "connection"]
    assert policy.store.list() == []


def test_requests_through_connect_proxy(servers: tuple[TLSServer, TLSServer], chain: Chain, bundle: str) -> None:
    from tests.proxy import ConnectProxy

    first, _ = servers
    first.httpd.headers["Public-Key-Pins"] = hdr(spki(chain.ders[0]), BACKUP)
    policy = new_policy()
    with ConnectProxy() as proxy:
        session = pinned_session(policy, verify=bundle)
        assert session.get(first.url(), proxies={"https": proxy.url}, timeout=10).status_code == 200
        session.close()
    record = policy.store.get(HOST)
    assert record is not None and record.source == "hpkp"
