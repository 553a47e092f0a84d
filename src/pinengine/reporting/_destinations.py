"""Where a report may go: report URIs parsed into destinations, and the checks on server-chosen ones.

A report URI the operator wrote (``HTTPSink(uris)``, a policy entry's
``report_uri``) may be any http(s) URL. One a server chose (HPKP
``report-uri``) is hostile: only a short https URL of a public DNS name or
address is used, and every address its name resolves to is checked again at
send time (``check_addresses``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MAX_REPORT_URI_LENGTH",
    "MAX_SERVER_REPORT_URIS",
    "Target",
    "address_problem",
    "check_addresses",
    "ip",
    "parse_target",
    "shown",
]

#: The longest server-chosen report URI that is used, in characters. 2,048 is
#: the usual practical URL limit of browsers and servers; a collector's URL
#: needs far less, and the bound keeps parsing, logs and the per-destination
#: table small.
MAX_REPORT_URI_LENGTH = 2048
#: Server-chosen report URIs taken from one report. HPKP gives one; the bound
#: keeps an entry built in code from fanning one violation out without limit.
MAX_SERVER_REPORT_URIS = 4

# A URI quoted in a log line is cut to this many characters (it may be hostile).
_LOGGED_URI_LENGTH = 200

_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A last label that is a number makes a name an IPv4 address in another
# spelling, the way URL parsers and inet_aton read it (127.1, 0x7f000001).
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class _Refused(Exception):
    """A report URI that may not be used; the message says why (after the URI)."""


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address (None: it is not one)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a server-chosen report may not go to ``ip`` (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        # Forms that carry an IPv4 address: judged by the address they carry.
        embedded, form = ip.ipv4_mapped, "IPv4-mapped"
        if embedded is None and ip in _NAT64:
            embedded, form = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
        if embedded is None and ip.sixtofour is not None:
            embedded, form = ip.sixtofour, "6to4"
        if embedded is not None:
            problem = address_problem(embedded)
            return None if problem is None else f"{problem} ({form} {embedded})"
        if ip.is_site_local:
            return "a site-local address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class Target:
    """A report URI, parsed: where to connect and what to ask for."""

    uri: str
    server: bool  # server-chosen (not the operator's)
    scheme: str
    host: str  # what is resolved, and the TLS server name
    port: int
    request_target: str
    host_header: str

    @property
    def key(self) -> tuple[bool, str, str, int]:
        """The destination: at most one attempt in flight per key."""
        return (self.server, self.scheme, self.host, self.port)


def parse_target(uri: str, *, server: bool) -> Target:
    """Parse a report URI; raise ``_Refused`` when it may not be used (server-chosen ones are held stricter)."""
    if not isinstance(uri, str):
        raise _Refused("is not a string")
    if server and len(uri) > MAX_REPORT_URI_LENGTH:
        raise _Refused(f"is longer than {MAX_REPORT_URI_LENGTH} characters")
    if not _PRINTABLE_ASCII.fullmatch(uri):
        raise _Refused("holds a space, a control character or a non-ASCII character")
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError as exc:  # unbalanced or invalid [brackets]
        raise _Refused(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _Refused("is not an http(s) URL")
    if server and scheme != "https":
        raise _Refused("is not https (a server-chosen report URI must be)")
    if server and "@" in parts.netloc:
        raise _Refused("carries user information")
    if not host:
        raise _Refused("has no host")
    try:
        given_port = parts.port
    except ValueError:
        raise _Refused("has an invalid port") from None
    if given_port == 0:
        raise _Refused("has an invalid port")
    default_port = 443 if scheme == "https" else 80
    port = default_port if given_port is None else given_port
    literal = ip(host)
    if literal is None and "[" in parts.netloc:
        raise _Refused("has an invalid IP literal in [brackets]")
    if literal is None:
        if host.endswith("."):
            host = host[:-1]
        if server:
            labels = host.split(".")
            if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
                raise _Refused("has an invalid host name")
            if _NUMERIC_LABEL.fullmatch(labels[-1]):
                raise _Refused("spells an IPv4 address as a host name")
            if len(labels) < 2:
                raise _Refused("names a single-label (intranet) host")
    elif server:
        problem = address_problem(literal)
        if problem is not None:
            raise _Refused(f"names {literal}, {problem}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header += f":{port}"
    return Target(uri, server, scheme, host, port, target, host_header)


def check_addresses(target: Target, infos: list[tuple[Any, ...]]) -> None:
    """Raise ``_Refused`` unless every address a server-chosen ``target`` resolved to is public.

    ``infos`` are ``getaddrinfo`` results; the connection then goes to one of
    these (no second lookup, so DNS rebinding cannot move it).
    """
    if not target.server:
        return
    for info in infos:
        address = str(info[4][0])
        parsed = ip(address)
        problem = "not an IP address" if parsed is None else address_problem(parsed)
        if problem is not None:
            raise _Refused(f"{target.host} resolves to {address}, {problem}")


def shown(uri: str) -> str:
    """A URI as quoted in a log line: repr (no line breaks), cut short."""
    text = uri if len(uri) <= _LOGGED_URI_LENGTH else uri[:_LOGGED_URI_LENGTH] + "..."
    return repr(text)

