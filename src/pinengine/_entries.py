"""Policy entries and results: ``DomainEntry`` (which host, which pins), ``PinMatch``, ``VerificationResult``.

An entry's host is normalised here (``_parse_host``), the same way for an
entry built in code as for one read from a policy file (``_schema``).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import _hostnames
from ._errors import PolicyError
from ._types import POS_ANY, POS_INTERMEDIATE, POS_LEAF, POS_ROOT, Status
from .pins import Pin

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
    # (A name with no A-label, sent in one form, covers exactly that form:
    # the common case, decided without building the forms it covers.)
    lost = False
    if len(forms) > 1 or "xn--" in name:
        covered = {s.name for s in _hostnames.entry_spellings(name)}
        lost = any(s.name not in covered for s in forms)
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


@dataclass(frozen=True, slots=True)
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
        if self.expires is not None:
            # As the schema reads it: a date holds through that day (UTC); a
            # datetime without a timezone is refused (it cannot be compared).
            from ._schema import _parse_expires

            set_(self, "expires", _parse_expires("DomainEntry", self.expires))

    @classmethod
    def _parsed(
        cls,
        host: str,
        pins: tuple[Pin, ...],
        positions: tuple[int, ...],
        include_subdomains: bool,
        mode: str,
        expires: _dt.datetime | None,
        report_uri: tuple[str, ...],
        blocked_pins: tuple[Pin, ...],
        require_backup_pin: bool,
        dynamic: bool,
        record_issuer: bool,
        ttl: float | None,
    ) -> DomainEntry:
        """An entry from fields the policy schema reader has already checked and normalised.

        ``__post_init__`` is skipped: it would normalise the host name a
        second time, the slowest step of loading a large policy.
        """
        entry = object.__new__(cls)
        set_ = object.__setattr__
        set_(entry, "host", host)
        set_(entry, "pins", pins)
        set_(entry, "positions", positions)
        set_(entry, "include_subdomains", include_subdomains)
        set_(entry, "mode", mode)
        set_(entry, "expires", expires)
        set_(entry, "report_uri", report_uri)
        set_(entry, "blocked_pins", blocked_pins)
        set_(entry, "require_backup_pin", require_backup_pin)
        set_(entry, "dynamic", dynamic)
        set_(entry, "record_issuer", record_issuer)
        set_(entry, "ttl", ttl)
        set_(entry, "noted", False)
        return entry

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


@dataclass(frozen=True, slots=True)
class _UnreadableEntry(DomainEntry):
    """What stands for a name that may be noted while the pin store cannot be read: refused."""

    error: str = ""


class PinMatch(NamedTuple):
    """A pin that matched: the chain index it matched at, its role there, and the pin."""

    index: int  # type: ignore[assignment]  # the field shadows tuple.index, on purpose
    role: str
    pin: Pin
    source: str = "static"


@dataclass(frozen=True, slots=True)
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
    status: Status
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
