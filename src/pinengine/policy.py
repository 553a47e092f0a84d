"""Pin policies: which hosts are pinned to which keys, and the verification of chains."""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, Iterable, Mapping, NamedTuple, Sequence, TypeVar, Union

from . import _backend, _hostnames, _observe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
from ._errors import CertificateParseError, HostnameError, PinFormatError, PinMismatchError, PolicyError
from ._hostnames import normalize_hostname
from ._types import POS_ANY, POS_INTERMEDIATE, POS_LEAF, POS_ROOT
from .pins import SPKI, Pin

__all__ = [
    "DomainEntry",
    "PinMatch",
    "PinPolicy",
    "VerificationResult",
    "normalize_hostname",
]

log = logging.getLogger("pinengine")

ENFORCE = "enforce"
REPORT_ONLY = "report-only"
_MODES = (ENFORCE, REPORT_ONLY)

POSITIONS = {
    "any": POS_ANY,
    "leaf": POS_LEAF,
    "intermediate": POS_INTERMEDIATE,
    "root": POS_ROOT,
}
_POSITION_NAMES = {v: k for k, v in POSITIONS.items()}

PathLike = Union[str, "os.PathLike[str]"]

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


# -- host names ----------------------------------------------------------------
# Normalisation lives in _hostnames (the bottom of the import graph); these
# names stay importable from here.


def _ip_literal(host: str) -> str | None:
    return _hostnames.ip_literal(host)


# -- policy entries ------------------------------------------------------------


@dataclass(frozen=True)
class DomainEntry:
    """One domain entry of a policy.

    ``host`` is an exact name, ``*.example.com`` (exactly one more label) or
    ``**.example.com`` (the name itself and any depth below it);
    ``include_subdomains`` makes an exact name cover every subdomain too.
    ``positions`` gives, per pin, which chain positions it may match.
    """

    host: str
    pins: tuple[Pin, ...]
    positions: tuple[int, ...] = ()
    include_subdomains: bool = False
    mode: str = ENFORCE
    expires: _dt.datetime | None = None
    report_uri: tuple[str, ...] = ()
    blocked_pins: tuple[Pin, ...] = ()
    require_backup_pin: bool = True
    dynamic: bool = False
    record_issuer: bool = False
    ttl: float | None = None
    #: True for an entry made from a noted HPKP header (the store holds its pins).
    noted: bool = False

    def __post_init__(self) -> None:
        # Entries built in code get the same normalisation as those from files;
        # pins may be given as strings.
        set_ = object.__setattr__
        set_(self, "host", _parse_host("DomainEntry", self.host, self.include_subdomains))
        set_(self, "pins", tuple(Pin.parse(p) if isinstance(p, str) else p for p in self.pins))
        set_(self, "blocked_pins", tuple(Pin.parse(p) if isinstance(p, str) else p for p in self.blocked_pins))
        if not self.positions:
            set_(self, "positions", (POS_ANY,) * len(self.pins))
        if isinstance(self.report_uri, str):
            set_(self, "report_uri", (self.report_uri,))

    @property
    def pattern(self) -> str:
        """``"exact"``, ``"one-label"`` (``*.``) or ``"any-depth"`` (``**.`` or include_subdomains)."""
        if self.host.startswith("**."):
            return "any-depth"
        if self.host.startswith("*."):
            return "one-label"
        return "any-depth" if self.include_subdomains else "exact"

    @property
    def base(self) -> str:
        """The host name the pattern is anchored at (without ``*.`` / ``**.``)."""
        return self.host.split(".", 1)[1] if self.host.startswith("*") else self.host

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every form of ``host`` the entry covers: ``host`` first, then the other forms clients send.

        An entry for a name with IDNA deviation characters covers its IDNA
        2003 form too (``straße.example``: ``xn--strae-oqa.example`` and
        ``strasse.example``), since the ssl module and http.client connect to that.
        """
        prefix = self.host[: len(self.host) - len(self.base)]
        return tuple(prefix + s.name for s in _hostnames.entry_spellings(self.base))

    def expired(self, now: _dt.datetime | None = None) -> bool:
        """Whether the entry's ``expires`` date has passed (then it is not enforced)."""
        if self.expires is None:
            return False
        return (now or _dt.datetime.now(_dt.timezone.utc)) >= self.expires

    def covers(self, hostname: str) -> bool:
        """Whether this entry applies to ``hostname`` (already normalised), in any of its ``spellings``."""
        pattern = self.pattern
        for spelling in _hostnames.entry_spellings(self.base):
            base = spelling.name
            if pattern == "exact":
                covered = hostname == base
            elif pattern == "one-label":
                head, _, rest = hostname.partition(".")
                covered = bool(head) and rest == base
            else:
                covered = hostname == base or hostname.endswith("." + base)
            if covered:
                return True
        return False

    def describe_pin(self, index: int) -> str:
        pin = self.pins[index]
        where = self.positions[index]
        return str(pin) if where == POS_ANY else f"{pin} ({_POSITION_NAMES.get(where, where)} only)"


