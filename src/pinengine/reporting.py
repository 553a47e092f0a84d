"""Pin violation reports (RFC 7469 section 3 format) and where they go.

A ``Reporter`` turns each violation a policy sees (a ``mismatch`` refused in
enforce mode, or a ``report-only`` violation let through) into a
``ViolationReport`` and hands it to its sinks:

- ``LoggingSink``: one structured log record per violation (logger
  ``pinengine.reports``, the report as ``record.pin_report``);
- ``CallbackSink``: calls your function with the report, in the thread that
  verified (keep it quick);
- ``HTTPSink``: POSTs the JSON to the entry's ``report_uri`` (and to any
  collectors you add) from background threads: bounded queue, retries with
  backoff, de-duplication per host and chain (one report per day by default,
  as TrustKit does) and a per-host rate limit. A slow, hanging or dead
  collector never slows or fails a handshake: ``send`` never blocks, and a
  full queue drops the report (counted in ``reports_dropped``); each attempt
  has a total deadline, and a slow collector delays only its own reports.
  Report URIs a server chose (HPKP ``report-uri``) are refused unless
  allowed, and then get no credentials and reach only public https hosts.

Which reporter a policy uses: ``PinPolicy(..., reporter=...)`` (also a
keyword of ``from_file`` / ``from_mapping``). A policy without one uses the
default reporter, which only logs (``LoggingSink``): nothing leaves the
process unless you ask for it. To POST to the entries' ``report_uri`` too,
pass ``reporter=Reporter.default()`` (logging + HTTP), or make that the
process-wide default with ``set_default_reporter(Reporter.default())``.
"""

from __future__ import annotations

import atexit
import base64
import datetime as _dt
import hashlib
import heapq
import ipaddress
import itertools
import json
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol
from urllib.parse import urlsplit

from . import _backend
from .metrics import METRICS
from .pins import SPKI, Pin

__all__ = [
    "CallbackSink",
    "HTTPSink",
    "LoggingSink",
    "Reporter",
    "Sink",
    "ViolationReport",
    "default_reporter",
    "set_default_reporter",
]

log = logging.getLogger("pinengine.reports")
_delivery_log = logging.getLogger("pinengine.reports.delivery")


def _iso(t: _dt.datetime) -> str:
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def _known_pin(pin: Pin) -> str:
    # RFC 7469 writes known pins as Public-Key-Pins directives: pin-sha256="...".
    # It has no form for certificate pins: they appear as cert-sha256="...".
    b64 = base64.b64encode(pin.digest).decode("ascii")
    if pin.kind == SPKI:
        return f'pin-{pin.algorithm}="{b64}"'
    return f'cert-{pin.algorithm}="{b64}"'


def _chain_pin(der: bytes) -> str:
    try:
        return str(Pin("sha256", _backend.core.spki_sha256(der)))
    except Exception:  # a malformed certificate has no pin
        return "(malformed certificate)"


