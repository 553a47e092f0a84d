"""Pin records, the PinStore interface, and the JSON document every store exports and imports."""

from __future__ import annotations

import builtins
import functools
import json
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Callable, Iterable, Union

from .. import _json
from .._errors import NoRecordError, StoreError, named, quoted
from .._hostnames import normalize_hostname
from ..pins import MAX_PIN_LIST, Pin
from ..reporting._destinations import MAX_REPORT_URI_LENGTH

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_RECORD_BYTES",
    "MAX_RECORD_PINS",
    "MAX_STORE_FILE_BYTES",
    "SOURCES",
    "NoRecordError",
    "PinRecord",
    "PinStore",
    "StoreError",
    "export_records",
    "import_records",
]

#: Where a record came from: trust on first use, an HPKP header, a key accepted
#: by an operator (or by the policy for a host), an import.
SOURCES = ("tofu", "hpkp", "accepted", "imported")

#: The JSON document of ``export_records`` (and of a ``JSONFileStore`` file).
FORMAT = "pinengine-pin-store"
FORMAT_VERSION = 1

#: The most pins one record holds: as many as one pin list (``Pin.parse_list``).
#: Every verify of a dynamic entry reads its record, so a store someone else
#: can write (a shared Redis, a file on a shared volume) must not make that
#: read unbounded.
MAX_RECORD_PINS = MAX_PIN_LIST

#: The most bytes of one record's stored text (a Redis value, an SQLite pins
#: column) that a store decodes: 64 pins of SHA-512 and a report-uri fill
#: less than 10 KiB. Checked before the text is decoded.
MAX_RECORD_BYTES = 64 * 1024

#: The most bytes of a pin document read from a file (a ``JSONFileStore``
#: file, a ``pinengine store import``): the bound a policy file has.
MAX_STORE_FILE_BYTES = 64 << 20

_FIELDS = ("host", "pins", "first_seen", "last_seen", "expires_at", "source",
           "include_subdomains", "report_uri")
_REQUIRED = frozenset(("host", "pins", "first_seen", "last_seen", "source"))

Change = Callable[["PinRecord | None"], "PinRecord | None"]
#: A change that also gets how many HPKP records the store holds in the host's domain and in all.
CountedChange = Callable[["PinRecord | None", int, int], "PinRecord | None"]

#: What ``PinStore.note_hpkp`` can say.
NOTED, DOMAIN_FULL, STORE_FULL, OTHER_SOURCE = "noted", "domain-full", "store-full", "other-source"

# Second-level labels that, under a two-letter country code, are public suffixes
# in most registries (co.uk, com.au, ac.jp, gov.br, ...): a registrable domain
# there has three labels. Only a few, on purpose: see noted_domain.
_GENERIC_SECOND_LEVEL = frozenset(
    ("ac", "co", "com", "edu", "gob", "go", "gov", "ltd", "mil", "ne", "net", "nom", "or", "org", "plc", "sch")
)


def noted_domain(host: str) -> str:
    """The registrable domain HPKP caps count ``host`` under (``host`` normalised).

    An approximation without a public-suffix list: the last two labels
    (``a.b.example.com`` -> ``example.com``), or the last three when the
    top-level label is a two-letter country code and the one before it a
    generic second level such as ``co``, ``com``, ``org``, ``ac`` or ``gov``
    (``www.bank.co.uk`` -> ``bank.co.uk``). Where it groups more than a real
    registrable domain (a private suffix such as ``github.io``), the cap on
    noted hosts per domain is reached sooner: fewer hosts are noted, never
    more, and nothing noted is dropped.
    """
    labels = host.rsplit(".", 3)
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-1].isalpha() and labels[-2] in _GENERIC_SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _normalize(host: str) -> str:
    return normalize_hostname(host)


def _canonical_pin(pin: object) -> str:
    if isinstance(pin, Pin):
        return str(pin)
    if not isinstance(pin, str):
        raise TypeError(f"a pin must be a str or Pin, not {type(pin).__name__}")
    return _parse_pin(pin)


@functools.lru_cache(maxsize=4096)
def _parse_pin(text: str) -> str:
    """The canonical form of a pin string (cached: stores read the same pins over and over)."""
    return str(Pin.parse(text))


