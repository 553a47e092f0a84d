"""Pin violation reports (RFC 7469 section 3 format) and where they go.

A ``Reporter`` turns each violation a policy sees (a ``mismatch`` refused in
enforce mode, or a ``report-only`` violation let through) into a
``ViolationReport`` and hands it to its sinks:

- ``LoggingSink``: one structured log record per distinct violation (logger
  ``pinengine.reports``, the report as ``record.pin_report``), de-duplicated
  and rate-limited per host, with a count of what was left out;
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
default reporter, ``Reporter.default()``: it logs, and POSTs each report to
the ``report_uri`` the operator wrote in the entry (as TrustKit does), so
following the rollout steps gets reports to the collector. To keep reports in
the process: ``set_default_reporter(Reporter(LoggingSink()))``, or give the
policy ``reporter=Reporter(LoggingSink())``.

The package, by role: ``_report`` (the report and its JSON), ``_sinks``
(logging, callback), ``_http_sink`` (the HTTP sink) with ``_destinations``
(report URIs and the checks on server-chosen ones), ``_admission``
(de-duplication, rate limits), ``_delivery`` (queue, senders, retries) and
``_http_client`` (one POST), and ``_reporter`` (the reporter and the default).
"""

from __future__ import annotations

# The bounds HTTPSink documents (public, though not in __all__, as before the split).
from ._delivery import DEFAULT_WORKERS as DEFAULT_WORKERS
from ._destinations import MAX_REPORT_URI_LENGTH as MAX_REPORT_URI_LENGTH
from ._destinations import MAX_SERVER_REPORT_URIS as MAX_SERVER_REPORT_URIS
from ._http_client import MAX_LOOKUPS as MAX_LOOKUPS
from ._http_client import MAX_RESPONSE_HEAD as MAX_RESPONSE_HEAD
from ._http_sink import HTTPSink
from ._report import ViolationReport
from ._reporter import Reporter, default_reporter, set_default_reporter
from ._sinks import CallbackSink, LoggingSink, Sink

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

