"""The policy file schema: TOML/JSON files and mappings read into entries, and written back.

``PinPolicy.from_file`` / ``from_mapping`` / ``to_mapping`` call these. Every
problem raises PolicyError naming the file (or mapping) and the place in it.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Mapping, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
from . import _json
from ._entries import _MODES, _POSITION_NAMES, ENFORCE, POSITIONS, DomainEntry, _parse_host
from ._errors import QUOTED_LENGTH, PinFormatError, PolicyError, quoted
from ._files import read_at_most
from ._types import POS_ANY
from .pins import Pin

if TYPE_CHECKING:
    from .policy import PinPolicy

PathLike = Union[str, "os.PathLike[str]"]

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
    hint = difflib.get_close_matches(key, sorted(allowed), n=1) if len(key) <= QUOTED_LENGTH else []
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    return PolicyError(f"{where}: unknown key {quoted(key)}{extra}; allowed: {', '.join(sorted(allowed))}")


def _parse_expires(where: str, value: Any) -> _dt.datetime | None:
    """``expires`` is a date (pins hold through that day, UTC) or a timezone-aware datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = _dt.date.fromisoformat(value) if len(value) == 10 else _dt.datetime.fromisoformat(value)
        except ValueError:
            raise PolicyError(f"{where}.expires: {quoted(value)} is not a date (YYYY-MM-DD) or ISO 8601 datetime") from None
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


#: The largest policy file or Redis value read (bytes); bundles have their own, smaller cap.
MAX_POLICY_BYTES = 64 << 20


def read_policy_bytes(path: PathLike) -> bytes:
    """The bytes of a policy file, of which at most ``MAX_POLICY_BYTES + 1`` are read (PolicyError if more)."""
    name = os.fspath(path)
    try:
        data = read_at_most(path, MAX_POLICY_BYTES)
    except OSError as exc:
        raise PolicyError(f"{name}: cannot read policy: {exc.strerror or exc}") from None
    if data is None:
        raise PolicyError(f"{name}: larger than a policy may be ({MAX_POLICY_BYTES} bytes)")
    return data


def read_file(path: PathLike) -> tuple[Any, str]:
    """The data of a TOML (``.toml``) or JSON (``.json``) policy file, and the name to quote it by."""
    name = os.fspath(path)
    return decode_document(read_policy_bytes(path), name), name


