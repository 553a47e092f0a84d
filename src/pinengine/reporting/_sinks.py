"""Sinks that stay in the process: a log record or a function call per violation."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Protocol

from ._admission import Admission
from ._report import ViolationReport

__all__ = ["CallbackSink", "LoggingSink", "Sink"]


class Sink(Protocol):
    """Where reports go: ``send`` must not block; ``flush``/``close`` are optional."""

    def send(self, report: ViolationReport) -> None: ...


class LoggingSink:
    """One log record per distinct violation on ``logger`` (default ``pinengine.reports``).

    The message is a one-line summary (host, port, status, entry, served
    chain pins, known pins); the whole report, as ``ViolationReport.to_dict()``,
    is attached to the record as ``record.pin_report`` for structured log
    handlers (JSON formatters pick up extra attributes).

    A gateway sees the same violation on every handshake, so records are
    de-duplicated and rate-limited as the HTTP sink's reports are: a report
    like one logged within ``dedupe_interval`` seconds (same host, entry,
    status and chains) is not logged again, and at most ``host_limit``
    records per host per ``host_window`` seconds are. The next record logged
    for that host says how many were left out (``record.pin_reports_suppressed``).
    ``dedupe_interval=0`` and ``host_limit=None`` log every violation.
    """

    def __init__(
        self,
        logger: logging.Logger | str = "pinengine.reports",
        level: int = logging.WARNING,
        *,
        dedupe_interval: float = 60.0,
        host_limit: int | None = 10,
        host_window: float = 60.0,
        max_tracked: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level
        self.max_tracked = max_tracked
        self._admission = Admission(
            clock=clock, dedupe_interval=dedupe_interval,
            host_limit=host_limit if host_limit is not None else sys.maxsize, host_window=host_window,
            server_uri_limit=0, server_uri_window=1.0, max_tracked=max_tracked,
        )
        self._lock = threading.Lock()
        self._left_out: OrderedDict[str, int] = OrderedDict()

    def send(self, report: ViolationReport) -> None:
        if not self.logger.isEnabledFor(self.level):
            return
        host = report.hostname
        if not self._admission.admit(report):
            with self._lock:
                self._left_out[host] = self._left_out.pop(host, 0) + 1
                while len(self._left_out) > self.max_tracked:
                    self._left_out.popitem(last=False)
            return
        with self._lock:
            left_out = self._left_out.pop(host, 0)
        message = report.summary()
        if left_out:
            message += f" ({left_out} more for {host} not logged since the last record)"
        self.logger.log(self.level, "%s", message,
                        extra={"pin_report": report.to_dict(), "pin_reports_suppressed": left_out})


class CallbackSink:
    """Calls ``callback(report)`` for every violation, in the thread that verified (keep it quick)."""

    def __init__(self, callback: Callable[[ViolationReport], Any]) -> None:
        self.callback = callback

    def send(self, report: ViolationReport) -> None:
        self.callback(report)
