"""What became of a header: the outcome strings, logged at most once per ten seconds per kind and policy.

A server can send a header on every response, so every line it can trigger
is throttled (per policy and kind of line), and refusals are counted
(``hpkp_headers_refused``).
"""

from __future__ import annotations

import logging
import weakref

from ..metrics import count_event
from ..policy import PinPolicy, _LogThrottle

__all__ = ["ignored", "log", "log_throttled", "refused"]

log = logging.getLogger("pinengine")

# Per policy, one throttle per kind of log line a server can trigger on every response.
_THROTTLES: weakref.WeakKeyDictionary[PinPolicy, dict[str, _LogThrottle]] = weakref.WeakKeyDictionary()


def log_throttled(policy: PinPolicy, kind: str, level: int, message: str) -> None:
    """Log ``message`` unless a line of this ``kind`` was logged for ``policy`` in the last ten seconds."""
    if not log.isEnabledFor(level):
        return
    try:
        throttles = _THROTTLES.setdefault(policy, {})
    except TypeError:  # not weak-referenceable: no throttling
        throttles = {}
    throttle = throttles.get(kind)
    if throttle is None:
        throttle = throttles.setdefault(kind, _LogThrottle())
    held = throttle.ready()
    if held is None:
        return
    if held:
        message += f"\n  ({held} similar messages held back since the last one)"
    log.log(level, "%s", message)


def ignored(policy: PinPolicy, name: str, why: str, level: int = logging.INFO) -> str:
    """A header ignored (the connection or the store does not allow noting it): logged (rate-limited)."""
    log_throttled(policy, "ignored", level, f"HPKP header from {name} ignored: {why}")
    return f"ignored: {why}"


def refused(policy: PinPolicy, name: str, why: str) -> str:
    """A header refused as malformed or over a bound: counted, logged (rate-limited)."""
    count_event("hpkp_headers_refused")
    log_throttled(policy, "refused", logging.WARNING, f"HPKP header from {name} refused: {why}")
    return f"ignored: {why}"