def _report_uris(entry: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(operator's, server-chosen)`` report URIs of a policy entry.

    The one place of the rule: an entry with ``noted=True`` was made from an
    HPKP header (a noted record, or a Public-Key-Pins-Report-Only failure), so
    its ``report_uri`` was chosen by the server; any other entry's was written
    by the operator (policy file or code).
    """
    if entry is None:
        return (), ()
    uris = tuple(entry.report_uri)
    if getattr(entry, "noted", False):
        return (), uris
    return uris, ()


@dataclass(frozen=True)
class ViolationReport:
    """One pin violation, as sent to collectors.

    ``to_dict()`` gives the RFC 7469 section 3 fields, plus pinengine's own
    under the single key ``"pinengine"``; ``to_json()`` the bytes POSTed.
    Chains are DER, leaf first. ``served_chain`` is what the server sent when
    the caller knew it (the TLS hooks do), otherwise the checked chain;
    ``validated_chain`` is empty when no trust store validated the chain.
    """

    date_time: _dt.datetime
    hostname: str
    port: int | None
    effective_expiration_date: _dt.datetime | None
    include_subdomains: bool
    noted_hostname: str
    served_chain: tuple[bytes, ...]
    validated_chain: tuple[bytes, ...]
    known_pins: tuple[Pin, ...]
    report_uri: tuple[str, ...] = ()
    status: str = "mismatch"
    mode: str = "enforce"
    entry: str | None = None
    verified: bool = True
    blocked_pins: tuple[Pin, ...] = ()
    backend: str = ""
    version: str = ""
    message: str = field(default="", compare=False)
    server_report_uri: tuple[str, ...] = ()

    @classmethod
    def from_event(cls, event: Any, now: _dt.datetime | None = None) -> ViolationReport:
        """The report of a ``VerificationEvent`` (see ``pinengine._observe``)."""
        from . import __version__

        entry = event.entry
        operator_uris, server_uris = _report_uris(entry)
        checked = tuple(event.validated_chain)
        served = tuple(event.served_chain) if event.served_chain is not None else checked
        return cls(
            date_time=now or _dt.datetime.now(_dt.timezone.utc),
            hostname=event.hostname,
            port=event.port,
            effective_expiration_date=entry.expires if entry is not None else None,
            include_subdomains=entry is not None and entry.pattern != "exact",
            noted_hostname=entry.base if entry is not None else event.hostname,
            served_chain=served,
            validated_chain=checked if event.verified else (),
            known_pins=tuple(entry.pins) if entry is not None else (),
            report_uri=operator_uris,
            status=event.status,
            mode=entry.mode if entry is not None else "enforce",
            entry=entry.host if entry is not None else None,
            verified=event.verified,
            blocked_pins=tuple(m.pin for m in event.blocked),
            backend=_backend.name(),
            version=__version__,
            message=event.message,
            server_report_uri=server_uris,
        )

    @property
    def reason(self) -> str:
        """``blocked-key`` (the chain holds a blocked key) or ``no-pin-matched``."""
        return "blocked-key" if self.blocked_pins else "no-pin-matched"

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: RFC 7469 section 3, plus ``"pinengine"``."""
        return {
            "date-time": _iso(self.date_time),
            "hostname": self.hostname,
            "port": self.port,
            "effective-expiration-date": (
                _iso(self.effective_expiration_date) if self.effective_expiration_date is not None else None
            ),
            "include-subdomains": self.include_subdomains,
            "noted-hostname": self.noted_hostname,
            "served-certificate-chain": [_pem(d) for d in self.served_chain],
            "validated-certificate-chain": [_pem(d) for d in self.validated_chain],
            "known-pins": [_known_pin(p) for p in self.known_pins],
            "pinengine": {
                "status": self.status,
                "mode": self.mode,
                "entry": self.entry,
                "reason": self.reason,
                "verified": self.verified,
                "blocked-pins": [str(p) for p in self.blocked_pins],
                "served-chain-pins": [_chain_pin(d) for d in self.served_chain],
                "backend": self.backend,
                "version": self.version,
            },
        }

    def to_json(self) -> bytes:
        """The JSON document POSTed to collectors (UTF-8)."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")

    @property
    def chain_digest(self) -> bytes:
        """SHA-256 over the served and validated chains: what de-duplication calls "the same chain"."""
        h = hashlib.sha256()
        for chain in (self.served_chain, self.validated_chain):
            h.update(len(chain).to_bytes(4, "big"))
            for der in chain:
                h.update(len(der).to_bytes(4, "big"))
                h.update(der)
        return h.digest()

    def summary(self) -> str:
        """One line for logs: host, port, what happened, the entry and the served chain's pins."""
        where = self.hostname if self.port is None else f"{self.hostname}:{self.port}"
        action = "refused" if self.status == "mismatch" else "allowed, report-only"
        entry = f"entry {self.entry!r}" if self.entry is not None else "no entry (blocked key)"
        chain = ", ".join(_chain_pin(d) for d in self.served_chain) or "(none)"
        known = ", ".join(str(p) for p in self.known_pins) or "(none)"
        blocked = f"; blocked keys: {', '.join(str(p) for p in self.blocked_pins)}" if self.blocked_pins else ""
        return (
            f"pin violation for {where} ({action}): {entry}, {self.reason}{blocked}; "
            f"served chain: {chain}; known pins: {known}"
        )


class Sink(Protocol):
    """Where reports go: ``send`` must not block; ``flush``/``close`` are optional."""

    def send(self, report: ViolationReport) -> None: ...


class LoggingSink:
    """One log record per violation on ``logger`` (default ``pinengine.reports``).

    The message is a one-line summary (host, port, status, entry, served
    chain pins, known pins); the whole report, as ``ViolationReport.to_dict()``,
    is attached to the record as ``record.pin_report`` for structured log
    handlers (JSON formatters pick up extra attributes).
    """

    def __init__(self, logger: logging.Logger | str = "pinengine.reports", level: int = logging.WARNING) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def send(self, report: ViolationReport) -> None:
        if self.logger.isEnabledFor(self.level):
            self.logger.log(self.level, "%s", report.summary(), extra={"pin_report": report.to_dict()})


class CallbackSink:
    """Calls ``callback(report)`` for every violation, in the thread that verified (keep it quick)."""

    def __init__(self, callback: Callable[[ViolationReport], Any]) -> None:
        self.callback = callback

    def send(self, report: ViolationReport) -> None:
        self.callback(report)


# -- HTTP ----------------------------------------------------------------------------

#: The longest server-chosen report URI that is used, in characters. 2,048 is
#: the usual practical URL limit of browsers and servers; a collector's URL
#: needs far less, and the bound keeps parsing, logs and the per-destination
#: table small.
MAX_REPORT_URI_LENGTH = 2048
#: Server-chosen report URIs taken from one report. HPKP gives one; the bound
#: keeps an entry built in code from fanning one violation out without limit.
MAX_SERVER_REPORT_URIS = 4
#: The most bytes of a collector's answer that are read: its status line and
#: headers (the body is never read). Only the status and ``Retry-After``
#: matter; 16 KiB holds any real header block and bounds what a peer can make
#: the sender buffer.
MAX_RESPONSE_HEAD = 16 * 1024
#: Name lookups of report destinations running at once, across all sinks, for
#: the operator's destinations and (apart) for server-chosen ones.
#: ``getaddrinfo`` cannot be interrupted: a lookup that outlives its attempt's
#: deadline runs on in its own thread until the resolver gives up, and this
#: bounds how many threads a slow DNS server can hold that way. Two pools, so
#: that a hostile server's slow names never hold up the operator's lookups.
MAX_LOOKUPS = 8
#: Sender threads of a sink by default. Each destination has at most one
#: attempt in flight and server-chosen destinations hold at most all threads
#: but one, so a destination that hangs delays only its own reports; four
#: covers a few hung destinations at once for the price of four idle threads.
DEFAULT_WORKERS = 4
# At most one warning a minute per sink about refused report URIs (the rest go
# to DEBUG): a hostile server could otherwise fill the log.
_REFUSAL_LOG_INTERVAL = 60.0
# Likewise for a full queue.
_DROP_LOG_INTERVAL = 60.0
# A URI quoted in a log line is cut to this many characters (it may be hostile).
_LOGGED_URI_LENGTH = 200
# A sender thread with nothing to do for this long ends (a new one starts when needed).
_IDLE_EXIT = 30.0
_RECV_SIZE = 4096

_live_sinks: weakref.WeakSet[HTTPSink] = weakref.WeakSet()
_lookups = {False: threading.BoundedSemaphore(MAX_LOOKUPS), True: threading.BoundedSemaphore(MAX_LOOKUPS)}


def _reset_lookups() -> None:  # pragma: no cover - runs in a forked child
    # The parent's lookup threads did not come along: their permits would be lost.
    for server in (False, True):
        _lookups[server] = threading.BoundedSemaphore(MAX_LOOKUPS)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_lookups)


@atexit.register
def _close_at_exit() -> None:  # pragma: no cover - runs at interpreter exit
    for sink in list(_live_sinks):
        try:
            sink.close(sink.exit_timeout)
        except Exception:
            pass


class _Refused(Exception):
    """A report URI that may not be used; the message says why (after the URI)."""


class _BadAnswer(Exception):
    """A collector's answer that is not HTTP, or is too long."""


_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A last label that is a number makes a name an IPv4 address in another
# spelling, the way URL parsers and inet_aton read it (127.1, 0x7f000001).
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Headers the sink writes itself: an operator header may not replace them.
_FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding", "connection"))
_STATUS_LINE = re.compile(rb"HTTP/[0-9]\.[0-9] ([0-9]{3})(?:[ \t][^\r\n]*)?\r?")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a server-chosen report may not go to ``ip`` (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        # Forms that carry an IPv4 address: judged by the address they carry.
        embedded, form = ip.ipv4_mapped, "IPv4-mapped"
        if embedded is None and ip in _NAT64:
            embedded, form = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
        if embedded is None and ip.sixtofour is not None:
            embedded, form = ip.sixtofour, "6to4"
        if embedded is not None:
            problem = _address_problem(embedded)
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
class _Target:
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


def _parse_target(uri: str, *, server: bool) -> _Target:
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
    ip = _ip(host)
    if ip is None and "[" in parts.netloc:
        raise _Refused("has an invalid IP literal in [brackets]")
    if ip is None:
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
        problem = _address_problem(ip)
        if problem is not None:
            raise _Refused(f"names {ip}, {problem}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header += f":{port}"
    return _Target(uri, server, scheme, host, port, target, host_header)


def _shown(uri: str) -> str:
    """A URI as quoted in a log line: repr (no line breaks), cut short."""
    text = uri if len(uri) <= _LOGGED_URI_LENGTH else uri[:_LOGGED_URI_LENGTH] + "..."
    return repr(text)


def _left(deadline: float) -> float:
    """Seconds left before ``deadline`` (``time.monotonic``); TimeoutError when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the attempt's deadline passed")
    return left


def _resolve(host: str, port: int, deadline: float, server: bool) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` for a TCP connection to ``host``, given up on at ``deadline``."""
    if _ip(host) is not None:  # an IP literal: no lookup, nothing to wait for
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP,
                                  flags=socket.AI_NUMERICHOST)
    lookups = _lookups[server]
    if not lookups.acquire(timeout=_left(deadline)):
        raise TimeoutError("too many report destination name lookups in progress")
    box: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP))
        except BaseException as exc:
            box.append(exc)
        finally:
            lookups.release()
            done.set()

    try:
        threading.Thread(target=lookup, name="pinengine-report-lookup", daemon=True).start()
    except BaseException:
        lookups.release()
        raise
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError(f"looking up {host} took longer than the attempt's deadline")
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[no-any-return]


