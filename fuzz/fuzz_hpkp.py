"""Fuzz the HPKP header parser (``pinengine.hpkp.parse_header``) and the noting of headers (``note_response``).

Input: byte 0 chooses the options, the rest is a header field value.

Every input is parsed four ways: as ``Public-Key-Pins`` and as
``Public-Key-Pins-Report-Only``, each from the value decoded as UTF-8
(undecodable bytes kept as surrogates) and as latin-1 (how HTTP libraries
hand header bytes over; skipped when the value is ASCII, as both are then the
same). When bit 0 of byte 0 is set, the value is also given to
``note_response`` for the fixed host www.example.com, over a connection that
passed its pins with the example chain (examples/chain.pem), with a fresh
``MemoryStore`` and a reporter that collects reports. The other bits shape
that call:

- bit 1: the value is a ``Public-Key-Pins-Report-Only`` header (not ``Public-Key-Pins``);
- bit 2: both headers come, with the same value;
- bit 3: ``pin-sha256`` of the chain's intermediate key and of a backup key
  come first, so that noting can succeed;
- bit 4: the store already holds an HPKP record for the host (the
  intermediate's pin and the backup, expiring in 990 s);
- bit 5: the headers are ``(name, bytes)`` pairs (note_response decodes them
  as latin-1), else a dict of str;
- bit 6: with a dict, the value is decoded as latin-1 rather than UTF-8;
- bit 7: a request URL is given (a relative report-uri resolves against it).

Invariants of ``parse_header``: it returns an ``HPKPHeader`` or raises
``HPKPError`` (a ValueError) with a message naming the header field, nothing
else; a parsed header has distinct pins that are SHA-256 public-key
(``spki``) Pins whose HPKP form parses back to them and that both cores
accept in a PinSet; ``max_age`` is an int in [0, 2**31] (None only in
report-only); ``include_subdomains`` is a bool; ``report_uri`` is None or a
non-empty str; ``report_only`` is what was asked. ``str(header)`` parses back
to an equal header and prints the same again (round trip). Optional
whitespace and empty directives around the value change nothing: the value
with a space before and `` ; `` after parses to the same header, or is
refused too (checked in the mode bit 1 of byte 0 picks: the grammar is the
same in both).

Invariants of ``note_response``: it never raises and returns a str; its
outcome is what the noting rules (RFC 7469 §2.5, as documented) give for the
header that ``parse_header`` reads from the first field of the value:
"ignored: <the HPKPError message>" for a malformed header, "removed" /
"ignored: max-age=0 ..." for max-age=0, "ignored: ..." without a pin of the
chain or without a backup pin, and "noted" otherwise — then the store holds
an HPKP record with the header's pins, includeSubDomains, an http(s)
report-uri or none, expiring min(max-age, MAX_AGE_CAP) seconds later (or the
earlier record, unchanged, when it says the same thing and the expiry moved
by less than a minute), and the policy enforces it (the chain matches). The
store is not changed otherwise. A report-only header never changes the store
and gives "report-only: pins valid" when a pin matches the chain; otherwise
"report-only: pin validation failed ..." and exactly one report for the host
reaches the reporter.

    python fuzz/fuzz_hpkp.py CORPUS_DIR [libFuzzer flags]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from common import Finding, cores, instrument_if_main, quiet, run

# urllib.parse: the report-uri is split and resolved there; coverage of it guides the fuzzer to odd URIs.
instrument_if_main(__name__, ("pinengine.hpkp", "urllib.parse"))

from pinengine import Status, hpkp  # noqa: E402
from pinengine._pem import load_certificates  # noqa: E402
from pinengine.hpkp import HEADER, MAX_AGE_CAP, REPORT_ONLY_HEADER, HPKPError, HPKPHeader, note_response  # noqa: E402
from pinengine.hpkp._fields import first_field  # noqa: E402
from pinengine.hpkp._report_uri import absolute_report_uri  # noqa: E402
from pinengine.pins import Pin  # noqa: E402
from pinengine.policy import PinPolicy, VerificationResult  # noqa: E402
from pinengine.reporting import CallbackSink, Reporter, ViolationReport  # noqa: E402
from pinengine.stores import MemoryStore, PinRecord  # noqa: E402

C, P = cores()
ROOT = Path(__file__).resolve().parent.parent
CHAIN = load_certificates((ROOT / "examples" / "chain.pem").read_bytes())
CHAIN_PINS = [Pin.from_certificate(der) for der in CHAIN]
BACKUP = Pin("sha256", hashlib.sha256(b"pinengine fuzz_hpkp backup key").digest())
HOST = "www.example.com"
URL = "https://www.example.com/a/b?c"
MAX_DELTA_SECONDS = 2**31  # max-age values above this read as this (documented on HPKPHeader)
PREFIX = f"{CHAIN_PINS[1].hpkp}; {BACKUP.hpkp}; "
CLOCK = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def show(text: str) -> str:
    return repr(text if len(text) <= 400 else text[:400] + "...")


def parse(text: str, report_only: bool) -> HPKPHeader | HPKPError:
    """The header, or the HPKPError it raised (any other exception propagates: a finding)."""
    field = REPORT_ONLY_HEADER if report_only else HEADER
    try:
        header = hpkp.parse_header(text, report_only=report_only)
    except HPKPError as exc:
        message = str(exc)
        if not message or f"invalid {field} header" not in message:
            raise Finding(f"HPKPError for {show(text)} does not name the {field} header: {message!r}") from None
        if not isinstance(exc, ValueError):
            raise Finding("HPKPError is not a ValueError") from None
        return exc
    if not isinstance(header, HPKPHeader):
        raise Finding(f"parse_header({show(text)}) returned {type(header).__name__}, not HPKPHeader")
    return header


def check_header(text: str, report_only: bool, header: HPKPHeader) -> None:
    where = f"{show(text)} (report_only={report_only}) -> {header!r}"
    if not isinstance(header.pins, tuple) or len(set(header.pins)) != len(header.pins):
        raise Finding(f"{where}: pins are not a tuple of distinct pins")
    for pin in header.pins:
        if not isinstance(pin, Pin) or pin.kind != "spki" or pin.algorithm != "sha256" or len(pin.digest) != 32:
            raise Finding(f"{where}: {pin!r} is not a SHA-256 public-key pin")
        if Pin.parse(pin.hpkp) != pin or Pin.parse(str(pin)) != pin:
            raise Finding(f"{where}: {pin!r} does not round-trip through its text forms")
    if header.pins:
        spec = [(p.kind_code, p.algorithm, p.digest, 7) for p in header.pins]
        if len(C.PinSet(spec)) != len(header.pins) or len(P.PinSet(spec)) != len(header.pins):
            raise Finding(f"{where}: a core's PinSet does not hold every pin")
    if header.max_age is None:
        if not report_only:
            raise Finding(f"{where}: no max-age in a Public-Key-Pins header")
    elif type(header.max_age) is not int or not 0 <= header.max_age <= MAX_DELTA_SECONDS:
        raise Finding(f"{where}: max-age {header.max_age!r} is not an int in [0, 2**31]")
    if type(header.include_subdomains) is not bool or type(header.report_only) is not bool:
        raise Finding(f"{where}: include_subdomains / report_only are not bools")
    if header.report_only != report_only:
        raise Finding(f"{where}: report_only is not what was asked")
    if header.report_uri is not None and (type(header.report_uri) is not str or not header.report_uri):
        raise Finding(f"{where}: report-uri {header.report_uri!r} is not a non-empty str")

    canonical = str(header)
    again = parse(canonical, report_only)
    if again != header:
        raise Finding(f"{where}: str() gives {show(canonical)}, which parses to {again!r}: no round trip")
    if str(again) != canonical:
        raise Finding(f"{where}: str() is not stable: {show(canonical)} then {show(str(again))}")


def check_parse(text: str, report_only: bool, padding: bool) -> HPKPHeader | HPKPError:
    result = parse(text, report_only)
    if isinstance(result, HPKPHeader):
        check_header(text, report_only, result)
    if not padding:
        return result
    padded = parse(" " + text + " ; ", report_only)
    if isinstance(result, HPKPHeader) != isinstance(padded, HPKPHeader) or (
        isinstance(result, HPKPHeader) and padded != result
    ):
        raise Finding(
            f"optional whitespace and an empty directive change the outcome (report_only={report_only}):\n"
            f"  {show(text)}: {result!r}\n  padded: {padded!r}"
        )
    return result


# -- noting -----------------------------------------------------------------------


def _absolute(uri: str | None, url: str | None) -> str | None:
    """The report-uri as note_response stores / reports it (resolved against ``url``, http(s) only, else None).

    Taken from hpkp itself; what it gives is checked on its own in check_note (an absolute http(s) URL).
    """
    return uri if uri is None else absolute_report_uri(uri, url)


def _expected_pkp(
    header: HPKPHeader | HPKPError, before: PinRecord | None, now: float, url: str | None
) -> tuple[str, Any]:
    """(outcome, what the store must hold afterwards: a PinRecord, None, or "new") for a Public-Key-Pins header."""
    if isinstance(header, HPKPError):
        return f"ignored: {header}", before
    assert header.max_age is not None
    if header.max_age == 0:
        if before is not None:
            return "removed", None
        return f"ignored: max-age=0 but {HOST} has no HPKP pins noted", None
    if not any(p in CHAIN_PINS for p in header.pins):
        return "ignored: no pin of the header matches a key of the validated chain", before
    if all(p in CHAIN_PINS for p in header.pins):
        return "ignored: no backup pin: every pin of the header matches a key of the chain (RFC 7469 §2.5)", before
    expires = now + min(header.max_age, MAX_AGE_CAP)
    if (
        before is not None
        and before.pins == tuple(str(p) for p in header.pins)
        and before.include_subdomains == header.include_subdomains
        and before.report_uri == _absolute(header.report_uri, url)
        and before.expires_at is not None
        and 0 <= expires - before.expires_at < 60
    ):
        return "noted", before  # the same header again: not rewritten
    return "noted", "new"


def _expected_report_only(header: HPKPHeader | HPKPError) -> str:
    if isinstance(header, HPKPError):
        return f"ignored: {header}"
    if any(p in CHAIN_PINS for p in header.pins):
        return "report-only: pins valid"
    return "report-only: pin validation failed (warning logged)"


def check_note(options: int, body: bytes) -> None:
    report_only = bool(options & 2)
    both = bool(options & 4)
    raw = (PREFIX.encode("ascii") if options & 8 else b"") + body
    as_pairs = bool(options & 32)
    text = raw.decode("latin-1") if as_pairs or options & 64 else raw.decode("utf-8", "surrogateescape")
    url = URL if options & 128 else None
    names = [HEADER, REPORT_ONLY_HEADER] if both else [REPORT_ONLY_HEADER if report_only else HEADER]
    headers: Any = [(name, raw) for name in names] if as_pairs else {name: text for name in names}

    now = time.time()
    reports: list[ViolationReport] = []
    store = MemoryStore()
    policy = PinPolicy([], store=store, hpkp=True, reporter=Reporter(CallbackSink(reports.append), clock=lambda: CLOCK))
    before = None
    if options & 16:
        before = PinRecord.create(HOST, [CHAIN_PINS[1], BACKUP], source="hpkp", now=now - 10, ttl=1000)
        store.put(before)
    connection = VerificationResult(HOST, Status.NOT_PINNED, None)

    first = first_field(text)
    if not text.startswith(first):
        raise Finding(f"_first_field({show(text)}) = {show(first)} is not a prefix of the value")
    where = f"note_response({show(text)}, options {options:#04x})"
    outcome = note_response(policy, HOST, headers, pin_result=connection, pin_chain=CHAIN, now=now, url=url)
    if not isinstance(outcome, str):
        raise Finding(f"{where} returned {outcome!r}, not a str")

    expected: list[str] = []
    after: Any = before
    header: HPKPHeader | HPKPError | None = None
    if HEADER in names:
        header = parse(first, False)
        what, after = _expected_pkp(header, before, now, url)
        expected.append(what)
    ro_header: HPKPHeader | HPKPError | None = None
    if REPORT_ONLY_HEADER in names:
        ro_header = parse(first, True)
        expected.append(_expected_report_only(ro_header))
    if outcome != "; ".join(expected):
        raise Finding(f"{where}: outcome {outcome!r}, expected {'; '.join(expected)!r}")

    record = store.get(HOST, now=now)
    if after == "new":
        assert isinstance(header, HPKPHeader) and header.max_age is not None
        report_uri = _absolute(header.report_uri, url)
        if (
            record is None
            or record.source != "hpkp"
            or record.pins != tuple(str(p) for p in header.pins)
            or record.include_subdomains != header.include_subdomains
            or record.report_uri != report_uri
            or record.expires_at != now + min(header.max_age, MAX_AGE_CAP)
            or record.first_seen != (now if before is None else min(now, before.first_seen))
        ):
            raise Finding(f"{where}: noted {header!r} as {record!r}")
        if report_uri is not None:
            parts = urllib.parse.urlsplit(report_uri)
            if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
                raise Finding(f"{where}: stored report-uri {report_uri!r} is not an absolute http(s) URL")
            if url is None and report_uri != header.report_uri:
                raise Finding(f"{where}: report-uri {header.report_uri!r} stored as {report_uri!r} with no URL")
        if header.max_age >= 3600:  # enforced now (the policy reads the store at the current time)
            result = policy.verify(HOST, CHAIN)
            if result.status != "match" or not result.matches:
                raise Finding(f"{where}: after noting, the chain that noted the host does not match: {result!r}")
    elif record != after:
        raise Finding(f"{where}: the store holds {record!r}, expected {after!r}")

    failed = [e for e in expected if e.startswith("report-only: pin validation failed")]
    if len(reports) != len(failed):
        raise Finding(f"{where}: {len(reports)} reports for {len(failed)} report-only pin validation failures")
    if reports:
        assert isinstance(ro_header, HPKPHeader)
        report = reports[0]
        uri = _absolute(ro_header.report_uri, url)
        if (
            report.hostname != HOST
            or report.status != "report-only"
            or tuple(report.known_pins) != ro_header.pins
            # The header's report-uri is the server's choice: it travels apart
            # from the operator's, so a sink can refuse it (issue 11, finding 8).
            or report.report_uri != ()
            or report.server_report_uri != ((uri,) if uri else ())
        ):
            raise Finding(f"{where}: report {report!r} does not describe {ro_header!r}")


def check(data: bytes) -> None:
    if not data:
        return
    options, body = data[0], data[1:]
    texts = [body.decode("utf-8", "surrogateescape")]
    if not body.isascii():
        texts.append(body.decode("latin-1"))
    for text in texts:
        for report_only in (False, True):
            # The grammar is the same in both modes: the padding check runs in the one bit 1 picks.
            check_parse(text, report_only, padding=report_only == bool(options & 2))
    if options & 1:
        with quiet():  # ignored headers, report-only failures: a log line per input
            check_note(options, body)


if __name__ == "__main__":
    run(check)
    sys.exit(0)
