"""HTTP Public Key Pinning (RFC 7469): parse ``Public-Key-Pins`` headers and note hosts from them.

``parse_header(value)`` reads one header field value into an ``HPKPHeader``
(or raises ``HPKPError`` quoting the header and naming the problem).
``note_response(policy, hostname, headers, pin_result=..., pin_chain=...)``
applies the noting rules of RFC 7469 §2.3.1 and §2.5 to a response: the host
is noted in ``policy.store`` (a ``PinRecord`` with ``source="hpkp"``, living
``max-age`` seconds) only when the header came over a connection whose chain
was validated and passed its pins, at least one header pin matches a key of
that chain, and at least one header pin (the backup) matches none. Once
noted, ``PinPolicy.verify`` enforces the host's pins (when ``policy.hpkp`` is
on). ``max-age=0`` removes the host's noted pins. ``Public-Key-Pins-Report-Only``
is never noted: when the chain fails its pins a warning is logged (and the
policy's reporter, if any, gets an event).

Every header is hostile: a field value longer than ``MAX_HEADER_LENGTH``,
with more than ``MAX_PINS`` pins or a report-uri longer than
``MAX_REPORT_URI_LENGTH`` is refused before (or while) it is parsed, in
linear time. The hosts noted are capped per store and per registrable
domain (``MAX_NOTED_HOSTS``, ``MAX_NOTED_PER_DOMAIN``, or the policy's
``hpkp_max_hosts`` / ``hpkp_max_hosts_per_domain``): past a cap a new host
is not noted, and nothing noted before is dropped. Refusals are logged at
most once per ten seconds per kind and policy, and counted
(``hpkp_headers_refused``, ``hpkp_notes_refused`` in ``pinengine.stats()``).

The TLS hooks feed responses in: ``pinengine.hooks.requests.PinnedAdapter``
does so by itself when ``policy.hpkp`` is on; for httpx use
``pinengine.hooks.httpx.hpkp_event_hook(policy)``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import logging
import time
import urllib.parse
import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, Union

from . import _backend, _observe
from ._errors import CertificateParseError, HPKPError
from .metrics import count_event
from .pins import Pin
from .policy import REPORT_ONLY, DomainEntry, PinPolicy, _ip_literal, _LogThrottle, normalize_hostname
from .stores import PinRecord, StoreError
from .stores._base import DOMAIN_FULL, OTHER_SOURCE, STORE_FULL, noted_domain

__all__ = [
    "HEADER",
    "MAX_AGE_CAP",
    "MAX_HEADER_LENGTH",
    "MAX_NOTED_HOSTS",
    "MAX_NOTED_PER_DOMAIN",
    "MAX_PINS",
    "MAX_REPORT_URI_LENGTH",
    "REPORT_ONLY_HEADER",
    "HPKPError",
    "HPKPHeader",
    "note_response",
    "parse_header",
]

log = logging.getLogger("pinengine")

#: The header names (compared case-insensitively).
HEADER = "Public-Key-Pins"
REPORT_ONLY_HEADER = "Public-Key-Pins-Report-Only"

#: The longest a host stays noted, whatever max-age says: 60 days, the cap
#: RFC 7469 §4.1 suggests and the browsers that implemented HPKP used.
MAX_AGE_CAP = 60 * 24 * 3600

#: The longest header field value read, in characters. A real header (a few
#: pins, max-age, includeSubDomains, a report-uri) is well under 1 KB, and
#: servers cap a whole header line near 8 KB (Apache's LimitRequestFieldSize
#: is 8190, nginx's buffers 8k): nothing real is refused. Longer values are
#: refused before they are parsed; only this much of one is ever scanned.
MAX_HEADER_LENGTH = 8192

#: The most distinct pin-sha256 pins a header may carry, so the most pins a
#: noted host has. RFC 7469 needs two (one a backup); deployed headers had
#: 2 to 5. 16 leaves room for several current keys and backups.
MAX_PINS = 16

#: The longest report-uri, as sent and once resolved against the request URL
#: (characters). Report endpoints are short URLs; 1024 is far beyond them.
MAX_REPORT_URI_LENGTH = 1024

#: Default cap on the hosts noted in one store (``PinPolicy(hpkp_max_hosts=...)``).
#: A client noting headers from more hosts than this is being fed them; at
#: the cap the store holds at most ~2 MB of HPKP records (16 pins and a
#: 1 KB report-uri each), which also bounds a JSONFileStore's rewrite.
MAX_NOTED_HOSTS = 1000

#: Default cap on the hosts noted per registrable domain
#: (``PinPolicy(hpkp_max_hosts_per_domain=...)``; see
#: ``pinengine.stores._base.noted_domain``). Enough for a site's separately
#: noted hosts (www, api, login, ...; a site with more uses
#: includeSubDomains), and a wildcard certificate notes no more; filling the
#: store takes MAX_NOTED_HOSTS / 32 = 31 registrable domains.
MAX_NOTED_PER_DOMAIN = 32

#: A repeated, unchanged header rewrites the record only when its expiry moves
#: on by this much (seconds), or by a tenth of max-age if that is more: a host
#: sending the same header on every response costs a write at most that often.
_REFRESH_SECONDS = 60.0
_REFRESH_FRACTION = 0.1

#: max-age values above this are read as this (RFC 7234 §1.2.1 delta-seconds).
_DELTA_SECONDS_MAX = 2**31

# RFC 7230 §3.2.6: token characters; quoted-string text and quoted pairs.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"
_PIN_DIRECTIVE = "pin-sha256"
_SHA256_B64_LEN = 44


@dataclass(frozen=True)
class HPKPHeader:
    """A parsed ``Public-Key-Pins`` (or ``-Report-Only``) header.

    ``pins`` are the ``pin-sha256`` public-key pins, duplicates dropped, in
    header order. ``max_age`` is the ``max-age`` in seconds (None when absent,
    which only a report-only header may be; values above 2**31 read as 2**31).
    ``report_uri`` is the ``report-uri`` exactly as given (it may be relative).
    """

    pins: tuple[Pin, ...]
    max_age: int | None
    include_subdomains: bool = False
    report_uri: str | None = None
    report_only: bool = False

    def __str__(self) -> str:
        """The header field value that says the same thing (canonical spelling)."""
        parts = [p.hpkp for p in self.pins]
        if self.max_age is not None:
            parts.append(f"max-age={self.max_age}")
        if self.include_subdomains:
            parts.append("includeSubDomains")
        if self.report_uri is not None:
            escaped = self.report_uri.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'report-uri="{escaped}"')
        return "; ".join(parts)


# -- parsing -------------------------------------------------------------------


def _qdtext(c: str) -> bool:
    # HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text (%x80-FF)
    o = ord(c)
    return c in _OWS or o == 0x21 or 0x23 <= o <= 0x5B or 0x5D <= o <= 0x7E or 0x80 <= o <= 0xFF


def _quotable(c: str) -> bool:
    # quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
    o = ord(c)
    return c in _OWS or 0x21 <= o <= 0x7E or 0x80 <= o <= 0xFF


class _Parser:
    """A cursor over one header value; every problem raises HPKPError quoting the whole header."""

    def __init__(self, value: str, field: str) -> None:
        self.text = value
        self.field = field
        self.i = 0

    def fail(self, problem: str) -> HPKPError:
        shown = self.text if len(self.text) <= 300 else self.text[:300] + "..."
        return HPKPError(f"invalid {self.field} header {shown!r}: {problem}")

    def at_end(self) -> bool:
        return self.i >= len(self.text)

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def skip_ows(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in _OWS:
            self.i += 1

    def token(self) -> str:
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in _TCHAR:
            self.i += 1
        return self.text[start:self.i]

    def quoted(self) -> str:
        start = self.i
        self.i += 1  # the opening quote
        out: list[str] = []
        while self.i < len(self.text):
            c = self.text[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\\":
                if self.i + 1 >= len(self.text):
                    break
                nxt = self.text[self.i + 1]
                if not _quotable(nxt):
                    raise self.fail(f"character {nxt!r} cannot be escaped in a quoted string (position {self.i + 1})")
                out.append(nxt)
                self.i += 2
                continue
            if not _qdtext(c):
                raise self.fail(f"character {c!r} is not allowed in a quoted string (position {self.i})")
            out.append(c)
            self.i += 1
        raise self.fail(f"unterminated quoted string starting at position {start}")

    def directives(self) -> list[tuple[str, str | None, bool]]:
        """(name, value or None, whether the value was quoted) for each directive, in order.

        Grammar (RFC 7469 §2.1): ``[ directive ] *( OWS ";" [ OWS directive ] )``,
        ``directive = name [ "=" ( token / quoted-string ) ]``. Empty
        directives (``;;``, a trailing ``;``) are allowed; optional whitespace
        is allowed around ``;`` and, as browsers did, around ``=``.
        """
        found: list[tuple[str, str | None, bool]] = []
        while True:
            self.skip_ows()
            if self.at_end():
                return found
            if self.peek() == ";":
                self.i += 1
                continue
            where = self.i
            name = self.token()
            if not name:
                raise self.fail(self._unexpected("a directive name"))
            self.skip_ows()
            value: str | None = None
            quoted = False
            if self.peek() == "=":
                self.i += 1
                self.skip_ows()
                if self.peek() == '"':
                    value, quoted = self.quoted(), True
                else:
                    value = self.token()
                    if not value:
                        if self.at_end() or self.peek() == ";":
                            raise self.fail(f"directive {name!r} has '=' but no value (position {where})")
                        raise self.fail(self._unexpected(f"the value of {name!r} (a token or a quoted string)"))
            self.skip_ows()
            if not self.at_end():
                if self.peek() != ";":
                    raise self.fail(self._unexpected(f"';' after directive {name!r}"))
                self.i += 1
            found.append((name, value, quoted))

    def _unexpected(self, wanted: str) -> str:
        c = self.peek()
        hint = ""
        if c == ",":
            hint = " (a ',' outside quotes: several header fields joined into one? only the first counts)"
        elif c == "=":
            hint = " (a directive name must come before '=')"
        return f"expected {wanted} at position {self.i}, found {c!r}{hint}"


def _parse_max_age(parser: _Parser, value: str | None) -> int:
    if value is None:
        raise parser.fail("max-age needs a value (max-age=<seconds>)")
    if not value.isascii() or not value.isdigit():
        if value.startswith("-") and value[1:].isdigit():
            raise parser.fail(f"max-age {value!r} is negative; it is a number of seconds >= 0")
        raise parser.fail(f"max-age {value!r} is not a number of seconds (digits only)")
    digits = value.lstrip("0") or "0"
    if len(digits) > 10:  # certainly > 2**31; avoid converting absurdly long numbers
        return _DELTA_SECONDS_MAX
    return min(int(digits), _DELTA_SECONDS_MAX)


def _parse_pin(parser: _Parser, value: str | None, quoted: bool) -> Pin:
    if value is None:
        raise parser.fail(f'{_PIN_DIRECTIVE} needs a value ({_PIN_DIRECTIVE}="<base64>")')
    if not quoted:
        raise parser.fail(f'the {_PIN_DIRECTIVE} value {value!r} must be a quoted string ({_PIN_DIRECTIVE}="...")')
    if not value:
        raise parser.fail(f"{_PIN_DIRECTIVE} is empty")
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        why = "URL-safe alphabet; use standard base64 with + and /" if ("-" in value or "_" in value) else (
            f"length {len(value)} is not a multiple of 4" if len(value) % 4 else "characters outside base64"
        )
        raise parser.fail(f"{_PIN_DIRECTIVE} {value!r} is not valid base64 ({why})") from None
    if len(digest) != 32:
        raise parser.fail(
            f"{_PIN_DIRECTIVE} {value!r} is {len(digest)} bytes, not a SHA-256 digest (32 bytes, {_SHA256_B64_LEN} "
            "base64 characters)"
        )
    if base64.b64encode(digest).decode("ascii") != value:
        raise parser.fail(f"{_PIN_DIRECTIVE} {value!r} is not canonical base64 (stray bits before the padding)")
    return Pin("sha256", digest)


def parse_header(value: str, *, report_only: bool = False) -> HPKPHeader:
    """Parse one ``Public-Key-Pins`` header field value (``report_only=True``: ``-Report-Only``).

    The rules of RFC 7469 §2.1: directives are separated by ``;``; names are
    case-insensitive; values are tokens or quoted strings (with backslash
    escapes), so ``max-age=60`` and ``max-age="60"`` are the same;
    ``pin-sha256`` (a quoted base64 SHA-256 digest) may repeat; ``max-age``
    (delta-seconds) is required unless ``report_only``; ``includeSubDomains``
    takes no value; ``report-uri`` is a quoted URI. Any directive other than
    ``pin-*`` appearing twice makes the header invalid. Unknown directives,
    and pin directives of other algorithms (``pin-sha1``, ``pin-sha384``,
    ...), are ignored; a header with nothing else (possible only in
    report-only) is invalid, as an empty one is. Raises HPKPError for
    anything malformed, quoting the header and naming the problem; nothing
    is repaired. A server chooses every byte of the value, so it is bounded
    too: a value longer than ``MAX_HEADER_LENGTH`` is refused unread, and
    one with more than ``MAX_PINS`` distinct pins or a report-uri longer
    than ``MAX_REPORT_URI_LENGTH`` is refused; the parse is linear.
    """
    if not isinstance(value, str):
        raise TypeError(f"a header value must be str, not {type(value).__name__}")
    field = REPORT_ONLY_HEADER if report_only else HEADER
    parser = _Parser(value, field)
    if len(value) > MAX_HEADER_LENGTH:
        raise parser.fail(f"longer than {MAX_HEADER_LENGTH} characters (MAX_HEADER_LENGTH); not parsed")
    directives = parser.directives()
    if not directives:
        raise parser.fail("empty: no directives")
    pins: dict[Pin, None] = {}  # a dict: ordered, and a repeat is found without a scan
    seen: dict[str, str] = {}
    max_age: int | None = None
    include_subdomains = False
    report_uri: str | None = None
    for name, val, quoted in directives:
        key = name.lower()
        if key.startswith("pin-"):
            if key == _PIN_DIRECTIVE:
                pins[_parse_pin(parser, val, quoted)] = None
                if len(pins) > MAX_PINS:
                    raise parser.fail(f"{len(pins)} {_PIN_DIRECTIVE} pins, more than {MAX_PINS} (MAX_PINS)")
            continue  # other algorithms: ignored (RFC 7469 §2.1.1)
        if key in seen:
            raise parser.fail(f"directive {name!r} appears twice (first as {seen[key]!r}); only pin-* may repeat")
        seen[key] = name
        if key == "max-age":
            max_age = _parse_max_age(parser, val)
        elif key == "includesubdomains":
            if val is not None:
                raise parser.fail(f"includeSubDomains takes no value, found {name}={val!r}")
            include_subdomains = True
        elif key == "report-uri":
            if val is None:
                raise parser.fail('report-uri needs a value (report-uri="<URI>")')
            if not quoted:
                raise parser.fail(f'the report-uri value {val!r} must be a quoted string (report-uri="...")')
            if len(val) > MAX_REPORT_URI_LENGTH:
                raise parser.fail(
                    f"report-uri is {len(val)} characters, longer than {MAX_REPORT_URI_LENGTH} (MAX_REPORT_URI_LENGTH)"
                )
            if not val.strip() or any(c in val for c in ' \t"<>\\^`{|}') or any(ord(c) > 0x7E for c in val):
                raise parser.fail(f"report-uri {val!r} is not a URI")
            try:
                urllib.parse.urlsplit(val)  # note_response resolves and splits it: what fails there must fail here
            except ValueError as exc:
                raise parser.fail(f"report-uri {val!r} is not a URI ({exc})") from None
            report_uri = val
        # anything else: an unknown directive, ignored
    if max_age is None and not report_only:
        raise parser.fail("max-age is missing (it is required in Public-Key-Pins)")
    if not pins and max_age is None and not include_subdomains and report_uri is None:
        # Only ignored directives (a report-only header: Public-Key-Pins needs max-age): the
        # header says nothing, and no header value could say it back.
        raise parser.fail(
            f"no {_PIN_DIRECTIVE}, max-age, includeSubDomains or report-uri directive: nothing to apply "
            "(unknown directives and pins of other algorithms are ignored)"
        )
    return HPKPHeader(tuple(pins), max_age, include_subdomains, report_uri, report_only)


# -- noting ----------------------------------------------------------------------

HeadersLike = Union[Mapping[str, Any], Iterable[tuple[str, str]], Any]


def _first_field(value: str) -> str:
    """The first header field of a value several fields were joined into with ``,``.

    RFC 7469 §2.3.1: only the first PKP (and the first PKP-RO) header field
    of a response is processed. A ``,`` cannot appear outside a quoted string
    in a single field, so the first one there is where the first field ends.
    At most ``MAX_HEADER_LENGTH + 1`` characters are looked at: a longer
    first field comes back cut there, and is refused as too long.
    """
    value = value[:MAX_HEADER_LENGTH + 1]
    in_quotes = False
    i = 0
    while i < len(value):
        c = value[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == ",":
            return value[:i]
        i += 1
    return value


def _header(headers: HeadersLike, name: str) -> str | None:
    """The first ``name`` header field in ``headers`` (httpx, urllib3, requests, a dict, or pairs)."""
    if headers is None:
        return None
    values: list[str] | None = None
    for method in ("get_list", "getlist"):  # httpx.Headers; urllib3's HTTPHeaderDict
        getter = getattr(headers, method, None)
        if callable(getter):
            try:
                values = list(getter(name))
            except TypeError:
                values = None
            if values is not None:
                break
    if values is None:
        if isinstance(headers, Mapping):
            value = headers.get(name)
            if value is None:
                lowered = name.lower()
                value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lowered), None)
            values = [] if value is None else [value]
        else:
            lowered = name.lower()
            values = [v for k, v in headers if isinstance(k, str) and k.lower() == lowered]
    for value in values:
        if isinstance(value, bytes):
            value = value[:MAX_HEADER_LENGTH + 1].decode("latin-1")
        if isinstance(value, str):
            return _first_field(value)
    return None


def _unix(now: float | _dt.datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, _dt.datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now.timestamp()
    return float(now)


def _connection_problem(name: str, pin_result: Any, pin_chain: Sequence[bytes] | None) -> str | None:
    """Why a response's connection may not note pins (None: it may)."""
    if pin_result is None:
        return "the connection's pins were not checked (not a pinned TLS connection)"
    if not getattr(pin_result, "verified", False):
        return "the connection's chain was not validated by a trust store"
    status = getattr(pin_result, "status", None)
    if status not in ("match", "not-pinned"):
        return f"the connection did not pass its pins (status {status!r})"
    checked = getattr(pin_result, "hostname", name)
    if checked != name:
        return f"the connection was checked for {checked}, not {name}"
    if not pin_chain:
        return "the connection's checked chain is not known"
    return None


