"""Counters and a latency histogram of pin verification, per host and policy entry.

Every decision of every ``PinPolicy`` is counted here (``pinengine._observe``
calls ``METRICS.record`` once per decision). ``pinengine.stats()`` returns a
snapshot as plain dicts; ``prometheus_text()`` renders the Prometheus text
exposition format without any dependency, and with ``prometheus_client``
installed (``pip install pinengine[prometheus]``) ``register_prometheus()``
adds a collector to its registry, so the usual ``/metrics`` endpoint carries
pinengine's series.

Counters (``stats()`` keys; Prometheus names are ``pinengine_<key>_total``,
except ``report_only`` which is ``pinengine_report_only_violations_total``):

==================== ==========================================================
verifications        decisions made (one per ``verify``, one per batch item)
matches              a pin matched; by kind in ``matches_by_kind``, keyed
                     ``position/kind/source`` (``intermediate/spki/static``)
not_pinned           no entry covers the host (counted together, see below)
expired_passes       the entry had expired: the chain passed unchecked
report_only          report-only violations (the connection was allowed)
mismatches           refusals (no pin matched, or a blocked key)
parse_errors         malformed certificates (refused, fail closed)
store_errors         a dynamic pin store failed (``count_store_error``)
reports_sent         violation reports a collector accepted (HTTP 2xx)
reports_failed       reports given up on after retries (or refused with 4xx)
reports_dropped      reports dropped because the send queue was full or closed
reports_suppressed   reports not sent: duplicate of one sent within the
                     de-duplication interval, or over a rate limit (per host,
                     or per destination for server-chosen report URIs)
reports_refused      report URIs refused: server-chosen ones while they are
                     off, or not https, too long, or naming / resolving to a
                     loopback, private or otherwise non-public address
hpkp_headers_refused ``Public-Key-Pins`` (or ``-Report-Only``) headers refused:
                     malformed, or over a bound (size, pins, report-uri)
hpkp_notes_refused   hosts not noted because a cap on noted hosts (per
                     domain, per store) was reached
store_outage_passes  connections let through unchecked while the pin store
                     was down (``store_outage="known-hosts"``)
==================== ==========================================================

Series are keyed by ``(host, entry)``: the normalised host name and the
policy entry's host pattern (``""`` when no entry covers it). Verifications
of hosts that no entry covers are counted under the single series
``("", "")``, because a gateway sees an unbounded number of such names; and
at most ``max_series`` series are kept (default 10 000): later hosts are
counted under the host ``"_other"`` of their entry, for at most
``max_series`` entries more; past that (policies of more entries than the
cap), under the single series ``("_other", "_other")``.
"""

from __future__ import annotations

import bisect
import math
import threading
import weakref
from typing import Any, Callable, Iterator, Sequence

from ._types import Status

__all__ = [
    "METRICS",
    "Metrics",
    "count_event",
    "count_report",
    "count_store_error",
    "prometheus_text",
    "register_prometheus",
    "reset",
    "stats",
]

#: Counter names, in slot order.
COUNTERS = (
    "verifications",
    "matches",
    "not_pinned",
    "expired_passes",
    "report_only",
    "mismatches",
    "parse_errors",
    "store_errors",
    "reports_sent",
    "reports_failed",
    "reports_dropped",
    "reports_suppressed",
    "reports_refused",
    "hpkp_headers_refused",
    "hpkp_notes_refused",
    "store_outage_passes",
)
# A decision's status -> the counter it adds to (besides verifications).
_STATUS_COUNTER: dict[str, str] = {
    Status.MATCH: "matches",
    Status.NOT_PINNED: "not_pinned",
    Status.EXPIRED: "expired_passes",
    Status.REPORT_ONLY: "report_only",
    Status.MISMATCH: "mismatches",
    Status.PARSE_ERROR: "parse_errors",
}
_REPORT_OUTCOMES = {"sent": "reports_sent", "failed": "reports_failed", "dropped": "reports_dropped",
                    "suppressed": "reports_suppressed", "refused": "reports_refused"}
