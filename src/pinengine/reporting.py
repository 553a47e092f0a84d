"""Pin violation reports (RFC 7469 section 3 format) and where they go.

A ``Reporter`` turns each violation a policy sees (a ``mismatch`` refused in
enforce mode, or a ``report-only`` violation let through) into a
``ViolationReport`` and hands it to its sinks:

- ``LoggingSink``: one structured log record per violation (logger
  ``pinengine.reports``, the report as ``record.pin_report``);
- ``CallbackSink``: calls your function with the report, in the thread that
  verified (keep it quick);
- ``HTTPSink``: POSTs the JSON to the entry's ``report_uri`` (and to any
  collectors you add) from a background thread: bounded queue, retries with
  backoff, de-duplication per host and chain (one report per day by default,
  as TrustKit does) and a per-host rate limit. A slow, hanging or dead
  collector never slows or fails a handshake: ``send`` never blocks, and a
  full queue drops the report (counted in ``reports_dropped``).

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
import http.client
import itertools
import json
import logging
import os
import queue
import random
import ssl
import threading
import time
import weakref
from collections import OrderedDict
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

    @classmethod
    def from_event(cls, event: Any, now: _dt.datetime | None = None) -> ViolationReport:
        """The report of a ``VerificationEvent`` (see ``pinengine._observe``)."""
        from . import __version__

        entry = event.entry
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
            report_uri=tuple(entry.report_uri) if entry is not None else (),
            status=event.status,
            mode=entry.mode if entry is not None else "enforce",
            entry=entry.host if entry is not None else None,
            verified=event.verified,
            blocked_pins=tuple(m.pin for m in event.blocked),
            backend=_backend.name(),
            version=__version__,
            message=event.message,
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

_STOP = object()
_RETRY_POLL = 0.1
_live_sinks: weakref.WeakSet[HTTPSink] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:  # pragma: no cover - runs at interpreter exit
    for sink in list(_live_sinks):
        try:
            sink.close(sink.exit_timeout)
        except Exception:
            pass


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    uri: str = field(compare=False)
    report: ViolationReport = field(compare=False)
    attempt: int = field(default=0, compare=False)


class HTTPSink:
    """POSTs each report's JSON to the entry's ``report_uri`` (plus ``uris``) from a background thread.

    - ``send`` never blocks: it checks de-duplication and the rate limit and
      puts the report on a bounded queue (``queue_size``); when the queue is
      full the report is dropped and counted (``reports_dropped``).
    - De-duplication: a report for the same host, entry, status and chains
      (served and validated) as one accepted within ``dedupe_interval`` seconds (default a day, as
      TrustKit) is suppressed. Rate limit: at most ``host_limit`` reports per
      host per ``host_window`` seconds (different chains: a MITM box that
      makes a leaf per connection). Both count in ``reports_suppressed``.
    - Delivery: ``timeout`` per attempt; connection errors, 408, 429 and 5xx
      are retried ``retries`` times with exponential backoff (``backoff``
      doubling up to ``max_backoff``, with jitter; ``Retry-After`` honoured up
      to ``max_backoff``); other answers fail at once. A 2xx counts in
      ``reports_sent``, a report given up on in ``reports_failed``.
    - ``flush(timeout)`` waits for the queue to drain (retrying at once);
      ``close(timeout)`` flushes and stops the thread; what cannot be
      delivered by then is dropped. Live sinks are closed at interpreter
      exit, waiting at most ``exit_timeout`` seconds.

    ``ssl_context`` is used for ``https://`` collectors (default: the system
    trust store). Do not put a report collector on a host that the same
    policy pins in enforce mode: its reports could not get through.
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
    ) -> None:
        self.uris = tuple(uris)
        for uri in self.uris:
            if not uri.startswith(("http://", "https://")):
                raise ValueError(f"report URI {uri!r} is not an http(s) URL")
        self.queue_size = queue_size
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.dedupe_interval = dedupe_interval
        self.host_limit = host_limit
        self.host_window = host_window
        self.ssl_context = ssl_context
        self.headers = dict(headers or {})
        self.exit_timeout = exit_timeout
        self.clock = clock
        self.max_tracked = max_tracked
        self._init_state()
        _live_sinks.add(self)

    def _init_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._queue: queue.Queue[Any] = queue.Queue(self.queue_size)
        self._pending = 0  # queued, waiting for a retry, or being sent
        self._hurry = 0  # flushes/closes waiting: retry at once
        self._closed = False
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._seen: OrderedDict[tuple[Any, ...], float] = OrderedDict()
        self._hosts: dict[str, tuple[float, int]] = {}
        self._seq = itertools.count()
        self._last_drop_log = -1e18

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
            if len(self._hosts) > self.max_tracked:
                for host in [h for h, (s, _) in self._hosts.items() if now - s >= self.host_window]:
                    del self._hosts[host]
                while len(self._hosts) > self.max_tracked:
                    del self._hosts[next(iter(self._hosts))]
        return True

    def send(self, report: ViolationReport) -> None:
        """Queue the report for each collector; never blocks."""
        uris = tuple(dict.fromkeys(report.report_uri + self.uris))
        if not uris:
            return
        if os.getpid() != self._pid:  # forked: the worker thread did not come along
            self._init_state()
        if self._closed:
            METRICS.count_report(report.hostname, report.entry, "dropped", len(uris))
            return
        if not self._admit(report):
            METRICS.count_report(report.hostname, report.entry, "suppressed")
            return
        for uri in uris:
            with self._cond:
                self._pending += 1
            try:
                self._queue.put_nowait(_Job(0.0, 0, uri, report))
            except queue.Full:
                self._finish_one()
                METRICS.count_report(report.hostname, report.entry, "dropped")
                now = time.monotonic()
                if now - self._last_drop_log >= 60.0:
                    self._last_drop_log = now
                    _delivery_log.warning(
                        "pin violation report queue is full (%d); dropping reports (see reports_dropped)",
                        self.queue_size,
                    )
        self._ensure_worker()
        if self._closed and (self._thread is None or not self._thread.is_alive()):
            self._drain_dropped()  # closed meanwhile by another thread: nobody will send these

    def _ensure_worker(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._closed:
                thread = threading.Thread(target=self._run, name="pinengine-report-sender", daemon=True)
                thread.start()
                self._thread = thread

    def _finish_one(self) -> None:
        with self._cond:
            self._pending -= 1
            if self._pending <= 0:
                self._cond.notify_all()

    # -- flushing and closing ------------------------------------------------------------

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every queued report is delivered or given up on (retrying at once). True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._hurry += 1
        try:
            with self._cond:
                while self._pending > 0:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
                return True
        finally:
            with self._cond:
                self._hurry -= 1

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop accepting reports, deliver what is queued within ``timeout`` s, stop the thread.

        Returns True when everything queued was delivered or given up on;
        False when reports were still undelivered at the deadline (they are
        dropped and counted in ``reports_dropped``).
        """
        with self._lock:
            if self._closed:
                thread = self._thread
                already = True
            else:
                self._closed = True
                already = False
                thread = self._thread
        _live_sinks.discard(self)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._deadline = deadline
        if thread is None:
            self._drain_dropped()
            return True
        if not already:
            self._wake()
        done = self.flush(timeout)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        thread.join(left)
        if thread.is_alive():
            # The worker is stuck in a POST: drop what is still queued now (it
            # drops its pending retries itself when the POST returns).
            self._drain_dropped()
            return False
        return done

    def _wake(self) -> None:
        # Wake a worker blocked on an empty queue so that it sees the close.
        if self._thread is not None:
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:
                pass  # the worker is busy with the queue, and checks for the close between jobs

    def _drain_dropped(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(job, _Job):
                METRICS.count_report(job.report.hostname, job.report.entry, "dropped")
                self._finish_one()

    def __enter__(self) -> HTTPSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker ----------------------------------------------------------------------

    def _run(self) -> None:
        retry: list[_Job] = []
        while True:
            now = time.monotonic()
            hurry = self._hurry > 0 or self._closed
            deadline = self._deadline
            if deadline is not None and now >= deadline:
                for job in retry:
                    METRICS.count_report(job.report.hostname, job.report.entry, "dropped")
                    self._finish_one()
                self._drain_dropped()
                return
            if retry and (hurry or retry[0].due <= now):
                self._attempt(heapq.heappop(retry), retry)
                continue
            if self._closed and not retry and self._queue.empty():
                return
            wait = None
            if retry:
                # Poll while retries wait, so that a flush can hurry them along.
                wait = min(max(0.0, retry[0].due - now), _RETRY_POLL)
            if deadline is not None:
                left = max(0.0, deadline - now)
                wait = left if wait is None else min(wait, left)
            try:
                job = self._queue.get(timeout=wait) if wait is not None else self._queue.get()
            except queue.Empty:
                continue
            if isinstance(job, _Job):
                self._attempt(job, retry)

    def _attempt(self, job: _Job, retry: list[_Job]) -> None:
        report = job.report
        try:
            outcome, retry_after, detail = self._post(job.uri, report)
        except Exception as exc:  # a bug or an odd URL must not kill the worker
            _delivery_log.exception("sending a pin violation report to %s failed", job.uri)
            outcome, retry_after, detail = "fail", None, f"{type(exc).__name__}: {exc}"
        if outcome == "sent":
            METRICS.count_report(report.hostname, report.entry, "sent")
            self._finish_one()
            return
        if outcome == "retry" and job.attempt < self.retries and len(retry) < self.queue_size:
            delay = min(self.max_backoff, self.backoff * (2 ** job.attempt)) * random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.max_backoff))
            _delivery_log.debug("report for %s to %s failed (%s); retry in %.2fs", report.hostname, job.uri, detail,
                                delay)
            job.attempt += 1
            job.due = time.monotonic() + delay
            job.seq = next(self._seq)
            heapq.heappush(retry, job)
            return
        METRICS.count_report(report.hostname, report.entry, "failed")
        _delivery_log.warning(
            "could not deliver pin violation report for %s to %s after %d attempt(s): %s",
            report.hostname, job.uri, job.attempt + 1, detail,
        )
        self._finish_one()

    def _post(self, uri: str, report: ViolationReport) -> tuple[str, float | None, str]:
        """POST once: ``("sent" | "retry" | "fail", retry-after seconds, detail)``."""
        parts = urlsplit(uri)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        from . import __version__

        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"pinengine/{__version__}",
            **self.headers,
        }
        conn: http.client.HTTPConnection
        try:
            if parts.scheme == "https":
                if self.ssl_context is None:
                    self.ssl_context = ssl.create_default_context()  # only the worker thread gets here
                context = self.ssl_context
                conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=self.timeout,
                                                   context=context)
            else:
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout)
            try:
                conn.request("POST", path, body=report.to_json(), headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                retry_after = response.getheader("Retry-After")
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            return "retry", None, f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            return "sent", None, str(status)
        wait = None
        if retry_after and retry_after.strip().isdigit():
            wait = float(retry_after.strip())
        if status in (408, 429) or status >= 500:
            return "retry", wait, f"HTTP {status}"
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
