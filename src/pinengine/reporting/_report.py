"""The violation report: what one pin violation says, as RFC 7469 section 3 JSON."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

from .. import _backend
from ..pins import SPKI, Pin

__all__ = ["ViolationReport"]


def _iso(t: _dt.datetime) -> str:
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def _known_pin(pin: Pin) -> str:
    # RFC 7469 writes known pins as Public-Key-Pins directives: pin-sha256="...".
    # It has no form for certificate pins: they appear as cert-sha256="...".
    b64 = base64.b64encode(pin.digest).decode("ascii")
    if pin.kind == SPKI:
        return f'pin-{pin.algorithm}="{b64}"'
    return f'cert-{pin.algorithm}="{b64}"'


def _chain_pin(der: bytes) -> str:
    try:
        return str(Pin("sha256", _backend.core.spki_sha256(der)))
    except Exception:  # a malformed certificate has no pin
        return "(malformed certificate)"


def _report_uris(entry: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(operator's, server-chosen)`` report URIs of a policy entry.

    The one place of the rule: an entry with ``noted=True`` was made from an
    HPKP header (a noted record, or a Public-Key-Pins-Report-Only failure), so
    its ``report_uri`` was chosen by the server; any other entry's was written
    by the operator (policy file or code).
    """
    if entry is None:
        return (), ()
    uris = tuple(entry.report_uri)
    if getattr(entry, "noted", False):
        return (), uris
    return uris, ()


@dataclass(frozen=True)
class ViolationReport:
    """One pin violation, as sent to collectors.

    ``to_dict()`` gives the RFC 7469 section 3 fields, plus pinengine's own
    under the single key ``"pinengine"``; ``to_json()`` the bytes POSTed.
    Chains are DER, leaf first. ``served_chain`` is what the server sent when
    the caller knew it (the TLS hooks do), otherwise the checked chain;
    ``validated_chain`` is empty when no trust store validated the chain.
    """

    date_time: _dt.datetime
    hostname: str
    port: int | None
    effective_expiration_date: _dt.datetime | None
    include_subdomains: bool
    noted_hostname: str
    served_chain: tuple[bytes, ...]
    validated_chain: tuple[bytes, ...]
    known_pins: tuple[Pin, ...]
    report_uri: tuple[str, ...] = ()
    status: str = "mismatch"
    mode: str = "enforce"
    entry: str | None = None
    verified: bool = True
    blocked_pins: tuple[Pin, ...] = ()
    backend: str = ""
    version: str = ""
    message: str = field(default="", compare=False)
    server_report_uri: tuple[str, ...] = ()

    @classmethod
    def from_event(cls, event: Any, now: _dt.datetime | None = None) -> ViolationReport:
        """The report of a ``VerificationEvent`` (see ``pinengine._observe``)."""
        from .. import __version__

        entry = event.entry
        operator_uris, server_uris = _report_uris(entry)
        checked = tuple(event.validated_chain)
        served = tuple(event.served_chain) if event.served_chain is not None else checked
        return cls(
            date_time=now or _dt.datetime.now(_dt.timezone.utc),
            hostname=event.hostname,
            port=event.port,
            effective_expiration_date=entry.expires if entry is not None else None,
            include_subdomains=entry is not None and entry.pattern != "exact",
            noted_hostname=entry.base if entry is not None else event.hostname,
            served_chain=served,
            validated_chain=checked if event.verified else (),
            known_pins=tuple(entry.pins) if entry is not None else (),
            report_uri=operator_uris,
            status=event.status,
            mode=entry.mode if entry is not None else "enforce",
            entry=entry.host if entry is not None else None,
            verified=event.verified,
            blocked_pins=tuple(m.pin for m in event.blocked),
            backend=_backend.name(),
            version=__version__,
            message=event.message,
            server_report_uri=server_uris,
        )

    @property
    def reason(self) -> str:
        """``blocked-key`` (the chain holds a blocked key) or ``no-pin-matched``."""
        return "blocked-key" if self.blocked_pins else "no-pin-matched"

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: RFC 7469 section 3, plus ``"pinengine"``."""
        return {
            "date-time": _iso(self.date_time),
            "hostname": self.hostname,
            "port": self.port,
            "effective-expiration-date": (
                _iso(self.effective_expiration_date) if self.effective_expiration_date is not None else None
            ),
            "include-subdomains": self.include_subdomains,
            "noted-hostname": self.noted_hostname,
            "served-certificate-chain": [_pem(d) for d in self.served_chain],
            "validated-certificate-chain": [_pem(d) for d in self.validated_chain],
            "known-pins": [_known_pin(p) for p in self.known_pins],
            "pinengine": {
                "status": self.status,
                "mode": self.mode,
                "entry": self.entry,
                "reason": self.reason,
                "verified": self.verified,
                "blocked-pins": [str(p) for p in self.blocked_pins],
                "served-chain-pins": [_chain_pin(d) for d in self.served_chain],
                "backend": self.backend,
                "version": self.version,
            },
        }

    def to_json(self) -> bytes:
        """The JSON document POSTed to collectors (UTF-8)."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")

    @property
    def chain_digest(self) -> bytes:
        """SHA-256 over the served and validated chains: what de-duplication calls "the same chain"."""
        h = hashlib.sha256()
        for chain in (self.served_chain, self.validated_chain):
            h.update(len(chain).to_bytes(4, "big"))
            for der in chain:
                h.update(len(der).to_bytes(4, "big"))
                h.update(der)
        return h.digest()

    def summary(self) -> str:
        """One line for logs: host, port, what happened, the entry and the pins of the chain seen."""
        where = self.hostname if self.port is None else f"{self.hostname}:{self.port}"
        action = "refused" if self.status == "mismatch" else "allowed, report-only"
        entry = f"entry {self.entry!r}" if self.entry is not None else "no entry (blocked key)"
        chain = ", ".join(_chain_pin(d) for d in self.served_chain) or "(none)"
        known = ", ".join(str(p) for p in self.known_pins) or "(none)"
        blocked = f"; blocked keys: {', '.join(str(p) for p in self.blocked_pins)}" if self.blocked_pins else ""
        # Name the chain shown: the one the peer served, unless it is also
        # the one that was validated and checked (or the served one is unknown).
        label = "validated chain" if tuple(self.served_chain) == tuple(self.validated_chain) else "served chain"
        return (
            f"pin violation for {where} ({action}): {entry}, {self.reason}{blocked}; "
            f"{label}: {chain}; known pins: {known}"
        )
