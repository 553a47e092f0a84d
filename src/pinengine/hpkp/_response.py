"""A response's HPKP headers: ``note_response`` checks the connection and hands each header on.

``Public-Key-Pins`` goes to noting (``_noting``), ``-Report-Only`` to its
Pin Validation (``_report_only``); only a connection whose validated chain
passed its pins may note anything.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Sequence

from .. import _backend
from .._errors import CertificateParseError
from ..pins import Pin
from ..policy import PinPolicy, _ip_literal, normalize_hostname
from ._fields import HeadersLike, header_field
from ._header import HEADER, REPORT_ONLY_HEADER, HPKPError, parse_header
from ._noting import note_host
from ._outcomes import ignored, refused
from ._report_only import check_report_only
from ._report_uri import absolute_report_uri

__all__ = ["note_response"]


def note_response(
    policy: PinPolicy,
    hostname: str,
    headers: HeadersLike,
    *,
    pin_result: Any,
    pin_chain: Sequence[bytes] | None,
    now: float | _dt.datetime | None = None,
    url: str | None = None,
) -> str:
    """Apply the HPKP headers of a response from ``hostname`` to ``policy.store``; say what happened.

    ``headers`` are the response's headers (httpx ``Headers``, urllib3
    ``HTTPHeaderDict``, a requests ``CaseInsensitiveDict``, a dict or
    ``(name, value)`` pairs); only the first ``Public-Key-Pins`` field counts,
    and the first ``-Report-Only`` one. ``pin_result`` and ``pin_chain`` come
    from the pinned socket or SSLObject the response arrived on (its
    ``pin_result`` / ``pin_chain``). ``now`` (unix time or an aware datetime;
    default the current time) is when the header was received; ``url`` (the
    request URL) resolves a relative ``report-uri``.

    Does nothing unless ``policy.hpkp`` is on. A host is noted (RFC 7469
    §2.5) only when: it is a name, not an IP address; no policy entry covers
    it (static and trust-on-first-use entries are never overridden by a
    header); the connection's chain was validated and passed its pins
    (``pin_result.verified`` and status ``match`` or ``not-pinned``); the
    header is well-formed and within the bounds (``MAX_HEADER_LENGTH``,
    ``MAX_PINS``, ``MAX_REPORT_URI_LENGTH``); at least one of its pins
    matches a key of ``pin_chain``; at least one matches none (the backup
    pin); and, for a host not noted yet, the caps on noted hosts leave room
    (``PinStore.note_hpkp``). The store then gets a ``PinRecord`` with
    ``source="hpkp"`` living ``max-age`` seconds (at most ``MAX_AGE_CAP``),
    replacing an earlier HPKP record but never a record of another source.
    ``max-age=0`` removes the host's HPKP record. A report-only header is
    never noted: a chain that fails its pins is logged as a warning (and
    given to ``policy.reporter``, if set, as an entry with ``noted=True``:
    its report URI is the server's choice).

    Never raises for what a server sent or for a store failure (that is
    logged and counted); returns ``"noted"``, ``"removed"``, ``"hpkp off"``,
    ``"ignored: <why>"``, or the report-only outcome (``"report-only: ..."``,
    after ``"; "`` when both headers came).
    """
    if not getattr(policy, "hpkp", False):
        return "hpkp off"
    pkp = header_field(headers, HEADER)
    pkp_ro = header_field(headers, REPORT_ONLY_HEADER)
    if pkp is None and pkp_ro is None:
        return "ignored: no Public-Key-Pins header"

    try:
        name = normalize_hostname(hostname)
    except ValueError as exc:
        return ignored(policy, hostname, f"bad host name: {exc}")
    problem = _connection_problem(name, pin_result, pin_chain)
    if problem is not None:
        return ignored(policy, name, problem)
    assert pin_chain is not None
    try:
        chain_pins = _chain_pins(pin_chain)
    except CertificateParseError as exc:
        return ignored(policy, name, f"the checked chain does not parse: {exc}")

    outcomes: list[str] = []
    if pkp is not None:
        if _ip_literal(name) is not None:
            outcomes.append(ignored(policy, name, "an IP address is never noted (RFC 7469 §2.5)"))
        else:
            outcomes.append(note_host(policy, name, pkp, chain_pins, _unix(now), url))
    if pkp_ro is not None:
        try:
            header = parse_header(pkp_ro, report_only=True)
            report_uri = absolute_report_uri(header.report_uri, url)
        except (HPKPError, ValueError) as exc:
            outcomes.append(refused(policy, name, str(exc)))
        else:
            outcomes.append(check_report_only(policy, name, header, pin_chain, chain_pins, report_uri))
    return "; ".join(outcomes)


def _unix(now: float | _dt.datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, _dt.datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now.timestamp()
    return float(now)


def _connection_problem(name: str, pin_result: Any, pin_chain: Sequence[bytes] | None) -> str | None:
    """Why a response's connection may not note pins (None: it may)."""
    if pin_result is None:
        return "the connection's pins were not checked (not a pinned TLS connection)"
    if not getattr(pin_result, "verified", False):
        return "the connection's chain was not validated by a trust store"
    status = getattr(pin_result, "status", None)
    if status not in ("match", "not-pinned"):
        return f"the connection did not pass its pins (status {status!r})"
    checked = getattr(pin_result, "hostname", name)
    if checked != name:
        return f"the connection was checked for {checked}, not {name}"
    if not pin_chain:
        return "the connection's checked chain is not known"
    return None


def _chain_pins(chain: Sequence[bytes]) -> list[Pin]:
    core = _backend.core
    return [Pin("sha256", core.spki_sha256(der)) for der in chain]
