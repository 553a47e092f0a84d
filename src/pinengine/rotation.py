"""Rotation planning: find the pins that are about to stop matching, before clients break.

``plan_rotation(policy, samples)`` looks at chains you have (files, or what
live servers send) next to the policy and returns ``RotationFinding`` s:

- ``pin-cert-expiring`` (warning) / ``pin-cert-expired`` (error): a
  certificate that carries a matching pin expires within the window / has
  expired. Only certificates that carry a pin count: a leaf that expires
  next week does not matter to an entry pinned on the intermediate's key.
- ``no-backup-pin``: every pin of the entry that matches the chain sits on
  a certificate that expires within the window, and the entry has no other
  pin (no backup for the next key). When the certificate is renewed with a
  new key nothing will match. An error for certificate pins (a renewed
  certificate never matches them), a warning for public-key pins (they
  survive a renewal that keeps the key).
- ``no-matching-pin`` (error): a chain served for a host matches none of its
  entry's pins now (refused in enforce mode, reported in report-only mode).
- ``no-entry`` / ``chain-unmatched`` (warning): a live host that no entry
  covers; a chain file that matches no entry's pins.
- ``entry-expired`` (error) / ``entry-expiring`` (warning): the entry's
  ``expires`` date has passed (its pins are no longer enforced) / is within
  the window (``entry_findings``).

``pinengine check POLICY --chain FILE... --host HOST[:PORT]... --window DAYS``
prints these next to the policy lint.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ._backend import parse_certificate
from ._types import chain_role
from .pins import SPKI, Pin
from .policy import DomainEntry, PinPolicy

__all__ = [
    "ChainSample",
    "RotationFinding",
    "chain_findings",
    "entry_findings",
    "plan_rotation",
]

DEFAULT_WINDOW_DAYS = 30


@dataclass(frozen=True)
class ChainSample:
    """A chain to plan with: DER certificates, leaf first.

    ``hostname``: the host it is served for (a live host, or ``HOST=FILE``);
    None when unknown, and then it is checked against every entry whose pins
    it matches. ``label`` names it in messages (a file name, ``host:port``).
    """

    chain: Sequence[bytes]
    hostname: str | None = None
    label: str = "chain"


@dataclass(frozen=True)
class RotationFinding:
    """One thing to act on. ``severity`` is ``"error"`` or ``"warning"``; ``code`` says what kind."""

    severity: str
    code: str
    message: str
    entry: str | None = None
    source: str | None = None
    not_after: _dt.datetime | None = None
    pins: tuple[Pin, ...] = field(default=())

    def __str__(self) -> str:
        return self.message


def _window(window: float | _dt.timedelta) -> _dt.timedelta:
    return window if isinstance(window, _dt.timedelta) else _dt.timedelta(days=window)


def _days(delta: _dt.timedelta) -> str:
    days = delta.days
    return "1 day" if days == 1 else f"{days} days"


def entry_findings(
    policy: PinPolicy,
    *,
    window: float | _dt.timedelta = DEFAULT_WINDOW_DAYS,
    now: _dt.datetime | None = None,
) -> list[RotationFinding]:
    """Entries whose ``expires`` date has passed (error) or falls within ``window`` (days) (warning)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    span = _window(window)
    found = [_entry_finding(entry, span, now) for entry in policy.entries]
    return [f for f in found if f is not None]


def _entry_finding(entry: DomainEntry, span: _dt.timedelta, now: _dt.datetime) -> RotationFinding | None:
    if entry.expires is None:
        return None
    where = f"entry {entry.host!r}"
    if entry.expired(now):
        return RotationFinding(
            "error", "entry-expired",
            f"{where}: expired on {entry.expires:%Y-%m-%d}; its pins are no longer enforced",
            entry.host, not_after=entry.expires,
        )
    if entry.expires - now <= span:
        return RotationFinding(
            "warning", "entry-expiring",
            f"{where}: expires on {entry.expires:%Y-%m-%d}, in {_days(entry.expires - now)}",
            entry.host, not_after=entry.expires,
        )
    return None


