"""The ``Public-Key-Pins`` header grammar (RFC 7469 §2.1): ``parse_header`` and ``HPKPHeader``.

A server chooses every byte of a header: a value longer than
``MAX_HEADER_LENGTH`` is refused unread, and the parse is linear.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from dataclasses import dataclass

from .._errors import HPKPError
from .._errors import quoted as _quoted
from ..pins import Pin

__all__ = [
    "HEADER",
    "MAX_HEADER_LENGTH",
    "MAX_PINS",
    "MAX_REPORT_URI_LENGTH",
    "REPORT_ONLY_HEADER",
    "HPKPError",
    "HPKPHeader",
    "parse_header",
]

#: The header names (compared case-insensitively).
HEADER = "Public-Key-Pins"
REPORT_ONLY_HEADER = "Public-Key-Pins-Report-Only"

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
                    raise self.fail(f"character {_quoted(nxt)} cannot be escaped in a quoted string (position {self.i + 1})")
                out.append(nxt)
                self.i += 2
                continue
            if not _qdtext(c):
                raise self.fail(f"character {_quoted(c)} is not allowed in a quoted string (position {self.i})")
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
                            raise self.fail(f"directive {_quoted(name)} has '=' but no value (position {where})")
                        raise self.fail(self._unexpected(f"the value of {_quoted(name)} (a token or a quoted string)"))
            self.skip_ows()
            if not self.at_end():
                if self.peek() != ";":
                    raise self.fail(self._unexpected(f"';' after directive {_quoted(name)}"))
                self.i += 1
            found.append((name, value, quoted))

    def _unexpected(self, wanted: str) -> str:
        c = self.peek()
        hint = ""
        if c == ",":
            hint = " (a ',' outside quotes: several header fields joined into one? only the first counts)"
        elif c == "=":
            hint = " (a directive name must come before '=')"
        return f"expected {wanted} at position {self.i}, found {_quoted(c)}{hint}"


def _parse_max_age(parser: _Parser, value: str | None) -> int:
    if value is None:
        raise parser.fail("max-age needs a value (max-age=<seconds>)")
    if not value.isascii() or not value.isdigit():
        if value.startswith("-") and value[1:].isdigit():
            raise parser.fail(f"max-age {_quoted(value)} is negative; it is a number of seconds >= 0")
        raise parser.fail(f"max-age {_quoted(value)} is not a number of seconds (digits only)")
    digits = value.lstrip("0") or "0"
    if len(digits) > 10:  # certainly > 2**31; avoid converting absurdly long numbers
        return _DELTA_SECONDS_MAX
    return min(int(digits), _DELTA_SECONDS_MAX)


def _parse_pin(parser: _Parser, value: str | None, quoted: bool) -> Pin:
    if value is None:
        raise parser.fail(f'{_PIN_DIRECTIVE} needs a value ({_PIN_DIRECTIVE}="<base64>")')
    if not quoted:
        raise parser.fail(f'the {_PIN_DIRECTIVE} value {_quoted(value)} must be a quoted string ({_PIN_DIRECTIVE}="...")')
    if not value:
        raise parser.fail(f"{_PIN_DIRECTIVE} is empty")
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        why = "URL-safe alphabet; use standard base64 with + and /" if ("-" in value or "_" in value) else (
            f"length {len(value)} is not a multiple of 4" if len(value) % 4 else "characters outside base64"
        )
        raise parser.fail(f"{_PIN_DIRECTIVE} {_quoted(value)} is not valid base64 ({why})") from None
    if len(digest) != 32:
        raise parser.fail(
            f"{_PIN_DIRECTIVE} {_quoted(value)} is {len(digest)} bytes, not a SHA-256 digest (32 bytes, {_SHA256_B64_LEN} "
            "base64 characters)"
        )
    if base64.b64encode(digest).decode("ascii") != value:
        raise parser.fail(f"{_PIN_DIRECTIVE} {_quoted(value)} is not canonical base64 (stray bits before the padding)")
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
            raise parser.fail(f"directive {_quoted(name)} appears twice (first as {_quoted(seen[key])}); only pin-* may repeat")
        seen[key] = name
        if key == "max-age":
            max_age = _parse_max_age(parser, val)
        elif key == "includesubdomains":
            if val is not None:
                raise parser.fail(f"includeSubDomains takes no value, found {name}={_quoted(val)}")
            include_subdomains = True
        elif key == "report-uri":
            if val is None:
                raise parser.fail('report-uri needs a value (report-uri="<URI>")')
            if not quoted:
                raise parser.fail(f'the report-uri value {_quoted(val)} must be a quoted string (report-uri="...")')
            if len(val) > MAX_REPORT_URI_LENGTH:
                raise parser.fail(
                    f"report-uri is {len(val)} characters, longer than {MAX_REPORT_URI_LENGTH} (MAX_REPORT_URI_LENGTH)"
                )
            if not val.strip() or any(c in val for c in ' \t"<>\\^`{|}') or any(ord(c) > 0x7E for c in val):
                raise parser.fail(f"report-uri {_quoted(val)} is not a URI")
            try:
                urllib.parse.urlsplit(val)  # note_response resolves and splits it: what fails there must fail here
            except ValueError as exc:
                raise parser.fail(f"report-uri {_quoted(val)} is not a URI ({exc})") from None
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
