"""Regression tests for what fuzzing found.

Two kinds:

- every input kept in fuzz/crashers/<harness>/ (der, chain, pins, policy,
  hpkp) is fed again to that fuzz harness's check (differential compiled vs
  pure Python, and the harness' invariants); a crasher must stay fixed;
- named tests for each finding, with the input written out, so that the bug
  is readable here without the fuzz tooling.

The harness replays need both cores and the fuzz/ directory next to tests/
(a source checkout); elsewhere they are skipped.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from pinengine._errors import PolicyError
from pinengine._pem import load_certificates
from pinengine.hpkp import HPKPError, note_response, parse_header
from pinengine.pins import Pin
from pinengine.policy import PinPolicy, VerificationResult
from pinengine.stores import MemoryStore

# Core and policy behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
CRASHERS = FUZZ / "crashers"
_NO_EXTENSIONS = os.environ.get("PINENGINE_NO_EXTENSIONS", "") not in ("", "0")


def _crasher_files() -> list[Any]:
    if not CRASHERS.is_dir():
        return []
    params = []
    for path in sorted(CRASHERS.glob("*/*")):
        if path.is_file() and not path.name.startswith(".") and path.suffix != ".md":
            params.append(pytest.param(path.parent.name, path, id=f"{path.parent.name}/{path.name}"))
    return params


@pytest.fixture
def backend() -> str:
    """Overrides conftest's per-backend fixture: the harnesses use both cores themselves."""
    return "compiled+python"


@pytest.mark.skipif(_NO_EXTENSIONS, reason="the fuzz harnesses compare the compiled core with the pure-Python one")
@pytest.mark.skipif(not FUZZ.is_dir(), reason="no fuzz/ directory (not a source checkout)")
@pytest.mark.parametrize(("harness", "path"), _crasher_files())
def test_crasher_stays_fixed(harness: str, path: Path) -> None:
    sys.path.insert(0, str(FUZZ))
    try:
        module = importlib.import_module(f"fuzz_{harness}")
    finally:
        sys.path.remove(str(FUZZ))
    module.check(path.read_bytes())


# ---- policy loading: anything wrong in a policy file is a PolicyError naming the file

_PINS = '["sha256/u7X5QeVu5IHqSDaG6Srxa1vrr/DXGzsJ6wiuH7zoCCM=", "sha256/Jk/89oF70FMmSjqayyXnWUP4QunzgnOAYSXKU5Jakg4="]'


def _load(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        PinPolicy.from_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.json", "[" * 3000 + "]" * 3000),
        ("deep.toml", "a = " + "[" * 3000 + "]" * 3000),
        ("deep-tables.toml", "a = " + "{b=" * 3000 + "1" + "}" * 3000),
    ],
)
def test_deeply_nested_policy_is_a_policy_error(tmp_path: Path, name: str, text: str) -> None:
    """RecursionError escaped from json.loads / tomllib.loads (fuzz_policy, crashers policy/recursion-*)."""
    _load(tmp_path, name, text)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bigint.json", '{"version": ' + "9" * 5000 + ', "domains": []}'),
        ("bigint.toml", "version = " + "9" * 5000 + "\ndomains = []\n"),
    ],
)
def test_huge_integer_in_policy_is_a_policy_error(tmp_path: Path, name: str, text: str) -> None:
    """ValueError (int max_str_digits) escaped from the JSON / TOML parser (found reviewing what the
    fuzz_policy generator cannot reach: its inputs are at most 4 KB)."""
    _load(tmp_path, name, text)


