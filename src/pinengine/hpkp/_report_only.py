"""Pin Validation of a ``Public-Key-Pins-Report-Only`` header (RFC 7469 §2.1.5): warn and report, never note."""

from __future__ import annotations

import logging
from typing import Sequence

from .. import _observe
from ..pins import Pin
from ..policy import REPORT_ONLY, DomainEntry, PinPolicy, _ip_literal
from ._header import REPORT_ONLY_HEADER, HPKPHeader
from ._outcomes import log, log_throttled

__all__ = ["check_report_only"]


def check_report_only(
    policy: PinPolicy, name: str, header: HPKPHeader, chain: Sequence[bytes], chain_pins: list[Pin],
    report_uri: str | None,
) -> str:
    """Pin Validation of a report-only header: log (and report) a failure; never note anything."""
    if any(p in chain_pins for p in header.pins):
        log.debug("HPKP report-only pins for %s match the validated chain", name)
        return "report-only: pins valid"
    lines = [f"HPKP report-only pin validation failure for {name} (connection allowed, nothing noted):"]
    lines.append("  Validated chain:")
    lines += [f"    {i}: {p}" for i, p in enumerate(chain_pins)]
    lines.append(f"  Pins in {REPORT_ONLY_HEADER}:" + ("" if header.pins else " none"))
    lines += [f"    {p}" for p in header.pins]
    if report_uri:
        lines.append(f"  report-uri: {report_uri}")
    message = "\n".join(lines)
    log_throttled(policy, "report-only", logging.WARNING, message)
    reporter = getattr(policy, "reporter", None)
    if reporter is not None:
        try:
            # noted=True: the report URI is the server's choice, not the operator's.
            entry = DomainEntry(
                name, header.pins, mode=REPORT_ONLY,
                include_subdomains=header.include_subdomains and _ip_literal(name) is None,
                report_uri=(report_uri,) if report_uri else (), require_backup_pin=False, noted=True,
            )
            reporter.report(
                _observe.VerificationEvent(
                    policy=policy, hostname=name, port=None, status="report-only", entry=entry,
                    validated_chain=list(chain), served_chain=None, verified=True, matches=(), blocked=(),
                    message=message, seconds=0.0,
                )
            )
        except Exception:  # a broken reporter must not break the response
            log.exception("pin violation reporter failed (HPKP report-only)")
    return "report-only: pin validation failed (warning logged)"

