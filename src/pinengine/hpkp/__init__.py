"""HTTP Public Key Pinning (RFC 7469): parse ``Public-Key-Pins`` headers and note hosts from them.

``parse_header(value)`` reads one header field value into an ``HPKPHeader``
(or raises ``HPKPError`` quoting the header and naming the problem).
``note_response(policy, hostname, headers, pin_result=..., pin_chain=...)``
applies the noting rules of RFC 7469 §2.3.1 and §2.5 to a response: the host
is noted in ``policy.store`` (a ``PinRecord`` with ``source="hpkp"``, living
``max-age`` seconds) only when the header came over a connection whose chain
was validated and passed its pins, at least one header pin matches a key of
that chain, and at least one header pin (the backup) matches none. Once
noted, ``PinPolicy.verify`` enforces the host's pins (when ``policy.hpkp`` is
on). ``max-age=0`` removes the host's noted pins. ``Public-Key-Pins-Report-Only``
is never noted: when the chain fails its pins a warning is logged (and the
policy's reporter, if any, gets an event).

Every header is hostile: a field value longer than ``MAX_HEADER_LENGTH``,
with more than ``MAX_PINS`` pins or a report-uri longer than
``MAX_REPORT_URI_LENGTH`` is refused before (or while) it is parsed, in
linear time. The hosts noted are capped per store and per registrable
domain (``MAX_NOTED_HOSTS``, ``MAX_NOTED_PER_DOMAIN``, or the policy's
``hpkp_max_hosts`` / ``hpkp_max_hosts_per_domain``): past a cap a new host
is not noted, and nothing noted before is dropped. Refusals are logged at
most once per ten seconds per kind and policy, and counted
(``hpkp_headers_refused``, ``hpkp_notes_refused`` in ``pinengine.stats()``).

The TLS hooks feed responses in: ``pinengine.hooks.requests.PinnedAdapter``
does so by itself when ``policy.hpkp`` is on; for httpx use
``pinengine.hooks.httpx.hpkp_event_hook(policy)``.
``note_pinned_response`` is the glue both of those hooks call (internal API).

The package, by role: ``_header`` (the header grammar: ``parse_header``,
``HPKPHeader``, ``HPKPError``), ``_fields`` (the first header field of a
response), ``_response`` (``note_response``: the connection checks),
``_noting`` (noting a host into the store, the caps), ``_report_only``
(Pin Validation of a report-only header), ``_report_uri`` (resolving a
``report-uri``), ``_outcomes`` (throttled logging of what became of a
header) and ``_hooks`` (the glue of the HTTP hooks).
"""

from __future__ import annotations

from ._header import (
    HEADER,
    MAX_HEADER_LENGTH,
    MAX_PINS,
    MAX_REPORT_URI_LENGTH,
    REPORT_ONLY_HEADER,
    HPKPError,
    HPKPHeader,
    parse_header,
)
from ._hooks import note_pinned_response
from ._noting import MAX_AGE_CAP, MAX_NOTED_HOSTS, MAX_NOTED_PER_DOMAIN
from ._response import note_response

__all__ = [
    "HEADER",
    "MAX_AGE_CAP",
    "MAX_HEADER_LENGTH",
    "MAX_NOTED_HOSTS",
    "MAX_NOTED_PER_DOMAIN",
    "MAX_PINS",
    "MAX_REPORT_URI_LENGTH",
    "REPORT_ONLY_HEADER",
    "HPKPError",
    "HPKPHeader",
    "note_pinned_response",
    "note_response",
    "parse_header",
]
