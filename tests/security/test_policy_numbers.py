"""Attack: numbers in a policy that load fine and fail later (issue 11, finding 15).

``ttl = inf`` and huge ``ttl`` values used to load; then the first
handshake of the host raised ValueError (recording the first key) or the
Redis store failed to set the expiry, so the connection was refused with
the wrong error. Every number is now checked when the policy loads; the
longest ``ttl`` allowed works through a real handshake with every store.
"""

from __future__ import annotations

import math
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from pinengine import DomainEntry, PinPolicy, PolicyError, policy
from pinengine.hooks.ssl import create_pinned_context
from pinengine.stores import JSONFileStore, MemoryStore, RedisStore, SQLiteStore
from tests.certs import Chain, make_chain
from tests.tls import TLSServer

# Core and policy behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores

HOST = "localhost"
TEN_YEARS = 10 * 365 * 24 * 3600


def _load(tmp_path: Path, name: str, text: str) -> PinPolicy:
    path = tmp_path / name
    path.write_text(text)
    return PinPolicy.from_file(path)


TOML_TTLS = [
    "inf", "+inf", "-inf", "nan", "-nan", "0", "0.0", "-0.0", "-1", "true", "1e300", "1" + "0" * 400,
    str(TEN_YEARS + 1), f"{TEN_YEARS}.5", '"3600"', "[3600]", "{ seconds = 3600 }", "1979-05-27",
]
JSON_TTLS = ["Infinity", "-Infinity", "NaN", "1e999", "-1e999", "0", "-5", "true", "false", "1e300",
             "1" + "0" * 400, str(TEN_YEARS + 1), '"3600"', "[]", "{}"]


@pytest.mark.parametrize("ttl", TOML_TTLS)
def test_toml_ttl_out_of_range_is_refused_at_load(tmp_path: Path, ttl: str) -> None:
    with pytest.raises(PolicyError, match=r"p\.toml: domains\[0\] \(localhost\)\.ttl: must be a number of seconds"):
        _load(tmp_path, "p.toml", f'[[domains]]\nhost = "{HOST}"\ndynamic = true\nttl = {ttl}\n')


@pytest.mark.parametrize("ttl", JSON_TTLS)
def test_json_ttl_out_of_range_is_refused_at_load(tmp_path: Path, ttl: str) -> None:
    with pytest.raises(PolicyError, match=r"p\.json: domains\[0\] \(localhost\)\.ttl: must be a number of seconds"):
        _load(tmp_path, "p.json", f'{{"domains": [{{"host": "{HOST}", "dynamic": true, "ttl": {ttl}}}]}}')


@pytest.mark.parametrize(
    "ttl",
    [math.inf, -math.inf, math.nan, True, 0, -1, pytest.param(10**400, id="10**400"),
     pytest.param(10**5000, id="10**5000"), 1e300, TEN_YEARS + 1, "60"],
)
def test_ttl_of_entries_built_in_code_is_checked_too(ttl: Any) -> None:
    with pytest.raises(PolicyError, match=r"domains\[0\] \(localhost\): ttl: must be a number of seconds"):
        PinPolicy([DomainEntry(HOST, (), dynamic=True, ttl=ttl)], store=MemoryStore())


@pytest.mark.parametrize("ttl", ["1", "0.001", "3600", str(TEN_YEARS), f"{TEN_YEARS}.0"])
def test_ttl_in_range_loads(tmp_path: Path, ttl: str) -> None:
    loaded = _load(tmp_path, "p.toml", f'[[domains]]\nhost = "{HOST}"\ndynamic = true\nttl = {ttl}\n')
    assert loaded.entries[0].ttl == float(ttl)
    assert policy.MAX_TTL == TEN_YEARS


@pytest.mark.parametrize("version", ["true", "1.0", '"1"', "2", "nan", "inf"])
def test_version_must_be_the_integer_one(tmp_path: Path, version: str) -> None:
    with pytest.raises(PolicyError, match=r"version .* is not supported"):
        _load(tmp_path, "p.toml", f'version = {version}\n[[domains]]\nhost = "{HOST}"\ndynamic = true\n')


# ---- the longest ttl, through a real handshake, into every store -----------------------------


@pytest.fixture(scope="module")
def chain() -> Chain:
    return make_chain("p256", HOST)


@pytest.fixture(params=["memory", "sqlite", "json", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        s: Any = MemoryStore()
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "pins.sqlite3")
    elif request.param == "json":
        s = JSONFileStore(tmp_path / "pins.json")
    else:
        s = RedisStore(request.getfixturevalue("redis_url"), namespace=f"ttl-{uuid.uuid4().hex}")
    yield s
    s.close()


def _handshake(ctx: Any, server: TLSServer) -> Any:
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as conn:
            return conn.pin_result


def test_longest_ttl_records_and_matches_in_a_real_handshake(tmp_path: Path, chain: Chain, store: Any) -> None:
    loaded = _load(tmp_path, "p.toml", f'[[domains]]\nhost = "{HOST}"\ndynamic = true\nttl = {TEN_YEARS}\n')
    pinned = PinPolicy(loaded.entries, store=store)
    with TLSServer(chain) as server:
        ctx = create_pinned_context(pinned, cafile=server.cafile)
        before = time.time()
        first = _handshake(ctx, server)
        assert first.status == "match" and first.matches[0].source == "dynamic"
        record = store.get(HOST)
        assert record is not None and record.expires_at == pytest.approx(before + TEN_YEARS, abs=60)
        pinned.forget_cached(HOST)
        again = _handshake(ctx, server)  # read back from the store
        assert again.status == "match" and again.matches[0].source == "dynamic"