def _send_all(sock: socket.socket, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        sock.settimeout(_left(deadline))
        sent = sock.send(view)
        view = view[sent:]


def _read_answer(sock: socket.socket, deadline: float) -> tuple[int, float | None]:
    """Read the answer's head (skipping 1xx ones): its status and ``Retry-After`` seconds.

    At most MAX_RESPONSE_HEAD bytes are read in all, each read with the time
    left before ``deadline``: a peer that trickles bytes cannot hold it longer.
    """
    buf = bytearray()
    scanned = 0
    total = 0
    while True:
        end = -1
        crlf = buf.find(b"\r\n\r\n", max(0, scanned - 3))
        lf = buf.find(b"\n\n", max(0, scanned - 1))
        if crlf >= 0:
            end = crlf + 4
        if lf >= 0 and (end < 0 or lf + 2 < end):
            end = lf + 2
        scanned = len(buf)
        if end >= 0:
            status, retry_after = _parse_head(bytes(buf[:end]))
            if status >= 200:
                return status, retry_after
            del buf[:end]  # an interim answer (100 Continue): the real one follows
            scanned = 0
            continue
        if total >= MAX_RESPONSE_HEAD:
            raise _BadAnswer(f"the answer's head is longer than {MAX_RESPONSE_HEAD} bytes")
        sock.settimeout(_left(deadline))
        chunk = sock.recv(min(_RECV_SIZE, MAX_RESPONSE_HEAD - total))
        if not chunk:
            raise ConnectionError("the collector closed the connection before answering")
        total += len(chunk)
        buf += chunk


def _parse_head(head: bytes) -> tuple[int, float | None]:
    lines = head.split(b"\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise _BadAnswer(f"the answer is not HTTP: {lines[0][:80]!r}")
    retry_after = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            value = value.strip()
            if value.isdigit() and len(value) <= 9:
                retry_after = float(value)
    return int(match.group(1)), retry_after


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    target: _Target = field(compare=False)
    report: ViolationReport = field(compare=False)
    attempt: int = field(default=0, compare=False)


class HTTPSink:
    """POSTs each report's JSON to its collectors from background threads.

    Where reports go:

    - Operator-configured URIs: ``uris`` (every report) and the ``report_uri``
      of the policy entry (``ViolationReport.report_uri``). Only these get the
      operator's ``headers`` and ``ssl_context`` (which may hold a client
      certificate); ``ssl_context`` defaults to the system trust store.
    - Server-chosen URIs (``ViolationReport.server_report_uri``: the
      ``report-uri`` of an HPKP header) are refused unless
      ``allow_server_report_uris=True``. Even then only ``https`` URIs of at
      most ``MAX_REPORT_URI_LENGTH`` characters are used, whose host resolves,
      at send time, only to public addresses (not loopback, private,
      link-local, multicast, reserved or unspecified, nor IPv4-mapped, 6to4 or
      NAT64 forms of those); the connection goes to the address that was
      checked (no second lookup, so DNS rebinding cannot move it). They get
      the system trust store, only the standard headers, and at most
      ``server_uri_limit`` reports per destination host per
      ``server_uri_window`` seconds. Refusals count in ``reports_refused`` and
      are logged (one warning a minute, the rest at DEBUG).

    Delivery:

    - ``send`` never blocks: it checks de-duplication and the rate limits and
      puts the report on a bounded queue (``queue_size``); when the queue is
      full the report is dropped and counted (``reports_dropped``).
    - De-duplication: a report for the same host, entry, status and chains
      (served and validated) as one accepted within ``dedupe_interval`` seconds (default a day, as
      TrustKit) is suppressed. Rate limit: at most ``host_limit`` reports per
      host per ``host_window`` seconds (different chains: a MITM box that
      makes a leaf per connection). Both count in ``reports_suppressed``.
    - ``workers`` threads send; each destination has at most one attempt in
      flight, and server-chosen destinations hold at most ``workers - 1``
      threads, so a slow or hung destination delays only its own reports.
    - Each attempt (name lookup, connect, TLS, request, answer) ends after
      ``timeout`` seconds in all, however slowly the peer trickles bytes; at
      most ``MAX_RESPONSE_HEAD`` bytes of the answer are read; redirects are
      not followed. Connection errors, timeouts, 408, 429 and 5xx are retried
      ``retries`` times with exponential backoff (``backoff`` doubling up to
      ``max_backoff``, with jitter; ``Retry-After`` honoured up to
      ``max_backoff``); other answers fail at once. A 2xx counts in
      ``reports_sent``, a report given up on in ``reports_failed``.
    - ``flush(timeout)`` waits for the queue to drain (retrying at once);
      ``close(timeout)`` flushes and stops the threads; what cannot be
      delivered by then is dropped. Live sinks are closed at interpreter
      exit, waiting at most ``exit_timeout`` seconds.

    Do not put a report collector on a host that the same policy pins in
    enforce mode: its reports could not get through.
    """

    def __init__(
        self,
        uris: Iterable[str] = (),
        *,
        queue_size: int = 1000,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        dedupe_interval: float = 86400.0,
        host_limit: int = 20,
        host_window: float = 3600.0,
        ssl_context: ssl.SSLContext | None = None,
        headers: dict[str, str] | None = None,
        exit_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = 10_000,
        workers: int = DEFAULT_WORKERS,
        allow_server_report_uris: bool = False,
        server_uri_limit: int = 10,
        server_uri_window: float = 3600.0,
    ) -> None:
        self.uris = tuple(uris)
        self._own_targets: dict[str, _Target] = {}
        for uri in self.uris:
            try:
                self._own_targets[uri] = _parse_target(uri, server=False)
            except _Refused as exc:
                raise ValueError(f"report URI {_shown(uri)} {exc}") from None
        self.headers = dict(headers or {})
        for name, value in self.headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
                raise ValueError(f"header {name!r}: the value holds a line break or a control character")
            if name.lower() in _FRAMING_HEADERS:
                raise ValueError(f"header {name!r} is written by the sink itself")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.queue_size = queue_size
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.dedupe_interval = dedupe_interval
        self.host_limit = host_limit
        self.host_window = host_window
        self.ssl_context = ssl_context
        self.exit_timeout = exit_timeout
        self.clock = clock
        self.max_tracked = max_tracked
        self.workers = workers
        self.allow_server_report_uris = allow_server_report_uris
        self.server_uri_limit = server_uri_limit
        self.server_uri_window = server_uri_window
        self._server_context: ssl.SSLContext | None = None
        self._init_state()
        _live_sinks.add(self)

    def _init_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the admission tables and the log throttles
        self._context_lock = threading.Lock()
        # Everything about jobs is guarded by _cond.
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[tuple[bool, str, str, int], deque[_Job]] = {}
        # Destinations with queued jobs and no attempt in flight, in turn order.
        self._ready: OrderedDict[tuple[bool, str, str, int], None] = OrderedDict()
        self._ready_server: OrderedDict[tuple[bool, str, str, int], None] = OrderedDict()
        self._busy: set[tuple[bool, str, str, int]] = set()
        self._busy_server = 0
        self._queued = 0
        self._retry: list[_Job] = []
        self._pending = 0  # queued, waiting for a retry, or being sent
        self._hurry = 0  # flushes/closes waiting: retry at once
        self._closed = False
        self._deadline: float | None = None
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._seen: OrderedDict[tuple[Any, ...], float] = OrderedDict()
        self._hosts: dict[str, tuple[float, int]] = {}
        self._destinations: dict[str, tuple[float, int]] = {}
        self._seq = itertools.count()
        self._last_drop_log = -1e18
        self._last_refusal_log = -1e18

    # -- the caller's side ------------------------------------------------------------

    def _admit(self, report: ViolationReport) -> bool:
        """De-duplication and the per-host rate limit. True: send it."""
        now = self.clock()
        key = (report.hostname, report.entry, report.status, report.chain_digest)
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self.dedupe_interval:
                return False
            start, count = self._hosts.get(report.hostname, (now, 0))
            if now - start >= self.host_window:
                start, count = now, 0
            if count >= self.host_limit:
                return False
            self._hosts[report.hostname] = (start, count + 1)
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > self.max_tracked:
                self._seen.popitem(last=False)
            self._trim(self._hosts, now, self.host_window)
        return True

    def _admit_destination(self, host: str) -> bool:
        """The per-destination rate limit of server-chosen URIs. True: send it."""
        now = self.clock()
        with self._lock:
            start, count = self._destinations.get(host, (now, 0))
            if now - start >= self.server_uri_window:
                start, count = now, 0
            if count >= self.server_uri_limit:
                return False
            self._destinations[host] = (start, count + 1)
            self._trim(self._destinations, now, self.server_uri_window)
        return True

    def _trim(self, table: dict[str, tuple[float, int]], now: float, window: float) -> None:
        # With self._lock held: keep a rate table within max_tracked (expired windows first).
        if len(table) > self.max_tracked:
            for name in [n for n, (s, _) in table.items() if now - s >= window]:
                del table[name]
            while len(table) > self.max_tracked:
                del table[next(iter(table))]

    def _log_throttled(self, attribute: str, interval: float, message: str, *args: Any) -> None:
        """A warning at most once per ``interval`` per sink; DEBUG in between."""
        now = time.monotonic()
        with self._lock:
            loud = now - getattr(self, attribute) >= interval
            if loud:
                setattr(self, attribute, now)
        _delivery_log.log(logging.WARNING if loud else logging.DEBUG, message, *args)

    def _refuse(self, report: ViolationReport, uri: str, why: str, outcome: str = "refused") -> None:
        METRICS.count_report(report.hostname, report.entry, outcome)
        self._log_throttled(
            "_last_refusal_log", _REFUSAL_LOG_INTERVAL,
            "refused to send the pin violation report for %s to %s: it %s (counted in reports_%s; "
            "more within a minute are logged at DEBUG)",
            report.hostname, _shown(uri), why, outcome,
        )

    def send(self, report: ViolationReport) -> None:
        """Queue the report for each collector; never blocks."""
        operator = tuple(dict.fromkeys(report.report_uri + self.uris))
        server = tuple(
            u for u in dict.fromkeys(report.server_report_uri[:MAX_SERVER_REPORT_URIS]) if u not in operator
        )
        if not operator and not server:
            return
        if os.getpid() != self._pid:  # forked: the sender threads did not come along
            self._init_state()
        targets: list[_Target] = []
        for uri in operator:
            own = self._own_targets.get(uri)
            if own is not None:
                targets.append(own)
                continue
            try:
                targets.append(_parse_target(uri, server=False))
            except _Refused as exc:  # a policy entry's report_uri that cannot be used
                self._refuse(report, uri, str(exc), "failed")
        chosen: list[_Target] = []
        for uri in server:
            if not self.allow_server_report_uris:
                self._refuse(report, uri, "was chosen by the server, and server-chosen report URIs are off "
                             "(HTTPSink(allow_server_report_uris=True) allows public https ones)")
                continue
            try:
                chosen.append(_parse_target(uri, server=True))
            except _Refused as exc:
                self._refuse(report, uri, f"was chosen by the server and {exc}")
        if not targets and not chosen:
            return
        if self._closed:
            METRICS.count_report(report.hostname, report.entry, "dropped", len(targets) + len(chosen))
            return
        if not self._admit(report):
            METRICS.count_report(report.hostname, report.entry, "suppressed")
            return
        for target in chosen:
            if self._admit_destination(target.host):
                targets.append(target)
            else:
                METRICS.count_report(report.hostname, report.entry, "suppressed")
        for target in targets:
            self._enqueue(_Job(0.0, 0, target, report))

    def _enqueue(self, job: _Job) -> None:
        report = job.report
        with self._cond:
            if self._closed:
                outcome = "dropped"
            elif self._queued >= self.queue_size:
                outcome = "full"
            else:
                outcome = ""
                key = job.target.key
                jobs = self._queues.get(key)
                if jobs is None:
                    jobs = self._queues[key] = deque()
                jobs.append(job)
                self._queued += 1
                self._pending += 1
                if key not in self._busy:
                    (self._ready_server if job.target.server else self._ready)[key] = None
                    if self._idle:
                        self._cond.notify_all()  # flush() waits on _cond too: wake every waiter
                    elif len(self._threads) < self.workers:
                        thread = threading.Thread(target=self._run, name="pinengine-report-sender", daemon=True)
                        self._threads.append(thread)
                        thread.start()
        if outcome:
            METRICS.count_report(report.hostname, report.entry, "dropped")
        if outcome == "full":
            self._log_throttled(
                "_last_drop_log", _DROP_LOG_INTERVAL,
                "pin violation report queue is full (%d); dropping reports (see reports_dropped)", self.queue_size,
            )

    # -- flushing and closing ------------------------------------------------------------

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every queued report is delivered or given up on (retrying at once). True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._hurry += 1
            self._cond.notify_all()
            try:
                while self._pending > 0:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._hurry -= 1

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop accepting reports, deliver what is queued within ``timeout`` s, stop the threads.

        Returns True when everything queued was delivered or given up on;
        False when reports were still undelivered at the deadline (they are
        dropped and counted in ``reports_dropped``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._deadline = deadline
            threads = list(self._threads)
            self._cond.notify_all()
        _live_sinks.discard(self)
        if not threads:
            self._drop_queued()
            return True
        done = self.flush(timeout)
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            # A sender is stuck in an attempt (it ends at the attempt's
            # deadline): drop what is still queued now.
            self._drop_queued()
            return False
        return done

    def _drop_queued(self) -> None:
        with self._cond:
            dropped = self._take_queued()
        for job in dropped:
            METRICS.count_report(job.report.hostname, job.report.entry, "dropped")

    def _take_queued(self) -> list[_Job]:
        # With self._cond held: remove every queued job and pending retry (they are dropped).
        jobs = [job for queue_ in self._queues.values() for job in queue_] + self._retry
        self._queues.clear()
        self._ready.clear()
        self._ready_server.clear()
        self._retry = []
        self._queued = 0
        self._pending -= len(jobs)
        self._cond.notify_all()
        return jobs

    def __enter__(self) -> HTTPSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the senders ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            try:
                outcome, retry_after, detail = self._post(job.target, job.report)
            except _Refused as exc:
                outcome, retry_after, detail = "refused", None, str(exc)
            except Exception as exc:  # a bug or an odd URL must not kill the sender
                _delivery_log.exception("sending a pin violation report to %s failed", _shown(job.target.uri))
                outcome, retry_after, detail = "fail", None, f"{type(exc).__name__}: {exc}"
            self._finish(job, outcome, retry_after, detail)

    def _next_job(self) -> _Job | None:
        """The next job this sender should attempt (its destination is then busy); None: stop."""
        me = threading.current_thread()
        idle_since: float | None = None
        with self._cond:
            while True:
                now = time.monotonic()
                deadline = self._deadline
                if deadline is not None and now >= deadline:
                    dropped = self._take_queued()
                    self._leave(me)
                    break
                hurry = self._hurry > 0 or self._closed
                while self._retry and (hurry or self._retry[0].due <= now):
                    due = heapq.heappop(self._retry)
                    self._pending -= 1  # _queue_locked counts it again
                    self._queue_locked(due)
                job = self._pick()
                if job is not None:
                    return job
                if self._queued or self._retry:
                    idle_since = None
                else:  # nothing to do: stop when closed, or when idle for long
                    if idle_since is None:
                        idle_since = now
                    if self._closed or now - idle_since >= _IDLE_EXIT:
                        self._leave(me)
                        return None
                wait = self._retry[0].due - now if self._retry else None
                if idle_since is not None:
                    wait = idle_since + _IDLE_EXIT - now
                if deadline is not None:
                    wait = deadline - now if wait is None else min(wait, deadline - now)
                self._idle += 1
                try:
                    self._cond.wait(wait)
                finally:
                    self._idle -= 1
        for job in dropped:
            METRICS.count_report(job.report.hostname, job.report.entry, "dropped")
        return None

    def _leave(self, me: threading.Thread) -> None:
        # With self._cond held: this sender stops.
        if me in self._threads:
            self._threads.remove(me)

    def _queue_locked(self, job: _Job) -> None:
        key = job.target.key
        jobs = self._queues.get(key)
        if jobs is None:
            jobs = self._queues[key] = deque()
        jobs.append(job)
        self._queued += 1
        self._pending += 1
        if key not in self._busy:
            (self._ready_server if job.target.server else self._ready)[key] = None

    def _pick(self) -> _Job | None:
        # With self._cond held. The operator's destinations first; server-chosen
        # ones may hold all senders but one.
        ready = self._ready
        if not ready and self._busy_server < max(1, self.workers - 1):
            ready = self._ready_server
        if not ready:
            return None
        key, _ = ready.popitem(last=False)
        jobs = self._queues[key]
        job = jobs.popleft()
        if not jobs:
            del self._queues[key]
        self._queued -= 1
        self._busy.add(key)
        if job.target.server:
            self._busy_server += 1
        return job

    def _finish(self, job: _Job, outcome: str, retry_after: float | None, detail: str) -> None:
        report = job.report
        target = job.target
        delay = 0.0
        with self._cond:
            key = target.key
            self._busy.discard(key)
            if target.server:
                self._busy_server -= 1
            if key in self._queues:
                (self._ready_server if target.server else self._ready)[key] = None
            if outcome == "retry":
                deadline = self._deadline
                if deadline is not None and time.monotonic() >= deadline:
                    outcome = "dropped"  # closing, and out of time
                elif job.attempt < self.retries and len(self._retry) < self.queue_size:
                    delay = min(self.max_backoff, self.backoff * (2 ** job.attempt)) * random.uniform(0.5, 1.0)
                    if retry_after is not None:
                        delay = max(delay, min(retry_after, self.max_backoff))
                    job.attempt += 1
                    job.due = time.monotonic() + delay
                    job.seq = next(self._seq)
                    heapq.heappush(self._retry, job)
                else:
                    outcome = "fail"
            if outcome != "retry":
                self._pending -= 1
            self._cond.notify_all()
        if outcome == "retry":
            _delivery_log.debug("report for %s to %s failed (%s); retry in %.2fs", report.hostname,
                                _shown(target.uri), detail, delay)
        elif outcome == "sent":
            METRICS.count_report(report.hostname, report.entry, "sent")
        elif outcome == "dropped":
            METRICS.count_report(report.hostname, report.entry, "dropped")
        elif outcome == "refused":
            self._refuse(report, target.uri, f"was chosen by the server and {detail}")
        else:
            METRICS.count_report(report.hostname, report.entry, "failed")
            _delivery_log.warning(
                "could not deliver pin violation report for %s to %s after %d attempt(s): %s",
                report.hostname, _shown(target.uri), job.attempt + 1, detail,
            )

    # -- one attempt ------------------------------------------------------------------------

    def _operator_tls_context(self) -> ssl.SSLContext:
        """The operator's ``ssl_context`` (default: the system trust store)."""
        with self._context_lock:
            if self.ssl_context is None:
                self.ssl_context = ssl.create_default_context()
            return self.ssl_context

    def _server_tls_context(self) -> ssl.SSLContext:
        """The context of server-chosen URIs: the system trust store, never the operator's context."""
        with self._context_lock:
            if self._server_context is None:
                self._server_context = ssl.create_default_context()
            return self._server_context

    def _request(self, target: _Target, body: bytes) -> bytes:
        from . import __version__

        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": f"pinengine/{__version__}",
        }
        if not target.server:  # the operator's headers (credentials) go to the operator's collectors only
            for name, value in self.headers.items():
                for standard in [h for h in headers if h.lower() == name.lower()]:
                    del headers[standard]
                headers[name] = value
        lines = [f"POST {target.request_target} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [f"Content-Length: {len(body)}", "Connection: close"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _connect(self, target: _Target, deadline: float) -> socket.socket:
        """A connection (TLS done, for https) to ``target``; raise ``_Refused`` for a non-public server-chosen one."""
        infos = _resolve(target.host, target.port, deadline, target.server)
        if not infos:
            raise OSError(f"{target.host} has no address")
        if target.server:
            for info in infos:
                address = str(info[4][0])
                ip = _ip(address)
                problem = "not an IP address" if ip is None else _address_problem(ip)
                if problem is not None:
                    raise _Refused(f"{target.host} resolves to {address}, {problem}")
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:  # the addresses checked above, no second lookup
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(_left(deadline))
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                if isinstance(exc, TimeoutError):
                    break
                continue
            if target.scheme != "https":
                return sock
            context = self._server_tls_context() if target.server else self._operator_tls_context()
            try:
                tls = context.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False)
            except BaseException:
                sock.close()
                raise
            try:
                tls.settimeout(_left(deadline))
                tls.do_handshake()
            except BaseException:
                tls.close()
                raise
            return tls
        assert error is not None
        raise error

    def _post(self, target: _Target, report: ViolationReport) -> tuple[str, float | None, str]:
        """POST once, within ``timeout`` seconds in all: ``("sent" | "retry" | "fail", retry-after, detail)``."""
        deadline = time.monotonic() + self.timeout
        request = self._request(target, report.to_json())
        try:
            sock = self._connect(target, deadline)
            try:
                _send_all(sock, request, deadline)
                status, retry_after = _read_answer(sock, deadline)
            finally:
                sock.close()
        except OSError as exc:
            return "retry", None, f"{type(exc).__name__}: {exc}"
        except _BadAnswer as exc:
            return "fail", None, str(exc)
        if 200 <= status < 300:
            return "sent", None, str(status)
        if status in (408, 429) or status >= 500:
            return "retry", retry_after, f"HTTP {status}"
        return "fail", None, f"HTTP {status}"


# -- the reporter ------------------------------------------------------------------------


class Reporter:
    """Builds one ``ViolationReport`` per violation and hands it to each sink.

    A sink that raises is logged and skipped; the others still get the
    report. Pass it to a policy: ``PinPolicy.from_file(path, reporter=r)``.
    """

    def __init__(self, *sinks: Sink, clock: Callable[[], _dt.datetime] | None = None) -> None:
        self.sinks: tuple[Sink, ...] = sinks
        self.clock = clock

    @classmethod
    def default(cls, **http_options: Any) -> Reporter:
        """Logging plus HTTP POST to each entry's ``report_uri`` (``http_options`` go to ``HTTPSink``)."""
        return cls(LoggingSink(), HTTPSink(**http_options))

    def report(self, event: Any) -> None:
        """Report a ``VerificationEvent`` (called by pinengine for mismatch / report-only decisions)."""
        if not self.sinks:
            return
        report = ViolationReport.from_event(event, self.clock() if self.clock is not None else None)
        self.send(report)

    def send(self, report: ViolationReport) -> None:
        """Hand an already-built report to every sink."""
        for sink in self.sinks:
            try:
                sink.send(report)
            except Exception:
                log.exception("pin violation report sink %r failed", sink)

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Flush every sink that can be flushed; True when all are done."""
        ok = True
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if flush is not None:
                ok = bool(flush(timeout)) and ok
        return ok

    def close(self, timeout: float | None = 5.0) -> bool:
        """Close every sink that can be closed (HTTP sinks deliver what is queued first)."""
        ok = True
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                ok = close(timeout) is not False and ok
        return ok

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default: Reporter | None = None
_default_lock = threading.Lock()


def default_reporter() -> Reporter:
    """The reporter of policies that have none: ``Reporter(LoggingSink())`` unless replaced."""
    global _default
    reporter = _default
    if reporter is None:
        with _default_lock:
            if _default is None:
                _default = Reporter(LoggingSink())
            reporter = _default
    return reporter


def set_default_reporter(reporter: Reporter | None) -> Reporter | None:
    """Make ``reporter`` the default for policies without one (None: back to logging only).

    Returns the previous default (None if it was never set).
    """
    global _default
    with _default_lock:
        previous, _default = _default, reporter
    return previous
