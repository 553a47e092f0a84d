"""Host names and IP literals in the forms clients send them: what every pin lookup is keyed by.

Pins are looked up by the name a client connected with, and clients do not
agree on how a name is written on the wire:

- Non-ASCII names. urllib3 (and requests, which parses URLs with it) encodes
  with IDNA 2008 label by label after ``str.lower()``; httpx with IDNA 2008
  after lowering the whole name; aiohttp (yarl) with UTS #46 (non-transitional)
  and, when IDNA 2008 refuses the name, with IDNA 2003; the ``ssl`` module
  turns every ``server_hostname`` into IDNA 2003, so http.client, urllib and
  asyncio connect to the IDNA 2003 form. For the deviation characters (ß, ς,
  ZWJ, ZWNJ) the two standards give different names: ``straße.test`` is
  ``xn--strae-oqa.test`` for IDNA 2008 and ``strasse.test`` for IDNA 2003.
- IPv4 literals. OpenSSL decides whether ``server_hostname`` is an address
  (and then checks the certificate's IP SAN instead of a DNS name) by reading
  four decimal parts with ``sscanf``; the socket connects to what
  ``inet_aton`` reads: one to four parts, octal (leading 0) and hex (0x).
  ``127.1``, ``0x7f.0.0.1`` and ``2130706433`` are all 127.0.0.1 for the
  socket; ``0177.0.0.1`` is 177.0.0.1 for OpenSSL and 127.0.0.1 for the socket.

``spellings`` gives every form a name is sent in, ``normalize_hostname`` the
canonical one; ``entry_spellings`` the forms a policy entry written as a
canonical name must be registered under. Where readings of an IPv4 literal
differ the name is refused (HostnameError naming each reading).

This module imports nothing from pinengine but ``_errors`` (it is the bottom
of the import graph), and imports ``idna`` only when a name is not ASCII.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import ssl
from typing import Any, Callable, NamedTuple

from ._errors import HostnameError

__all__ = [
    "MAX_HOSTNAME_INPUT",
    "Spelling",
    "entry_spellings",
    "ip_literal",
    "is_ip_name",
    "normalize_hostname",
    "spellings",
    "to_unicode",
]

#: A host name is at most 253 octets as sent (RFC 1035, in A-label form).
MAX_HOSTNAME_LENGTH = 253
#: A label is at most 63 octets (RFC 1035).
MAX_LABEL_LENGTH = 63
#: What a caller may pass: about four times the longest name. A name written
#: in Unicode can be longer than what is sent (full-width forms, characters
#: UTS #46 and IDNA 2003 map to nothing, an IPv6 zone), but not legitimately
#: by that much; anything longer is refused before any parsing, so every
#: parser below (and idna's) runs on at most this many characters.
MAX_HOSTNAME_INPUT = 1024
#: An IPv6 zone id is an interface name or index (IFNAMSIZ is 16 on Linux).
MAX_ZONE_LENGTH = 64
#: Names kept in each cache: gateways see the same few names over and over.
CACHE_SIZE = 4096

# -- who sends which spelling ----------------------------------------------------------


class Spelling(NamedTuple):
    """One form a host name is sent in: the normalised name, the encodings that give it, the clients using them."""

    name: str
    standards: tuple[str, ...] = ()
    clients: tuple[str, ...] = ("every client",)

    @property
    def senders(self) -> str:
        """Who sends this form, for messages: ``"IDNA 2003 (http.client, urllib, asyncio, ...)"``."""
        clients = ", ".join(self.clients)
        return f"{' / '.join(self.standards)} ({clients})" if self.standards else clients


def _quote(host: str) -> str:
    """``host`` for an error message: quoted, and cut short when long."""
    return repr(host) if len(host) <= 80 else repr(host[:60]) + f"... ({len(host)} characters)"


# -- IPv4: the two readings --------------------------------------------------------------

_C_SPACE = frozenset(" \t\n\v\f\r")
_DIGITS = frozenset("0123456789")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_OCTAL_DIGITS = frozenset("01234567")
# A C int holds 10 decimal digits at most; sscanf's result past that depends on the C library.
_INT_DIGITS = 10


def _openssl_checks_trailing() -> bool:
    # OpenSSL 3 refuses an IPv4 literal followed by anything but white space;
    # 1.1.1 and LibreSSL read the first four numbers of ``1.2.3.4.example``
    # and ignore the rest. Unknown libraries get the permissive reading.
    return ssl.OPENSSL_VERSION.startswith("OpenSSL ") and ssl.OPENSSL_VERSION_INFO >= (3, 0, 0, 0, 0)


_OPENSSL_CHECKS_TRAILING = _openssl_checks_trailing()


_PERMISSIVE: bool | None = None


def _ssl_reads_ipv4_permissively() -> bool:
    """Whether this Python's ``ssl`` reads ``127.000.000.001`` as an IP address (sends no SNI for it).

    OpenSSL 3.0 (``a2i_IPADDRESS``, ``sscanf("%d.%d.%d.%d")``) does; the ssl
    module of CPython 3.13 on OpenSSL 3.5 reads only plain dotted decimal.
    Asked of the linked library itself, once, in memory: a client
    handshake's first flight carries the name as SNI exactly when it was not
    read as an address.
    """
    global _PERMISSIVE
    if _PERMISSIVE is None:
        probe = "127.000.000.001"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        outgoing = ssl.MemoryBIO()
        conn = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=probe)
        try:
            conn.do_handshake()
        except ssl.SSLWantReadError:
            pass
        _PERMISSIVE = probe.encode("ascii") not in outgoing.read()
    return _PERMISSIVE


def _strict_ipv4(text: str) -> str | None:
    """Plain dotted decimal: four numbers 0-255, no leading zeros, signs or spaces (else None)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    for part in parts:
        if not part or len(part) > 3 or any(c not in _DIGITS for c in part) or (part[0] == "0" and part != "0"):
            return None
        if int(part) > 255:
            return None
    return text


