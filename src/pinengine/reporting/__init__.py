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

