"""Dynamic pins: trust-on-first-use records, hosts noted from HPKP headers, and the store lookups behind them.

``PinPolicy`` takes these methods from ``DynamicPins``; the state they use
(caches of what the store said, the noted hosts seen) is set up in
``PinPolicy.__init__``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Generic, Sequence, TypeVar

from . import _hostnames, _observe
from ._backend import PinSet, match_chain
from ._entries import DomainEntry, PinMatch, _UnreadableEntry
from ._hostnames import normalize_hostname
from ._types import POS_ANY
from ._types import chain_role as _role
from .pins import Pin, spki_pin

log = logging.getLogger("pinengine")

#: How many host names a policy remembers what the pin store said about (a
#: dynamic record, or that there is none), and how many pin sets built from
#: records it keeps: as many names as the host-name normalisation cache
#: holds, a gateway's working set (about 1 MB at most). A name pushed out is
#: read from the store again when it comes back.
RECORD_CACHE_SIZE = 4096

#: What a policy with ``hpkp`` on does for a name no entry covers while the
#: pin store cannot be read: ``"refuse"`` it (the default, fail closed), or
#: refuse only the ``"known-hosts"`` (see ``PinPolicy``).
STORE_OUTAGE_CHOICES = ("refuse", "known-hosts")

#: Seconds between two listings of the store's noted hosts (``store_outage="known-hosts"``):
#: a host noted by another process is refused during an outage once a listing has seen it.
_SNAPSHOT_SECONDS = 60.0

#: Seconds between two log lines of one kind that a server or a client can trigger on every connection.
_LOG_INTERVAL = 10.0

_K = TypeVar("_K")
_V = TypeVar("_V")


class _LRU(Generic[_K, _V]):
    """A mapping of at most ``size`` items that forgets the least recently used; safe for threads."""

    __slots__ = ("_data", "_lock", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: _K, value: _V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def pop(self, key: _K) -> None:
        with self._lock:
            self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


class _LogThrottle:
    """At most one log line per ``interval`` seconds; says how many were held back in between."""

    def __init__(self, interval: float = _LOG_INTERVAL) -> None:
        self.interval = interval
        self._next = 0.0
        self._held = 0
        self._lock = threading.Lock()

    def ready(self) -> int | None:
        """None: hold this line back. Otherwise log it: the number of lines held back since the last one."""
        at = time.monotonic()
        with self._lock:
            if at < self._next:
                self._held += 1
                return None
            held, self._held, self._next = self._held, 0, at + self.interval
            return held


class DynamicPins:
    """The dynamic-pin half of ``PinPolicy``: the records it reads from (and writes to) its store."""

    hpkp: bool
    hpkp_max_hosts: int | None
    store_outage: str
    cache_ttl: float
    _store: Any
    _records: _LRU[str, tuple[Any, float]]
    _record_pinsets: _LRU[tuple[str, ...], Any]
    _touched: _LRU[str, float]
    _noted_seen: _LRU[str, bool]
    _noted_snapshot: dict[str, bool]
    _snapshot_due: float
    _snapshot_lock: threading.Lock
    _outage_log: _LogThrottle

    @property
    def store(self) -> Any:
        """The store of dynamic pins; a SQLiteStore in the user's data directory unless one was given."""
        if self._store is None:
            from .stores import SQLiteStore

            self._store = SQLiteStore()
        return self._store

    def _record(self, name: str, fresh: bool = False) -> tuple[Any, bool]:
        """(live record or None, whether it came from the store just now)."""
        at = time.monotonic()
        if not fresh:
            cached = self._records.get(name)
            if cached is not None and at - cached[1] < self.cache_ttl:
                record = cached[0]
                if record is None or record.is_live():
                    return record, False
        record = self.store.get(name)
        self._records.put(name, (record, at))
        if self.store_outage == "known-hosts":
            if record is not None and record.source == "hpkp":
                self._noted_seen.put(name, record.include_subdomains)
            else:
                self._noted_seen.pop(name)
        return record, True

    def forget_cached(self, host: str) -> None:
        """Drop what this policy cached about ``host``'s dynamic pins (after changing the store)."""
        self._records.pop(normalize_hostname(host))

    def _noted_changed(self, host: str, record: Any) -> None:
        """``host`` was just noted (``record``) or removed (None) through this policy: forget what is cached."""
        self.forget_cached(host)
        if self.store_outage != "known-hosts":
            return
        if record is not None:
            self._noted_seen.put(record.host, record.include_subdomains)
            return
        self._noted_seen.pop(host)
        if host in self._noted_snapshot:
            self._noted_snapshot = {h: sub for h, sub in self._noted_snapshot.items() if h != host}

    def _noted_entry(self, name: str) -> DomainEntry | None:
        """An entry for a host noted from an HPKP header (the name itself, or a parent with includeSubDomains)."""
        if not self.hpkp or _hostnames.is_ip_name(name):
            return None
        from .stores import StoreError

        candidate = name
        try:
            while True:
                record, _ = self._record(candidate)
                if record is not None and record.source == "hpkp" and (
                    candidate == name or record.include_subdomains
                ):
                    return DomainEntry(
                        record.host, (), include_subdomains=record.include_subdomains, dynamic=True,
                        report_uri=(record.report_uri,) if record.report_uri else (), noted=True,
                    )
                if "." not in candidate:
                    break
                candidate = candidate.split(".", 1)[1]
        except StoreError as exc:
            return self._outage_entry(name, exc)
        if self.store_outage == "known-hosts":
            self._list_noted_hosts()
        return None

    def _outage_entry(self, name: str, exc: BaseException) -> DomainEntry | None:
        """What stands for ``name`` (no entry covers it) while the store cannot be read."""
        _observe.store_error(self, name, None, exc)
        if self.store_outage == "refuse" or self._known_noted(name):
            # Fail closed: a host that may be noted cannot be checked.
            return _UnreadableEntry(name, (), dynamic=True, noted=True, error=str(exc))
        from .metrics import count_event

        count_event("store_outage_passes")
        held = self._outage_log.ready()
        if held is not None:
            log.warning(
                "pin store is unavailable: %s is not known to be noted from an HPKP header, so its connection goes "
                "on without dynamic pins (store_outage='known-hosts')%s: %s",
                name, f"; {held} more such connections since the last message" if held else "", exc,
            )
        return None

    def _known_noted(self, name: str) -> bool:
        """Whether ``name`` is noted, or under a host noted with includeSubDomains, as far as this process knows."""
        snapshot = self._noted_snapshot
        candidate = name
        while True:
            for known in (self._noted_seen.get(candidate), snapshot.get(candidate)):
                if known is not None and (candidate == name or known):
                    return True
            if "." not in candidate:
                return False
            candidate = candidate.split(".", 1)[1]

    def _list_noted_hosts(self) -> None:
        """Take a new listing of the store's noted hosts, if the last one is old (store_outage="known-hosts")."""
        if time.monotonic() < self._snapshot_due or not self._snapshot_lock.acquire(blocking=False):
            return
        try:
            from .stores import StoreError

            self._snapshot_due = time.monotonic() + _SNAPSHOT_SECONDS
            lister = getattr(self.store, "noted_hosts", None)
            if lister is None:
                return
            from . import hpkp as hpkp_module

            limit = self.hpkp_max_hosts or hpkp_module.MAX_NOTED_HOSTS
            try:
                hosts = lister(limit=limit + 1)
            except StoreError as exc:
                _observe.store_error(self, "", None, exc)
                return
            if len(hosts) > limit:
                log.warning(
                    "the pin store holds more than %d noted hosts (this policy's hpkp_max_hosts): the snapshot "
                    "refused during a store outage holds only %d of them", limit, limit,
                )
                hosts = hosts[:limit]
            self._noted_snapshot = dict(hosts)
        finally:
            self._snapshot_lock.release()

    def _record_pinset(self, pins: tuple[str, ...]) -> Any:
        pinset = self._record_pinsets.get(pins)
        if pinset is None:
            parsed = [Pin.parse(p, allow_sha1=True) for p in pins]
            pinset = PinSet([(p.kind_code, p.algorithm, p.digest, POS_ANY) for p in parsed])
            self._record_pinsets.put(pins, pinset)
        return pinset

    def _match_record(self, record: Any, chain: Sequence[bytes], verified: bool) -> tuple[PinMatch, ...]:
        n = len(chain)
        pairs = match_chain(chain, self._record_pinset(record.pins), True)
        return tuple(
            PinMatch(i, _role(i, n), Pin.parse(record.pins[j], allow_sha1=True), "dynamic")
            for i, j in pairs
            if verified or i == 0
        )

    def _dynamic(
        self, name: str, entry: DomainEntry, chain: Sequence[bytes], verified: bool
    ) -> tuple[tuple[PinMatch, ...], str]:
        """Match ``chain`` against the keys recorded for ``name``, recording them first if there are none.

        Returns (matches, what to say on failure). A store failure raises StoreError.
        """
        from .stores import PinRecord

        key = entry.host if entry.noted else name
        record, fresh = self._record(key)
        if record is None:
            if entry.noted:
                return (), f"  The HPKP pins noted for {entry.host} could not be read."
            if not verified:
                return (), (
                    f"  No key is recorded for {name} yet, and a first key is recorded only from a chain "
                    "a trust store validated."
                )
            from . import _dynamic_cap

            if not _dynamic_cap.room(self, entry):  # a wildcard entry records a bounded number of names
                return (), _dynamic_cap.refusal(name, entry)
            pins = [str(spki_pin(chain[0]))]
            if entry.record_issuer and len(chain) > 1:
                pins.append(str(spki_pin(chain[1])))
            mine = PinRecord.create(name, pins, source="tofu", ttl=entry.ttl)
            record = self.store.record_first(mine)
            if record == mine:
                _dynamic_cap.recorded(self, entry)
            self._records.put(name, (record, time.monotonic()))
            fresh = True
        matches = self._match_record(record, chain, verified)
        if not matches and not fresh:
            # The key may have been accepted through another instance since
            # this one cached the record: read it again before refusing.
            record, _ = self._record(key, fresh=True)
            if record is None:
                return self._dynamic(name, entry, chain, verified)
            matches = self._match_record(record, chain, verified)
        if matches:
            last = self._touched.get(key) or 0.0
            at = time.time()
            if at - last >= max(self.cache_ttl, 1.0):
                self._touched.put(key, at)
                try:
                    self.store.touch(key, at)
                except Exception as exc:  # best effort: last_seen is bookkeeping
                    log.debug("could not update last_seen for %s: %s", name, exc)
            return matches, ""
        first = _dt.datetime.fromtimestamp(record.first_seen, _dt.timezone.utc)
        lines = [f"  Keys recorded for {name} (dynamic, {record.source}, first seen {first:%Y-%m-%d %H:%M:%S} UTC):"]
        lines += [f"    {p}" for p in record.pins]
        return (), "\n".join(lines)