_EVENT_COUNTERS = frozenset(("hpkp_headers_refused", "hpkp_notes_refused", "store_outage_passes"))
_bisect_right = bisect.bisect_right
_LATENCY_BATCH = 256

_PROM_NAMES = {name: f"pinengine_{name}" for name in COUNTERS}
_PROM_NAMES["report_only"] = "pinengine_report_only_violations"
_PROM_HELP = {
    "verifications": "Pin verification decisions.",
    "not_pinned": "Verifications of hosts no policy entry covers (host and entry labels are empty).",
    "expired_passes": "Chains passed unchecked because the policy entry had expired.",
    "report_only": "Pin violations of report-only entries (connection allowed).",
    "mismatches": "Pin violations refused (no pin matched, or a blocked key).",
    "parse_errors": "Malformed certificates (refused).",
    "store_errors": "Errors of a dynamic pin store.",
    "reports_sent": "Violation reports accepted by a collector.",
    "reports_failed": "Violation reports given up on after retries.",
    "reports_dropped": "Violation reports dropped (send queue full or closed).",
    "reports_suppressed": "Violation reports suppressed (duplicate, or over a rate limit).",
    "reports_refused": "Violation report URIs refused (server-chosen and not allowed, or not public https).",
    "hpkp_headers_refused": "Public-Key-Pins headers refused (malformed, or over a size or count bound).",
    "hpkp_notes_refused": "Hosts not noted from an HPKP header: a cap on noted hosts was reached.",
    "store_outage_passes": "Connections let through unchecked while the pin store was down (known-hosts mode).",
}

#: Upper bounds (seconds) of the pin-check latency histogram buckets.
LATENCY_BUCKETS = (
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4,
    1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 1e-1,
)

_UNPINNED = ("", "", Status.NOT_PINNED)
_OTHER_HOST = "_other"


class _Shard:
    """The counts one thread wrote. Only that thread writes to it, so no lock is needed.

    ``cells`` maps ``(host, entry, status)`` -- for matches ``(host, entry,
    "match", position, kind, source)``, for the other counters ``(host,
    entry, counter name)`` -- to a one-item list holding the count.
    ``latencies`` collects the pin-check times, ``buckets`` the histogram
    (one slot per bound and +Inf, then the sum of the latencies): latencies
    are moved into the buckets in batches, off the per-decision path.
    """

    __slots__ = ("buckets", "cells", "latencies", "thread")

    def __init__(self, nbuckets: int, thread: Any) -> None:
        self.cells: dict[tuple[str, ...], list[int]] = {}
        self.latencies: list[float] = []
        self.buckets: list[Any] = [0] * nbuckets + [0.0]
        self.thread = thread

    def fold_latencies(self, bounds: tuple[float, ...]) -> None:
        # Only the owning thread calls this (or anyone, once the owner has ended).
        batch = self.latencies
        self.latencies = []
        _add_latencies(self.buckets, bounds, batch)


def _add_latencies(buckets: list[Any], bounds: tuple[float, ...], batch: list[float]) -> None:
    """Add ``batch`` to ``buckets`` (per bound, then +Inf, then the sum); sorts ``batch``."""
    batch.sort()  # then one bisection per bound instead of one per value
    below = 0
    for i, bound in enumerate(bounds):
        upto = _bisect_right(batch, bound)  # values <= bound ("le")
        buckets[i] += upto - below
        below = upto
    buckets[len(bounds)] += len(batch) - below
    buckets[-1] += math.fsum(batch)


def _entry_name(entry: Any) -> str:
    if entry is None:
        return ""
    if isinstance(entry, str):
        return entry
    return str(getattr(entry, "host", entry))


def decision_key(hostname: str, entry: Any, status: str, matches: Sequence[Any]) -> tuple[str, ...]:
    """The counter a decision is counted under: host, entry, status, and for a match where it matched.

    A policy computes it once per (host, outcome) and keeps it with the
    outcome, so repeated decisions count without building it again.
    """
    if matches and status == Status.MATCH:
        m = matches[0]
        return (hostname, entry.host if entry is not None else "", status, m.role, m.pin.kind, m.source)
    if entry is not None:
        return (hostname, entry.host, status)
    if status == Status.NOT_PINNED:
        return _UNPINNED
    return (hostname, "", status)


