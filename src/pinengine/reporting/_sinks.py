"""Sinks that stay in the process: a log record or a function call per violation."""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol

from ._report import ViolationReport

__all__ = ["CallbackSink", "LoggingSink", "Sink"]


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
