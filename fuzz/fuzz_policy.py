"""Fuzz policy loading and verification against the loaded policy.

Input: byte 0 picks the mode.

- bit 1 clear: **text** — the rest is a policy file's contents, bit 0 picks
  its suffix (.json or .toml), and ``PinPolicy.from_file`` loads it;
- bit 1 set: **structured** — the rest drives a generator of policy
  mappings (the schema's keys, values of every TOML / JSON type: strings,
  huge and negative integers, NaN, booleans, lists, tables, naive and aware
  datetimes, dates and times at the edges of the calendar, deep nesting),
  which is loaded by ``PinPolicy.from_mapping`` and, written out as TOML or
  JSON, by ``PinPolicy.from_file``. Coverage-guided mutation of raw text
  rarely gets past the TOML / JSON grammar; this reaches the schema checks.

Invariants: loading raises PolicyError (naming the file) and nothing else; a
loaded policy survives ``to_mapping`` -> ``from_mapping`` unchanged; and
verifying the example chain (examples/chain.pem) for host names drawn from
the policy gives the same results, or the same exceptions with the same
messages, on the compiled core and on the pure-Python twin (each with a
fresh in-memory pin store, so dynamic entries start alike).

    python fuzz/fuzz_policy.py CORPUS_DIR [libFuzzer flags]
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import Finding, cores, instrument_if_main, quiet, run

instrument_if_main(__name__, ("pinengine._entries", "pinengine._schema", "pinengine.policy", "tomllib"))

from pinengine import _backend, policy  # noqa: E402
from pinengine._errors import CertificateParseError, PinMismatchError, PolicyError  # noqa: E402
from pinengine._pem import load_certificates  # noqa: E402
from pinengine.policy import PinPolicy  # noqa: E402

C, P = cores()
ROOT = Path(__file__).resolve().parent.parent
CHAIN = load_certificates((ROOT / "examples" / "chain.pem").read_bytes())
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
_TMP = tempfile.mkdtemp(prefix="pinengine-fuzz-policy-")  # under $TMPDIR (fuzz/run.py: its work directory)
atexit.register(shutil.rmtree, _TMP, True)

POLICY_KEYS = sorted(getattr(policy, "_POLICY_KEYS", {"version", "domains", "blocked_pins", "allow_sha1"}))
ENTRY_KEYS = sorted(getattr(policy, "_ENTRY_KEYS", {"host", "pins", "mode", "expires", "position"}))
PIN_KEYS = sorted(getattr(policy, "_PIN_KEYS", {"pin", "position"}))
PINS = [
    "sha256/H9rY1U+p3/uo5bbpzPwUaUt7tL1A+fXhkfvAdKFNykM=",
    "sha256/Mwownx8WZCCfeUEJOigxKEj+0VGV7wGEHGJh/ucTTsg=",
    "sha256/Mxy5c9FYGsXN1g+VX3l0VxKDs94S2rnTq9o6bTXX1Ws=",
    "cert-sha256/Mwownx8WZCCfeUEJOigxKEj+0VGV7wGEHGJh/ucTTsg=",
    "sha1/Mwownx8WZCCfeUEJOigxKEj+0V0=",
    'pin-sha256="H9rY1U+p3/uo5bbpzPwUaUt7tL1A+fXhkfvAdKFNykM="',
]
WORDS = [
    *PINS, "www.example.com", "**.example.com", "*.example.com", "example.com", "api.example.org", "*.*.example",
    "bücher.example", "xn--bcher-kva.example", "192.0.2.1", "[::1]", "fe80::1%eth0", "com", "*", "", " ",
    "enforce", "report-only", "any", "leaf", "intermediate", "root", "https://r.example/", "ftp://x",
    "2025-06-30", "9999-12-31", "0001-01-01T00:00:00+01:00", "2026-02-29", "2030-01-01T00:00:00", "\x00", "\ud800",
]
ZONES = [None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=14)), dt.timezone(dt.timedelta(hours=-12, minutes=-59))]


class Reader:
    """Deterministic choices read from the input bytes (zeros once they run out)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        return (self.byte() << 8 | self.byte()) % n if n > 0 else 0

    def pick(self, seq: list[Any]) -> Any:
        return seq[self.below(len(seq))]