@dataclass(frozen=True)
class _UnreadableEntry(DomainEntry):
    """What stands for a name that may be noted while the pin store cannot be read: refused."""

    error: str = ""


class PinMatch(NamedTuple):
    """A pin that matched: the chain index it matched at, its role there, and the pin."""

    index: int  # type: ignore[assignment]  # the field shadows tuple.index, on purpose
    role: str
    pin: Pin
    source: str = "static"


@dataclass(frozen=True)
class VerificationResult:
    """What ``PinPolicy.verify`` decided.

    ``status`` is one of:

    - ``"match"``: a pin matched (see ``matches``);
    - ``"not-pinned"``: no entry covers the host, the chain passes;
    - ``"expired"``: the entry has expired, it was not enforced (a warning was logged);
    - ``"report-only"``: the entry is report-only and did not match; the
      connection may go on, the violation was logged.

    A mismatch in enforce mode is not a result: it raises PinMismatchError. Nor
    is a chain that holds a blocked key (the policy's own ``blocked_pins`` or
    the entry's): that is refused whatever the entry's mode, expiry, or
    whether an entry covers the host at all.
    """

    hostname: str
    status: str
    entry: DomainEntry | None
    matches: tuple[PinMatch, ...] = ()
    verified: bool = True
    blocked: tuple[PinMatch, ...] = ()
    message: str = ""

    @property
    def pinned(self) -> bool:
        """Whether an entry covered the host."""
        return self.entry is not None


def _pinned_by(entry: DomainEntry | None) -> str:
    return "no entry covers" if entry is None else f"entry {entry.host!r} pins"


def _role(index: int, length: int) -> str:
    if index == 0:
        return "leaf"
    return "root" if index == length - 1 else "intermediate"


# -- the policy ----------------------------------------------------------------

_ENTRY_KEYS = {
    "host",
    "pins",
    "include_subdomains",
    "mode",
    "expires",
    "report_uri",
    "position",
    "blocked_pins",
    "require_backup_pin",
    "dynamic",
    "record_issuer",
    "ttl",
}
_POLICY_KEYS = {"version", "domains", "blocked_pins", "allow_sha1", "hpkp"}
_PIN_KEYS = {"pin", "position"}

#: The longest ``ttl`` a dynamic entry may give its recorded keys: ten years.
#: That outlives any certificate in use (public ones last at most 398 days,
#: private CAs commonly ten years), and now + MAX_TTL stays far inside what
#: every store and ``datetime`` can hold (Redis PEXPIREAT, year 9999). For
#: keys that never expire, leave ``ttl`` out.
MAX_TTL = 10 * 365 * 24 * 3600