def _chain_pins(chain: Sequence[bytes]) -> list[Pin]:
    core = _backend.core
    return [Pin("sha256", core.spki_sha256(der)) for der in chain]


def _report_only(
    policy: PinPolicy, name: str, header: HPKPHeader, chain: Sequence[bytes], chain_pins: list[Pin],
    report_uri: str | None,
) -> str:
    """Pin Validation of a report-only header: log (and report) a failure; never note anything."""
    if any(p in chain_pins for p in header.pins):
        log.debug("HPKP report-only pins for %s match the validated chain", name)
        return "report-only: pins valid"
    lines = [f"HPKP report-only pin validation failure for {name} (connection allowed, nothing noted):"]
    lines.append("  Validated chain:")
    lines += [f"    {i}: {p}" for i, p in enumerate(chain_pins)]
    lines.append(f"  Pins in {REPORT_ONLY_HEADER}:" + ("" if header.pins else " none"))
    lines += [f"    {p}" for p in header.pins]
    if report_uri:
        lines.append(f"  report-uri: {report_uri}")
    message = "\n".join(lines)
    _log(policy, "report-only", logging.WARNING, message)
    reporter = getattr(policy, "reporter", None)
    if reporter is not None:
        try:
            # noted=True: the report URI is the server's choice, not the operator's.
            entry = DomainEntry(
                name, header.pins, mode=REPORT_ONLY,
                include_subdomains=header.include_subdomains and _ip_literal(name) is None,
                report_uri=(report_uri,) if report_uri else (), require_backup_pin=False, noted=True,
            )
            reporter.report(
                _observe.VerificationEvent(
                    policy=policy, hostname=name, port=None, status="report-only", entry=entry,
                    validated_chain=list(chain), served_chain=None, verified=True, matches=(), blocked=(),
                    message=message, seconds=0.0,
                )
            )
        except Exception:  # a broken reporter must not break the response
            log.exception("pin violation reporter failed (HPKP report-only)")
    return "report-only: pin validation failed (warning logged)"