def gen_scalar(r: Reader) -> Any:
    kind = r.below(12)
    if kind <= 3:
        return r.pick(WORDS)
    if kind == 4:
        return r.pick([0, 1, 2, -1, 10**30, -(2**63), 2**64])
    if kind == 5:
        return r.pick([True, False])
    if kind == 6:
        return r.pick([1.5, math.nan, math.inf, -0.0])
    if kind == 7:
        n = r.below(12)
        return "".join(chr(32 + r.below(0x250)) for _ in range(n))
    if kind == 8:
        year, month, day = r.pick([1, 2, 1970, 2025, 2026, 9998, 9999]), 1 + r.below(12), r.pick([1, 28, 29, 30, 31])
        try:
            return dt.date(year, month, day)
        except ValueError:  # no such day in that month
            return dt.date(year, month, 1)
    if kind == 9:
        year = r.pick([1, 2, 2025, 2026, 9999])
        return dt.datetime(year, r.pick([1, 12]), r.pick([1, 31]), r.below(24), r.below(60), tzinfo=r.pick(ZONES))
    if kind == 10:
        return dt.time(r.below(24), r.below(60))
    return r.pick(WORDS)


def gen_value(r: Reader, depth: int = 0) -> Any:
    kind = r.below(8)
    if depth < 4 and kind == 6:
        return [gen_value(r, depth + 1) for _ in range(r.below(4))]
    if depth < 4 and kind == 7:
        return {r.pick([*ENTRY_KEYS, *PIN_KEYS, "x"]): gen_value(r, depth + 1) for _ in range(r.below(4))}
    return gen_scalar(r)


def gen_pins(r: Reader) -> Any:
    if r.below(8) == 0:
        return gen_value(r)
    out: list[Any] = []
    for _ in range(r.below(5)):
        if r.below(4) == 0:
            out.append({k: (r.pick(PINS) if k == "pin" else gen_value(r)) for k in PIN_KEYS if r.below(4)})
        else:
            out.append(r.pick(PINS) if r.below(6) else gen_scalar(r))
    return out


def gen_entry(r: Reader) -> dict[str, Any]:
    entry: dict[str, Any] = {"host": r.pick(WORDS[6:]) if r.below(6) else gen_value(r), "pins": gen_pins(r)}
    for _ in range(r.below(5)):
        key = r.pick([*ENTRY_KEYS, "hsot"])
        entry[key] = gen_pins(r) if key in ("pins", "blocked_pins") else gen_value(r)
    return entry


def gen_mapping(r: Reader) -> dict[str, Any]:
    mapping: dict[str, Any] = {"domains": [gen_entry(r) for _ in range(1 + r.below(3))]}
    for _ in range(r.below(3)):
        key = r.pick([*POLICY_KEYS, "verison"])
        mapping[key] = gen_pins(r) if key == "blocked_pins" else gen_value(r)
    return mapping


def gen_deep_text(r: Reader, suffix: str) -> bytes:
    """A policy file nested deeper than any parser's recursion limit in a naive walk."""
    n = 100 * (1 + r.below(40))
    opener, closer = r.pick([("[", "]"), ("{\"a\": ", "}") if suffix == ".json" else ("{a = ", "}")])
    inner = opener * n + "1" + closer * n
    text = f'{{"domains": {inner}}}' if suffix == ".json" else f"domains = {inner}\n"
    return text.encode()


