"""A pin store in one JSON file: easy to read, diff and ship; for a few hosts and rare writes."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator, Union

from .._files import read_at_most
from ._base import (
    MAX_STORE_FILE_BYTES,
    Change,
    CountedChange,
    PinRecord,
    PinStore,
    StoreError,
    dump_document,
    noted_domain,
    parse_document,
)

__all__ = ["JSONFileStore"]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing; never deleted)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            while True:  # LK_LOCK gives up after ~10 s: keep waiting like flock does
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            yield  # closing the descriptor releases the lock
    finally:
        os.close(fd)


class JSONFileStore(PinStore):
    """Records in a JSON file, the document ``export_records`` writes.

    Every change rewrites the file atomically (a temporary file in the same
    directory, fsync, ``os.replace``) while holding an exclusive lock on
    ``<path>.lock``, so threads and processes sharing the file never lose an
    update, and a crash leaves the old file or the new one, never a torn one.
    A missing file is an empty store; a file that cannot be read as a pin
    document raises StoreError naming it and is never overwritten.

    So a write costs time in proportion to the whole store: keep it for a
    few hosts. HPKP noting is capped (see ``pinengine.hpkp``), which bounds
    the file; a repeated, unchanged header does not write.
    """

    def __init__(self, path: Union[str, os.PathLike[str]]) -> None:
        super().__init__()
        self.path = Path(os.fspath(path))
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()
        self._cache: tuple[bytes, dict[str, PinRecord]] | None = None

    def __repr__(self) -> str:
        return f"JSONFileStore({str(self.path)!r})"

    def _load(self) -> dict[str, PinRecord]:
        try:
            data = read_at_most(self.path, MAX_STORE_FILE_BYTES)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read: {exc}") from None
        if data is None:
            raise StoreError(f"{self.path}: larger than {MAX_STORE_FILE_BYTES} bytes (MAX_STORE_FILE_BYTES)")
        cache = self._cache
        if cache is not None and cache[0] == data:
            return cache[1]
        if not data.strip():
            raise StoreError(f"{self.path}: empty file (a pin store file holds a JSON document)")
        records = {r.host: r for r in parse_document(data, where=str(self.path))}
        self._cache = (data, records)
        return records

    def _write(self, records: dict[str, PinRecord]) -> None:
        data = dump_document(records.values()).encode("utf-8")
        directory = self.path.parent
        prefix = f".{self.path.name}."
        for stale in directory.glob(f"{prefix}*.tmp"):  # left by a writer that died; we hold the lock
            with contextlib.suppress(OSError):
                stale.unlink()
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
        try:
            with contextlib.suppress(OSError):
                os.chmod(tmp, os.stat(self.path).st_mode & 0o777)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if sys.platform != "win32":  # make the rename itself durable
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._cache = (data, records)

    # Reads need no lock: the file is only ever replaced whole.
    def _read(self, host: str) -> PinRecord | None:
        return self._load().get(host)

    def _read_all(self) -> list[PinRecord]:
        return list(self._load().values())

    def _transact(self, host: str, change: Change) -> PinRecord | None:
        return self._locked_change(host, lambda records, current: change(current), None)

    def _transact_counted(self, host: str, change: CountedChange, now: float) -> PinRecord | None:
        # The counts come from the records in memory (the file is read whole anyway).
        def counted(records: dict[str, PinRecord], current: PinRecord | None) -> PinRecord | None:
            domain = noted_domain(host)
            total = in_domain = 0
            for other in records.values():
                if other.source == "hpkp" and other.host != host:
                    total += 1
                    in_domain += noted_domain(other.host) == domain
            return change(current, in_domain, total)

        return self._locked_change(host, counted, now)

    def _locked_change(
        self,
        host: str,
        change: Callable[[dict[str, PinRecord], PinRecord | None], PinRecord | None],
        purge_at: float | None,
    ) -> PinRecord | None:
        """Apply ``change`` (given every record and the host's) holding the locks; write if anything changed.

        With ``purge_at``, HPKP records expired by then are deleted first.
        """
        with self._thread_lock:
            try:
                with _locked(self._lock_path):
                    records = self._load()
                    expired = set() if purge_at is None else {
                        h for h, r in records.items() if r.source == "hpkp" and not r.is_live(purge_at)
                    }
                    if expired:
                        records = {h: r for h, r in records.items() if h not in expired}
                    current = records.get(host)
                    new = change(records, current)
                    if new is not current or expired:
                        records = dict(records)
                        if new is None:
                            records.pop(host, None)
                        elif new is not current:
                            records[host] = new
                        self._write(records)
                    return new
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot write: {exc}") from None

    def _noted_hosts(self, limit: int, now: float) -> list[tuple[str, bool]]:
        found = [(r.host, r.include_subdomains) for r in self._load().values() if r.source == "hpkp" and r.is_live(now)]
        return found[:limit]
