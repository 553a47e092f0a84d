"""A pin store in a dict: for tests, and for one process that need not remember."""

from __future__ import annotations

import threading

from ._base import Change, CountedChange, NotedIndex, PinRecord, PinStore

__all__ = ["MemoryStore"]


class MemoryStore(PinStore):
    """Records kept in this process only, lost when it ends; thread-safe."""

    def __init__(self) -> None:
        super().__init__()
        self._records: dict[str, PinRecord] = {}
        self._noted = NotedIndex()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._records)} records)"

    def _read(self, host: str) -> PinRecord | None:
        with self._lock:
            return self._records.get(host)

    def _read_all(self) -> list[PinRecord]:
        with self._lock:
            return list(self._records.values())

    def _apply(self, host: str, current: PinRecord | None, new: PinRecord | None) -> None:
        # With the lock held.
        if new is not current:
            if new is None:
                del self._records[host]
            else:
                self._records[host] = new
            self._noted.change(current, new)

    def _transact(self, host: str, change: Change) -> PinRecord | None:
        with self._lock:
            current = self._records.get(host)
            new = change(current)
            self._apply(host, current, new)
            return new

    def _transact_counted(self, host: str, change: CountedChange, now: float) -> PinRecord | None:
        with self._lock:
            for gone in self._noted.expired(now):
                self._apply(gone, self._records[gone], None)
            current = self._records.get(host)
            new = change(current, *self._noted.counts(host))
            self._apply(host, current, new)
            return new

    def _noted_hosts(self, limit: int, now: float) -> list[tuple[str, bool]]:
        with self._lock:
            hosts = self._noted.live(now)[:limit]
            return [(host, self._records[host].include_subdomains) for host in hosts]

    def _close(self) -> None:
        with self._lock:
            self._records.clear()
            self._noted = NotedIndex()