def _unknown_key(where: str, key: str, allowed: set[str]) -> PolicyError:
    hint = difflib.get_close_matches(key, sorted(allowed), n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    return PolicyError(f"{where}: unknown key {key!r}{extra}; allowed: {', '.join(sorted(allowed))}")


def _parse_expires(where: str, value: Any) -> _dt.datetime | None:
    """``expires`` is a date (pins hold through that day, UTC) or a timezone-aware datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = _dt.date.fromisoformat(value) if len(value) == 10 else _dt.datetime.fromisoformat(value)
        except ValueError:
            raise PolicyError(f"{where}.expires: {value!r} is not a date (YYYY-MM-DD) or ISO 8601 datetime") from None
    try:
        if isinstance(value, _dt.datetime):
            if value.tzinfo is None:
                raise PolicyError(
                    f"{where}.expires: datetime {value.isoformat()!r} has no timezone; add one (Z or +00:00)"
                )
            return value.astimezone(_dt.timezone.utc)
        if isinstance(value, _dt.date):
            day = _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc)
            return day + _dt.timedelta(days=1)
    except OverflowError:
        raise PolicyError(f"{where}.expires: {value} is outside the dates pinengine can handle") from None
    raise PolicyError(f"{where}.expires: expected a date, not {type(value).__name__}")


def _parse_host(where: str, value: Any, include_subdomains: bool) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"{where}.host: expected a string, not {type(value).__name__}")
    text = value.strip()
    prefix = ""
    for p in ("**.", "*."):
        if text.startswith(p):
            prefix, text = p, text[len(p):]
            break
    if "*" in text:
        raise PolicyError(
            f"{where}.host: {value!r}: a wildcard must be the whole leftmost label, "
            "as '*.example.com' (one label) or '**.example.com' (any depth)"
        )
    try:
        forms = _hostnames.spellings(text)
    except ValueError as exc:
        raise PolicyError(f"{where}.host: {exc}") from None
    name = forms[0].name
    if "*" in name:  # a full-width or small asterisk that UTS #46 maps to '*'
        raise PolicyError(f"{where}.host: {value!r}: a wildcard must be written '*.' or '**.' at the start")
    if _hostnames.is_ip_name(name):
        if prefix or include_subdomains:
            raise PolicyError(f"{where}.host: {value!r}: an IP address matches exactly; no wildcard or include_subdomains")
        return name
    # The entry is kept as its canonical name and covers what that name's
    # Unicode form is sent as; a name clients turn into forms it would not
    # cover (upper-case letters that lower-case two ways) is refused.
    covered = {s.name for s in _hostnames.entry_spellings(name)}
    lost = [s for s in forms if s.name not in covered]
    if lost:
        sent = "; ".join(f"{s.name!r} ({_hostnames.to_unicode(s.name)}) by {s.senders}" for s in forms)
        raise PolicyError(
            f"{where}.host: {value!r} is sent as different names by different clients: {sent}; "
            "write the name in lower case, as the one you mean"
        )
    if prefix and include_subdomains:
        raise PolicyError(
            f"{where}: include_subdomains cannot be combined with the wildcard host {value!r}; "
            "use '**.name' for any depth"
        )
    return prefix + name


class PinPolicy:
    """A set of domain entries and the pins they require.

    Build one from a TOML or JSON file (``from_file``), from a mapping of the
    same schema (``from_mapping``), or from ``DomainEntry`` objects. A policy
    is immutable once built and safe to share between threads.

    Dynamic pins live in ``store`` (default: an SQLiteStore in the user's
    data directory); what was read from it is reused for ``cache_ttl``
    seconds, for at most ``RECORD_CACHE_SIZE`` names. ``hpkp=True`` notes
    hosts from ``Public-Key-Pins`` headers (``pinengine.hpkp``) and enforces
    them; ``hpkp_max_hosts`` and ``hpkp_max_hosts_per_domain`` cap the hosts
    noted in the store (defaults ``pinengine.hpkp.MAX_NOTED_HOSTS`` and
    ``MAX_NOTED_PER_DOMAIN``). While the store cannot be read, a dynamic
    entry's host is always refused; with ``hpkp`` on, a name no entry covers
    is refused too (``store_outage="refuse"``, the default: fail closed),
    or, with ``store_outage="known-hosts"``, refused only when this process
    knows it to be noted (it read or noted the host, or saw it in its last
    listing of the store's noted hosts, taken at most once a minute while
    the store was healthy); any other name goes on without dynamic pins,
    and each such connection is logged (rate-limited) and counted
    (``store_outage_passes``).
    """

    def __init__(
        self,
        entries: Iterable[DomainEntry] = (),
        *,
        blocked_pins: Iterable[Pin] = (),
        allow_sha1: bool = False,
        source: str = "<code>",
        reporter: Any = None,
        store: Any = None,
        cache_ttl: float = 5.0,
        hpkp: bool = False,
        hpkp_max_hosts: int | None = None,
        hpkp_max_hosts_per_domain: int | None = None,
        store_outage: str = "refuse",
    ) -> None:
        self.entries: tuple[DomainEntry, ...] = tuple(entries)
        self._store = store
        #: Whether HPKP headers are noted (see pinengine.hpkp) and noted hosts enforced.
        self.hpkp = hpkp
        for option, value in (("hpkp_max_hosts", hpkp_max_hosts), ("hpkp_max_hosts_per_domain",
                                                                   hpkp_max_hosts_per_domain)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise PolicyError(f"{source}: {option} must be a whole number of hosts, at least 1, not {value!r}")
        #: Caps on the hosts noted from HPKP headers, in the store and per
        #: registrable domain (None: ``pinengine.hpkp.MAX_NOTED_HOSTS`` and
        #: ``MAX_NOTED_PER_DOMAIN``).
        self.hpkp_max_hosts = hpkp_max_hosts
        self.hpkp_max_hosts_per_domain = hpkp_max_hosts_per_domain
        if store_outage not in STORE_OUTAGE_CHOICES:
            raise PolicyError(
                f"{source}: store_outage must be one of {', '.join(map(repr, STORE_OUTAGE_CHOICES))}, "
                f"not {store_outage!r}"
            )
        #: With ``hpkp`` on, while the store cannot be read: ``"refuse"`` every
        #: name no entry covers, or only the ``"known-hosts"``.
        self.store_outage = store_outage
        #: Seconds a dynamic record read from the store is reused before it is
        #: read again: the bound on how long a ``forget`` made elsewhere takes
        #: to reach this process.
        self.cache_ttl = float(cache_ttl)
        self._records: _LRU[str, tuple[Any, float]] = _LRU(RECORD_CACHE_SIZE)
        self._record_pinsets: _LRU[tuple[str, ...], tuple[Any, Any]] = _LRU(RECORD_CACHE_SIZE)
        self._touched: _LRU[str, float] = _LRU(RECORD_CACHE_SIZE)
        # store_outage="known-hosts": noted hosts this process saw (host -> includeSubDomains), and the
        # last listing of the store's noted hosts, replaced whole every _SNAPSHOT_SECONDS.
        self._noted_seen: _LRU[str, bool] = _LRU(RECORD_CACHE_SIZE)
        self._noted_snapshot: dict[str, bool] = {}
        self._snapshot_due = 0.0
        self._snapshot_lock = threading.Lock()
        self._outage_log = _LogThrottle()
        #: Receives pin violations (see pinengine.reporting); None: log only.
        self.reporter = reporter
        #: Keys refused for every host, in every mode (compromised, revoked).
        self.blocked_pins: tuple[Pin, ...] = tuple(dict.fromkeys(blocked_pins))
        self.allow_sha1 = allow_sha1
        self.source = source
        self._exact: dict[str, DomainEntry] = {}
        self._one_label: dict[str, DomainEntry] = {}
        self._any_depth: dict[str, DomainEntry] = {}
        for i, entry in enumerate(self.entries):
            self._check_entry(f"{source}: domains[{i}] ({entry.host})", entry)
            table = self._table(entry)
            key = entry.base
            if key in table:
                raise PolicyError(
                    f"{source}: domains[{i}]: duplicate entry for {entry.host!r}"
                    f"{' with include_subdomains' if entry.include_subdomains else ''}"
                )
            table[key] = entry
        # Then the other forms clients send each name in (the IDNA 2003 form
        # of a name with deviation characters): an entry written for that
        # form itself wins; two entries claiming it are refused.
        for entry in self.entries:
            table = self._table(entry)
            for spelling in _hostnames.entry_spellings(entry.base)[1:]:
                current = table.get(spelling.name)
                if current is None:
                    table[spelling.name] = entry
                elif current is not entry and current.base != spelling.name:
                    raise PolicyError(
                        f"{source}: entries {current.host!r} ({_hostnames.to_unicode(current.base)}) and "
                        f"{entry.host!r} ({_hostnames.to_unicode(entry.base)}) both cover {spelling.name!r}, the "
                        f"form {spelling.senders} send for each; add an entry for {spelling.name!r} "
                        "itself to say which pins it takes"
                    )
        self._pinsets: dict[int, Any] = {}
        self._global_pinset = self._make_pinset((), (), self.blocked_pins)

    def _table(self, entry: DomainEntry) -> dict[str, DomainEntry]:
        return {"exact": self._exact, "one-label": self._one_label, "any-depth": self._any_depth}[entry.pattern]

    def _check_entry(self, where: str, entry: DomainEntry) -> None:
        if len(entry.positions) != len(entry.pins):
            raise PolicyError(f"{where}: {len(entry.pins)} pins but {len(entry.positions)} positions")
        if entry.mode not in _MODES:
            raise PolicyError(f"{where}: mode {entry.mode!r} is not one of {', '.join(_MODES)}")
        for pin in entry.pins + entry.blocked_pins:
            if pin.algorithm == "sha1" and not self.allow_sha1:
                raise PolicyError(f"{where}: SHA-1 pin {pin} needs allow_sha1 = true at the top of the policy")
        if entry.ttl is not None:
            _check_ttl(f"{where}: ttl", entry.ttl)
        if (entry.record_issuer or entry.ttl is not None) and not entry.dynamic:
            raise PolicyError(f"{where}: record_issuer and ttl apply to dynamic entries only (dynamic = true)")
        if entry.dynamic:
            return  # static pins are optional: the store holds the keys seen first
        if not entry.pins:
            raise PolicyError(f"{where}: no pins")
        if len(set(entry.pins)) < 2 and entry.require_backup_pin:
            raise PolicyError(
                f"{where}: only one pin; add a backup pin (a key kept offline, or the next key) "
                "so a key change does not lock clients out, or set require_backup_pin = false"
            )

    @staticmethod
    def _make_pinset(pins: Sequence[Pin], positions: Sequence[int], blocked: Sequence[Pin]) -> Any:
        spec = [(p.kind_code, p.algorithm, p.digest, pos) for p, pos in zip(pins, positions)]
        spec += [(p.kind_code, p.algorithm, p.digest, POS_ANY) for p in blocked]
        return _backend.core.PinSet(spec)

    def _blocked_for(self, entry: DomainEntry | None) -> tuple[Pin, ...]:
        """The blocked pins that apply to ``entry``, in its PinSet's order (after its own pins)."""
        if entry is None or entry.noted:
            return self.blocked_pins
        own = set(entry.blocked_pins)
        return entry.blocked_pins + tuple(p for p in self.blocked_pins if p not in own)

    def _pinset(self, entry: DomainEntry) -> Any:
        # PinSets are built lazily and per backend module (the tests switch
        # backends); building them is cheap and races only build twice.
        core = _backend.core
        key = id(entry)
        cached = self._pinsets.get(key)
        if cached is None or cached[0] is not core or cached[2] is not entry:
            cached = (core, self._make_pinset(entry.pins, entry.positions, self._blocked_for(entry)), entry)
            self._pinsets[key] = cached
        return cached[1]

    def _global(self) -> Any:
        core = _backend.core
        if not isinstance(self._global_pinset, core.PinSet):
            self._global_pinset = self._make_pinset((), (), self.blocked_pins)
        return self._global_pinset

    # -- dynamic pins -----------------------------------------------------

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
        core = _backend.core
        cached = self._record_pinsets.get(pins)
        if cached is None or cached[0] is not core:
            parsed = [Pin.parse(p, allow_sha1=True) for p in pins]
            cached = (core, core.PinSet([(p.kind_code, p.algorithm, p.digest, POS_ANY) for p in parsed]))
            self._record_pinsets.put(pins, cached)
        return cached[1]

    def _match_record(self, record: Any, chain: Sequence[bytes], verified: bool) -> tuple[PinMatch, ...]:
        n = len(chain)
        pairs = _backend.core.match_chain(chain, self._record_pinset(record.pins), True)
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
            core = _backend.core
            pins = [str(Pin("sha256", core.spki_sha256(chain[0])))]
            if entry.record_issuer and len(chain) > 1:
                pins.append(str(Pin("sha256", core.spki_sha256(chain[1]))))
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

    # -- loading ----------------------------------------------------------

    @classmethod
    def from_file(cls, path: PathLike, **kwargs: Any) -> PinPolicy:
        """Load a policy from a TOML (``.toml``) or JSON (``.json``) file.

        Any problem raises PolicyError naming the file and the place in it.
        """
        name = os.fspath(path)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise PolicyError(f"{name}: cannot read policy: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(f"{name}: not UTF-8 text (byte {exc.start})") from None
        is_json = name.lower().endswith(".json") or (
            not name.lower().endswith(".toml") and text.lstrip().startswith("{")
        )
        try:
            data = json.loads(text) if is_json else tomllib.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{name}: invalid TOML: {exc}") from None
        except RecursionError:
            raise PolicyError(f"{name}: nested too deeply to be a policy") from None
        except ValueError as exc:  # e.g. an integer longer than Python converts
            raise PolicyError(f"{name}: cannot be read: {exc}") from None
        return cls.from_mapping(data, source=name, **kwargs)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, source: str = "<mapping>", **kwargs: Any) -> PinPolicy:
        """Build a policy from a mapping of the file schema (``{"domains": [...]}``)."""
        if not isinstance(mapping, Mapping):
            raise PolicyError(f"{source}: a policy is a table/object, not {type(mapping).__name__}")
        for key in mapping:
            if key not in _POLICY_KEYS:
                raise _unknown_key(source, key, _POLICY_KEYS)
        version = mapping.get("version", 1)
        if type(version) is not int or version != 1:
            raise PolicyError(f"{source}: version {version!r} is not supported (this pinengine reads version 1)")
        allow_sha1 = mapping.get("allow_sha1", False)
        if not isinstance(allow_sha1, bool):
            raise PolicyError(f"{source}: allow_sha1 must be true or false")
        domains = mapping.get("domains")
        if domains is None:
            raise PolicyError(f"{source}: no 'domains' list")
        if not isinstance(domains, list):
            raise PolicyError(f"{source}: 'domains' must be a list, not {type(domains).__name__}")
        blocked = _parse_pin_list(f"{source}: blocked_pins", mapping.get("blocked_pins", []), allow_sha1)
        hpkp = mapping.get("hpkp", False)
        if not isinstance(hpkp, bool):
            raise PolicyError(f"{source}: hpkp must be true or false")
        kwargs.setdefault("hpkp", hpkp)
        entries = [
            _parse_entry(f"{source}: domains[{i}]", item, allow_sha1) for i, item in enumerate(domains)
        ]
        return cls(entries, blocked_pins=blocked, allow_sha1=allow_sha1, source=source, **kwargs)

    def to_mapping(self) -> dict[str, Any]:
        """The policy in the file schema (JSON-serialisable), the inverse of ``from_mapping``."""
        domains = []
        for e in self.entries:
            d: dict[str, Any] = {"host": e.host}
            d["pins"] = [
                str(p) if pos == POS_ANY else {"pin": str(p), "position": _POSITION_NAMES[pos]}
                for p, pos in zip(e.pins, e.positions)
            ]
            if e.include_subdomains:
                d["include_subdomains"] = True
            if e.mode != ENFORCE:
                d["mode"] = e.mode
            if e.expires is not None:
                d["expires"] = e.expires.isoformat()
            if e.report_uri:
                d["report_uri"] = list(e.report_uri)
            if e.blocked_pins:
                d["blocked_pins"] = [str(p) for p in e.blocked_pins]
            if not e.require_backup_pin:
                d["require_backup_pin"] = False
            if e.dynamic:
                d["dynamic"] = True
            if e.record_issuer:
                d["record_issuer"] = True
            if e.ttl is not None:
                d["ttl"] = e.ttl
            domains.append(d)
        out: dict[str, Any] = {"version": 1}
        if self.allow_sha1:
            out["allow_sha1"] = True
        if self.hpkp:
            out["hpkp"] = True
        if self.blocked_pins:
            out["blocked_pins"] = [str(p) for p in self.blocked_pins]
        out["domains"] = domains
        return out

    # -- lookup -----------------------------------------------------------

    def entry_for(self, hostname: str) -> DomainEntry | None:
        """The entry that applies to ``hostname``, or None.

        When several cover the name, the most specific wins: an exact entry,
        then the pattern anchored deepest, ``*.`` before ``**.`` at equal depth.
        """
        return self._resolve(hostname)[1]

    def _resolve(self, hostname: str) -> tuple[str, DomainEntry | None]:
        """``hostname`` normalised, and the entry for it.

        A non-ASCII name is sent as different names by different clients
        (``straße.example``: ``xn--strae-oqa.example`` or ``strasse.example``);
        if those would pick different entries, which one applies depends on
        the client, so the name is refused (HostnameError naming the forms).
        """
        forms = _hostnames.spellings(hostname)
        name = forms[0].name
        entry = self._lookup(name)
        for form in forms[1:]:
            other = self._lookup(form.name)
            if other is not entry:
                raise HostnameError(
                    f"host name {hostname!r} is sent as {name!r} by {forms[0].senders}, "
                    f"which {_pinned_by(entry)}, and as {form.name!r} by {form.senders}, which "
                    f"{_pinned_by(other)}; connect with the A-label you mean, or make one entry cover both"
                )
        return name, entry

    def _lookup(self, name: str) -> DomainEntry | None:
        entry = self._exact.get(name)
        if entry is not None:
            return entry
        if _hostnames.is_ip_name(name):
            return None
        any_depth = self._any_depth.get(name)
        if any_depth is not None:
            return any_depth
        rest = name
        first = True
        while "." in rest:
            rest = rest.split(".", 1)[1]
            if first:
                one = self._one_label.get(rest)
                if one is not None:
                    return one
                first = False
            deep = self._any_depth.get(rest)
            if deep is not None:
                return deep
        return None

    # -- verification -----------------------------------------------------

    def verify(
        self,
        hostname: str,
        chain: Sequence[bytes],
        *,
        verified: bool = True,
        now: _dt.datetime | None = None,
        port: int | None = None,
        served_chain: Sequence[bytes] | None = None,
    ) -> VerificationResult:
        """Check ``chain`` (DER certificates, leaf first) against the pins for ``hostname``.

        ``chain`` must be the chain a trust store validated (``verified=True``).
        With ``verified=False`` (no validation happened) only the leaf can
        match, since the rest is whatever the peer chose to send. ``port`` and
        ``served_chain`` (what the peer sent) only go into violation reports.

        Returns a VerificationResult; raises PinMismatchError when an enforced
        entry has no matching pin, or when the chain holds a blocked key (at
        any position, verified or not, in every mode: report-only, expired
        and unpinned hosts included), and CertificateParseError when a
        certificate is malformed (fail closed).
        """
        started = time.perf_counter()
        name, entry = self._resolve(hostname)
        entry = entry or self._noted_entry(name)
        pinset = self._global() if entry is None or entry.noted else self._pinset(entry)
        try:
            # Match over the whole chain: blocked keys are refused wherever they
            # stand; positive matches are cut to the leaf when unverified.
            pairs = _backend.core.match_chain(chain, pinset, True)
        except CertificateParseError as exc:
            self._emit_error(name, entry, chain, verified, port, served_chain, started, exc)
            raise
        result = self._decide(name, entry, chain, pairs, verified, now)
        return self._finish(result, chain, port, served_chain, started)

    def verify_batch(
        self,
        items: Iterable[tuple[str, Sequence[bytes]]],
        *,
        verified: bool = True,
        now: _dt.datetime | None = None,
    ) -> list[VerificationResult | PinMismatchError | CertificateParseError | ValueError]:
        """Verify many ``(hostname, chain)`` pairs in one call, for gateways.

        The compiled core parses, hashes and matches all chains with the GIL
        released. Nothing is raised for a single item: each place in the
        returned list holds the VerificationResult, or the PinMismatchError /
        CertificateParseError / ValueError (bad host name) that ``verify``
        would have raised for that item.
        """
        started = time.perf_counter()
        jobs: list[tuple[Sequence[bytes], Any]] = []
        plan: list[tuple[str, DomainEntry | None, Sequence[bytes]] | ValueError] = []
        for hostname, chain in items:
            try:
                name, entry = self._resolve(hostname)
            except ValueError as exc:
                plan.append(exc)
                continue
            entry = entry or self._noted_entry(name)
            jobs.append((chain, self._global() if entry is None or entry.noted else self._pinset(entry)))
            plan.append((name, entry, chain))
        outcomes = iter(_backend.core.match_chains(jobs, True))
        results: list[VerificationResult | PinMismatchError | CertificateParseError | ValueError] = []
        for step in plan:
            if isinstance(step, ValueError):
                results.append(step)
                continue
            name, entry, chain = step
            pairs = next(outcomes)
            if isinstance(pairs, CertificateParseError):
                self._emit_error(name, entry, chain, verified, None, None, started, pairs)
                results.append(pairs)
                continue
            try:
                result = self._decide(name, entry, chain, pairs, verified, now)
                results.append(self._finish(result, chain, None, None, started))
            except PinMismatchError as exc:
                results.append(exc)
        return results

    def _finish(
        self,
        result: VerificationResult,
        chain: Sequence[bytes],
        port: int | None,
        served_chain: Sequence[bytes] | None,
        started: float,
    ) -> VerificationResult:
        """Tell observers about a decision; raise PinMismatchError if it is a refusal."""
        _observe.emit(
            _observe.VerificationEvent(
                self, result.hostname, port, result.status, result.entry, chain, served_chain,
                result.verified, result.matches, result.blocked, result.message,
                time.perf_counter() - started,
            )
        )
        if result.status == "mismatch":
            raise PinMismatchError(result.message, hostname=result.hostname, result=result)
        return result

    def _emit_error(
        self,
        name: str,
        entry: DomainEntry | None,
        chain: Sequence[bytes],
        verified: bool,
        port: int | None,
        served_chain: Sequence[bytes] | None,
        started: float,
        error: BaseException,
    ) -> None:
        _observe.emit(
            _observe.VerificationEvent(
                self, name, port, "parse-error", entry, chain, served_chain, verified, (), (), str(error),
                time.perf_counter() - started, error,
            )
        )

    def _decide(
        self,
        name: str,
        entry: DomainEntry | None,
        chain: Sequence[bytes],
        pairs: list[tuple[int, int]],
        verified: bool,
        now: _dt.datetime | None,
    ) -> VerificationResult:
        n = len(chain)
        npins = len(entry.pins) if entry is not None else 0
        matches: tuple[PinMatch, ...] = ()
        blocked: tuple[PinMatch, ...] = ()
        for i, j in pairs:
            if j < npins:
                if verified or i == 0:
                    matches += (PinMatch(i, _role(i, n), entry.pins[j]),)  # type: ignore[union-attr]
            else:
                blocked += (PinMatch(i, _role(i, n), self._blocked_for(entry)[j - npins]),)

        if entry is not None and entry.expired(now):
            message = (
                f"pin entry {entry.host!r} for {name} expired on {entry.expires:%Y-%m-%d %H:%M} UTC; "
                "its pins are not enforced"
            )
            log.warning("%s", message)
            if not blocked:
                return VerificationResult(name, "expired", entry, matches, verified, blocked, message)
        if entry is None and not blocked:
            return VerificationResult(name, "not-pinned", None, (), verified)
        if matches and not blocked:
            return VerificationResult(name, "match", entry, matches, verified)

        extra = ""
        if isinstance(entry, _UnreadableEntry):
            extra = (
                f"  The pin store cannot be used, so the HPKP pins that may be noted for {name} cannot be checked "
                f"(store_outage={self.store_outage!r}): {entry.error}"
            )
        elif entry is not None and entry.dynamic and not blocked:
            from .stores import StoreError

            try:
                matches, extra = self._dynamic(name, entry, chain, verified)
            except StoreError as exc:
                _observe.store_error(self, name, entry, exc)
                extra = f"  The pin store cannot be used, so the dynamic pins of {name} cannot be checked: {exc}"
            if matches:
                return VerificationResult(name, "match", entry, matches, verified)

        message = self._failure_message(name, entry, chain, blocked, verified)
        if extra:
            message += "\n" + extra
        if entry is not None and entry.mode == REPORT_ONLY and not blocked:
            # Logged once, by the reporter (the default one logs on
            # pinengine.reports); the full message is on the result. A blocked
            # (compromised) key is refused in every mode: it is not reported
            # and let through.
            return VerificationResult(name, "report-only", entry, matches, verified, blocked, message)
        return VerificationResult(name, "mismatch", entry, matches, verified, blocked, message)

    def _failure_message(
        self,
        name: str,
        entry: DomainEntry | None,
        chain: Sequence[bytes],
        blocked: tuple[PinMatch, ...],
        verified: bool,
    ) -> str:
        core = _backend.core
        lines = [f"Certificate pinning failure for {name}!"]
        if blocked:
            for b in blocked:
                lines.append(f"  The chain holds a blocked key: {b.pin} at position {b.index} ({b.role}).")
        else:
            lines.append("  No pin matched" + (" the validated chain." if verified else " the leaf."))
        if not verified:
            lines.append(
                "  The chain was not validated by a trust store, so only the leaf can match a pin."
            )
        # Show each certificate's pin in every (kind, algorithm) the entry uses.
        forms = [("spki", "sha256")]
        if entry is not None:
            for p in entry.pins:
                if (p.kind, p.algorithm) not in forms:
                    forms.append((p.kind, p.algorithm))
        lines.append("  Peer certificate chain:" if verified else "  Peer certificate chain (as sent):")
        for i, der in enumerate(chain):
            info = core.parse_certificate(der)
            pins = []
            for kind, algorithm in forms:
                digest = core.spki_digest(der, algorithm) if kind == SPKI else core.cert_digest(der, algorithm)
                pins.append(str(Pin(algorithm, digest, kind)))
            lines.append(f"    {i} {_role(i, len(chain))}: {', '.join(pins)}: {info.subject}")
        if entry is not None:
            lines.append(f"  Pinned keys for {name} (entry {entry.host!r}, {entry.mode}):")
            for j in range(len(entry.pins)):
                lines.append(f"    {entry.describe_pin(j)}")
        return "\n".join(lines)


def _parse_pin_list(where: str, value: Any, allow_sha1: bool) -> list[Pin]:
    if not isinstance(value, list):
        raise PolicyError(f"{where}: expected a list of pins, not {type(value).__name__}")
    pins = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise PolicyError(f"{where}[{i}]: expected a pin string, not {type(item).__name__}")
        try:
            pins.append(Pin.parse(item, allow_sha1=allow_sha1))
        except PinFormatError as exc:
            raise PolicyError(f"{where}[{i}]: {exc}") from None
    return pins


def _parse_position(where: str, value: Any) -> int:
    if not isinstance(value, str) or value not in POSITIONS:
        raise PolicyError(f"{where}: position {value!r} is not one of {', '.join(POSITIONS)}")
    return POSITIONS[value]


def _parse_entry(where: str, item: Any, allow_sha1: bool) -> DomainEntry:
    if not isinstance(item, Mapping):
        raise PolicyError(f"{where}: a domain entry is a table/object, not {type(item).__name__}")
    for key in item:
        if key not in _ENTRY_KEYS:
            raise _unknown_key(where, key, _ENTRY_KEYS)
    if "host" not in item:
        raise PolicyError(f"{where}: missing 'host'")
    for flag in ("include_subdomains", "require_backup_pin", "dynamic", "record_issuer"):
        if flag in item and not isinstance(item[flag], bool):
            raise PolicyError(f"{where}.{flag}: must be true or false")
    include_subdomains = item.get("include_subdomains", False)
    host = _parse_host(where, item["host"], include_subdomains)
    where = f"{where} ({item['host']})"
    default_position = _parse_position(f"{where}.position", item.get("position", "any"))
    dynamic = item.get("dynamic", False)
    raw_pins = item.get("pins", [] if dynamic else None)
    if raw_pins is None:
        raise PolicyError(f"{where}: missing 'pins'")
    if not isinstance(raw_pins, list):
        raise PolicyError(f"{where}.pins: expected a list, not {type(raw_pins).__name__}")
    pins: list[Pin] = []
    positions: list[int] = []
    seen: set[Pin] = set()
    for i, raw in enumerate(raw_pins):
        pwhere = f"{where}.pins[{i}]"
        position = default_position
        if isinstance(raw, Mapping):
            for key in raw:
                if key not in _PIN_KEYS:
                    raise _unknown_key(pwhere, key, _PIN_KEYS)
            if "pin" not in raw:
                raise PolicyError(f"{pwhere}: missing 'pin'")
            if "position" in raw:
                position = _parse_position(f"{pwhere}.position", raw["position"])
            raw = raw["pin"]
        if not isinstance(raw, str):
            raise PolicyError(f"{pwhere}: expected a pin string, not {type(raw).__name__}")
        try:
            pin = Pin.parse(raw, allow_sha1=allow_sha1)
        except PinFormatError as exc:
            raise PolicyError(f"{pwhere}: {exc}") from None
        if pin in seen:
            raise PolicyError(f"{pwhere}: {pin} is listed twice")
        seen.add(pin)
        pins.append(pin)
        positions.append(position)
    mode = item.get("mode", ENFORCE)
    if mode not in _MODES:
        raise PolicyError(f"{where}.mode: {mode!r} is not one of {', '.join(_MODES)}")
    report_uri = item.get("report_uri", ())
    if isinstance(report_uri, str):
        report_uri = (report_uri,)
    if not isinstance(report_uri, (list, tuple)) or not all(isinstance(u, str) for u in report_uri):
        raise PolicyError(f"{where}.report_uri: expected a URL or a list of URLs")
    for uri in report_uri:
        if not (uri.startswith("https://") or uri.startswith("http://")):
            raise PolicyError(f"{where}.report_uri: {uri!r} is not an http(s) URL")
    return DomainEntry(
        host=host,
        pins=tuple(pins),
        positions=tuple(positions),
        include_subdomains=include_subdomains,
        mode=mode,
        expires=_parse_expires(where, item.get("expires")),
        report_uri=tuple(report_uri),
        blocked_pins=tuple(_parse_pin_list(f"{where}.blocked_pins", item.get("blocked_pins", []), allow_sha1)),
        require_backup_pin=item.get("require_backup_pin", True),
        dynamic=dynamic,
        record_issuer=item.get("record_issuer", False),
        ttl=_parse_ttl(where, item.get("ttl")),
    )


def _check_ttl(where: str, value: Any) -> float:
    """``value`` as seconds, if it is a number in (0, MAX_TTL]; PolicyError naming ``where`` otherwise."""
    # bool is an int, and True would be one second; nan compares false, so
    # the range test refuses it with inf and integers too big for a float.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TTL:
        if not isinstance(value, (int, float)):
            shown = f"a {type(value).__name__}"
        elif isinstance(value, int) and abs(value) > 2**64:
            shown = f"an integer of {value.bit_length()} bits"  # str() of a huge int is itself refused
        else:
            shown = repr(value)
        raise PolicyError(f"{where}: must be a number of seconds above 0 and at most {MAX_TTL} (ten years), not {shown}")
    return float(value)


def _parse_ttl(where: str, value: Any) -> float | None:
    if value is None:
        return None
    return _check_ttl(f"{where}.ttl", value)