def _absolute_report_uri(uri: str | None, url: str | None) -> str | None:
    """``report-uri`` resolved against the request URL; None unless it ends up an http(s) URL.

    Raises ValueError when the resolved URI is longer than MAX_REPORT_URI_LENGTH.
    """
    if not uri:
        return None
    if url:
        uri = urllib.parse.urljoin(url, uri)
    if len(uri) > MAX_REPORT_URI_LENGTH:
        raise ValueError(
            f"report-uri resolved against the request URL is longer than {MAX_REPORT_URI_LENGTH} characters "
            "(MAX_REPORT_URI_LENGTH)"
        )
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    return uri if scheme in ("http", "https") and urllib.parse.urlsplit(uri).netloc else None


def note_response(
    policy: PinPolicy,
    hostname: str,
    headers: HeadersLike,
    *,
    pin_result: Any,
    pin_chain: Sequence[bytes] | None,
    now: float | _dt.datetime | None = None,
    url: str | None = None,
) -> str:
    """Apply the HPKP headers of a response from ``hostname`` to ``policy.store``; say what happened.

    ``headers`` are the response's headers (httpx ``Headers``, urllib3
    ``HTTPHeaderDict``, a requests ``CaseInsensitiveDict``, a dict or
    ``(name, value)`` pairs); only the first ``Public-Key-Pins`` field counts,
    and the first ``-Report-Only`` one. ``pin_result`` and ``pin_chain`` come
    from the pinned socket or SSLObject the response arrived on (its
    ``pin_result`` / ``pin_chain``). ``now`` (unix time or an aware datetime;
    default the current time) is when the header was received; ``url`` (the
    request URL) resolves a relative ``report-uri``.

    Does nothing unless ``policy.hpkp`` is on. A host is noted (RFC 7469
    §2.5) only when: it is a name, not an IP address; no policy entry covers
    it (static and trust-on-first-use entries are never overridden by a
    header); the connection's chain was validated and passed its pins
    (``pin_result.verified`` and status ``match`` or ``not-pinned``); the
    header is well-formed and within the bounds (``MAX_HEADER_LENGTH``,
    ``MAX_PINS``, ``MAX_REPORT_URI_LENGTH``); at least one of its pins
    matches a key of ``pin_chain``; at least one matches none (the backup
    pin); and, for a host not noted yet, the caps on noted hosts leave room
    (``PinStore.note_hpkp``). The store then gets a ``PinRecord`` with
    ``source="hpkp"`` living ``max-age`` seconds (at most ``MAX_AGE_CAP``),
    replacing an earlier HPKP record but never a record of another source.
    ``max-age=0`` removes the host's HPKP record. A report-only header is
    never noted: a chain that fails its pins is logged as a warning (and
    given to ``policy.reporter``, if set, as an entry with ``noted=True``:
    its report URI is the server's choice).

    Never raises for what a server sent or for a store failure (that is
    logged and counted); returns ``"noted"``, ``"removed"``, ``"hpkp off"``,
    ``"ignored: <why>"``, or the report-only outcome (``"report-only: ..."``,
    after ``"; "`` when both headers came).
    """
    if not getattr(policy, "hpkp", False):
        return "hpkp off"
    pkp = _header(headers, HEADER)
    pkp_ro = _header(headers, REPORT_ONLY_HEADER)
    if pkp is None and pkp_ro is None:
        return "ignored: no Public-Key-Pins header"

    try:
        name = normalize_hostname(hostname)
    except ValueError as exc:
        return _ignored(policy, hostname, f"bad host name: {exc}")
    problem = _connection_problem(name, pin_result, pin_chain)
    if problem is not None:
        return _ignored(policy, name, problem)
    assert pin_chain is not None
    try:
        chain_pins = _chain_pins(pin_chain)
    except CertificateParseError as exc:
        return _ignored(policy, name, f"the checked chain does not parse: {exc}")

    outcomes: list[str] = []
    if pkp is not None:
        if _ip_literal(name) is not None:
            outcomes.append(_ignored(policy, name, "an IP address is never noted (RFC 7469 §2.5)"))
        else:
            outcomes.append(_note(policy, name, pkp, chain_pins, _unix(now), url))
    if pkp_ro is not None:
        try:
            header = parse_header(pkp_ro, report_only=True)
            report_uri = _absolute_report_uri(header.report_uri, url)
        except (HPKPError, ValueError) as exc:
            outcomes.append(_refused(policy, name, str(exc)))
        else:
            outcomes.append(_report_only(policy, name, header, pin_chain, chain_pins, report_uri))
    return "; ".join(outcomes)