def _openssl_ipv4(text: str) -> tuple[str | None, bool]:
    """How the ssl module reads ``text`` (without ':') as an address: ``(address or None, unsure)``.

    Where it reads only plain dotted decimal (see ``_ssl_reads_ipv4_permissively``)
    that is the answer; otherwise it is OpenSSL's ``a2i_IPADDRESS``, as follows.

    It runs ``sscanf(text, "%d.%d.%d.%d")``: white space before each number,
    an optional sign, decimal digits (leading zeros are decimal), each result
    0-255. ``unsure`` is True when a number overflows a C int: what sscanf
    makes of it depends on the C library (glibc wraps 4294967423 to 127).
    Linear in ``len(text)``.
    """
    if not _ssl_reads_ipv4_permissively():
        return _strict_ipv4(text), False
    i, n = 0, len(text)
    parts: list[int] = []
    unsure = False
    for k in range(4):
        if k:
            if i >= n or text[i] != ".":
                return None, False
            i += 1
        while i < n and text[i] in _C_SPACE:
            i += 1
        negative = i < n and text[i] == "-"
        if i < n and text[i] in "+-":
            i += 1
        start = i
        while i < n and text[i] in _DIGITS:
            i += 1
        if i == start:
            return None, False
        digits = text[start:i].lstrip("0")
        if len(digits) > _INT_DIGITS or (digits and int(digits) > 2**31 - 1):
            unsure = True
            continue
        value = int(digits or "0")
        parts.append(-value if negative else value)
    rest = text[i:]
    if rest and _OPENSSL_CHECKS_TRAILING and rest[0] not in _C_SPACE:
        return None, False
    if unsure:
        return None, True
    if any(not 0 <= p <= 255 for p in parts):
        return None, False
    return ".".join(str(p) for p in parts), False


def _aton_part(part: str) -> int | None:
    """One part of an ``inet_aton`` address: decimal, octal (leading 0) or hex (0x); None if it is none."""
    if part[:2] in ("0x", "0X"):
        digits, base, allowed = part[2:], 16, _HEX_DIGITS
    elif part[:1] == "0":
        digits, base, allowed = part[1:], 8, _OCTAL_DIGITS
    else:
        digits, base, allowed = part, 10, _DIGITS
    if not (digits or base == 8) or not all(c in allowed for c in digits):
        return None
    digits = digits.lstrip("0")
    if len(digits) > 11:  # more than 32 bits in any base: no address
        return None
    return int(digits or "0", base)


