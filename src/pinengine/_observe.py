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
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ._types import Status
from .metrics import METRICS, decision_key

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
#: The Tally a remembered outcome is counted in (``decision_key`` gives its
#: key): the core counts a recalled decision there and builds no event
#: (metrics are the only observer of a match or an unpinned host).
tally = METRICS.tally
__all__ = ["VerificationEvent", "decision_key", "emit", "store_error", "tally"]
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


#: At most STORE_ERROR_LOG_BURST "pin store error" lines per
#: STORE_ERROR_LOG_INTERVAL seconds, per policy. During a store outage every
#: handshake of a dynamic (or, with HPKP, any) host fails on the store, at
#: the rate clients or servers choose: one ERROR line each would let them
#: flood the logs (and slow every handshake by a log write). The first few
#: hosts of a window are named; every error is still counted
#: (``store_errors``), and the first line of the next window says how many
#: were held back.
STORE_ERROR_LOG_INTERVAL = 10.0
STORE_ERROR_LOG_BURST = 10


class _Throttle:
    """At most ``burst`` log lines per window of ``interval`` seconds; counts the lines held back."""

    def __init__(self, interval: float, burst: int) -> None:
        self.interval = interval
        self.burst = burst
        self._window_end = 0.0
        self._used = 0
        self._held = 0
        self._lock = threading.Lock()

    def ready(self) -> int | None:
        """None: hold this line back. Otherwise log it: how many lines were held back since the last one."""
        at = time.monotonic()
        with self._lock:
            if at >= self._window_end:
                self._window_end, self._used = at + self.interval, 0
            if self._used >= self.burst:
                self._held += 1
                return None
            self._used += 1
            held, self._held = self._held, 0
            return held


# One throttle per policy (a gateway has a few, long-lived): an outage seen
# through one policy does not silence another's first message.
_store_error_logs: weakref.WeakKeyDictionary[Any, _Throttle] = weakref.WeakKeyDictionary()
_store_error_logs_lock = threading.Lock()


def _store_error_log(policy: Any) -> _Throttle:
    with _store_error_logs_lock:
        throttle = _store_error_logs.get(policy)
        if throttle is None:
            throttle = _store_error_logs[policy] = _Throttle(STORE_ERROR_LOG_INTERVAL, STORE_ERROR_LOG_BURST)
        return throttle


def store_error(policy: object, hostname: str, entry: DomainEntry | None, error: BaseException) -> None:
    """A dynamic-pin store could not be used for ``hostname``: count it, and log it (rate-limited; never raises)."""
    try:
        held = _store_error_log(policy).ready()
        if held is not None:
            logging.getLogger("pinengine").error(
                "pin store error for %s: %s%s", hostname, error,
                f" ({held} more store errors since the last message, not logged)" if held else "",
            )
        from .metrics import count_store_error

        count_store_error(hostname, entry)
    except Exception:  # pragma: no cover - bookkeeping must never break verification
        pass