def _store_failed(policy: PinPolicy, name: str, exc: BaseException) -> None:
    """Count and log a store failure (``pinengine._observe.store_error``); never raise."""
    report = getattr(_observe, "store_error", None)
    try:
        if report is not None:
            report(policy, name, None, exc)
            return
    except Exception:  # counting must not break the response
        pass
    log.error("pin store error for %s: %s", name, exc)


# Per policy, one throttle per kind of log line a server can trigger on every response.
_THROTTLES: weakref.WeakKeyDictionary[PinPolicy, dict[str, _LogThrottle]] = weakref.WeakKeyDictionary()


def _log(policy: PinPolicy, kind: str, level: int, message: str) -> None:
    """Log ``message`` unless a line of this ``kind`` was logged for ``policy`` in the last ten seconds."""
    if not log.isEnabledFor(level):
        return
    try:
        throttles = _THROTTLES.setdefault(policy, {})
    except TypeError:  # not weak-referenceable: no throttling
        throttles = {}
    throttle = throttles.get(kind)
    if throttle is None:
        throttle = throttles.setdefault(kind, _LogThrottle())
    held = throttle.ready()
    if held is None:
        return
    if held:
        message += f"\n  ({held} similar messages held back since the last one)"
    log.log(level, "%s", message)


def _ignored(policy: PinPolicy, name: str, why: str, level: int = logging.INFO) -> str:
    _log(policy, "ignored", level, f"HPKP header from {name} ignored: {why}")
    return f"ignored: {why}"


