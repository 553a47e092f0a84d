"""Dynamic pinning: trust on first use over real TLS servers, kept in real stores."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from pinengine import Pin, PinMismatchError, PinPolicy, PolicyError
from pinengine.hooks.ssl import create_pinned_context
from pinengine.stores import JSONFileStore, MemoryStore, PinRecord, SQLiteStore, StoreError
from tests.certs import Chain, make_cert, make_chain, new_key
from tests.tls import TLSServer

HOST = "localhost"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def sibling(chain: Chain) -> Chain:
    """Another leaf key for the same host name, from the same (trusted) CA."""
    key = new_key("p256")
    leaf = make_cert(HOST, key, chain.intermediate, chain.intermediate_key, ca=False, sans=(HOST,))
    return Chain(leaf, chain.intermediate, chain.root, key, chain.intermediate_key, chain.root_key)


def dynamic_policy(store: Any, cache_ttl: float = 5.0, **entry: Any) -> PinPolicy:
    return PinPolicy.from_mapping(
        {"domains": [{"host": HOST, "dynamic": True, **entry}]}, store=store, cache_ttl=cache_ttl
    )


@pytest.fixture(scope="module")
def chains() -> tuple[Chain, Chain]:
    first = make_chain("p256", HOST)
    return first, sibling(first)


@pytest.fixture(params=["memory", "sqlite", "json"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        s: Any = MemoryStore()
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "pins.sqlite3")
    else:
        s = JSONFileStore(tmp_path / "pins.json")
    yield s
    s.close()


def test_first_key_is_recorded_then_required(store: Any, chains: tuple[Chain, Chain]) -> None:
    a, b = chains
    policy = dynamic_policy(store)
    first = policy.verify(HOST, a.ders)
    assert first.status == "match" and first.matches[0].source == "dynamic"
    record = store.get(HOST)
    assert record.pins == (pin(a.ders[0]),) and record.source == "tofu"
    assert policy.verify(HOST, a.ders).matches[0].pin == Pin.parse(pin(a.ders[0]))
    with pytest.raises(PinMismatchError) as info:
        policy.verify(HOST, b.ders)
    text = str(info.value)
    assert "Keys recorded for localhost (dynamic, tofu, first seen" in text
    assert pin(a.ders[0]) in text and pin(b.ders[0]) in text
    assert store.get(HOST).pins == (pin(a.ders[0]),)  # the refused key was not recorded


def test_record_issuer_and_ttl(store: Any, chains: tuple[Chain, Chain]) -> None:
    a, b = chains
    policy = dynamic_policy(store, record_issuer=True, ttl=3600)
    policy.verify(HOST, a.ders)
    record = store.get(HOST)
    assert record.pins == (pin(a.ders[0]), pin(a.ders[1]))
    assert record.expires_at == pytest.approx(record.first_seen + 3600)
    # b has another leaf but the same issuer: the recorded issuer key matches it
    result = policy.verify(HOST, b.ders)
    assert [(m.index, m.source) for m in result.matches] == [(1, "dynamic")]


def test_expired_record_is_recorded_afresh(store: Any, chains: tuple[Chain, Chain]) -> None:
    a, b = chains
    store.put(PinRecord.create(HOST, [pin(a.ders[0])], now=time.time() - 100, ttl=10))
    policy = dynamic_policy(store)
    assert policy.verify(HOST, b.ders).status == "match"
    assert store.get(HOST).pins == (pin(b.ders[0]),)


def test_static_and_dynamic_pins_coexist(store: Any, chains: tuple[Chain, Chain]) -> None:
    a, b = chains
    policy = dynamic_policy(store, pins=[pin(a.ders[2])])
    result = policy.verify(HOST, b.ders)
    assert result.matches[0].source == "static" and result.matches[0].index == 2
    assert store.get(HOST) is None  # a static match needs no record
    only_dynamic = dynamic_policy(store)
    assert only_dynamic.verify(HOST, b.ders).matches[0].source == "dynamic"


def test_unvalidated_first_connection_records_nothing(store: Any, chains: tuple[Chain, Chain]) -> None:
    a, _ = chains
    policy = dynamic_policy(store)
    with pytest.raises(PinMismatchError, match="recorded only from a chain a trust store validated"):
        policy.verify(HOST, a.ders, verified=False)
    assert store.get(HOST) is None


def test_report_only_dynamic_entry(store: Any, chains: tuple[Chain, Chain]) -> None:
    a, b = chains
    policy = dynamic_policy(store, mode="report-only")
    policy.verify(HOST, a.ders)
    assert policy.verify(HOST, b.ders).status == "report-only"


def test_schema_for_dynamic_entries() -> None:
    with pytest.raises(PolicyError, match="ttl"):
        dynamic_policy(MemoryStore(), ttl=-1)
    with pytest.raises(PolicyError, match="dynamic entries only"):
        PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": [pin(make_chain().ders[0])] * 1,
                                             "require_backup_pin": False, "record_issuer": True}]})
    policy = dynamic_policy(MemoryStore(), ttl=60, record_issuer=True)
    again = PinPolicy.from_mapping(policy.to_mapping(), store=MemoryStore())
    assert again.entries == policy.entries


def test_accept_through_another_instance_is_seen_at_once(tmp_path: Path, chains: tuple[Chain, Chain]) -> None:
    a, b = chains
    path = tmp_path / "shared.sqlite3"
    gateway1 = dynamic_policy(SQLiteStore(path), cache_ttl=60)
    gateway2 = dynamic_policy(SQLiteStore(path), cache_ttl=60)
    gateway1.verify(HOST, a.ders)
    gateway2.verify(HOST, a.ders)  # both have the record cached now
    SQLiteStore(path).add_pins(HOST, [pin(b.ders[0])])  # an operator accepts the next key
    # a cached record that does not match is read again before refusing
    assert gateway2.verify(HOST, b.ders).status == "match"


def test_forget_reaches_other_instances_within_cache_ttl(tmp_path: Path, chains: tuple[Chain, Chain]) -> None:
    a, b = chains
    path = tmp_path / "shared.sqlite3"
    gateway = dynamic_policy(SQLiteStore(path), cache_ttl=0.5)
    gateway.verify(HOST, a.ders)
    SQLiteStore(path).delete(HOST)  # forget through another instance
    deadline = time.monotonic() + 5
    while True:
        try:
            gateway.verify(HOST, b.ders)  # once the forget is seen, b is recorded as the new first key
            break
        except PinMismatchError:
            assert time.monotonic() < deadline, "forget never reached the cached instance"
            time.sleep(0.05)
    assert SQLiteStore(path).get(HOST).pins == (pin(b.ders[0]),)


def test_store_failure_fails_closed_and_recovers(tmp_path: Path, chains: tuple[Chain, Chain]) -> None:
    a, _ = chains

    class Flaky(MemoryStore):
        down = False

        def _read(self, host: str) -> Any:
            if self.down:
                raise StoreError("store is down (test)")
            return super()._read(host)

    store = Flaky()
    policy = dynamic_policy(store, cache_ttl=0)
    policy.verify(HOST, a.ders)
    store.down = True
    with pytest.raises(PinMismatchError, match="pin store cannot be used"):
        policy.verify(HOST, a.ders)
    store.down = False
    assert policy.verify(HOST, a.ders).status == "match"


def test_tofu_through_the_pinned_context(chains: tuple[Chain, Chain], tmp_path: Path) -> None:
    a, b = chains
    store = SQLiteStore(tmp_path / "pins.sqlite3")
    policy = dynamic_policy(store)
    with TLSServer(a) as srv_a, TLSServer(b) as srv_b:
        ctx = create_pinned_context(policy, cafile=srv_a.cafile)

        def connect(srv: TLSServer) -> Any:
            raw = socket.create_connection((srv.host, srv.port), timeout=10)
            try:
                with ctx.wrap_socket(raw, server_hostname=HOST) as s:
                    return s.pin_result
            finally:
                raw.close()

        assert connect(srv_a).matches[0].source == "dynamic"
        with pytest.raises(PinMismatchError):
            connect(srv_b)
        assert connect(srv_a).status == "match"
    assert store.get(HOST).pins == (pin(a.ders[0]),)
