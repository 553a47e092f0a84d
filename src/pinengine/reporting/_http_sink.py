"""The HTTP sink: POSTs each report's JSON to its collectors, never blocking the handshake.

The sink decides where a report goes (the operator's URIs, and server-chosen
ones only when allowed) and what is counted and logged; ``_destinations``
parses and checks the URIs, ``_admission`` de-duplicates and rate-limits,
``_delivery`` queues and retries, and ``_http_client`` makes each attempt.
"""

from __future__ import annotations

import atexit
import logging
import os
import ssl
import threading
import time
import weakref
from typing import Any, Callable, Iterable

from ..metrics import METRICS
from ._admission import Admission
from ._delivery import DEFAULT_WORKERS, Delivery, Job
from ._destinations import MAX_SERVER_REPORT_URIS, Target, _Refused, parse_target, shown
from ._http_client import check_headers, post
from ._report import ViolationReport

__all__ = ["HTTPSink"]

_delivery_log = logging.getLogger("pinengine.reports.delivery")

# At most one warning a minute per sink about refused report URIs (the rest go
# to DEBUG): a hostile server could otherwise fill the log.
_REFUSAL_LOG_INTERVAL = 60.0
# Likewise for a full queue.
_DROP_LOG_INTERVAL = 60.0

_live_sinks: weakref.WeakSet[HTTPSink] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:  # pragma: no cover - runs at interpreter exit
    for sink in list(_live_sinks):
        try:
            sink.close(sink.exit_timeout)
        except Exception:
            pass


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
        self._own_targets: dict[str, Target] = {}
        for uri in self.uris:
            try:
                self._own_targets[uri] = parse_target(uri, server=False)
            except _Refused as exc:
                raise ValueError(f"report URI {shown(uri)} {exc}") from None
        self.headers = dict(headers or {})
        check_headers(self.headers)
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
        self._lock = threading.Lock()  # the log throttles
        self._context_lock = threading.Lock()
        self._admission = Admission(
            clock=self.clock, dedupe_interval=self.dedupe_interval, host_limit=self.host_limit,
            host_window=self.host_window, server_uri_limit=self.server_uri_limit,
            server_uri_window=self.server_uri_window, max_tracked=self.max_tracked,
        )
        self._delivery = Delivery(
            self._attempt, self._finished, workers=self.workers, queue_size=self.queue_size,
            retries=self.retries, backoff=self.backoff, max_backoff=self.max_backoff,
        )
        self._last_drop_log = -1e18
        self._last_refusal_log = -1e18

    # -- the caller's side ------------------------------------------------------------

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
            report.hostname, shown(uri), why, outcome,
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
        targets: list[Target] = []
        for uri in operator:
            own = self._own_targets.get(uri)
            if own is not None:
                targets.append(own)
                continue
            try:
                targets.append(parse_target(uri, server=False))
            except _Refused as exc:  # a policy entry's report_uri that cannot be used
                self._refuse(report, uri, str(exc), "failed")
        chosen: list[Target] = []
        for uri in server:
            if not self.allow_server_report_uris:
                self._refuse(report, uri, "was chosen by the server, and server-chosen report URIs are off "
                             "(HTTPSink(allow_server_report_uris=True) allows public https ones)")
                continue
            try:
                chosen.append(parse_target(uri, server=True))
            except _Refused as exc:
                self._refuse(report, uri, f"was chosen by the server and {exc}")
        if not targets and not chosen:
            return
        if self._delivery.closed:
            METRICS.count_report(report.hostname, report.entry, "dropped", len(targets) + len(chosen))
            return
        if not self._admission.admit(report):
            METRICS.count_report(report.hostname, report.entry, "suppressed")
            return
        for target in chosen:
            if self._admission.admit_destination(target.host):
                targets.append(target)
            else:
                METRICS.count_report(report.hostname, report.entry, "suppressed")
        for target in targets:
            self._enqueue(Job(0.0, 0, target, report))

    def _enqueue(self, job: Job) -> None:
        report = job.report
        outcome = self._delivery.enqueue(job)
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
        return self._delivery.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop accepting reports, deliver what is queued within ``timeout`` s, stop the threads.

        Returns True when everything queued was delivered or given up on;
        False when reports were still undelivered at the deadline (they are
        dropped and counted in ``reports_dropped``).
        """
        _live_sinks.discard(self)
        return self._delivery.close(timeout)

    def __enter__(self) -> HTTPSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the senders' side ------------------------------------------------------------------

    def _attempt(self, job: Job) -> tuple[str, float | None, str]:
        """One attempt at ``job`` (in a sender thread); never raises."""
        target = job.target
        try:
            context = self._server_tls_context if target.server else self._operator_tls_context
            return post(target, job.report.to_json(), timeout=self.timeout, headers=self.headers, tls_context=context)
        except _Refused as exc:
            return "refused", None, str(exc)
        except Exception as exc:  # a bug or an odd URL must not kill the sender
            _delivery_log.exception("sending a pin violation report to %s failed", shown(target.uri))
            return "fail", None, f"{type(exc).__name__}: {exc}"

    def _finished(self, job: Job, outcome: str, delay: float, detail: str) -> None:
        """Count and log what became of ``job`` (see ``Delivery``)."""
        report = job.report
        target = job.target
        if outcome == "retry":
            _delivery_log.debug("report for %s to %s failed (%s); retry in %.2fs", report.hostname,
                                shown(target.uri), detail, delay)
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
                report.hostname, shown(target.uri), job.attempt + 1, detail,
            )

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
