"""The seam between verification and what watches it (violation reports, metrics).

``PinPolicy`` builds one ``VerificationEvent`` per decision and passes it to
``emit``. Nothing here may raise into the handshake or block it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

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


def emit(event: VerificationEvent) -> None:
    """Hand an event to the policy's reporter and to the metrics (never raises)."""
    reporter: Any = getattr(event.policy, "reporter", None)
    if reporter is not None and event.status in ("mismatch", "report-only"):
        try:
            reporter.report(event)
        except Exception:  # a broken reporter must not break verification
            import logging

            logging.getLogger("pinengine").exception("pin violation reporter failed")


def store_error(policy: PinPolicy, hostname: str, entry: DomainEntry | None, error: BaseException) -> None:
    """A dynamic-pin store could not be used while verifying ``hostname`` (counted, logged)."""
    import logging

    logging.getLogger("pinengine").error("pin store error for %s: %s", hostname, error)