class Metrics:
    """Thread-safe counters per ``(host, entry)`` and a latency histogram of the pin check.

    Recording takes no lock: each thread counts into a shard of its own (one
    writer per shard, so no update is lost), and readers add the shards up.
    Shards of threads that have ended are folded into one when a new thread
    starts counting or when the metrics are read.
    """

    def __init__(self, *, max_series: int = 10_000, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.max_series = max_series
        self._bounds = tuple(float(b) for b in buckets)
        self._lock = threading.Lock()  # the shard list and the set of known series
        self._local = threading.local()
        self._shards: list[_Shard] = []
        self._retired = _Shard(len(self._bounds) + 1, None)
        self._series: set[tuple[str, str]] = set()
        self._other_series = 0  # ("_other", entry) series in _series
        #: Count one ``VerificationEvent`` (status, the kind of match, latency);
        #: ``count_decision(key, seconds)`` counts a decision whose key
        #: (``decision_key``) the caller already holds.
        self.record, self.count_decision = self._make_record()
        # Tallies of remembered decisions (see ``tally``): per core's Tally class, by key.
        self._tallies: dict[type, dict[tuple[str, ...], Any]] = {}

    # -- recording (hot path) ---------------------------------------------------

    def _shard(self) -> _Shard:
        try:
            return self._local.shard  # type: ignore[no-any-return]
        except AttributeError:
            pass
        shard = _Shard(len(self._bounds) + 1, weakref.ref(threading.current_thread()))
        with self._lock:
            self._fold_dead()
            self._shards.append(shard)
        self._local.shard = shard
        return shard

    def _fold_dead(self) -> None:
        # With the lock held: merge the shards of threads that have ended.
        live = []
        retired = self._retired
        for shard in self._shards:
            thread = shard.thread()
            if thread is None or not thread.is_alive():
                shard.fold_latencies(self._bounds)
                for key, cell in shard.cells.items():
                    target = retired.cells.get(key)
                    if target is None:
                        retired.cells[key] = [cell[0]]
                    else:
                        target[0] += cell[0]
                for i, n in enumerate(shard.buckets):
                    retired.buckets[i] += n
            else:
                live.append(shard)
        self._shards = live

    def _cell(self, shard: _Shard, key: tuple[str, ...]) -> list[int]:
        # A key this thread has not counted before (rare): enforce the series cap.
        with self._lock:
            key = self._admit(key)
        cell = shard.cells.get(key)
        if cell is None:
            cell = shard.cells[key] = [0]
        return cell

    def tally(self, key: tuple[str, ...]) -> Any:
        """The core's ``Tally`` for decisions counted under ``key`` (see ``decision_key``).

        A policy keeps it with a remembered outcome, and the compiled core
        counts each recalled decision and its latency there, with no Python
        call per decision. One tally per key and core, kept for the life of
        the metrics (as bounded as the series); read with the shards.
        """
        from ._backend import core

        with self._lock:
            key = self._admit(key)
            tallies = self._tallies.setdefault(core.Tally, {})
            tally = tallies.get(key)
            if tally is None:
                tally = tallies[key] = core.Tally(self._bounds)
        return tally

    def _admit(self, key: tuple[str, ...]) -> tuple[str, ...]:
        # With the lock held: the key to count under, its series admitted within the cap.
        series = (key[0], key[1])
        if series not in self._series:
            if len(self._series) >= self.max_series and key[0]:
                # Over the cap: count under "_other" of the entry, and once
                # max_series entries have one, under ("_other", "_other"):
                # a policy of more entries than the cap stays bounded too.
                # (Keys over the cap always take this path.)
                series = (_OTHER_HOST, key[1])
                if series not in self._series:
                    if self._other_series >= self.max_series:
                        series = (_OTHER_HOST, _OTHER_HOST)
                    else:
                        self._other_series += 1
                key = series + key[2:]
            self._series.add(series)
        return key

    def _make_record(self) -> tuple[Callable[[Any], None], Callable[[tuple[str, ...], float], None]]:
        # The per-decision path, as closures over what they need (no attribute
        # lookups on self): a few hundred nanoseconds, no lock.
        local = self._local
        new_shard = self._shard
        new_cell = self._cell
        bounds = self._bounds
        batch = _LATENCY_BATCH

        def count_decision(key: tuple[str, ...], seconds: float) -> None:
            """Count one decision under ``key`` (see ``decision_key``) and its latency."""
            try:
                shard = local.shard
            except AttributeError:
                shard = new_shard()
            cell = shard.cells.get(key)
            if cell is None:
                cell = new_cell(shard, key)
            cell[0] += 1
            latencies = shard.latencies
            latencies.append(seconds)
            if len(latencies) >= batch:
                shard.fold_latencies(bounds)

        def record(event: Any) -> None:
            """Count one ``VerificationEvent`` (status, the kind of match, latency)."""
            count_decision(decision_key(event.hostname, event.entry, event.status, event.matches), event.seconds)

        return record, count_decision

    def _count(self, host: str, entry: Any, counter: str, n: int = 1) -> None:
        key = (host or "", _entry_name(entry), counter)
        shard = self._shard()
        cell = shard.cells.get(key)
        if cell is None:
            cell = self._cell(shard, key)
        cell[0] += n

    def count_store_error(self, host: str, entry: Any = None) -> None:
        """Count an error of a dynamic pin store for ``host`` (and the entry, a DomainEntry or its host)."""
        self._count(host, entry, "store_errors")

    def count_event(self, counter: str) -> None:
        """Add one to ``counter`` (``hpkp_headers_refused``, ``hpkp_notes_refused``, ``store_outage_passes``).

        Counted under the single series ``("", "")``: the hosts involved are
        chosen by servers or clients, so they would make series without end.
        """
        if counter not in _EVENT_COUNTERS:
            raise ValueError(f"unknown counter {counter!r}")
        self._count("", None, counter)

    def count_report(self, host: str, entry: Any, outcome: str, n: int = 1) -> None:
        """Count violation reports: ``outcome`` is sent, failed, dropped, suppressed or refused."""
        self._count(host, entry, _REPORT_OUTCOMES[outcome], n)

    def reset(self) -> None:
        """Forget every count (counts being written by other threads at that moment may be lost)."""
        with self._lock:
            for shard in self._shards:
                shard.cells = {}
                shard.latencies = []
                shard.buckets = [0] * (len(self._bounds) + 1) + [0.0]
            self._retired = _Shard(len(self._bounds) + 1, None)
            self._series = set()
            self._other_series = 0
            # Policies keep their tallies: zero them, and keep their series admitted.
            for tallies in self._tallies.values():
                for key, tally in tallies.items():
                    self._admit(key)
                    tally.clear()

    # -- reading ----------------------------------------------------------------

    def _snapshot(self) -> tuple[list[tuple[tuple[str, str], list[int], dict[tuple[str, str, str], int]]], list[int], float]:
        """``([((host, entry), counts in COUNTERS order, matches by kind)], buckets, sum)``."""
        cells: dict[tuple[str, ...], int] = {}
        buckets = [0] * (len(self._bounds) + 1)
        seconds = 0.0
        with self._lock:
            self._fold_dead()
            shards = [self._retired, *self._shards]
            tallies = [item for of_core in self._tallies.values() for item in of_core.items()]
        for key, tally in tallies:
            count, counted, total = tally.read()
            if count:
                cells[key] = cells.get(key, 0) + count
                for i, n in enumerate(counted):
                    buckets[i] += n
                seconds += total
        for shard in shards:
            # dict() and list() of these plain containers are atomic: the
            # owning thread may be adding keys meanwhile.
            for key, cell in list(dict(shard.cells).items()):
                cells[key] = cells.get(key, 0) + cell[0]
            # Latencies not yet folded by their thread: counted here, without
            # touching the shard (a batch being folded just now may be missed).
            values = list(shard.buckets)
            _add_latencies(values, self._bounds, list(shard.latencies))
            for i, n in enumerate(values[:-1]):
                buckets[i] += n
            seconds += values[-1]
        index = {name: i for i, name in enumerate(COUNTERS)}
        series: dict[tuple[str, str], tuple[list[int], dict[tuple[str, str, str], int]]] = {}
        for key, n in cells.items():
            counts, matches = series.setdefault((key[0], key[1]), ([0] * len(COUNTERS), {}))
            what = key[2]
            counter = _STATUS_COUNTER.get(what)
            if counter is not None or what not in index:  # a decision
                counts[0] += n
                if counter is not None:
                    counts[index[counter]] += n
                if len(key) == 6:
                    kind = (key[3], key[4], key[5])
                    matches[kind] = matches.get(kind, 0) + n
            else:
                counts[index[what]] += n
        return [(key, c, m) for key, (c, m) in series.items()], buckets, seconds

    def stats(self) -> dict[str, Any]:
        """A snapshot: ``totals``, ``hosts`` (host -> entry -> counters) and ``latency``.

        ``hosts[host][entry]`` holds every counter of ``COUNTERS`` and
        ``matches_by_kind`` (``"position/kind/source"`` -> count). ``latency``
        holds ``count``, ``sum`` (seconds) and ``buckets``: a list of
        ``(upper bound in seconds, cumulative count)``, the last bound ``inf``.
        """
        from . import _backend

        series, buckets, total_seconds = self._snapshot()
        totals = dict.fromkeys(COUNTERS, 0)
        hosts: dict[str, dict[str, dict[str, Any]]] = {}
        for (host, entry), counts, matches in series:
            row: dict[str, Any] = dict(zip(COUNTERS, counts))
            row["matches_by_kind"] = {"/".join(k): v for k, v in sorted(matches.items())}
            hosts.setdefault(host, {})[entry] = row
            for name, value in zip(COUNTERS, counts):
                totals[name] += value
        cumulative = []
        running = 0
        for bound, n in zip(self._bounds + (math.inf,), buckets):
            running += n
            cumulative.append((bound, running))
        return {
            "backend": _backend.name(),
            "totals": totals,
            "hosts": hosts,
            "latency": {"count": running, "sum": total_seconds, "buckets": cumulative},
            "policies": _live_statuses(),
        }

    def _families(self) -> Iterator[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]:
        """``(name, type, help, samples)`` per metric family, samples as (sample name, labels, value)."""
        series, buckets, total_seconds = self._snapshot()
        series.sort(key=lambda item: item[0])
        for slot, counter in enumerate(COUNTERS):
            name = _PROM_NAMES[counter]
            if counter == "matches":
                samples = [
                    (name + "_total", {"host": h, "entry": e, "position": p, "kind": k, "source": s}, float(v))
                    for (h, e), _, matches in series
                    for (p, k, s), v in sorted(matches.items())
                ]
                yield name, "counter", "Pin verifications that matched, by the position and kind of the pin.", samples
                continue
            samples = [
                (name + "_total", {"host": h, "entry": e}, float(counts[slot]))
                for (h, e), counts, _ in series
            ]
            yield name, "counter", _PROM_HELP[counter], samples
        name = "pinengine_pin_check_seconds"
        samples = []
        running = 0
        for bound, n in zip(self._bounds + (math.inf,), buckets):
            running += n
            samples.append((name + "_bucket", {"le": _float_text(bound)}, float(running)))
        samples.append((name + "_count", {}, float(running)))
        samples.append((name + "_sum", {}, total_seconds))
        yield name, "histogram", "Time spent in the pin check (parse, hash, match, decide), in seconds.", samples
        yield from _live_families()

    def prometheus_text(self) -> str:
        """The metrics in the Prometheus text exposition format (version 0.0.4), no dependency needed."""
        lines = []
        for name, kind, help_text, samples in self._families():
            lines.append(f"# HELP {name} {_escape_help(help_text)}")
            lines.append(f"# TYPE {name} {kind}")
            for sample, labels, value in samples:
                if labels:
                    text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
                    lines.append(f"{sample}{{{text}}} {_float_text(value)}")
                else:
                    lines.append(f"{sample} {_float_text(value)}")
        return "\n".join(lines) + "\n"


def _live_statuses() -> list[dict[str, Any]]:
    """``LivePolicy.status()`` of every live policy in use (none when the module was never imported)."""
    import sys

    module = sys.modules.get("pinengine.live_policy")
    if module is None:
        return []
    return [policy.status() for policy in module.live_policies()]


def _live_families() -> Iterator[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]:
    """Gauges and counters of the live policies, labelled by name and source kind."""
    statuses = sorted(_live_statuses(), key=lambda s: (s["name"], s["source"]))
    if not statuses:
        return
    families = (
        ("pinengine_policy_serial", "gauge", "Serial (version) of the live policy in force.", "serial", ""),
        ("pinengine_policy_last_update_timestamp_seconds", "gauge",
         "When the live policy version in force was applied (Unix time).", "updated_at", ""),
        ("pinengine_policy_last_failure_timestamp_seconds", "gauge",
         "When a new live policy version was last refused (Unix time; 0: never).", "last_failure_at", ""),
        ("pinengine_policy_updates", "counter", "New live policy versions put in force.", "updates", "_total"),
        ("pinengine_policy_update_failures", "counter",
         "New live policy versions refused (the version in force stayed).", "failures", "_total"),
        ("pinengine_policy_source_errors", "counter",
         "Times a live policy's source could not be read (the version in force stayed).", "source_errors", "_total"),
    )
    for name, kind, help_text, key, suffix in families:
        samples = [
            (name + suffix, {"name": s["name"], "source": s["source"]}, float(s[key] or 0)) for s in statuses
        ]
        yield name, kind, help_text, samples


def _float_text(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}.0"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


#: The metrics every PinPolicy records into.
METRICS = Metrics()


def stats() -> dict[str, Any]:
    """A snapshot of pinengine's counters and latency histogram (see ``Metrics.stats``)."""
    return METRICS.stats()


def reset() -> None:
    """Zero every counter and the histogram."""
    METRICS.reset()


def count_store_error(host: str, entry: Any = None) -> None:
    """Count a dynamic pin store error for ``host`` (entry: a DomainEntry, its host pattern, or None)."""
    METRICS.count_store_error(host, entry)


def count_event(counter: str) -> None:
    """Add one to a counter of HPKP refusals or store outages (see ``Metrics.count_event``)."""
    METRICS.count_event(counter)


def count_report(host: str, entry: Any, outcome: str, n: int = 1) -> None:
    """Count violation reports (``outcome``: sent, failed, dropped, suppressed, refused)."""
    METRICS.count_report(host, entry, outcome, n)


def prometheus_text() -> str:
    """pinengine's metrics in the Prometheus text format (no dependency on prometheus_client)."""
    return METRICS.prometheus_text()


def _collector_class() -> Any:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )

    kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily}

    class PinengineCollector:
        """A ``prometheus_client`` collector that reads pinengine's metrics at scrape time."""

        def __init__(self, metrics: Metrics | None = None) -> None:
            self.metrics = metrics or METRICS

        def describe(self) -> list[Metric]:
            return [kinds[kind](name, help_text) for name, kind, help_text, _ in self.metrics._families()]

        def collect(self) -> Iterator[Metric]:
            for name, kind, help_text, samples in self.metrics._families():
                family: Metric = kinds[kind](name, help_text)
                for sample, labels, value in samples:
                    family.add_sample(sample, labels, value)
                yield family

    return PinengineCollector


def __getattr__(name: str) -> Any:
    if name == "PinengineCollector":  # needs prometheus_client: built on first use
        cls = _collector_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_prometheus(registry: Any = None, metrics: Metrics | None = None) -> Any:
    """Register a collector of pinengine's metrics with ``prometheus_client`` and return it.

    ``registry`` defaults to ``prometheus_client.REGISTRY`` (what
    ``start_http_server`` and ``generate_latest()`` serve). Raises ImportError
    when prometheus_client is not installed (``pip install pinengine[prometheus]``).
    """
    if registry is None:
        from prometheus_client import REGISTRY as registry
    collector = _collector_class()(metrics)
    registry.register(collector)
    return collector
