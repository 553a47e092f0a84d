"""Attack: make a client with a wildcard dynamic entry connect to name after name.

A dynamic entry ``**.site.test`` records a first key for each name below it.
A server with a wildcard certificate (or anyone who can steer the client to
names of their choosing: links, redirects, webhooks) made the store grow by
one record per name, without end (and the JSON file store rewrite the whole
file per name). Now one wildcard entry holds at most
``_dynamic_cap.MAX_HOSTS_PER_ENTRY`` recorded names (lowered here); a new
name past the cap is refused (fail closed), names already recorded keep
working, and room comes back when records are forgotten or expire. Real TLS
server with a wildcard certificate; SQLite, JSON file and memory stores.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Iterator

import pytest

from pinengine import PinMismatchError, PinPolicy, _dynamic_cap
from pinengine.hooks.ssl import create_pinned_context
from pinengine.stores import JSONFileStore, MemoryStore, SQLiteStore
from tests.certs import Chain
from tests.security.hpkp_peers import wildcard_chain
from tests.tls import TLSServer

CAP = 5


@pytest.fixture(scope="module")
def wild() -> Chain:
    return wildcard_chain("site.test")


@pytest.fixture(scope="module")
def server(wild: Chain) -> Iterator[TLSServer]:
    with TLSServer(wild) as srv:
        yield srv


@pytest.fixture(params=["memory", "sqlite", "json"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s: Any = {"memory": MemoryStore, "sqlite": lambda: SQLiteStore(tmp_path / "pins.sqlite3"),
              "json": lambda: JSONFileStore(tmp_path / "pins.json")}[request.param]()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_dynamic_cap, "MAX_HOSTS_PER_ENTRY", CAP)


def connect(context: Any, server: TLSServer, name: str) -> None:
    with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port)), server_hostname=name):
        pass


@pytest.mark.parametrize("pattern", ["**.site.test", "*.site.test"])
def test_a_wildcard_dynamic_entry_records_a_bounded_number_of_names(
    store: Any, server: TLSServer, pattern: str
) -> None:
    policy = PinPolicy.from_mapping({"domains": [{"host": pattern, "dynamic": True}]}, store=store, cache_ttl=0)
    context = create_pinned_context(policy, cafile=server.cafile)
    for i in range(CAP):
        connect(context, server, f"n{i}.site.test")
    for i in range(CAP, CAP + 20):
        with pytest.raises(PinMismatchError, match="already holds 5 recorded names"):
            connect(context, server, f"n{i}.site.test")
    assert len(store.list()) == CAP  # not one record per name asked for
    connect(context, server, "n0.site.test")  # a recorded name still works


def test_room_comes_back_when_names_are_forgotten(
    store: Any, server: TLSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = PinPolicy.from_mapping({"domains": [{"host": "**.site.test", "dynamic": True}]}, store=store,
                                    cache_ttl=0)
    context = create_pinned_context(policy, cafile=server.cafile)
    for i in range(CAP):
        connect(context, server, f"n{i}.site.test")
    with pytest.raises(PinMismatchError):
        connect(context, server, "late.site.test")
    assert store.delete("n0.site.test")  # e.g. pinengine store forget, from another process
    monkeypatch.setattr(_dynamic_cap, "REFRESH_SECONDS", 0.0)
    connect(context, server, "late.site.test")
    assert store.get("late.site.test") is not None


def test_an_exact_dynamic_entry_is_not_held_by_a_full_wildcard_entry(store: Any, server: TLSServer) -> None:
    policy = PinPolicy.from_mapping(
        {"domains": [{"host": "**.site.test", "dynamic": True}, {"host": "x.site.test", "dynamic": True}]},
        store=store, cache_ttl=0,
    )
    context = create_pinned_context(policy, cafile=server.cafile)
    for i in range(CAP):
        connect(context, server, f"n{i}.site.test")
    with pytest.raises(PinMismatchError):
        connect(context, server, "late.site.test")
    connect(context, server, "x.site.test")  # its own entry: one name, no cap needed
    assert store.get("x.site.test") is not None and len(store.list()) == CAP + 1
