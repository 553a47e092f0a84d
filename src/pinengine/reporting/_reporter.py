"""The reporter: builds a report per violation and hands it to its sinks; the process-wide default."""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from typing import Any, Callable

from ._http_sink import HTTPSink
from ._report import ViolationReport
from ._sinks import LoggingSink, Sink

__all__ = ["Reporter", "default_reporter", "set_default_reporter"]

log = logging.getLogger("pinengine.reports")


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
    """The reporter of policies that have none: ``Reporter.default()`` unless replaced.

    That is a log record per distinct violation, and a POST of each report to
    the ``report_uri`` the operator wrote in the policy entry (as TrustKit
    does), through an ``HTTPSink`` with its queue, limits and deadlines.
    Server-chosen URIs (HPKP ``report-uri``) are not used. To keep reports in
    the process: ``set_default_reporter(Reporter(LoggingSink()))``, or give
    the policy its own ``reporter``.
    """
    global _default
    reporter = _default
    if reporter is None:
        with _default_lock:
            if _default is None:
                _default = Reporter.default()
            reporter = _default
    return reporter


def set_default_reporter(reporter: Reporter | None) -> Reporter | None:
    """Make ``reporter`` the default for policies without one (None: back to ``Reporter.default()``).

    Returns the previous default (None if it was never set).
    """
    global _default
    with _default_lock:
        previous, _default = _default, reporter
    return previous
