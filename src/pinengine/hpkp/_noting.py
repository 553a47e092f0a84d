"""Noting a host from a ``Public-Key-Pins`` header into the policy's store (RFC 7469 §2.5).

The connection checks are done (see ``_response``); here the header is
parsed, the backup-pin rule applied, and the store written: the record
lives ``max-age`` seconds (at most ``MAX_AGE_CAP``), never replaces a
record of another source, and a new host is noted only within the caps
(``MAX_NOTED_HOSTS``, ``MAX_NOTED_PER_DOMAIN``). ``max-age=0`` removes the
host's HPKP record.
"""

from __future__ import annotations

import logging

from .. import _observe
from ..metrics import count_event
from ..pins import Pin
from ..policy import PinPolicy
from ..stores import PinRecord, StoreError
from ..stores._base import DOMAIN_FULL, OTHER_SOURCE, STORE_FULL, noted_domain
from ._header import HPKPError, parse_header
from ._outcomes import ignored, log, log_throttled, refused
from ._report_uri import absolute_report_uri

__all__ = ["MAX_AGE_CAP", "MAX_NOTED_HOSTS", "MAX_NOTED_PER_DOMAIN", "note_host"]

#: The longest a host stays noted, whatever max-age says: 60 days, the cap
#: RFC 7469 §4.1 suggests and the browsers that implemented HPKP used.
MAX_AGE_CAP = 60 * 24 * 3600

#: Default cap on the hosts noted in one store (``PinPolicy(hpkp_max_hosts=...)``).
#: A client noting headers from more hosts than this is being fed them; at
#: the cap the store holds at most ~2 MB of HPKP records (16 pins and a
#: 1 KB report-uri each), which also bounds a JSONFileStore's rewrite.
MAX_NOTED_HOSTS = 1000

#: Default cap on the hosts noted per registrable domain
#: (``PinPolicy(hpkp_max_hosts_per_domain=...)``; see
#: ``pinengine.stores._base.noted_domain``). Enough for a site's separately
#: noted hosts (www, api, login, ...; a site with more uses
#: includeSubDomains), and a wildcard certificate notes no more; filling the
#: store takes MAX_NOTED_HOSTS / 32 = 31 registrable domains.
MAX_NOTED_PER_DOMAIN = 32

#: A repeated, unchanged header rewrites the record only when its expiry moves
#: on by this much (seconds), or by a tenth of max-age if that is more: a host
#: sending the same header on every response costs a write at most that often.
_REFRESH_SECONDS = 60.0
_REFRESH_FRACTION = 0.1


def note_host(policy: PinPolicy, name: str, value: str, chain_pins: list[Pin], at: float, url: str | None) -> str:
    """The Public-Key-Pins part of ``note_response`` (the connection checks already passed)."""
    entry = policy.entry_for(name)
    if entry is not None:
        return ignored(
            policy, name, f"{name} is covered by the policy entry {entry.host!r}; headers never change it",
            logging.DEBUG,
        )
    try:
        header = parse_header(value)
        report_uri = absolute_report_uri(header.report_uri, url)
    except (HPKPError, ValueError) as exc:
        return refused(policy, name, str(exc))
    assert header.max_age is not None

    if header.max_age == 0:
        removed = [False]

        def remove(current: PinRecord | None) -> PinRecord | None:
            removed[0] = current is not None and current.source == "hpkp"
            return None if removed[0] else current

        try:
            policy.store.update(name, remove, now=at)
        except StoreError as exc:
            _observe.store_error(policy, name, None, exc)
            return ignored(policy, name, f"the pin store cannot be used: {exc}")
        if not removed[0]:
            policy.forget_cached(name)
            return ignored(policy, name, f"max-age=0 but {name} has no HPKP pins noted")
        policy._noted_changed(name, None)
        log_throttled(policy, "noted", logging.INFO, f"HPKP: {name} is no longer a known pinned host (max-age=0)")
        return "removed"

    if not any(p in chain_pins for p in header.pins):
        return ignored(policy, name, "no pin of the header matches a key of the validated chain")
    if all(p in chain_pins for p in header.pins):
        return ignored(
            policy, name, "no backup pin: every pin of the header matches a key of the chain (RFC 7469 §2.5)"
        )

    ttl = min(header.max_age, MAX_AGE_CAP)
    record = PinRecord.create(
        name, header.pins, source="hpkp", now=at, ttl=ttl,
        include_subdomains=header.include_subdomains, report_uri=report_uri,
    )
    try:
        current = policy.store.get(name, now=at)
    except StoreError as exc:
        _observe.store_error(policy, name, None, exc)
        return ignored(policy, name, f"the pin store cannot be used: {exc}")
    if _same(current, record, ttl):
        # Every response repeats the header: no write unless something changed
        # or the expiry moves on enough (see _REFRESH_SECONDS).
        log.debug("HPKP: %s already noted with these pins", name)
        return "noted"
    max_hosts = policy.hpkp_max_hosts or MAX_NOTED_HOSTS
    per_domain = policy.hpkp_max_hosts_per_domain or MAX_NOTED_PER_DOMAIN
    try:
        outcome, stored = policy.store.note_hpkp(
            record, max_hosts=max_hosts, max_hosts_per_domain=per_domain, now=at
        )
    except StoreError as exc:
        _observe.store_error(policy, name, None, exc)
        return ignored(policy, name, f"the pin store cannot be used: {exc}")
    if outcome == OTHER_SOURCE:
        source = stored.source if stored is not None else "?"
        return ignored(
            policy, name, f"the store holds a record of source {source!r} for {name}; an HPKP header does not replace it"
        )
    if outcome in (DOMAIN_FULL, STORE_FULL):
        if outcome == DOMAIN_FULL:
            why = (f"{noted_domain(name)} already has {per_domain} hosts noted "
                   "(hpkp_max_hosts_per_domain; the hosts noted before stay noted)")
        else:
            why = f"the pin store already holds {max_hosts} noted hosts (hpkp_max_hosts; they stay noted)"
        count_event("hpkp_notes_refused")
        log_throttled(policy, "cap", logging.WARNING, f"HPKP: {name} not noted: {why}")
        return f"ignored: {name} not noted: {why}"
    policy._noted_changed(name, stored)
    log_throttled(
        policy, "noted", logging.INFO,
        f"HPKP: noted {name}{' and its subdomains' if header.include_subdomains else ''} for {ttl} s "
        f"with {len(header.pins)} pins",
    )
    return "noted"


def _same(current: PinRecord | None, new: PinRecord, ttl: float) -> bool:
    """Whether ``current`` is an HPKP record saying what ``new`` says, refreshed recently enough."""
    return (
        current is not None
        and current.source == "hpkp"
        and current.pins == new.pins
        and current.include_subdomains == new.include_subdomains
        and current.report_uri == new.report_uri
        and current.expires_at is not None
        and new.expires_at is not None
        and 0 <= new.expires_at - current.expires_at < max(_REFRESH_SECONDS, ttl * _REFRESH_FRACTION)
    )
