"""The seam between verification and what watches it (violation reports, metrics).

``PinPolicy`` builds one ``VerificationEvent`` per decision and passes it to
``emit``. Nothing here may raise into the handshake or block it: every event
is counted (``pinengine.metrics``; a few hundred nanoseconds), and violations
(``mismatch``, ``report-only``) go to the policy's reporter, or to the default
reporter (structured logging only, see ``pinengine.reporting``) when the
policy has none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ._types import Status
from .metrics import METRICS

if TYPE_CHECKING:
    from .policy import DomainEntry, PinMatch, PinPolicy


@dataclass(frozen=True)
class VerificationEvent:
    """One decision of a policy.

    ``status`` is a VerificationResult status (``match``, ``not-pinned``,
    ``expired``, ``report-only``, ``mismatch``) or ``parse-error``.
    ``validated_chain`` is the chain that was checked; ``served_chain`` what
    the peer sent, when the caller knows it (the TLS hooks do).
    """

    policy: PinPolicy
    hostname: str
    port: int | None
    status: str
    entry: DomainEntry | None
    validated_chain: Sequence[bytes]
    served_chain: Sequence[bytes] | None
    verified: bool
    matches: tuple[PinMatch, ...]
    blocked: tuple[PinMatch, ...]
    message: str
    seconds: float
    error: BaseException | None = None


# A library installs no handler of its own, but this one keeps Python's
# last-resort handler from printing pinengine's warnings to stderr when the
# application configured no logging: records still propagate to whatever
# handlers the application adds.
logging.getLogger("pinengine").addHandler(logging.NullHandler())

_record = METRICS.record
_VIOLATIONS = frozenset((Status.MISMATCH, Status.REPORT_ONLY))


def emit(event: VerificationEvent) -> None:
    """Count the event; hand a violation to the policy's reporter (or the default one). Never raises."""
    try:
        _record(event)
    except Exception:  # pragma: no cover - counting must never break verification
        logging.getLogger("pinengine").exception("pinengine metrics failed")
    if event.status in _VIOLATIONS:
        _report(event)


def _report(event: VerificationEvent) -> None:
    try:
        reporter: Any = getattr(event.policy, "reporter", None)
        if reporter is None:
            from .reporting import default_reporter

            reporter = default_reporter()
        reporter.report(event)
    except Exception:  # a broken reporter must not break verification
        logging.getLogger("pinengine").exception("pin violation reporter failed")


def store_error(policy: object, hostname: str, entry: DomainEntry | None, error: BaseException) -> None:
    """A dynamic-pin store could not be used for ``hostname``: log and count it (never raises)."""
    try:
        logging.getLogger("pinengine").error("pin store error for %s: %s", hostname, error)
        from .metrics import count_store_error

        count_store_error(hostname, entry)
    except Exception:  # pragma: no cover - bookkeeping must never break verification
        pass