def _refused(policy: PinPolicy, name: str, why: str) -> str:
    """A header refused as malformed or over a bound: counted, logged (rate-limited)."""
    count_event("hpkp_headers_refused")
    _log(policy, "refused", logging.WARNING, f"HPKP header from {name} refused: {why}")
    return f"ignored: {why}"


def _note(policy: PinPolicy, name: str, value: str, chain_pins: list[Pin], at: float, url: str | None) -> str:
    """The Public-Key-Pins part of note_response (connection checks already passed)."""
    entry = policy.entry_for(name)
    if entry is not None:
        return _ignored(
            policy, name, f"{name} is covered by the policy entry {entry.host!r}; headers never change it",
            logging.DEBUG,
        )
    try:
        header = parse_header(value)
        report_uri = _absolute_report_uri(header.report_uri, url)
    except (HPKPError, ValueError) as exc:
        return _refused(policy, name, str(exc))
    assert header.max_age is not None

    if header.max_age == 0:
        removed = [False]

        def remove(current: PinRecord | None) -> PinRecord | None:
            removed[0] = current is not None and current.source == "hpkp"
            return None if removed[0] else current

        try:
            policy.store.update(name, remove, now=at)
        except StoreError as exc:
            _store_failed(policy, name, exc)
            return _ignored(policy, name, f"the pin store cannot be used: {exc}")
        if not removed[0]:
            policy.forget_cached(name)
            return _ignored(policy, name, f"max-age=0 but {name} has no HPKP pins noted")
        policy._noted_changed(name, None)
        _log(policy, "noted", logging.INFO, f"HPKP: {name} is no longer a known pinned host (max-age=0)")
        return "removed"

    if not any(p in chain_pins for p in header.pins):
        return _ignored(policy, name, "no pin of the header matches a key of the validated chain")
    if all(p in chain_pins for p in header.pins):
        return _ignored(
            policy, name, "no backup pin: every pin of the header matches a key of the chain (RFC 7469 §2.5)"
        )

    ttl = min(header.max_age, MAX_AGE_CAP)
    record = PinRecord.create(
        name, header.pins, source="hpkp", now=at, ttl=ttl,
        include_subdomains=header.include_subdomains, report_uri=report_uri,
    )
    try:
        current = policy.store.get(name, now=at)
    except StoreError as exc:
        _store_failed(policy, name, exc)
        return _ignored(policy, name, f"the pin store cannot be used: {exc}")
    if _same(current, record, ttl):
        # Every response repeats the header: no write unless something changed
        # or the expiry moves on enough (see _REFRESH_SECONDS).
        log.debug("HPKP: %s already noted with these pins", name)
        return "noted"
    max_hosts = policy.hpkp_max_hosts or MAX_NOTED_HOSTS
    per_domain = policy.hpkp_max_hosts_per_domain or MAX_NOTED_PER_DOMAIN
    try:
        outcome, stored = policy.store.note_hpkp(
            record, max_hosts=max_hosts, max_hosts_per_domain=per_domain, now=at
        )
    except StoreError as exc:
        _store_failed(policy, name, exc)
        return _ignored(policy, name, f"the pin store cannot be used: {exc}")
    if outcome == OTHER_SOURCE:
        source = stored.source if stored is not None else "?"
        return _ignored(
            policy, name, f"the store holds a record of source {source!r} for {name}; an HPKP header does not replace it"
        )
    if outcome in (DOMAIN_FULL, STORE_FULL):
        if outcome == DOMAIN_FULL:
            why = (f"{noted_domain(name)} already has {per_domain} hosts noted "
                   "(hpkp_max_hosts_per_domain; the hosts noted before stay noted)")
        else:
            why = f"the pin store already holds {max_hosts} noted hosts (hpkp_max_hosts; they stay noted)"
        count_event("hpkp_notes_refused")
        _log(policy, "cap", logging.WARNING, f"HPKP: {name} not noted: {why}")
        return f"ignored: {name} not noted: {why}"
    policy._noted_changed(name, stored)
    _log(
        policy, "noted", logging.INFO,
        f"HPKP: noted {name}{' and its subdomains' if header.include_subdomains else ''} for {ttl} s "
        f"with {len(header.pins)} pins",
    )
    return "noted"


