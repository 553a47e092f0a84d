"""Attack: make a gateway verify endless new host names so that its policy's caches grow without end.

Issue 11, finding 12: with ``hpkp`` on, every name no entry covers, and every
parent of it, went into ``PinPolicy._records`` for good: 200k names gave
+82 MB. The record cache, the last-seen throttle and the pin sets built from
records are now bounded LRU caches (``RECORD_CACHE_SIZE``), safe under
concurrent handshakes.
"""

from __future__ import annotations

import socket
import threading
import tracemalloc
from typing import Iterator

import pytest

from pinengine import Pin, PinPolicy
from pinengine.hooks.ssl import create_pinned_context
from pinengine.policy import RECORD_CACHE_SIZE
from pinengine.stores import MemoryStore, PinRecord
from tests.certs import Chain
from tests.security.hpkp_peers import wildcard_chain
from tests.tls import TLSServer

# Core and policy behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores


@pytest.fixture(scope="module")
def wild() -> Chain:
    return wildcard_chain("cache.test")


@pytest.fixture
def server(wild: Chain) -> Iterator[TLSServer]:
    with TLSServer(wild) as srv:
        yield srv


def sizes(policy: PinPolicy) -> tuple[int, int, int]:
    return len(policy._records), len(policy._touched), len(policy._record_pinsets)


def handshake(server: TLSServer, ctx: object, name: str) -> str:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:  # type: ignore[attr-defined]
            return str(tls.pin_result.status)


def test_handshakes_to_new_names_keep_the_cache_bounded(server: TLSServer, wild: Chain) -> None:
    policy = PinPolicy([], store=MemoryStore(), hpkp=True)
    ctx = create_pinned_context(policy, cafile=server.cafile)
    for i in range(40):  # real handshakes, each to a new name
        assert handshake(server, ctx, f"h{i}.cache.test") == "not-pinned"
    # the same path, without the sockets, for many more names (each with a few parents)
    for i in range(3 * RECORD_CACHE_SIZE):
        assert policy.verify(f"n{i}.a.cache.test", wild.ders).status == "not-pinned"
    records, touched, pinsets = sizes(policy)
    assert records <= RECORD_CACHE_SIZE and touched <= RECORD_CACHE_SIZE and pinsets <= RECORD_CACHE_SIZE


def test_memory_stops_growing(wild: Chain) -> None:
    policy = PinPolicy([], store=MemoryStore(), hpkp=True)
    tracemalloc.start()  # before the caches fill, so that what they let go of is subtracted
    try:
        for i in range(2 * RECORD_CACHE_SIZE):  # warm: the caches are full
            policy.verify(f"w{i}.b.cache.test", wild.ders)
        base = tracemalloc.get_traced_memory()[0]
        for i in range(4 * RECORD_CACHE_SIZE):
            policy.verify(f"m{i}.b.cache.test", wild.ders)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 200_000, grown  # unbounded: some 4 MB for these names


def test_dynamic_wildcard_entry_touch_is_bounded(wild: Chain) -> None:
    # A **. dynamic entry: every name under it matches its own recorded key and is "touched".
    store = MemoryStore()
    policy = PinPolicy.from_mapping({"domains": [{"host": "**.cache.test", "dynamic": True}]}, store=store)
    leaf = str(Pin.from_certificate(wild.ders[0]))
    for i in range(RECORD_CACHE_SIZE + 500):
        store.put(PinRecord.create(f"t{i}.cache.test", [leaf, str(Pin("sha256", i.to_bytes(4, "big") * 8))]))
    for i in range(RECORD_CACHE_SIZE + 500):
        assert policy.verify(f"t{i}.cache.test", wild.ders).status == "match"
    records, touched, pinsets = sizes(policy)
    assert records <= RECORD_CACHE_SIZE and touched <= RECORD_CACHE_SIZE and pinsets <= RECORD_CACHE_SIZE


def test_concurrent_handshakes_share_the_bounded_cache(server: TLSServer, wild: Chain) -> None:
    policy = PinPolicy([], store=MemoryStore(), hpkp=True, cache_ttl=0.001)
    ctx = create_pinned_context(policy, cafile=server.cafile)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(RECORD_CACHE_SIZE // 2):
                policy.verify(f"c{t}-{i}.x.cache.test", wild.ders)
                policy.verify(f"shared{i % 50}.cache.test", wild.ders)  # the same names from every thread
                if i % 200 == 0:
                    policy.forget_cached(f"shared{i % 50}.cache.test")
                    assert handshake(server, ctx, f"r{t}-{i}.cache.test") == "not-pinned"
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert max(sizes(policy)) <= RECORD_CACHE_SIZE
