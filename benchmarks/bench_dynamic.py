"""Verifying a known dynamic (trust-on-first-use) host, per store: memory, SQLite, Redis.

The policy caches each host's record for ``cache_ttl`` seconds (5 by default),
so a gateway does not pay a store round trip per handshake for a host it
already knows; ``cache_ttl=0`` shows what each verification would cost
without the cache (a store read every time).
"""

from __future__ import annotations

import shutil
from typing import Any, Iterator

import pytest

from pinengine import PinPolicy
from pinengine.stores import MemoryStore, RedisStore, SQLiteStore

HOST = "dynamic.bench.example"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/programs installs it)")
    from tests import redis_server

    server = redis_server.start(binary, tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


def _store(kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> Any:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "pins.sqlite3")
    return RedisStore(request.getfixturevalue("redis_url"), namespace="bench")


@pytest.mark.parametrize("use_backend", ["compiled"], indirect=True)
@pytest.mark.parametrize("cache", ["cached", "uncached"])
@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_dynamic_verify(benchmark: Any, kind: str, cache: str, use_backend: Any, tmp_path: Any,
                        request: pytest.FixtureRequest) -> None:
    from tests.certs import cached_chain

    benchmark.group = "dynamic: verify a known TOFU host, per verification"
    ders = cached_chain("p256", HOST).ders
    store = _store(kind, tmp_path, request)
    policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "dynamic": True}]}, store=store,
                                    cache_ttl=5.0 if cache == "cached" else 0.0)
    assert policy.verify(HOST, ders).matches[0].source == "dynamic"  # records the first key
    benchmark.extra_info["items"] = 1
    benchmark(policy.verify, HOST, ders)
    store.close()