def _inet_aton(text: str) -> str | None:
    """The IPv4 address the socket connects to for ``text``, as glibc's getaddrinfo reads it (exactly).

    ``a``, ``a.b``, ``a.b.c`` or ``a.b.c.d``: each part decimal, octal or hex;
    every part but the last one byte, the last fills the remaining bytes.
    Nothing may follow (unlike the platform's ``inet_aton``, which ignores
    anything after white space). Linear in ``len(text)``.
    """
    pieces = text.split(".")
    if not 1 <= len(pieces) <= 4:
        return None
    values: list[int] = []
    for piece in pieces:
        value = _aton_part(piece)
        if value is None:
            return None
        values.append(value)
    *head, last = values
    if any(v > 255 for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    address = last
    for i, v in enumerate(head):
        address |= v << (8 * (3 - i))
    return str(ipaddress.IPv4Address(address))


def _ends_in_a_number(name: str) -> bool:
    """Whether the last label is a number to an IPv4 parser (digits, or 0x and hex digits)."""
    last = name.rpartition(".")[2]
    if last[:2] == "0x":
        return all(c in _HEX_DIGITS for c in last[2:])
    return bool(last) and all(c in _DIGITS for c in last)


def _ipv4(host: str, text: str, name: str) -> str | None:
    """The address ``name`` (``text`` without its trailing dot) denotes, None for a host name.

    Raises HostnameError when OpenSSL and the socket read it differently, or
    when it looks like a number but is no address either of them reads.
    """
    socket_reads = _inet_aton(name)
    openssl_reads, unsure = _openssl_ipv4(text)
    if unsure:
        raise HostnameError(
            f"host name {_quote(host)}: OpenSSL reads it as an IPv4 address with a number that overflows "
            "(the C library decides which address); write the address in dotted decimal"
        )
    if openssl_reads is not None and openssl_reads != socket_reads:
        if socket_reads is None:
            raise HostnameError(
                f"host name {_quote(host)}: OpenSSL reads it as the IP address {openssl_reads} (and checks the "
                "certificate for that address) but the socket does not (it would look the name up in DNS); "
                "write the address in dotted decimal"
            )
        raise HostnameError(
            f"host name {_quote(host)}: OpenSSL reads it as the IP address {openssl_reads} (the certificate is "
            f"checked for that address) but the socket connects to {socket_reads} (inet_aton reads a leading 0 "
            "as octal); write the address in dotted decimal"
        )
    if socket_reads is not None:
        # Where OpenSSL reads a DNS name instead (127.1, 0x7f.0.0.1), the pins
        # of the address the socket connects to still apply.
        return socket_reads
    if _ends_in_a_number(name):
        raise HostnameError(
            f"host name {_quote(host)} ends in a number but is not an IPv4 address (no top-level domain is "
            "numeric, and some resolvers read such names as addresses)"
        )
    return None


# -- IPv6 -------------------------------------------------------------------------------

_ZONE = re.compile(r"[A-Za-z0-9._~-]+")


def _ipv6(host: str, text: str) -> str:
    """The compressed form of an IPv6 literal (brackets and zone id dropped; IPv4-mapped as IPv4)."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    address, percent, zone = inner.partition("%")
    if percent and (len(zone) > MAX_ZONE_LENGTH or not _ZONE.fullmatch(zone)):
        raise HostnameError(f"host name {_quote(host)}: the IPv6 zone id {zone!r} is empty or not an interface name")
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError as exc:
        raise HostnameError(f"host name {_quote(host)} has a ':' but is not an IPv6 address: {exc}") from None
    # ::ffff:a.b.c.d reaches the IPv4 host a.b.c.d: its entry applies.
    mapped = ip.ipv4_mapped
    return str(mapped) if mapped is not None else ip.compressed


# -- ASCII names ------------------------------------------------------------------------

# Plain names that cannot be IP literals for either parser: the first label
# starts with a letter or '_' (so no sscanf number), the last does not start
# with a digit (so no inet_aton number).
_FAST = re.compile(r"[a-z_][a-z0-9_-]{0,62}(?:\.[a-z0-9_-]{1,63})*")
_LABEL = re.compile(r"[a-z0-9_*-]+")


def _ascii(host: str, text: str) -> str:
    """The normalised form of an ASCII name or IP literal ``text`` (``host`` as given, for messages)."""
    lowered = text.lower()
    name = lowered[:-1] if lowered.endswith(".") else lowered
    if (
        len(name) <= MAX_HOSTNAME_LENGTH
        and _FAST.fullmatch(name)
        and not name.rpartition(".")[2][:1].isdigit()
    ):
        return name
    if ":" in name:
        return _ipv6(host, lowered)
    address = _ipv4(host, lowered, name)
    if address is not None:
        return address
    if not name:
        raise HostnameError(f"invalid host name {_quote(host)}: empty")
    for label in name.split("."):
        if not label:
            raise HostnameError(f"invalid host name {_quote(host)}: empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise HostnameError(f"invalid host name {_quote(host)}: label longer than {MAX_LABEL_LENGTH} characters")
        if not _LABEL.fullmatch(label):
            raise HostnameError(f"invalid host name {_quote(host)}: character not allowed in {label!r}")
    if len(name) > MAX_HOSTNAME_LENGTH:
        raise HostnameError(f"invalid host name {_quote(host)}: longer than {MAX_HOSTNAME_LENGTH} characters")
    return name


# -- non-ASCII names: each client's encoding ---------------------------------------------


def _idna() -> Any:
    try:
        import idna
    except ImportError:  # pragma: no cover - idna is a dependency
        raise HostnameError("non-ASCII host names need the 'idna' package (pip install idna)") from None
    return idna


def _uts46(text: str) -> str:
    return str(_idna().encode(text, uts46=True).decode("ascii"))


def _idna2008_labels(text: str) -> str:
    idna = _idna()
    return ".".join(
        label.lower() if label.isascii() else idna.encode(label.lower(), strict=True, std3_rules=True).decode("ascii")
        for label in text.split(".")
    )


def _idna2008(text: str) -> str:
    return str(_idna().encode(text.lower()).decode("ascii"))


def _idna2003(text: str) -> str:
    return text.encode("idna").decode("ascii")


# (standard, clients, encoding), in order of preference for the canonical
# form: UTS #46 is the standard the others approximate. The ssl module (so
# http.client, urllib, asyncio) encodes every server_hostname with IDNA 2003.
_ENCODERS: tuple[tuple[str, tuple[str, ...], Callable[[str], str]], ...] = (
    ("UTS #46", ("aiohttp",), _uts46),
    ("IDNA 2008", ("urllib3", "requests"), _idna2008_labels),
    ("IDNA 2008", ("httpx",), _idna2008),
    ("IDNA 2003", ("http.client", "urllib", "asyncio", "aiohttp's fallback"), _idna2003),
)


def _check_length(host: str) -> None:
    if len(host) > MAX_HOSTNAME_INPUT:
        raise HostnameError(f"invalid host name {_quote(host)}: longer than {MAX_HOSTNAME_INPUT} characters")


@functools.lru_cache(maxsize=CACHE_SIZE)
def _spellings(host: str) -> tuple[Spelling, ...]:
    # Cached: a ValueError is not, and is raised again each time.
    _check_length(host)
    text = host.strip()
    if text.isascii():
        return (Spelling(_ascii(host, text)),)
    found: dict[str, tuple[list[str], list[str]]] = {}
    errors: list[str] = []
    for standard, clients, encode in _ENCODERS:
        try:
            sent = encode(text)
        except ValueError as exc:  # idna.IDNAError and the codec's UnicodeError
            errors.append(f"{standard} ({', '.join(clients)}): {exc}")
            continue
        if len(sent.rstrip(".")) > MAX_HOSTNAME_LENGTH:
            # No client connects with it: OpenSSL refuses an SNI name this long.
            errors.append(f"{standard} ({', '.join(clients)}): longer than {MAX_HOSTNAME_LENGTH} characters")
            continue
        try:
            name = _ascii(host, sent)
        except HostnameError as exc:
            # A client would send it: fail closed for the whole name.
            raise HostnameError(f"{exc} (the {standard} form {_quote(sent)}, sent by {', '.join(clients)})") from None
        standards, senders = found.setdefault(name, ([], []))
        if standard not in standards:
            standards.append(standard)
        senders.extend(clients)
    if not found:
        raise HostnameError(f"invalid host name {_quote(host)}: no client can encode it ({'; '.join(errors)})")
    return tuple(Spelling(name, tuple(standards), tuple(clients)) for name, (standards, clients) in found.items())


def spellings(host: str) -> tuple[Spelling, ...]:
    """Every form clients send ``host`` in, normalised; the canonical form first.

    One form for an ASCII name or IP literal; for a non-ASCII name, one per
    distinct result of the encodings clients use (UTS #46, IDNA 2008 label by
    label, IDNA 2008, IDNA 2003). Raises HostnameError (a ValueError) for
    something that is not a host name, an IPv4 literal OpenSSL and the socket
    read as different addresses, or a name some client would send in a form
    that is not a host name.
    """
    if not isinstance(host, str):
        raise TypeError(f"host name must be str, not {type(host).__name__}")
    return _spellings(host)


def normalize_hostname(host: str) -> str:
    """The form host names are compared in: lower case, no trailing dot, IDNA A-labels.

    Non-ASCII names are encoded as UTS #46 (non-transitional) does, so
    ``straße.example`` is ``xn--strae-oqa.example``; when IDNA 2008 refuses a
    name, as IDNA 2003 does. IP literals come back as the address they denote:
    IPv6 compressed (``[::0001]`` is ``::1``, an IPv4-mapped address is the
    IPv4 address, a zone id is dropped), IPv4 in dotted decimal (``127.1`` and
    ``0x7f.0.0.1`` are ``127.0.0.1``). Raises HostnameError (a ValueError) for
    something that is not a host name, or an IPv4 literal OpenSSL and the
    socket read as different addresses (``0177.0.0.1``).
    """
    return spellings(host)[0].name


def is_ip_name(name: str) -> bool:
    """Whether a normalised name is an IP address (a host name's last label is never a number)."""
    return ":" in name or _ends_in_a_number(name)


def ip_literal(host: str) -> str | None:
    """The normalised address if ``host`` is an IP literal in any spelling clients accept, else None."""
    try:
        name = normalize_hostname(host)
    except ValueError:
        return None
    return name if is_ip_name(name) else None


# -- what a policy entry covers ----------------------------------------------------------


def _decode_label(label: str) -> str:
    """The U-label of an A-label (IDNA 2008, else IDNA 2003), or the label itself."""
    if not label.startswith("xn--"):
        return label
    try:
        return str(_idna().decode(label))
    except ValueError:
        pass
    try:
        return label.encode("ascii").decode("idna")
    except ValueError:
        return label


def to_unicode(name: str) -> str:
    """A normalised name with its A-labels decoded, for people to read (the name itself if none decode)."""
    if "xn--" not in name:
        return name
    return ".".join(_decode_label(label) for label in name.split("."))


@functools.lru_cache(maxsize=CACHE_SIZE)
def entry_spellings(name: str) -> tuple[Spelling, ...]:
    """The forms a policy entry for the normalised ``name`` covers: ``name`` first, then every other
    form a client sends for the Unicode name it stands for.

    ``xn--strae-oqa.test`` (``straße.test``) covers ``strasse.test`` too: the
    IDNA 2003 form the ssl module and http.client send for ``straße.test``.
    """
    unicode = to_unicode(name)
    if unicode == name:
        return (Spelling(name),)
    try:
        forms = spellings(unicode)
    except HostnameError:
        return (Spelling(name),)
    own = [s for s in forms if s.name == name]
    first = own[0] if own else Spelling(name)
    return (first, *(s for s in forms if s.name != name))
