"""A bound on the first keys one wildcard dynamic entry records (trust on first use).

A dynamic entry ``**.example.com`` (or ``*.example.com``) records a key for
each name below it that a client connects to. Whoever can make the client
connect to names of their choosing (links, redirects, webhooks, a wildcard
DNS record and certificate) would otherwise add one store record per name,
without end: a store that only grows, and for the JSON file store a rewrite
of the whole file per new name. So one wildcard entry records at most
``MAX_HOSTS_PER_ENTRY`` live trust-on-first-use records; a new name past
that is refused (fail closed: its key cannot be recorded, so it cannot be
checked), with a message naming the cap, until records expire (``ttl``) or
are forgotten (``pinengine store forget``). Names already recorded are not
affected, nor are keys an operator accepted.

The count comes from a listing of the store, taken at most once every
``REFRESH_SECONDS`` per policy and entry, plus the records this process
wrote since: processes sharing a store each stop at the cap as they last saw
it, so the store holds at most a few times the cap, never without bound.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

#: Live trust-on-first-use records one wildcard dynamic entry may hold.
MAX_HOSTS_PER_ENTRY = 1000
#: Seconds between two listings of the store for one entry's count.
REFRESH_SECONDS = 60.0

_lock = threading.Lock()
# policy -> entry host pattern -> [count, monotonic time of the listing it came from]
_counts: weakref.WeakKeyDictionary[Any, dict[str, list[float]]] = weakref.WeakKeyDictionary()


def _counted(policy: Any, entry: Any) -> list[float]:
    with _lock:
        per_entry = _counts.get(policy)
        if per_entry is None:
            per_entry = _counts[policy] = {}
        known = per_entry.get(entry.host)
        if known is not None and time.monotonic() < known[1] + REFRESH_SECONDS:
            return known
    # A listing: StoreError goes to the caller (the connection is refused, as for any store failure).
    count = sum(1 for record in policy.store.list() if record.source == "tofu" and entry.covers(record.host))
    with _lock:
        known = per_entry[entry.host] = [float(count), time.monotonic()]
        return known


def room(policy: Any, entry: Any) -> bool:
    """Whether a first key may be recorded for a new name under ``entry`` (always, for an exact entry)."""
    if entry.pattern == "exact":
        return True
    return _counted(policy, entry)[0] < MAX_HOSTS_PER_ENTRY


def recorded(policy: Any, entry: Any) -> None:
    """This process recorded a first key for a new name under ``entry``."""
    if entry.pattern == "exact":
        return
    with _lock:
        known = _counts.get(policy, {}).get(entry.host)
        if known is not None:
            known[0] += 1


def refusal(name: str, entry: Any) -> str:
    """What a refused connection says (a line of the failure message)."""
    return (
        f"  No key is recorded for {name}, and the entry {entry.host!r} already holds {MAX_HOSTS_PER_ENTRY} "
        "recorded names (pinengine._dynamic_cap.MAX_HOSTS_PER_ENTRY): no more are recorded until some expire "
        "or are forgotten (pinengine store forget)."
    )
