"""Which reports an HTTP sink accepts: de-duplication and the rate limits.

A report for the same host, entry, status and chains as one accepted within
``dedupe_interval`` seconds is suppressed (a day by default, as TrustKit
does); at most ``host_limit`` reports per host per ``host_window`` seconds
are accepted (a MITM box that makes a leaf per connection makes different
chains); server-chosen destinations get at most ``server_uri_limit`` reports
per host per ``server_uri_window`` seconds. Every table stays within
``max_tracked`` entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

from ._report import ViolationReport

__all__ = ["Admission"]


class Admission:
    """The de-duplication and rate-limit tables of one sink (thread-safe)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        dedupe_interval: float,
        host_limit: int,
        host_window: float,
        server_uri_limit: int,
        server_uri_window: float,
        max_tracked: int,
    ) -> None:
        self.clock = clock
        self.dedupe_interval = dedupe_interval
        self.host_limit = host_limit
        self.host_window = host_window
        self.server_uri_limit = server_uri_limit
        self.server_uri_window = server_uri_window
        self.max_tracked = max_tracked
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[Any, ...], float] = OrderedDict()
        self._hosts: dict[str, tuple[float, int]] = {}
        self._destinations: dict[str, tuple[float, int]] = {}

    def admit(self, report: ViolationReport) -> bool:
        """De-duplication and the per-host rate limit. True: send it."""
        now = self.clock()
        key = (report.hostname, report.entry, report.status, report.chain_digest)
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self.dedupe_interval:
                return False
            start, count = self._hosts.get(report.hostname, (now, 0))
            if now - start >= self.host_window:
                start, count = now, 0
            if count >= self.host_limit:
                return False
            self._hosts[report.hostname] = (start, count + 1)
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > self.max_tracked:
                self._seen.popitem(last=False)
            self._trim(self._hosts, now, self.host_window)
        return True

    def admit_destination(self, host: str) -> bool:
        """The per-destination rate limit of server-chosen URIs. True: send it."""
        now = self.clock()
        with self._lock:
            start, count = self._destinations.get(host, (now, 0))
            if now - start >= self.server_uri_window:
                start, count = now, 0
            if count >= self.server_uri_limit:
                return False
            self._destinations[host] = (start, count + 1)
            self._trim(self._destinations, now, self.server_uri_window)
        return True

    def _trim(self, table: dict[str, tuple[float, int]], now: float, window: float) -> None:
        # With self._lock held: keep a rate table within max_tracked (expired windows first).
        if len(table) > self.max_tracked:
            for name in [n for n, (s, _) in table.items() if now - s >= window]:
                del table[name]
            while len(table) > self.max_tracked:
                del table[next(iter(table))]