def to_toml(mapping: dict[str, Any]) -> str | None:
    """TOML text for a mapping of TOML types, or None when it has something TOML cannot write."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v) if -(2**63) <= v < 2**63 else "x"  # out of TOML's range: invalid, still a test
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, (dt.datetime, dt.date, dt.time)):
            return v.isoformat()
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(type(v))

    try:
        lines = [f"{json.dumps(k)} = {value(v)}" for k, v in mapping.items() if k != "domains"]
        domains = mapping.get("domains")
        if isinstance(domains, list) and all(isinstance(e, dict) for e in domains):
            for entry in domains:
                lines.append("[[domains]]")
                lines += [f"{json.dumps(k)} = {value(v)}" for k, v in entry.items()]
        elif "domains" in mapping:
            lines.insert(0, f"domains = {value(domains)}")
        return "\n".join(lines) + "\n"
    except (TypeError, RecursionError, UnicodeEncodeError):
        return None


def load_file(text: bytes, suffix: str) -> PinPolicy | None:
    path = os.path.join(_TMP, "policy" + suffix)
    with open(path, "wb") as f:
        f.write(text)
    try:
        return PinPolicy.from_file(path)
    except PolicyError as exc:
        if path not in str(exc):
            raise Finding(f"PolicyError does not name the file: {exc}") from None
        return None


def _hosts(p: PinPolicy) -> list[str]:
    hosts = ["www.example.com", "unpinned.test"]
    for entry in p.entries[:6]:
        base = entry.base
        hosts += [base, "a." + base, "a.b." + base]
    return hosts


def _verify_all(mapping: dict[str, Any], core: Any) -> list[Any]:
    from pinengine.reporting import Reporter
    from pinengine.stores.memory import MemoryStore

    # A fresh policy per core: a fresh in-memory store (dynamic entries record
    # the first chain they see) and a reporter with no sinks.
    # The policy is built after the switch: it builds its pin sets with the core in use.
    saved = _backend.use(core)
    try:
        p = PinPolicy.from_mapping(mapping, reporter=Reporter(), store=MemoryStore())
        out: list[Any] = []
        for host in _hosts(p):
            for verified in (True, False):
                for chain in (CHAIN, CHAIN[:1]):
                    try:
                        r = p.verify(host, chain, verified=verified, now=NOW)
                        out.append(("ok", r.status, r.matches, r.blocked, r.message))
                    except (PinMismatchError, CertificateParseError, ValueError) as exc:
                        out.append((type(exc).__name__, str(exc)))
        batch = p.verify_batch([(h, CHAIN) for h in _hosts(p)], now=NOW)
        out.append([(type(r).__name__, getattr(r, "status", str(r))) for r in batch])
        return out
    finally:
        _backend.use(saved)


def check_loaded(p: PinPolicy, data: bytes) -> None:
    mapping = p.to_mapping()
    again = PinPolicy.from_mapping(mapping)
    if again.to_mapping() != mapping:
        raise Finding(f"to_mapping/from_mapping does not round-trip:\n{mapping}\n{again.to_mapping()}")
    a, b = _verify_all(mapping, C), _verify_all(mapping, P)
    if a != b:
        i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)) - 1)
        raise Finding(f"verification differs between cores on {data!r}:\n  compiled: {a[i]!r}\n  python:   {b[i]!r}")


def check(data: bytes) -> None:
    with quiet():  # report-only and expired entries log on every run
        _check(data)


def _check(data: bytes) -> None:
    mode = data[0] if data else 0
    if not mode & 2:
        loaded = load_file(data[1:], ".json" if mode & 1 else ".toml")
        if loaded is not None:
            check_loaded(loaded, data)
        return
    reader = Reader(data[1:])
    if reader.below(16) == 0:
        suffix = ".json" if mode & 1 else ".toml"
        load_file(gen_deep_text(reader, suffix), suffix)
        return
    mapping = gen_mapping(reader)
    try:
        loaded = PinPolicy.from_mapping(mapping)
    except PolicyError:
        loaded = None
    if loaded is not None:
        check_loaded(loaded, data)
    if mode & 1:
        try:
            text = json.dumps(mapping, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass")
        except RecursionError:
            return
        load_file(text, ".json")
    else:
        toml = to_toml(mapping)
        if toml is not None:
            load_file(toml.encode("utf-8", "surrogatepass"), ".toml")


if __name__ == "__main__":
    run(check)
    sys.exit(0)
