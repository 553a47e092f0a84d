"""Pin policies: which hosts are pinned to which keys, and the decision on a chain.

A policy is split by role: entries and results (``_entries``), the file
schema (``_schema``), dynamic pins and their store (``_dynamic``), and here
the policy itself: its lookup tables, the decision and the failure message.
The names those modules define stay importable from here.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from typing import Any, Iterable, Mapping, Sequence

from . import _hostnames, _observe, _schema
from ._backend import (
    PinSet,
    cert_digest,
    match_chain,
    match_chains,
    parse_certificate,
    recall_outcome,
    recall_outcomes,
    spki_digest,
)
from ._dynamic import _LRU, RECORD_CACHE_SIZE, STORE_OUTAGE_CHOICES, DynamicPins
from ._dynamic import _LogThrottle as _LogThrottle
from ._entries import _MODES, DomainEntry, PinMatch, VerificationResult, _pinned_by, _UnreadableEntry
from ._entries import ENFORCE as ENFORCE
from ._entries import POSITIONS as POSITIONS
from ._entries import REPORT_ONLY as REPORT_ONLY
from ._errors import CertificateParseError, HostnameError, PinMismatchError, PolicyError
from ._hostnames import normalize_hostname
from ._schema import MAX_TTL as MAX_TTL
from ._schema import PathLike, _check_ttl
from ._types import POS_ANY, Status, outcome_code_of
from ._types import chain_role as _role
from .pins import SPKI, Pin

__all__ = [
    "DomainEntry",
    "PinMatch",
    "PinPolicy",
    "VerificationResult",
    "normalize_hostname",
]

log = logging.getLogger("pinengine")

#: Host names (as callers pass them) whose decision plan a policy keeps: the
#: name's normal form, its entry and that entry's PinSet, and the results it
#: has given (see ``PinPolicy.verify``). A gateway talks to a bounded set of
#: hosts; past this many the plans are dropped whole and rebuilt as names come
#: back (so names chosen by a peer cost time, never memory).
PLAN_CACHE_SIZE = 4096
# Results remembered per plan: one per outcome code seen.
_OUTCOMES_PER_PLAN = 8
_CACHEABLE = (Status.MATCH, Status.NOT_PINNED)
_perf_counter = time.perf_counter

# A decision plan: (normal name, entry or None, PinSet, outcomes or None), where
# outcomes maps the core's code of a match (``outcome_code``: the verified
# flag, the chain length and every match, exactly; ext/CORE_SPEC.md 2.2) to
# (result, the metrics Tally of its key). The core reads plans in this shape
# (``recall_outcomes``) and counts what it recalls in the Tally.
_Plan = tuple[str, "DomainEntry | None", Any, "dict[int, tuple[VerificationResult, Any]] | None"]


def _as_list(chain: Sequence[bytes] | None) -> Sequence[bytes] | None:
    """A chain an event can keep: a caller's lazy sequence (the TLS hooks' served chain) is read now."""
    return chain if chain is None or isinstance(chain, (list, tuple)) else list(chain)


def _remember_outcome(
    plan: _Plan, pairs: Sequence[tuple[int, int]], ncerts: int, verified: bool, result: VerificationResult
) -> None:
    """Keep ``result`` in ``plan`` for the next chain that matches the same way, if nothing but the match decided it.

    A match or an unpinned name with no blocked key: a refusal or a
    report-only violation is built anew each time, with its own message and
    report. The key is the code of the very ``pairs`` (this plan's own pin
    set), chain length and ``verified`` the result was decided on, never of
    another read of the chain: a chain that reads differently the next time
    (a list another thread rewrites, a sequence of the caller's) must not
    have one read's decision remembered under another read's outcome
    (tests/security/test_rt_recall.py).
    """
    outcomes = plan[3]
    if outcomes is None or result.status not in _CACHEABLE or result.blocked or len(outcomes) >= _OUTCOMES_PER_PLAN:
        return
    code = outcome_code_of(pairs, ncerts, verified)
    if code >= 0:
        key = _observe.decision_key(result.hostname, result.entry, result.status, result.matches)
        outcomes[code] = (result, _observe.tally(key))


# -- host names ----------------------------------------------------------------
# Normalisation lives in _hostnames (the bottom of the import graph); these
# names stay importable from here.


def _ip_literal(host: str) -> str | None:
    return _hostnames.ip_literal(host)


class PinPolicy(DynamicPins):
    """A set of domain entries and the pins they require.

    Build one from a TOML or JSON file (``from_file``), from a mapping of the
    same schema (``from_mapping``), or from ``DomainEntry`` objects. Its
    entries and pins do not change once it is built; it keeps caches (pin
    sets, what the store said), guarded for threads, so one policy is safe
    to share between threads.

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
        if isinstance(entries, (str, bytes, Mapping)):
            raise TypeError(
                f"PinPolicy(entries) takes DomainEntry objects, not a {type(entries).__name__}; for the file "
                "schema ({'domains': [...]}) use PinPolicy.from_mapping(...), for a file PinPolicy.from_file(path)"
            )
        self.entries: tuple[DomainEntry, ...] = tuple(entries)
        for index, entry in enumerate(self.entries):
            if not isinstance(entry, DomainEntry):
                raise TypeError(
                    f"PinPolicy entries[{index}] is a {type(entry).__name__}, not a DomainEntry; "
                    "write DomainEntry(host, pins) or use PinPolicy.from_mapping({'domains': [...]})"
                )
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
        self._record_pinsets: _LRU[tuple[str, ...], Any] = _LRU(RECORD_CACHE_SIZE)
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
            if "xn--" not in entry.host:
                continue  # no A-label: the entry covers its own name only
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
        # PinSets by (pins, positions, blocked pins): entries that pin the same
        # keys (many hosts behind a few CAs) share one.
        self._pinsets: dict[tuple[tuple[Pin, ...], tuple[int, ...], tuple[Pin, ...]], Any] = {}
        self._global_pinset = self._make_pinset((), (), self.blocked_pins)
        self._plans: dict[str, _Plan] = {}

    def _table(self, entry: DomainEntry) -> dict[str, DomainEntry]:
        host = entry.host
        if host[0] == "*":
            return self._any_depth if host[1] == "*" else self._one_label
        return self._any_depth if entry.include_subdomains else self._exact

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
        return PinSet(spec)

    def _blocked_for(self, entry: DomainEntry | None) -> tuple[Pin, ...]:
        """The blocked pins that apply to ``entry``, in its PinSet's order (after its own pins)."""
        if entry is None or entry.noted:
            return self.blocked_pins
        own = set(entry.blocked_pins)
        return entry.blocked_pins + tuple(p for p in self.blocked_pins if p not in own)

    def _pinset(self, entry: DomainEntry) -> Any:
        # PinSets are built lazily, one per distinct set of pins; building one
        # is cheap and a race only builds it twice. Noted entries come and go
        # with the store: theirs are not kept here (see DynamicPins).
        blocked = self._blocked_for(entry)
        key = (entry.pins, entry.positions, blocked)
        pinset = self._pinsets.get(key)
        if pinset is None:
            pinset = self._make_pinset(entry.pins, entry.positions, blocked)
            if not entry.noted:
                self._pinsets[key] = pinset
        return pinset

    def _global(self) -> Any:
        return self._global_pinset

    def _entry_matches(self, entry: DomainEntry, chain: Sequence[bytes]) -> list[tuple[int, Pin]]:
        """``(chain index, pin)`` for each of ``entry``'s own pins that matches ``chain`` where it may match.

        The matcher ``verify`` uses, for tools that ask about one entry
        (rotation planning); blocked keys are not its business here.
        """
        npins = len(entry.pins)
        return [(i, entry.pins[j]) for i, j in sorted(match_chain(chain, self._pinset(entry), True)) if j < npins]

    # -- loading ----------------------------------------------------------

    @classmethod
    def from_file(cls, path: PathLike, **kwargs: Any) -> PinPolicy:
        """Load a policy from a TOML (``.toml``) or JSON (``.json``) file.

        Any problem raises PolicyError naming the file and the place in it.
        """
        data, name = _schema.read_file(path)
        return cls.from_mapping(data, source=name, **kwargs)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, source: str = "<mapping>", **kwargs: Any) -> PinPolicy:
        """Build a policy from a mapping of the file schema (``{"domains": [...]}``)."""
        entries, blocked, allow_sha1, hpkp = _schema.read_mapping(mapping, source)
        kwargs.setdefault("hpkp", hpkp)
        return cls(entries, blocked_pins=blocked, allow_sha1=allow_sha1, source=source, **kwargs)

    def to_mapping(self) -> dict[str, Any]:
        """The policy in the file schema (JSON-serialisable), the inverse of ``from_mapping``."""
        return _schema.to_mapping(self)

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
        if now is None:
            # The common case, decided in the core: a host this policy decided
            # on before, matched the same way. The result is immutable and was
            # built then; the core counts it in the outcome's metrics Tally (no
            # event is built: nothing else observes a match or an unpinned host).
            known = recall_outcome(self._plans, hostname, chain, verified, self.hpkp)
            if known is not None:
                return known  # type: ignore[no-any-return]
        # (The latency of a decision made here starts after the core's look.)
        started = _perf_counter()
        verified = bool(verified)  # read once: the decision and the code it is remembered under agree
        plan = self._plan_for(hostname, now)
        name, entry, pinset, _ = plan
        try:
            # Match over the whole chain: blocked keys are refused wherever they
            # stand; positive matches are cut to the leaf when unverified.
            pairs = match_chain(chain, pinset, True)
            ncerts = len(chain)
        except CertificateParseError as exc:
            self._emit_error(name, entry, chain, verified, port, served_chain, started, exc)
            raise
        result = self._decide(name, entry, chain, pairs, verified, now)
        _remember_outcome(plan, pairs, ncerts, verified, result)
        return self._finish(result, chain, port, served_chain, started)

    def _plan_for(self, hostname: str, now: _dt.datetime | None) -> _Plan:
        """The plan for ``hostname``: the one remembered, else a new one (see ``_plan``).

        Plans are remembered for exact ``str`` names only: a str subclass may
        hash and compare as another name while its text (what ``_resolve``
        reads) is its own, and must not be handed that other name's plan.
        """
        plan = self._plans.get(hostname) if now is None and type(hostname) is str else None
        if plan is None or (plan[1] is None and self.hpkp):  # (hpkp switched on since: ask the store)
            plan = self._plan(hostname, now)
        return plan

    def _plan(self, hostname: str, now: _dt.datetime | None) -> _Plan:
        """``(name, entry, PinSet, outcomes)`` for ``hostname``: remembered when its decisions can be.

        ``outcomes`` (what each chain match decided) is None for a plan that
        is not remembered: dynamic and noted entries (the store decides),
        entries that expire and calls with ``now`` (the clock does), and an
        unpinned name while HPKP is on (a header may note it at any time).
        Raises HostnameError / ValueError for a name that cannot be used.
        """
        name, entry = self._resolve(hostname)
        entry = entry or self._noted_entry(name)
        pinset = self._global() if entry is None or entry.noted else self._pinset(entry)
        if now is not None or (
            self.hpkp if entry is None else (entry.dynamic or entry.noted or entry.expires is not None)
        ):
            return (name, entry, pinset, None)
        if type(hostname) is not str:  # see _plan_for
            return (name, entry, pinset, {})
        plans = self._plans
        if len(plans) >= PLAN_CACHE_SIZE:
            plans.clear()
        plan: _Plan = (name, entry, pinset, {})
        plans[hostname] = plan
        return plan

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
        started = _perf_counter()
        # The items the core can decide from remembered outcomes, with the GIL
        # released while it matches, counted in their metrics Tallies; the rest
        # ("misses": new hosts and outcomes, violations, dynamic entries,
        # now=) are decided here, in order.
        items = list(items)  # ours: read twice below, whatever the caller does to theirs meanwhile
        verified = bool(verified)  # read once (see verify)
        results, misses = recall_outcomes(items, self._plans if now is None else {}, verified, self.hpkp)
        if not misses:
            return results
        jobs: list[tuple[Sequence[bytes], Any]] = []
        steps: list[tuple[int, _Plan, Sequence[bytes]]] = []
        for index in misses:
            hostname, chain = items[index]
            try:
                plan = self._plan_for(hostname, now)
            except ValueError as exc:
                results[index] = exc
                continue
            jobs.append((chain, plan[2]))
            steps.append((index, plan, chain))
        matched = match_chains(jobs, True)
        for (index, plan, chain), pairs in zip(steps, matched):
            name, entry = plan[0], plan[1]
            if isinstance(pairs, CertificateParseError):
                self._emit_error(name, entry, chain, verified, None, None, started, pairs)
                results[index] = pairs
                continue
            try:
                result = self._decide(name, entry, chain, pairs, verified, now)
                _remember_outcome(plan, pairs, len(chain), verified, result)
                results[index] = self._finish(result, chain, None, None, started)
            except PinMismatchError as exc:
                results[index] = exc
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
        served_chain = _as_list(served_chain)
        _observe.emit(
            _observe.VerificationEvent(
                self, result.hostname, port, result.status, result.entry, chain, served_chain,
                result.verified, result.matches, result.blocked, result.message,
                time.perf_counter() - started,
            )
        )
        if result.status == Status.MISMATCH:
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
        served_chain = _as_list(served_chain)
        _observe.emit(
            _observe.VerificationEvent(
                self, name, port, Status.PARSE_ERROR, entry, chain, served_chain, verified, (), (), str(error),
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
                return VerificationResult(name, Status.EXPIRED, entry, matches, verified, blocked, message)
        if entry is None and not blocked:
            return VerificationResult(name, Status.NOT_PINNED, None, (), verified)
        if matches and not blocked:
            return VerificationResult(name, Status.MATCH, entry, matches, verified)

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
                return VerificationResult(name, Status.MATCH, entry, matches, verified)

        message = self._failure_message(name, entry, chain, blocked, verified)
        if extra:
            message += "\n" + extra
        if entry is not None and entry.mode == REPORT_ONLY and not blocked:
            # Logged once, by the reporter (the default one logs on
            # pinengine.reports); the full message is on the result. A blocked
            # (compromised) key is refused in every mode: it is not reported
            # and let through.
            return VerificationResult(name, Status.REPORT_ONLY, entry, matches, verified, blocked, message)
        return VerificationResult(name, Status.MISMATCH, entry, matches, verified, blocked, message)

    def _failure_message(
        self,
        name: str,
        entry: DomainEntry | None,
        chain: Sequence[bytes],
        blocked: tuple[PinMatch, ...],
        verified: bool,
    ) -> str:
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
            info = parse_certificate(der)
            pins = []
            for kind, algorithm in forms:
                digest = spki_digest(der, algorithm) if kind == SPKI else cert_digest(der, algorithm)
                pins.append(str(Pin(algorithm, digest, kind)))
            lines.append(f"    {i} {_role(i, len(chain))}: {', '.join(pins)}: {info.subject}")
        if entry is not None:
            lines.append(f"  Pinned keys for {name} (entry {entry.host!r}, {entry.mode}):")
            for j in range(len(entry.pins)):
                lines.append(f"    {entry.describe_pin(j)}")
        return "\n".join(lines)
