"""A pin store in a dict: for tests, and for one process that need not remember."""

from __future__ import annotations

import threading

from ._base import Change, PinRecord, PinStore

__all__ = ["MemoryStore"]


class MemoryStore(PinStore):
    """Records kept in this process only, lost when it ends; thread-safe."""

    def __init__(self) -> None:
        super().__init__()
        self._records: dict[str, PinRecord] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._records)} records)"

    def _read(self, host: str) -> PinRecord | None:
        with self._lock:
            return self._records.get(host)

    def _read_all(self) -> list[PinRecord]:
        with self._lock:
            return list(self._records.values())

    def _transact(self, host: str, change: Change) -> PinRecord | None:
        with self._lock:
            current = self._records.get(host)
            new = change(current)
            if new is not current:
                if new is None:
                    del self._records[host]
                else:
                    self._records[host] = new
            return new

    def _close(self) -> None:
        with self._lock:
            self._records.clear()