def _check_entry(
    entry: DomainEntry,
    sample: ChainSample,
    matches: list[tuple[int, Pin]],
    span: _dt.timedelta,
    now: _dt.datetime,
) -> list[RotationFinding]:
    chain = sample.chain
    where = f"entry {entry.host!r}"
    found: list[RotationFinding] = []
    if not matches:
        action = "refused" if entry.mode == "enforce" else "reported (report-only)"
        found.append(RotationFinding(
            "error", "no-matching-pin",
            f"{where}: {sample.label} matches none of its pins: connections would be {action}",
            entry.host, sample.label,
        ))
        return found
    infos = {i: parse_certificate(chain[i]) for i, _ in matches}
    carriers: dict[int, list[Pin]] = {}
    for i, pin in matches:
        carriers.setdefault(i, []).append(pin)
    matched = tuple(dict.fromkeys(pin for _, pin in matches))
    backups = tuple(p for p in entry.pins if p not in matched)
    lasting = False  # does some matching pin sit on a certificate that outlives the window?
    latest: _dt.datetime | None = None
    for i, pins in sorted(carriers.items()):
        info = infos[i]
        role = chain_role(i, len(chain))
        left = info.not_after - now
        latest = info.not_after if latest is None else max(latest, info.not_after)
        pin_text = ", ".join(str(p) for p in pins)
        cert = f"certificate {i} ({role}, {info.subject}) of {sample.label}"
        if left <= _dt.timedelta(0):
            found.append(RotationFinding(
                "error", "pin-cert-expired",
                f"{where}: pin {pin_text} is carried by {cert}, which expired on {info.not_after:%Y-%m-%d}",
                entry.host, sample.label, info.not_after, tuple(pins),
            ))
        elif left <= span:
            found.append(RotationFinding(
                "warning", "pin-cert-expiring",
                f"{where}: pin {pin_text} is carried by {cert}, which expires on {info.not_after:%Y-%m-%d}, "
                f"in {_days(left)}"
                + (f"; backup pin(s) for the next key: {', '.join(str(p) for p in backups)}" if backups else ""),
                entry.host, sample.label, info.not_after, tuple(pins),
            ))
        else:
            lasting = True
    if not lasting and not backups:
        only_certificate = all(p.kind != SPKI for p in matched)
        assert latest is not None
        if only_certificate:
            why = "certificate pins never match a renewed certificate"
        else:
            why = "unless the renewed certificate keeps the same key, nothing will match"
        found.append(RotationFinding(
            "error" if only_certificate else "warning", "no-backup-pin",
            f"{where}: every pin matching {sample.label} ({', '.join(str(p) for p in matched)}) is on a "
            f"certificate expiring by {latest:%Y-%m-%d} and there is no backup pin for the next key: {why}. "
            "Add the next key's pin to the entry and ship the policy before the renewal",
            entry.host, sample.label, latest, matched,
        ))
    return found


def chain_findings(
    policy: PinPolicy,
    samples: Iterable[ChainSample],
    *,
    window: float | _dt.timedelta = DEFAULT_WINDOW_DAYS,
    now: _dt.datetime | None = None,
) -> list[RotationFinding]:
    """Findings for each chain against the entry of its host, or every entry whose pins it matches."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    span = _window(window)
    found: list[RotationFinding] = []
    for sample in samples:
        if sample.hostname is not None:
            entry = policy.entry_for(sample.hostname)
            if entry is None:
                found.append(RotationFinding(
                    "warning", "no-entry",
                    f"{sample.label}: no entry covers {sample.hostname}: it is not pinned",
                    None, sample.label,
                ))
                continue
            found.extend(_check_entry(entry, sample, policy._entry_matches(entry, sample.chain), span, now))
            continue
        hit = False
        for entry in policy.entries:
            matches = policy._entry_matches(entry, sample.chain)
            if matches:
                hit = True
                found.extend(_check_entry(entry, sample, matches, span, now))
        if not hit:
            found.append(RotationFinding(
                "warning", "chain-unmatched",
                f"{sample.label}: matches the pins of no entry (name its host with HOST=FILE to check one entry)",
                None, sample.label,
            ))
    return found


def plan_rotation(
    policy: PinPolicy,
    samples: Iterable[ChainSample] = (),
    *,
    window: float | _dt.timedelta = DEFAULT_WINDOW_DAYS,
    now: _dt.datetime | None = None,
) -> list[RotationFinding]:
    """Entry expiry findings, then the findings for each chain (``window`` in days or a timedelta)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return entry_findings(policy, window=window, now=now) + chain_findings(policy, samples, window=window, now=now)