@pytest.mark.parametrize("position", ['["any"]', '{"a": 1}'])
def test_unhashable_position_is_a_policy_error(tmp_path: Path, position: str) -> None:
    """TypeError (unhashable type) escaped from the position lookup (fuzz_policy, crasher policy/position-unhashable)."""
    text = f'{{"domains": [{{"host": "a.example", "position": {position}, "pins": {_PINS}}}]}}'
    _load(tmp_path, "position.json", text)
    text = f'{{"domains": [{{"host": "a.example", "pins": [{{"pin": "sha256/u7X5QeVu5IHqSDaG6Srxa1vrr/DXGzsJ6wiuH7zoCCM=", "position": {position}}}, "sha256/Jk/89oF70FMmSjqayyXnWUP4QunzgnOAYSXKU5Jakg4="]}}]}}'
    _load(tmp_path, "pin-position.json", text)


@pytest.mark.parametrize(
    "expires",
    ["9999-12-31", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", '"9999-12-31"'],
)
def test_expires_at_the_end_of_time_is_a_policy_error(tmp_path: Path, expires: str) -> None:
    """OverflowError escaped when expires goes to UTC or to the next day (fuzz_policy, crashers policy/expires-*)."""
    _load(tmp_path, "expires.toml", f'[[domains]]\nhost = "a.example"\npins = {_PINS}\nexpires = {expires}\n')


# ---- HPKP headers: anything malformed is an HPKPError; note_response never raises for what a server sent

_HOST = "www.example.com"


def _chain() -> list[bytes]:
    return load_certificates((ROOT / "examples" / "chain.pem").read_bytes())


@pytest.mark.parametrize("value", ['pin-sha384="x"; future-directive', "foo", 'pin-sha1="x"; pin-sha512="y"'])
def test_report_only_header_of_ignored_directives_only_is_invalid(value: str) -> None:
    """parse_header(..., report_only=True) returned an HPKPHeader holding nothing, whose str() is '', which
    parse_header refuses: no round trip; note_response then reported a pin validation failure on every
    response (fuzz_hpkp, crasher hpkp/report-only-nothing-known)."""
    with pytest.raises(HPKPError, match="nothing to apply") as info:
        parse_header(value, report_only=True)
    assert str(info.value).startswith(f"invalid Public-Key-Pins-Report-Only header {value!r}: ")
    with pytest.raises(HPKPError, match="max-age is missing"):
        parse_header(value)
    h = parse_header("includeSubDomains", report_only=True)  # something known: still a header, and it round-trips
    assert parse_header(str(h), report_only=True) == h


@pytest.mark.parametrize("uri", ["https://r.example]/", "https://[r.example/", "http://[", "//[::1/x"])
def test_report_uri_that_urllib_cannot_split_is_invalid(uri: str) -> None:
    """ValueError('Invalid IPv6 URL') escaped note_response (resolving the report-uri of a header being noted,
    or of a failing report-only header) instead of the header being ignored (fuzz_hpkp, crashers
    hpkp/report-uri-bad-ipv6-noted, hpkp/report-uri-bad-ipv6-report-only)."""
    with pytest.raises(HPKPError, match="is not a URI"):
        parse_header(f'max-age=60; report-uri="{uri}"')
    chain = _chain()
    backup = Pin("sha256", bytes(32))
    policy = PinPolicy([], store=MemoryStore(), hpkp=True)
    connection: dict[str, Any] = {"pin_result": VerificationResult(_HOST, "not-pinned", None), "pin_chain": chain}
    noted = f'{Pin.from_certificate(chain[1]).hpkp}; {backup.hpkp}; max-age=60; report-uri="{uri}"'
    outcome = note_response(policy, _HOST, {"Public-Key-Pins": noted}, url="https://www.example.com/", **connection)
    assert outcome.startswith("ignored: invalid Public-Key-Pins header") and "is not a URI" in outcome
    assert policy.store.get(_HOST) is None
    failing = f'{backup.hpkp}; report-uri="{uri}"'
    outcome = note_response(policy, _HOST, {"Public-Key-Pins-Report-Only": failing}, **connection)
    assert outcome.startswith("ignored: invalid Public-Key-Pins-Report-Only header") and "is not a URI" in outcome