#: The latest unix time a record may hold (9999-12-31T23:59:59Z), the last one
#: ``datetime`` (and so every message and listing that shows a time) can
#: represent. A time outside [0, LAST_TIME] in a store is corrupt data.
LAST_TIME = 253402300799.0


def _too_many_pins(count: int) -> str:
    return f"{count} pins, more than {MAX_RECORD_PINS} pins (MAX_RECORD_PINS)"


def check_record_size(text: str | bytes, where: str) -> None:
    """StoreError naming ``where`` when a record's stored text is longer than ``MAX_RECORD_BYTES``."""
    if len(text) > MAX_RECORD_BYTES:
        unit = "bytes" if isinstance(text, bytes) else "characters"
        raise StoreError(f"{where}: record of {len(text)} {unit}, more than {MAX_RECORD_BYTES} (MAX_RECORD_BYTES)")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number (unix time), not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int past any float: JSON allows such numbers
        raise ValueError(f"{name} must be a finite number, not {quoted(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {quoted(value)}")
    return number


def _time(name: str, value: object) -> float:
    at = _number(name, value)
    if not 0 <= at <= LAST_TIME:
        raise ValueError(f"{name} must be a unix time from 0 to {LAST_TIME:.0f} (year 9999), not {quoted(value)}")
    return at


def _now(now: float | None) -> float:
    return time.time() if now is None else _time("now", now)