def decode_document(raw: bytes, name: str) -> Any:
    """A policy document's data: TOML, or JSON when ``name`` ends in .json or the text starts with ``{``.

    Every way it can fail is a PolicyError quoting ``name``.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    is_json = name.lower().endswith(".json") or (
        not name.lower().endswith(".toml") and text.lstrip().startswith("{")
    )
    try:
        return _json.loads(text) if is_json else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{name}: invalid TOML: {exc}") from None
    except RecursionError:
        raise PolicyError(f"{name}: nested too deeply to be a policy") from None
    except ValueError as exc:  # a key written twice; an integer longer than Python converts
        raise PolicyError(f"{name}: cannot be read: {exc}") from None


def read_mapping(mapping: Mapping[str, Any], source: str) -> tuple[list[DomainEntry], list[Pin], bool, bool]:
    """A mapping of the file schema (``{"domains": [...]}``) as (entries, blocked pins, allow_sha1, hpkp)."""
    if not isinstance(mapping, Mapping):
        raise PolicyError(f"{source}: a policy is a table/object, not {type(mapping).__name__}")
    for key in mapping:
        if key not in _POLICY_KEYS:
            raise _unknown_key(source, key, _POLICY_KEYS)
    version = mapping.get("version", 1)
    if type(version) is not int or version != 1:
        raise PolicyError(f"{source}: version {quoted(version)} is not supported (this pinengine reads version 1)")
    allow_sha1 = mapping.get("allow_sha1", False)
    if not isinstance(allow_sha1, bool):
        raise PolicyError(f"{source}: allow_sha1 must be true or false")
    domains = mapping.get("domains")
    if domains is None:
        raise PolicyError(f"{source}: no 'domains' list")
    if not isinstance(domains, list):
        raise PolicyError(f"{source}: 'domains' must be a list, not {type(domains).__name__}")
    shared = _Shared(allow_sha1)
    blocked = list(_parse_pin_list(f"{source}: blocked_pins", mapping.get("blocked_pins", []), shared))
    hpkp = mapping.get("hpkp", False)
    if not isinstance(hpkp, bool):
        raise PolicyError(f"{source}: hpkp must be true or false")
    entries = [
        _parse_entry(f"{source}: domains[{i}]", item, shared) for i, item in enumerate(domains)
    ]
    return entries, blocked, allow_sha1, hpkp


def to_mapping(policy: PinPolicy) -> dict[str, Any]:
    """``policy`` in the file schema (JSON-serialisable), the inverse of ``read_mapping``."""
    domains = []
    for e in policy.entries:
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
    if policy.allow_sha1:
        out["allow_sha1"] = True
    if policy.hpkp:
        out["hpkp"] = True
    if policy.blocked_pins:
        out["blocked_pins"] = [str(p) for p in policy.blocked_pins]
    out["domains"] = domains
    return out


class _Shared:
    """Equal values of one policy document, made once and shared by every entry that has them.

    Real policies pin a few CA keys for many hosts: each pin string is parsed
    once, and entries with the same pins (and positions) hold the same tuple,
    so a policy of 100k hosts keeps a handful of Pin objects, not 200k.
    """

    __slots__ = ("allow_sha1", "pins", "tuples")

    def __init__(self, allow_sha1: bool) -> None:
        self.allow_sha1 = allow_sha1
        self.pins: dict[str, Pin] = {}
        self.tuples: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def pin(self, text: str) -> Pin:
        """``Pin.parse(text)``, once per distinct string (PinFormatError as Pin.parse raises it)."""
        pin = self.pins.get(text)
        if pin is None:
            pin = self.pins[text] = Pin.parse(text, allow_sha1=self.allow_sha1)
        return pin

    def tuple(self, values: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
        t = tuple(values)
        return self.tuples.setdefault(t, t)


def _parse_pin_list(where: str, value: Any, shared: _Shared) -> tuple[Pin, ...]:
    if not isinstance(value, list):
        raise PolicyError(f"{where}: expected a list of pins, not {type(value).__name__}")
    pins = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise PolicyError(f"{where}[{i}]: expected a pin string, not {type(item).__name__}")
        try:
            pins.append(shared.pin(item))
        except PinFormatError as exc:
            raise PolicyError(f"{where}[{i}]: {exc}") from None
    return shared.tuple(pins)


def _parse_position(where: str, value: Any) -> int:
    if not isinstance(value, str) or value not in POSITIONS:
        raise PolicyError(f"{where}: position {quoted(value)} is not one of {', '.join(POSITIONS)}")
    return POSITIONS[value]


_FLAGS = ("include_subdomains", "require_backup_pin", "dynamic", "record_issuer")


def _is_mapping(value: Any) -> bool:
    # json and tomllib give dicts: skip the (slow) ABC check for them.
    return type(value) is dict or isinstance(value, Mapping)


def _parse_entry(where: str, item: Any, shared: _Shared) -> DomainEntry:
    # Runs once per entry of policies of 100k entries: the places named in
    # errors are only formatted when there is an error.
    if not _is_mapping(item):
        raise PolicyError(f"{where}: a domain entry is a table/object, not {type(item).__name__}")
    for key in item:
        if key not in _ENTRY_KEYS:
            raise _unknown_key(where, key, _ENTRY_KEYS)
    if "host" not in item:
        raise PolicyError(f"{where}: missing 'host'")
    for flag in _FLAGS:
        if flag in item and not isinstance(item[flag], bool):
            raise PolicyError(f"{where}.{flag}: must be true or false")
    include_subdomains = item.get("include_subdomains", False)
    host = _parse_host(where, item["host"], include_subdomains)
    where = f"{where} ({item['host']})"
    default_position = POS_ANY if "position" not in item else _parse_position(f"{where}.position", item["position"])
    dynamic = item.get("dynamic", False)
    raw_pins = item.get("pins", [] if dynamic else None)
    if raw_pins is None:
        raise PolicyError(f"{where}: missing 'pins'")
    if type(raw_pins) is not list:
        raise PolicyError(f"{where}.pins: expected a list, not {type(raw_pins).__name__}")
    pins: list[Pin] = []
    positions: list[int] = []
    # Duplicates: a list scan for the usual handful of pins, a set past that
    # (a hostile file may list thousands: the check stays linear).
    seen: set[Pin] | list[Pin] = pins if len(raw_pins) <= 8 else set()
    for i, raw in enumerate(raw_pins):
        position = default_position
        if not isinstance(raw, str) and _is_mapping(raw):
            for key in raw:
                if key not in _PIN_KEYS:
                    raise _unknown_key(f"{where}.pins[{i}]", key, _PIN_KEYS)
            if "pin" not in raw:
                raise PolicyError(f"{where}.pins[{i}]: missing 'pin'")
            if "position" in raw:
                position = _parse_position(f"{where}.pins[{i}].position", raw["position"])
            raw = raw["pin"]
        if not isinstance(raw, str):
            raise PolicyError(f"{where}.pins[{i}]: expected a pin string, not {type(raw).__name__}")
        try:
            pin = shared.pin(raw)
        except PinFormatError as exc:
            raise PolicyError(f"{where}.pins[{i}]: {exc}") from None
        if pin in seen:
            raise PolicyError(f"{where}.pins[{i}]: {pin} is listed twice")
        if seen is not pins:
            seen.add(pin)  # type: ignore[union-attr]
        pins.append(pin)
        positions.append(position)
    mode = item.get("mode", ENFORCE)
    if mode not in _MODES:
        raise PolicyError(f"{where}.mode: {quoted(mode)} is not one of {', '.join(_MODES)}")
    report_uri = item.get("report_uri", ())
    if isinstance(report_uri, str):
        report_uri = (report_uri,)
    if not isinstance(report_uri, (list, tuple)) or not all(isinstance(u, str) for u in report_uri):
        raise PolicyError(f"{where}.report_uri: expected a URL or a list of URLs")
    for uri in report_uri:
        if not (uri.startswith("https://") or uri.startswith("http://")):
            raise PolicyError(f"{where}.report_uri: {quoted(uri)} is not an http(s) URL")
    blocked = item.get("blocked_pins", ())
    expires = item.get("expires")
    ttl = item.get("ttl")
    # Checked and normalised above, so the entry is made without checking again.
    return DomainEntry._parsed(
        host,
        shared.tuple(pins),
        shared.tuple(positions),
        include_subdomains,
        mode,
        None if expires is None else _parse_expires(where, expires),
        shared.tuple(report_uri) if report_uri else (),
        () if blocked == () else _parse_pin_list(f"{where}.blocked_pins", blocked, shared),
        item.get("require_backup_pin", True),
        dynamic,
        item.get("record_issuer", False),
        None if ttl is None else _parse_ttl(where, ttl),
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