def _same(current: PinRecord | None, new: PinRecord, ttl: float) -> bool:
    """Whether ``current`` is an HPKP record saying what ``new`` says, refreshed recently enough."""
    return (
        current is not None
        and current.source == "hpkp"
        and current.pins == new.pins
        and current.include_subdomains == new.include_subdomains
        and current.report_uri == new.report_uri
        and current.expires_at is not None
        and new.expires_at is not None
        and 0 <= new.expires_at - current.expires_at < max(_REFRESH_SECONDS, ttl * _REFRESH_FRACTION)
    )


def _pin_state(obj: Any) -> tuple[Any, list[bytes] | None] | None:
    """``(pin_result, pin_chain)`` of a pinned socket or SSLObject, looking through wrappers; None if none."""
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        result = getattr(item, "pin_result", None)
        if result is not None:
            return result, getattr(item, "pin_chain", None)
        # _ssl._SSLSocket.owner is the SSLSocket (httpcore's sync stream hands
        # out the inner object); urllib3's SSLTransport keeps its SSLObject in
        # .sslobj (TLS in TLS through an HTTPS proxy).
        for attr in ("owner", "sslobj", "_sslobj", "sock", "_sock"):
            try:
                todo.append(getattr(item, attr, None))
            except Exception:  # a property of a closed object may raise
                pass
    return None