@dataclass(frozen=True)
class PinRecord:
    """What a store keeps for one host: the pins trusted for it, and when.

    The constructor normalises and checks every field: ``host`` goes through
    ``pinengine.policy.normalize_hostname``; ``pins`` (strings in any form
    ``Pin.parse`` reads, or ``Pin`` objects) become canonical strings such as
    ``sha256/<base64>``, duplicates dropped, order kept, at least one; times
    are unix times from 0 to ``LAST_TIME`` (year 9999). Bad values raise
    ValueError or TypeError.
    """

    host: str
    pins: tuple[str, ...]
    first_seen: float
    last_seen: float
    expires_at: float | None
    source: str
    include_subdomains: bool = False
    report_uri: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "host", _normalize(self.host))
        if isinstance(self.pins, (str, Pin)) or not isinstance(self.pins, Iterable):
            raise TypeError(f"pins must be a sequence of pins, not {type(self.pins).__name__}")
        pins = tuple(dict.fromkeys(_canonical_pin(p) for p in self.pins))
        if not pins:
            raise ValueError(f"pin record for {self.host} has no pins")
        if len(pins) > MAX_RECORD_PINS:
            raise ValueError(_too_many_pins(len(pins)))
        set_(self, "pins", pins)
        set_(self, "first_seen", _time("first_seen", self.first_seen))
        set_(self, "last_seen", _time("last_seen", self.last_seen))
        if self.expires_at is not None:
            set_(self, "expires_at", _time("expires_at", self.expires_at))
        if self.source not in SOURCES:
            raise ValueError(f"unknown record source {quoted(self.source)}; use one of {', '.join(SOURCES)}")
        if not isinstance(self.include_subdomains, bool):
            raise TypeError("include_subdomains must be a bool")
        if self.report_uri is not None and (not isinstance(self.report_uri, str) or not self.report_uri):
            raise TypeError("report_uri must be a non-empty str or None")
        if self.report_uri is not None and len(self.report_uri) > MAX_REPORT_URI_LENGTH:
            raise ValueError(f"report_uri of {len(self.report_uri)} characters, more than {MAX_REPORT_URI_LENGTH}")

    @classmethod
    def create(
        cls,
        host: str,
        pins: Iterable[str | Pin],
        *,
        source: str = "tofu",
        now: float | None = None,
        ttl: float | None = None,
        include_subdomains: bool = False,
        report_uri: str | None = None,
    ) -> PinRecord:
        """A new record first (and last) seen ``now`` (default: the current time).

        ``ttl`` seconds from ``now`` set ``expires_at`` (HPKP max-age, a TOFU
        lifetime); None means the record never expires.
        """
        at = _now(now)
        expires = None if ttl is None else at + _number("ttl", ttl)
        if isinstance(pins, (str, Pin)):
            raise TypeError("pins must be a sequence of pins, not a single pin")
        canonical = tuple(_canonical_pin(p) for p in pins)
        return cls(host, canonical, at, at, expires, source, include_subdomains, report_uri)

    def is_live(self, now: float | None = None) -> bool:
        """True until ``expires_at`` (a record is void from that instant on)."""
        return self.expires_at is None or _now(now) < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (the form used in documents and stores)."""
        return {
            "host": self.host,
            "pins": list(self.pins),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "expires_at": self.expires_at,
            "source": self.source,
            "include_subdomains": self.include_subdomains,
            "report_uri": self.report_uri,
        }

    @classmethod
    def from_dict(cls, data: object, *, where: str = "record") -> PinRecord:
        """Read a record written by ``to_dict``; anything wrong raises StoreError naming ``where``."""
        if not isinstance(data, dict):
            raise StoreError(f"{where}: expected an object, found {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise StoreError(f"{where}: unknown field {quoted(unknown[0])}")
        missing = sorted(_REQUIRED - set(data))
        if missing:
            raise StoreError(f"{where}: missing field {missing[0]!r}")
        host = data["host"]
        if not isinstance(host, str):
            raise StoreError(f"{where}: host must be a string, found {type(host).__name__}")
        where = f"{where} ({named(host)})"
        pins = data["pins"]
        if not isinstance(pins, list) or not all(isinstance(p, str) for p in pins):
            raise StoreError(f"{where}: pins must be a list of strings")
        if len(pins) > MAX_RECORD_PINS:  # before any of them is parsed
            raise StoreError(f"{where}: {_too_many_pins(len(pins))}")
        for i, pin in enumerate(pins):
            try:
                _parse_pin(pin)
            except ValueError as exc:
                raise StoreError(f"{where}: pins[{i}]: {exc}") from None
        try:
            return cls(
                host, tuple(pins), data["first_seen"], data["last_seen"], data.get("expires_at"),
                data["source"], data.get("include_subdomains", False), data.get("report_uri"),
            )
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{where}: {exc}") from None


class PinStore(ABC):
    """Where dynamic pins live: one ``PinRecord`` per host name.

    Every method takes host names in any spelling (they are normalised) and
    raises StoreError when the store cannot be used. A record whose
    ``expires_at`` has passed counts as absent ("expired" is decided against
    ``now``, default the current time). Stores are safe to share between
    threads; the file and server stores also between processes and machines.
    Use a store as a context manager, or call ``close()``.

    A store implements three primitives (``_read``, ``_read_all`` and the
    atomic ``_transact``); every public method is built on them here, so all
    stores behave alike.
    """

    def __init__(self) -> None:
        self._closed = False

    # -- what a store implements ----------------------------------------------

    @abstractmethod
    def _read(self, host: str) -> PinRecord | None:
        """The record stored for the normalised ``host``, expired or not."""

    @abstractmethod
    def _read_all(self) -> builtins.list[PinRecord]:
        """Every stored record, expired or not, in any order."""

    @abstractmethod
    def _transact(self, host: str, change: Change) -> PinRecord | None:
        """Atomically apply ``change`` to the record stored for the normalised ``host``.

        ``change`` gets the stored record (expired or not) or None, and returns
        what to store: a record, None to delete, or its argument itself to
        leave the store alone. Return what is stored afterwards. ``change``
        may be called more than once (optimistic retries): it must have no
        side effects beyond the last call, and must not use the store.
        """

    def _close(self) -> None:  # noqa: B027 (a hook: most stores have something to release)
        """Release the store's resources (files, connections)."""

    def _transact_counted(self, host: str, change: CountedChange, now: float) -> PinRecord | None:
        """``_transact``, with ``change`` also getting counts of the HPKP records held (for the caps on noting).

        ``change(current, in_domain, total)``: ``in_domain`` is how many live
        HPKP records the store holds for other hosts of the registrable domain
        of ``host`` (``noted_domain``), ``total`` how many in all, not
        counting ``host``'s own. The stores of this package count atomically
        with the write and without reading every record; they also delete
        expired HPKP records on the way (they would hold room otherwise).
        This default, for stores of other packages, counts from ``_read_all``:
        a full read, not atomic with the write.
        """
        domain = noted_domain(host)
        others = [r for r in self._read_all() if r.source == "hpkp" and r.host != host and r.is_live(now)]
        in_domain = sum(1 for r in others if noted_domain(r.host) == domain)
        return self._transact(host, lambda current: change(current, in_domain, len(others)))

    def _noted_hosts(self, limit: int, now: float) -> builtins.list[tuple[str, bool]]:
        """``(host, include_subdomains)`` of live HPKP records, at most ``limit`` of them, in any order.

        The stores of this package read an index; this default reads every record.
        """
        found = [(r.host, r.include_subdomains) for r in self._read_all() if r.source == "hpkp" and r.is_live(now)]
        return found[:limit]

    # -- the public interface ---------------------------------------------------

    def _host(self, host: str) -> str:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        return _normalize(host)

    def get(self, host: str, *, now: float | None = None) -> PinRecord | None:
        """The live record for ``host``, or None (no record, or an expired one)."""
        record = self._read(self._host(host))
        return record if record is not None and record.is_live(now) else None

    def update(self, host: str, change: Change, *, now: float | None = None) -> PinRecord | None:
        """Atomic read-modify-write of the record for ``host``; returns the live record afterwards.

        ``change`` gets the live record (None when there is none, or it
        expired) and returns the record to store, None to delete it, or its
        argument itself to change nothing. It may be called more than once
        and must not use the store (see ``_transact``).
        """
        key, at = self._host(host), _now(now)

        def raw(current: PinRecord | None) -> PinRecord | None:
            live = current if current is not None and current.is_live(at) else None
            new = change(live)
            if new is live:
                return current
            if new is not None and new.host != key:
                raise ValueError(f"update of {key!r} returned a record for {new.host!r}")
            return new

        result = self._transact(key, raw)
        return result if result is not None and result.is_live(at) else None

    def record_first(self, record: PinRecord, *, now: float | None = None) -> PinRecord:
        """Store ``record`` unless its host has a live record; return the record stored afterwards.

        Atomic, also across processes and machines sharing the store: of
        callers racing on one host exactly one wins and every caller gets the
        winner's record back (``== record`` tells the winner). An expired
        record counts as absent and is replaced.
        """
        at = _now(now)
        if not record.is_live(at):
            raise ValueError(f"record for {record.host} expired at {record.expires_at}, before now ({at})")
        result = self.update(record.host, lambda current: record if current is None else current, now=at)
        assert result is not None
        return result

    def put(self, record: PinRecord) -> None:
        """Store ``record``, replacing whatever the host had (accept a new key, an HPKP update)."""
        self._transact(self._host(record.host), lambda current: record)

    def add_pins(self, host: str, pins: Iterable[str | Pin], *, now: float | None = None) -> PinRecord:
        """Add ``pins`` to the live record of ``host`` (atomically); return the record afterwards.

        Pins already there are not repeated; nothing else changes (pre-announce
        a next key, accept a backup). Raises NoRecordError if ``host`` has no
        live record.
        """
        key = self._host(host)
        if isinstance(pins, (str, Pin)):
            raise TypeError("pins must be a sequence of pins, not a single pin")
        extra = tuple(_canonical_pin(p) for p in pins)

        def change(current: PinRecord | None) -> PinRecord | None:
            if current is None:
                raise NoRecordError(f"no live pin record for {key}")
            merged = tuple(dict.fromkeys(current.pins + extra))
            return current if merged == current.pins else replace(current, pins=merged)

        result = self.update(key, change, now=now)
        assert result is not None
        return result

    def note_hpkp(
        self, record: PinRecord, *, max_hosts: int, max_hosts_per_domain: int, now: float | None = None
    ) -> tuple[str, PinRecord | None]:
        """Store the HPKP ``record`` (``source="hpkp"``) if the caps on noted hosts allow; say what happened.

        Atomic, like ``update``. A host that already has a live HPKP record
        gets ``record`` in its place (its ``first_seen`` kept): that takes no
        new room. A new host is noted only while fewer than
        ``max_hosts_per_domain`` hosts of its registrable domain
        (``noted_domain``) and fewer than ``max_hosts`` hosts in all are
        noted in the store; otherwise nothing is written (refusing, rather
        than evicting an older note, keeps every pin noted before in force).
        A live record of another source is never replaced.

        Returns ``(outcome, live record afterwards)``; outcome is ``"noted"``,
        ``"domain-full"``, ``"store-full"`` or ``"other-source"``.
        """
        key, at = self._host(record.host), _now(now)
        if record.source != "hpkp" or record.host != key:
            raise ValueError(f"note_hpkp takes an HPKP record for {key}, not {record.source!r} for {record.host!r}")
        outcome = [NOTED]

        def change(current: PinRecord | None, in_domain: int, total: int) -> PinRecord | None:
            live = current if current is not None and current.is_live(at) else None
            if live is not None and live.source != "hpkp":
                outcome[0] = OTHER_SOURCE
                return current
            if live is None:  # a new host: it needs room
                if in_domain >= max_hosts_per_domain:
                    outcome[0] = DOMAIN_FULL
                    return current
                if total >= max_hosts:
                    outcome[0] = STORE_FULL
                    return current
                outcome[0] = NOTED
                return record
            outcome[0] = NOTED
            return replace(record, first_seen=min(live.first_seen, record.first_seen))

        result = self._transact_counted(key, change, at)
        return outcome[0], result if result is not None and result.is_live(at) else None

    def noted_hosts(self, *, limit: int, now: float | None = None) -> builtins.list[tuple[str, bool]]:
        """``(host, include_subdomains)`` of at most ``limit`` live HPKP records (any order): a cheap listing."""
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        return self._noted_hosts(limit, _now(now))

    def touch(self, host: str, when: float) -> None:
        """Note that a connection to ``host`` matched at ``when``: raise ``last_seen`` to it.

        Best effort: no record (or an expired one) is not an error, and
        ``last_seen`` never moves backwards. Callers on a hot path should
        throttle (each call that changes something is a write).
        """
        key, at = self._host(host), _time("when", when)
        current = self._read(key)
        if current is None or current.last_seen >= at or not current.is_live(at):
            return
        self.update(
            key, lambda cur: cur if cur is None or cur.last_seen >= at else replace(cur, last_seen=at), now=at
        )

    def delete(self, host: str) -> bool:
        """Remove the record of ``host`` (expired or not); True if there was one."""
        return self._delete_if(self._host(host), lambda record: True)

    def _delete_if(self, host: str, condition: Callable[[PinRecord], bool]) -> bool:
        """Atomically delete the stored record of ``host`` if ``condition`` holds for it; True if deleted."""
        deleted = [False]

        def change(current: PinRecord | None) -> PinRecord | None:
            deleted[0] = current is not None and condition(current)
            return None if deleted[0] else current

        self._transact(host, change)
        return deleted[0]

    def list(self, *, now: float | None = None) -> builtins.list[PinRecord]:
        """Every live record, sorted by host."""
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        at = _now(now)
        return sorted((r for r in self._read_all() if r.is_live(at)), key=lambda r: r.host)

    def prune(self, *, now: float | None = None) -> int:
        """Delete expired records (a Redis store also lets the server expire them); return how many."""
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        at = _now(now)
        expired = [r.host for r in self._read_all() if not r.is_live(at)]
        return sum(self._delete_if(host, lambda record: not record.is_live(at)) for host in expired)

    def close(self) -> None:
        """Release files and connections; the store cannot be used afterwards. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> PinStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- counting noted hosts ----------------------------------------------------------


class NotedIndex:
    """The HPKP records of an in-memory store, counted per registrable domain.

    Kept beside the records and changed with them (``change``), so that the
    caps on noting cost O(1) per note. ``expired(now)`` finds expired
    records by a full scan, but only once the earliest expiry it knows of
    has passed: at most one scan per record that actually expires.
    """

    def __init__(self, records: Iterable[PinRecord] = ()) -> None:
        self._expiry: dict[str, float] = {}
        self._per_domain: dict[str, int] = {}
        self._earliest = math.inf  # a lower bound of the expiries in _expiry
        for record in records:
            self.change(None, record)

    def change(self, old: PinRecord | None, new: PinRecord | None) -> None:
        """``old`` (stored before, or None) was replaced by ``new`` (or deleted: None)."""
        if old is not None and old.source == "hpkp" and old.host in self._expiry:
            del self._expiry[old.host]
            domain = noted_domain(old.host)
            left = self._per_domain[domain] - 1
            if left:
                self._per_domain[domain] = left
            else:
                del self._per_domain[domain]
        if new is not None and new.source == "hpkp":
            expiry = math.inf if new.expires_at is None else new.expires_at
            if new.host not in self._expiry:
                domain = noted_domain(new.host)
                self._per_domain[domain] = self._per_domain.get(domain, 0) + 1
            self._expiry[new.host] = expiry
            self._earliest = min(self._earliest, expiry)

    def expired(self, now: float) -> builtins.list[str]:
        """The hosts whose HPKP record has expired by ``now`` (for the store to delete)."""
        if now < self._earliest:
            return []
        gone = [host for host, expiry in self._expiry.items() if now >= expiry]
        self._earliest = min((e for e in self._expiry.values() if now < e), default=math.inf)
        return gone

    def live(self, now: float) -> builtins.list[str]:
        """The hosts whose HPKP record is live at ``now``."""
        return [host for host, expiry in self._expiry.items() if now < expiry]

    def counts(self, host: str) -> tuple[int, int]:
        """``(in host's domain, in all)``: HPKP records of hosts other than ``host``."""
        own = 1 if host in self._expiry else 0
        return self._per_domain.get(noted_domain(host), 0) - own, len(self._expiry) - own


# -- the JSON document ----------------------------------------------------------


def dump_document(records: Iterable[PinRecord]) -> str:
    """The JSON document holding ``records`` (sorted by host)."""
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "records": [r.to_dict() for r in sorted(records, key=lambda r: r.host)],
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def parse_document(text: Union[str, bytes], *, where: str) -> builtins.list[PinRecord]:
    """The records of a JSON document; anything wrong raises StoreError naming ``where`` and the place."""
    try:
        doc = _json.loads(text)
    except UnicodeDecodeError as exc:
        raise StoreError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise StoreError(f"{where}: not valid JSON: {exc}") from None
    except RecursionError:
        raise StoreError(f"{where}: nested too deeply to be a pin document") from None
    if not isinstance(doc, dict):
        raise StoreError(f"{where}: expected a JSON object, found {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise StoreError(f"{where}: not a pinengine pin document (\"format\" is {quoted(doc.get('format'))}, "
                         f"expected {FORMAT!r})")
    version = doc.get("version")
    if version != FORMAT_VERSION:
        raise StoreError(f"{where}: unsupported version {quoted(version)} (this pinengine reads {FORMAT_VERSION})")
    unknown = sorted(set(doc) - {"format", "version", "records"})
    if unknown:
        raise StoreError(f"{where}: unknown field {quoted(unknown[0])}")
    items = doc.get("records")
    if not isinstance(items, list):
        raise StoreError(f"{where}: \"records\" must be a list")
    records: dict[str, PinRecord] = {}
    for i, item in enumerate(items):
        record = PinRecord.from_dict(item, where=f"{where}: records[{i}]")
        if record.host in records:
            raise StoreError(f"{where}: records[{i}]: a second record for {record.host}")
        records[record.host] = record
    return builtins.list(records.values())


def export_records(store: PinStore, *, now: float | None = None) -> str:
    """Every live record of ``store`` as a JSON document (with its format and version)."""
    return dump_document(store.list(now=now))


def import_records(
    store: PinStore, text: Union[str, bytes], *, replace: bool = False, now: float | None = None
) -> int:
    """Add the records of a document made by ``export_records``; return how many were written.

    The whole document is checked before anything is written: a bad one
    raises StoreError naming the place and the problem, and nothing is
    imported. Records already expired are skipped. ``replace=False`` keeps a
    host's live record if it has one (like ``record_first``); ``replace=True``
    overwrites it. Hosts absent from the document are left alone.
    """
    at = _now(now)
    records = [r for r in parse_document(text, where="import") if r.is_live(at)]
    return sum(_import_one(store, record, replace, at) for record in records)


def _import_one(store: PinStore, record: PinRecord, replace: bool, now: float) -> bool:
    wrote = [False]

    def change(current: PinRecord | None) -> PinRecord | None:
        wrote[0] = replace or current is None
        return record if wrote[0] else current

    store.update(record.host, change, now=now)
    return wrote[0]
