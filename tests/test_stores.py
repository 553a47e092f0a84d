"""Pin stores: one suite for Memory, SQLite, JSON file and Redis, plus races, crashes and corrupt data.

The Redis tests start their own redis-server (tests/redis_server.py). Without
the binary they fail, unless PINENGINE_SKIP_REDIS=1 is set.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import random
import signal
import socket
import sqlite3
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pinengine import PinengineError
from pinengine.stores import (
    JSONFileStore,
    MemoryStore,
    NoRecordError,
    PinRecord,
    PinStore,
    RedisStore,
    SQLiteStore,
    StoreError,
    default_path,
    export_records,
    import_records,
    open_store,
)
from pinengine.stores._base import dump_document
from tests import redis_server

KINDS = ["memory", "sqlite", "json", "redis"]
SHARED_KINDS = ["sqlite", "json", "redis"]  # stores that processes can share
SKIP_REDIS = os.environ.get("PINENGINE_SKIP_REDIS", "") not in ("", "0")
# Not fork: the test process runs threads (servers, watchers), and forking a
# multi-threaded process is unsafe (CPython 3.12+ warns). The forkserver forks
# from a single-threaded server; spawn where there is none.
MP: Any = multiprocessing.get_context(
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)

Spec = tuple[str, str, str]  # kind, file path or Redis URL, Redis namespace
Opener = Callable[[], PinStore]


def pin(i: int) -> str:
    """A distinct valid pin for each integer."""
    return "sha256/" + base64.b64encode(hashlib.sha256(str(i).encode()).digest()).decode()


def open_spec(spec: Spec) -> PinStore:
    """A new handle on the shared store ``spec`` describes (also used in child processes)."""
    kind, where, namespace = spec
    if kind == "sqlite":
        return SQLiteStore(where)
    if kind == "json":
        return JSONFileStore(where)
    if kind == "redis":
        return RedisStore(where, namespace)
    raise ValueError(kind)


# -- fixtures -------------------------------------------------------------------------


# redis_url: the session's own redis-server, from tests/conftest.py


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=5)


def new_spec(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Spec:
    """A new, empty shared store of ``kind`` for one test: a file in its temporary directory, or a
    Redis namespace of its own (whose keys are deleted afterwards)."""
    if kind in ("sqlite", "json"):
        return (kind, str(tmp_path / ("pins.sqlite3" if kind == "sqlite" else "pins.json")), "")
    url = request.getfixturevalue("redis_url")
    namespace = f"test-{uuid.uuid4().hex}"

    def clean() -> None:
        client = _redis_client(url)
        keys = list(client.scan_iter(match=f"{namespace}:*"))
        if keys:
            client.delete(*keys)
        client.close()

    request.addfinalizer(clean)
    return (kind, url, namespace)


@pytest.fixture
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Spec:
    """A shared store of the kind given as indirect parameter."""
    return new_spec(request.param, request, tmp_path)


@pytest.fixture
def redis_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Spec:
    """A Redis store (a namespace of its own on the session's server)."""
    return new_spec("redis", request, tmp_path)


@pytest.fixture(params=KINDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens handles on one new store of each kind (for memory: the one store itself)."""
    handles: list[PinStore] = []
    if request.param == "memory":
        handles.append(MemoryStore())

        def open_() -> PinStore:
            return handles[0]
    else:
        where = new_spec(request.param, request, tmp_path)

        def open_() -> PinStore:
            handles.append(open_spec(where))
            return handles[-1]
    yield open_
    for handle in handles:
        handle.close()


@pytest.fixture
def store(opener: Opener) -> PinStore:
    """A fresh, empty store of each kind."""
    return opener()


NOW = 1_800_000_000.0  # a fixed "now", a little in the future: Redis expiry (real clock) never interferes


def rec(host: str = "a.example", pins: tuple[str, ...] = (pin(1),), *, at: float = NOW,
        expires_at: float | None = None, source: str = "tofu", **more: Any) -> PinRecord:
    return PinRecord(host, pins, at, at, expires_at, source, **more)


# -- PinRecord ------------------------------------------------------------------------


def test_record_normalises_host_and_pins() -> None:
    digest = pin(1).split("/", 1)[1]
    r = PinRecord("WWW.Bücher.Example.", (f'pin-sha256="{digest}"', pin(1), pin(2)), 1, 2, None, "hpkp")
    assert r.host == "www.xn--bcher-kva.example"
    assert r.pins == (pin(1), pin(2))  # canonical form, duplicates dropped, order kept
    assert r.first_seen == 1.0 and isinstance(r.first_seen, float)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pins": ()}, "no pins"),
        ({"pins": "sha256/abc"}, "sequence of pins"),
        ({"pins": ("sha256/abc",)}, "invalid pin"),
        ({"pins": ("sha1/" + base64.b64encode(bytes(20)).decode(),)}, "SHA-1"),
        ({"host": "bad host"}, "invalid host name"),
        ({"source": "guess"}, "unknown record source"),
        ({"first_seen": float("nan")}, "finite"),
        ({"last_seen": "yesterday"}, "must be a number"),
        ({"expires_at": True}, "must be a number"),
        ({"include_subdomains": 1}, "must be a bool"),
        ({"report_uri": ""}, "report_uri"),
    ],
)
def test_record_validation(change: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = dict(host="a.example", pins=(pin(1),), first_seen=NOW, last_seen=NOW,
                                  expires_at=None, source="tofu")
    fields.update(change)
    with pytest.raises((ValueError, TypeError), match=message):
        PinRecord(**fields)


def test_record_create_and_liveness() -> None:
    r = PinRecord.create("a.example", [pin(1)], now=NOW, ttl=60, source="accepted", report_uri="https://r.example/")
    assert (r.first_seen, r.last_seen, r.expires_at, r.source) == (NOW, NOW, NOW + 60, "accepted")
    assert r.is_live(NOW + 59.9) and not r.is_live(NOW + 60)
    assert PinRecord.create("a.example", [pin(1)], now=NOW).is_live(1e12)
    assert PinRecord.from_dict(r.to_dict()) == r


# -- the shared suite -------------------------------------------------------------------


def test_get_of_unknown_host(store: PinStore) -> None:
    assert store.get("a.example") is None
    assert store.list() == []


def test_record_first_then_get(store: PinStore) -> None:
    r = rec(include_subdomains=True, report_uri="https://report.example/pins")
    assert store.record_first(r, now=NOW) == r
    assert store.get("a.example", now=NOW) == r
    assert store.list(now=NOW) == [r]


def test_record_first_loser_gets_the_winner(store: PinStore) -> None:
    first, second = rec(pins=(pin(1),)), rec(pins=(pin(2),), at=NOW + 5)
    assert store.record_first(first, now=NOW) == first
    assert store.record_first(second, now=NOW + 5) == first
    assert store.get("a.example", now=NOW + 5) == first


def test_expiry(store: PinStore) -> None:
    r = rec(expires_at=NOW + 100)
    store.record_first(r, now=NOW)
    assert store.get("a.example", now=NOW + 99) == r
    assert store.get("a.example", now=NOW + 100) is None  # void from expires_at on
    assert store.list(now=NOW + 100) == []
    newer = rec(pins=(pin(2),), at=NOW + 200)
    assert store.record_first(newer, now=NOW + 200) == newer  # an expired record counts as absent
    assert store.get("a.example", now=NOW + 200) == newer
    with pytest.raises(ValueError, match="expired"):
        store.record_first(rec(host="b.example", expires_at=NOW), now=NOW + 1)


def test_put_replaces(store: PinStore) -> None:
    store.record_first(rec(), now=NOW)
    hpkp = rec(pins=(pin(7), pin(8)), source="hpkp", expires_at=NOW + 3600, include_subdomains=True)
    store.put(hpkp)
    assert store.get("a.example", now=NOW) == hpkp
    store.put(rec(pins=(pin(9),)))
    assert store.get("a.example", now=NOW + 7200) == rec(pins=(pin(9),))  # expiry replaced too


def test_add_pins(store: PinStore) -> None:
    r = rec(pins=(pin(1), pin(2)), expires_at=NOW + 100, report_uri="https://r.example/")
    store.record_first(r, now=NOW)
    after = store.add_pins("A.EXAMPLE.", [pin(2), pin(3)], now=NOW)
    assert after.pins == (pin(1), pin(2), pin(3))
    assert after == PinRecord(r.host, after.pins, r.first_seen, r.last_seen, r.expires_at, r.source,
                              r.include_subdomains, r.report_uri)
    assert store.get("a.example", now=NOW) == after
    assert store.add_pins("a.example", [pin(1)], now=NOW) == after  # nothing new: unchanged
    with pytest.raises(NoRecordError, match=r"b\.example"):
        store.add_pins("b.example", [pin(1)], now=NOW)
    with pytest.raises(NoRecordError):
        store.add_pins("a.example", [pin(4)], now=NOW + 100)  # expired
    with pytest.raises(ValueError, match="invalid pin"):
        store.add_pins("a.example", ["sha256/nope"], now=NOW)


def test_touch(store: PinStore) -> None:
    store.record_first(rec(), now=NOW)
    store.touch("a.example", NOW + 10)
    got = store.get("a.example", now=NOW)
    assert got is not None and got.last_seen == NOW + 10
    store.touch("a.example", NOW + 5)  # never backwards
    got = store.get("a.example", now=NOW)
    assert got is not None and got.last_seen == NOW + 10 and got.first_seen == NOW
    store.touch("b.example", NOW)  # no record: nothing happens
    assert store.get("b.example", now=NOW) is None


def test_delete(store: PinStore) -> None:
    store.record_first(rec(), now=NOW)
    assert store.delete("A.Example") is True
    assert store.delete("a.example") is False
    assert store.get("a.example", now=NOW) is None


def test_list_is_sorted_and_live(store: PinStore) -> None:
    for host in ("c.example", "a.example", "b.example"):
        store.put(rec(host=host))
    store.put(rec(host="old.example", expires_at=NOW + 1))
    assert [r.host for r in store.list(now=NOW)] == ["a.example", "b.example", "c.example", "old.example"]
    assert [r.host for r in store.list(now=NOW + 1)] == ["a.example", "b.example", "c.example"]


def test_prune(store: PinStore) -> None:
    store.put(rec(host="keep.example", expires_at=NOW + 100))
    store.put(rec(host="old.example", expires_at=NOW + 10))
    assert store.prune(now=NOW + 50) == 1
    assert store.prune(now=NOW + 50) == 0
    assert [r.host for r in store.list(now=NOW)] == ["keep.example"]


def test_update(store: PinStore) -> None:
    assert store.update("a.example", lambda cur: cur, now=NOW) is None  # nothing to do
    made = store.update("a.example", lambda cur: rec() if cur is None else cur, now=NOW)
    assert made == rec()
    assert store.update("a.example", lambda cur: None, now=NOW) is None
    assert store.get("a.example", now=NOW) is None
    with pytest.raises(ValueError, match=r"b\.example"):
        store.update("a.example", lambda cur: rec(host="b.example"), now=NOW)


def test_host_normalisation(store: PinStore) -> None:
    store.record_first(rec(host="Bücher.Example."), now=NOW)
    for spelling in ("xn--bcher-kva.example", "BÜCHER.example", "bücher.example."):
        got = store.get(spelling, now=NOW)
        assert got is not None and got.host == "xn--bcher-kva.example"
    store.record_first(rec(host="[::0001]"), now=NOW)
    assert store.get("::1", now=NOW) is not None
    with pytest.raises(ValueError, match="invalid host name"):
        store.get("no such host")


def test_handles_share_the_store(opener: Opener) -> None:
    one, two = opener(), opener()
    one.record_first(rec(), now=NOW)
    assert two.get("a.example", now=NOW) == rec()
    assert two.record_first(rec(pins=(pin(2),)), now=NOW) == rec()
    two.add_pins("a.example", [pin(5)], now=NOW)
    got = one.get("a.example", now=NOW)
    assert got is not None and got.pins == (pin(1), pin(5))


def test_closed_store_refuses(opener: Opener) -> None:
    with opener() as store:
        store.put(rec())
    with pytest.raises(StoreError, match="closed"):
        store.get("a.example")
    with pytest.raises(StoreError, match="closed"):
        store.list()
    store.close()  # idempotent


def test_threads_race_on_record_first(store: PinStore) -> None:
    barrier = threading.Barrier(16)
    results: list[PinRecord | BaseException] = [ValueError("not run")] * 16

    def run(i: int) -> None:
        candidate = rec(pins=(pin(100 + i),))
        barrier.wait()
        try:
            results[i] = store.record_first(candidate, now=NOW)
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = store.get("a.example", now=NOW)
    assert stored is not None and stored.pins[0] in {pin(100 + i) for i in range(16)}
    assert results == [stored] * 16
    assert store.list(now=NOW) == [stored]


# -- export and import --------------------------------------------------------------------


def _sample(store: PinStore) -> list[PinRecord]:
    records = [
        rec(host="a.example", pins=(pin(1), pin(2))),
        rec(host="b.example", source="hpkp", expires_at=NOW + 3600, include_subdomains=True,
            report_uri="https://report.example/"),
        rec(host="c.example", source="accepted", at=NOW - 0.123456789),
    ]
    for r in records:
        store.put(r)
    return records


def test_export_import_round_trip(store: PinStore) -> None:
    records = _sample(store)
    text = export_records(store, now=NOW)
    doc = json.loads(text)
    assert doc["format"] == "pinengine-pin-store" and doc["version"] == 1
    assert len(doc["records"]) == 3
    target = MemoryStore()
    assert import_records(target, text, now=NOW) == 3
    assert target.list(now=NOW) == records
    # and back into a fresh store of the kind under test
    for r in records:
        store.delete(r.host)
    assert import_records(store, text, now=NOW) == 3
    assert store.list(now=NOW) == records
    assert export_records(store, now=NOW) == text


def test_import_keeps_or_replaces(store: PinStore) -> None:
    text = export_records(_with(MemoryStore(), rec(host="a.example", pins=(pin(9),)), rec(host="z.example")), now=NOW)
    store.put(rec(host="a.example", pins=(pin(1),)))
    assert import_records(store, text, now=NOW) == 1  # a.example kept, z.example added
    assert [r.pins for r in store.list(now=NOW)] == [(pin(1),), (pin(1),)]
    assert import_records(store, text, replace=True, now=NOW) == 2
    got = store.get("a.example", now=NOW)
    assert got is not None and got.pins == (pin(9),)


def test_import_skips_expired_records(store: PinStore) -> None:
    text = export_records(_with(MemoryStore(), rec(host="a.example", expires_at=NOW + 10), rec(host="b.example")),
                          now=NOW)
    assert import_records(store, text, now=NOW + 20) == 1
    assert [r.host for r in store.list(now=NOW)] == ["b.example"]


def _with(store: PinStore, *records: PinRecord) -> PinStore:
    for r in records:
        store.put(r)
    return store


def _doc(**change: Any) -> dict[str, Any]:
    doc = json.loads(export_records(_with(MemoryStore(), rec(host="a.example"), rec(host="b.example")), now=NOW))
    assert isinstance(doc, dict)
    doc.update(change)
    return doc


def _bad_record(**change: Any) -> dict[str, Any]:
    doc = _doc()
    doc["records"][1].update(change)
    return doc


@pytest.mark.parametrize(
    "document, message",
    [
        ("{not json", "import: not valid JSON"),
        ("[]", "expected a JSON object, found list"),
        (_doc(format="something-else"), "not a pinengine pin document"),
        (_doc(version=2), "unsupported version 2"),
        (_doc(extra=1), "unknown field 'extra'"),
        (_doc(records={}), '"records" must be a list'),
        (_doc(records=[rec().to_dict(), 5]), r"records\[1\]: expected an object"),
        (_bad_record(colour="blue"), r"records\[1\]: unknown field 'colour'"),
        ({**_doc(), "records": [rec().to_dict(), {"host": "b.example"}]}, r"records\[1\]: missing field"),
        (_bad_record(pins=["sha256/abc"]), r"records\[1\] \(b.example\): pins\[0\]: invalid pin"),
        (_bad_record(pins=[]), r"records\[1\] \(b.example\): pin record for b.example has no pins"),
        (_bad_record(pins="sha256/abc"), "pins must be a list of strings"),
        (_bad_record(source="guess"), "unknown record source 'guess'"),
        (_bad_record(first_seen="yesterday"), "first_seen must be a number"),
        (_bad_record(expires_at=float("inf")), "expires_at must be a finite number"),
        (_bad_record(include_subdomains="yes"), "include_subdomains must be a bool"),
        (_bad_record(host="exa mple.com"), "invalid host name"),
        (_bad_record(host=7), "host must be a string"),
        (_bad_record(host="A.Example."), r"records\[1\]: a second record for a.example"),
    ],
)
def test_import_validation(document: Any, message: str) -> None:
    store = _with(MemoryStore(), rec(host="keep.example"))
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(StoreError, match=message):
        import_records(store, text, now=NOW)
    assert [r.host for r in store.list(now=NOW)] == ["keep.example"]  # records[0] was valid: not imported


def test_bad_import_writes_nothing(store: PinStore) -> None:
    store.put(rec(host="keep.example"))
    before = export_records(store, now=NOW)
    with pytest.raises(StoreError, match=r"records\[1\] \(b.example\): pins\[0\]: invalid pin"):
        import_records(store, json.dumps(_bad_record(pins=["sha256/abc"])), now=NOW)
    assert export_records(store, now=NOW) == before


# -- Redis specifics -------------------------------------------------------------------------


def test_redis_expiry_is_real(redis_spec: Spec) -> None:
    client = _redis_client(redis_spec[1])
    with open_spec(redis_spec) as store:
        key = f"{redis_spec[2]}:pin:a.example"
        store.put(rec(host="forever.example"))
        assert client.pttl(f"{redis_spec[2]}:pin:forever.example") == -1
        now = time.time()
        store.record_first(rec(at=now, expires_at=now + 0.3), now=now)
        assert 0 < client.pttl(key) <= 301
        store.touch("a.example", now + 0.1)  # a write keeps the expiry
        assert 0 < client.pttl(key) <= 301
        time.sleep(0.45)
        assert client.exists(key) == 0
        assert store.get("a.example") is None
    client.close()


def test_redis_hpkp_index_leaves_no_key_behind(redis_spec: Spec) -> None:
    # Hosts noted with a short life, under many domains: once they expire, no index key of theirs remains.
    client = _redis_client(redis_spec[1])
    ns = redis_spec[2]
    with open_spec(redis_spec) as store:
        now = time.time()
        for i in range(20):
            record = PinRecord.create(f"h.d{i}.example", [pin(1)], source="hpkp", now=now, ttl=0.3)
            assert store.note_hpkp(record, max_hosts=100, max_hosts_per_domain=5, now=now)[0] == "noted"
        assert client.zcard(f"{ns}:noted") == 20 and client.exists(f"{ns}:noted:d3.example") == 1
        time.sleep(0.5)
        assert not [k for k in client.scan_iter(match=f"{ns}:noted:*")]  # expired with their last member
        later = PinRecord.create("h.other.example", [pin(2)], source="hpkp", ttl=600)
        assert store.note_hpkp(later, max_hosts=1, max_hosts_per_domain=1)[0] == "noted"  # the expired held no room
        assert client.zrange(f"{ns}:noted", 0, -1) == [b"h.other.example"]
        store.put(PinRecord.create("h.other.example", [pin(2)], source="tofu"))  # no longer an HPKP record
        assert client.zcard(f"{ns}:noted") == 0 and client.zcard(f"{ns}:noted:other.example") == 0
    client.close()


def test_redis_accepts_a_client(redis_spec: Spec) -> None:
    client = _redis_client(redis_spec[1])
    store = RedisStore(client, namespace=redis_spec[2])
    store.put(rec())
    store.close()
    assert client.ping()  # not closed: the caller owns it
    with open_spec(redis_spec) as other:
        assert other.get("a.example", now=NOW) == rec()
    client.close()


def test_redis_namespaces_are_apart(redis_spec: Spec) -> None:
    with open_spec(redis_spec) as one, RedisStore(redis_spec[1], redis_spec[2] + "-other") as two:
        one.put(rec())
        assert two.get("a.example", now=NOW) is None and two.list(now=NOW) == []
        assert [r.host for r in one.list(now=NOW)] == ["a.example"]


@pytest.mark.parametrize(
    "value, message",
    [
        (b"garbage", "value is not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (json.dumps({"host": "a.example"}).encode(), "missing field"),
        (json.dumps(rec(host="b.example").to_dict()).encode(), "another host"),
    ],
)
def test_redis_corrupt_value(redis_spec: Spec, value: bytes, message: str) -> None:
    client = _redis_client(redis_spec[1])
    key = f"{redis_spec[2]}:pin:a.example"
    client.set(key, value)
    with open_spec(redis_spec) as store:
        for call in (lambda: store.get("a.example"), lambda: store.record_first(rec(), now=NOW),
                     lambda: store.put(rec()), lambda: store.delete("a.example"), store.list):
            with pytest.raises(StoreError, match=message) as info:
                call()
            assert key in str(info.value)
    assert client.get(key) == value  # left for inspection
    client.close()


def test_redis_wrong_type(redis_spec: Spec) -> None:
    client = _redis_client(redis_spec[1])
    key = f"{redis_spec[2]}:pin:a.example"
    client.rpush(key, b"x")
    with open_spec(redis_spec) as store, pytest.raises(StoreError, match="WRONGTYPE"):
        store.record_first(rec(), now=NOW)
    assert client.lrange(key, 0, -1) == [b"x"]
    client.close()


@pytest.mark.parametrize("server", ["refusing", "silent"])
def test_redis_unreachable(server: str) -> None:
    if SKIP_REDIS:
        pytest.importorskip("redis")
    listener = None
    if server == "refusing":
        port = redis_server.free_port()  # nothing listens there
    else:  # accepts connections, never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
    try:
        with RedisStore(f"redis://user:secret@127.0.0.1:{port}/0") as store:
            calls: list[Callable[[], object]] = [lambda: store.get("a.example")]
            if server == "refusing":  # (a silent server costs a timeout per call)
                calls.append(lambda: store.record_first(rec(), now=NOW))
            for call in calls:
                start = time.monotonic()
                with pytest.raises(StoreError, match=f"Redis at redis://user:\\*\\*\\*@127.0.0.1:{port}") as info:
                    call()
                assert time.monotonic() - start < 2.5
                assert "secret" not in str(info.value)
    finally:
        if listener is not None:
            listener.close()


def test_redis_py_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    with pytest.raises(StoreError, match=r"pip install 'pinengine\[redis\]'"):
        RedisStore("redis://127.0.0.1:1")


# -- files: paths, corrupt data -----------------------------------------------------------------


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if sys.platform in ("win32", "darwin"):
        pytest.skip("XDG paths are for Linux and other POSIX systems")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "pinengine" / "pins.sqlite3"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".local" / "share" / "pinengine" / "pins.sqlite3"
    with SQLiteStore() as store:
        store.put(rec())
    assert default_path().is_file()
    assert default_path().parent.stat().st_mode & 0o777 == 0o700


def test_open_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "data"))
    for spec, kind in [(None, SQLiteStore), ("memory:", MemoryStore), (tmp_path / "p.json", JSONFileStore),
                       (str(tmp_path / "p.db"), SQLiteStore), ("redis://127.0.0.1:1/0", RedisStore)]:
        if kind is RedisStore and SKIP_REDIS:
            continue
        with open_store(spec) as store:
            assert type(store) is kind


def test_store_error_is_a_pinengine_error() -> None:
    assert issubclass(StoreError, PinengineError)
    assert issubclass(NoRecordError, LookupError) and issubclass(NoRecordError, PinengineError)


def _all_calls(store: PinStore) -> list[Callable[[], object]]:
    return [
        lambda: store.get("a.example"),
        lambda: store.list(),
        lambda: store.record_first(rec(), now=NOW),
        lambda: store.put(rec()),
        lambda: store.add_pins("a.example", [pin(3)], now=NOW),
        lambda: store.touch("a.example", NOW + 1),
        lambda: store.delete("a.example"),
        lambda: import_records(store, export_records(_with(MemoryStore(), rec())), now=NOW),
    ]


def _valid_doc() -> str:
    return export_records(_with(MemoryStore(), rec(), rec(host="b.example")), now=NOW)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not"),
        (b'{"format": "something-else"}', "not a pinengine pin document"),
        (_valid_doc().replace(pin(1), "sha256/abc").encode(), r"records\[0\] \(a.example\): pins\[0\]: invalid pin"),
        (_valid_doc()[: len(_valid_doc()) // 2].encode(), "not valid JSON"),  # torn write
    ],
)
def test_corrupt_json_file_is_left_alone(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "pins.json"
    path.write_bytes(content)
    with JSONFileStore(path) as store:
        for call in _all_calls(store):
            with pytest.raises(StoreError, match=message) as info:
                call()
            assert str(path) in str(info.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pins.json", "pins.json.lock"]


def test_corrupt_sqlite_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "pins.sqlite3"
    content = b"this is not an SQLite database\n" * 200
    path.write_bytes(content)
    with pytest.raises(StoreError, match=f"{path}: cannot open: file is not a database"):
        SQLiteStore(path)
    assert path.read_bytes() == content


def test_foreign_sqlite_database_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    db.close()
    content = path.read_bytes()
    with pytest.raises(StoreError, match=r"not a pinengine pin store \(schema version 0, tables: users\)"):
        SQLiteStore(path)
    assert path.read_bytes() == content


def _fill(spec: Spec, records: list[PinRecord]) -> None:
    """Store many records at once (one transaction, one file write): faster than put() for each."""
    kind, where, _ = spec
    if kind == "json":
        Path(where).write_text(dump_document(records))
        return
    SQLiteStore(where).close()  # creates the schema
    db = sqlite3.connect(where)
    with db:
        db.executemany("INSERT INTO pin_records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [SQLiteStore._row(r) for r in records])
    db.close()


def test_damaged_sqlite_pages_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "pins.sqlite3"
    _fill(("sqlite", str(path), ""), [rec(host=f"h{i}.example", pins=(pin(i), pin(i + 1)),
                                          report_uri="https://r.example/" + "x" * 50) for i in range(300)])
    data = bytearray(path.read_bytes())
    assert len(data) > 8192
    data[4096:12288] = random.Random(1).randbytes(8192)  # scribble over pages 2 and 3
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=str(path)):
        with SQLiteStore(path) as store:
            store.list()
    assert path.read_bytes() == bytes(data)


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("pins", "garbage", "pins column is not a JSON list"),
        ("pins", '["sha256/abc"]', r"pins\[0\]: invalid pin"),
        ("first_seen", "yesterday", "first_seen must be a number"),
        ("source", "guess", "unknown record source"),
        ("include_subdomains", 7, "include_subdomains must be a bool"),
        ("host", "A.Example", "host is not in normalised form"),
    ],
)
def test_bad_sqlite_row_is_left_alone(tmp_path: Path, column: str, value: object, message: str) -> None:
    path = tmp_path / "pins.sqlite3"
    with SQLiteStore(path) as store:
        store.put(rec())
    db = sqlite3.connect(path)
    with db:
        db.execute(f"UPDATE pin_records SET {column} = ?", (value,))
    db.close()  # checkpoints the WAL into the file
    content = path.read_bytes()
    host = "A.Example" if column == "host" else "a.example"
    with SQLiteStore(path) as store:
        # Only list() meets an "A.Example" row: the others look for "a.example".
        for call in [store.list] if column == "host" else _all_calls(store):
            with pytest.raises(StoreError, match=message) as info:
                call()
            assert str(path) in str(info.value) and host in str(info.value)
    assert path.read_bytes() == content


def test_newer_sqlite_schema(tmp_path: Path) -> None:
    path = tmp_path / "pins.sqlite3"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 9")
    db.close()
    with pytest.raises(StoreError, match="newer pinengine"):
        SQLiteStore(path)


def test_version_1_sqlite_store_is_upgraded_with_its_noted_hosts(tmp_path: Path) -> None:
    # A store written before the noted_hosts index existed: its HPKP records must count toward the caps.
    path = tmp_path / "pins.sqlite3"
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE pin_records (host TEXT PRIMARY KEY NOT NULL, pins TEXT NOT NULL, "
                   "first_seen REAL NOT NULL, last_seen REAL NOT NULL, expires_at REAL, source TEXT NOT NULL, "
                   "include_subdomains INTEGER NOT NULL, report_uri TEXT)")
        db.executemany("INSERT INTO pin_records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            SQLiteStore._row(rec(host=f"h{i}.old.example", source="hpkp", expires_at=NOW + 600)) for i in range(3)
        ] + [SQLiteStore._row(rec(host="tofu.old.example"))])
        db.execute("PRAGMA user_version = 1")
    db.close()
    with SQLiteStore(path) as store:
        assert sorted(h for h, _ in store.noted_hosts(limit=10, now=NOW)) == [f"h{i}.old.example" for i in range(3)]
        new = rec(host="new.old.example", source="hpkp", expires_at=NOW + 600)
        assert store.note_hpkp(new, max_hosts=100, max_hosts_per_domain=3, now=NOW)[0] == "domain-full"
        assert store.note_hpkp(new, max_hosts=100, max_hosts_per_domain=4, now=NOW)[0] == "noted"
        assert len(store.list(now=NOW)) == 5
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (2,)
    db.close()


def test_note_hpkp_caps(store: PinStore) -> None:
    def hpkp(host: str, **more: Any) -> PinRecord:
        return rec(host=host, source="hpkp", expires_at=NOW + 600, **more)

    assert store.note_hpkp(hpkp("a.one.example"), max_hosts=3, max_hosts_per_domain=2, now=NOW)[0] == "noted"
    assert store.note_hpkp(hpkp("b.one.example"), max_hosts=3, max_hosts_per_domain=2, now=NOW)[0] == "noted"
    assert store.note_hpkp(hpkp("c.one.example"), max_hosts=3, max_hosts_per_domain=2, now=NOW)[0] == "domain-full"
    assert store.note_hpkp(hpkp("a.two.example"), max_hosts=3, max_hosts_per_domain=2, now=NOW)[0] == "noted"
    assert store.note_hpkp(hpkp("b.two.example"), max_hosts=3, max_hosts_per_domain=2, now=NOW)[0] == "store-full"
    # a noted host updates its own record at the cap, keeping first_seen
    outcome, record = store.note_hpkp(hpkp("a.one.example", pins=(pin(2),), at=NOW + 5), max_hosts=3,
                                      max_hosts_per_domain=2, now=NOW + 5)
    assert outcome == "noted" and record is not None and record.pins == (pin(2),) and record.first_seen == NOW
    # a record of another source is never replaced; deleting a noted host makes room
    store.put(rec(host="t.two.example"))
    assert store.note_hpkp(hpkp("t.two.example"), max_hosts=9, max_hosts_per_domain=9, now=NOW)[0] == "other-source"
    store.delete("b.one.example")
    assert store.note_hpkp(hpkp("c.one.example"), max_hosts=3, max_hosts_per_domain=2, now=NOW)[0] == "noted"
    # a record that stops being an HPKP record frees its place
    store.put(rec(host="a.two.example"))
    assert store.note_hpkp(hpkp("x.three.example"), max_hosts=3, max_hosts_per_domain=2, now=NOW)[0] == "noted"
    assert sorted(h for h, _ in store.noted_hosts(limit=10, now=NOW)) == [
        "a.one.example", "c.one.example", "x.three.example"]
    assert len(store.noted_hosts(limit=2, now=NOW)) == 2
    with pytest.raises(ValueError, match="HPKP record"):
        store.note_hpkp(rec(), max_hosts=3, max_hosts_per_domain=2, now=NOW)


# -- races across processes ------------------------------------------------------------------


def _race_worker(spec: Spec, index: int, barrier: Any, queue: Any) -> None:
    results: list[Any] = [None] * 4
    try:
        store = open_spec(spec)
        start = threading.Barrier(4)

        def run(t: int) -> None:
            candidate = rec(host="race.example", pins=(pin(1000 + index * 4 + t),), report_uri=f"https://r.example/{index}/{t}")
            start.wait()
            try:
                results[t] = store.record_first(candidate, now=NOW).to_dict()
            except BaseException as exc:
                results[t] = repr(exc)

        barrier.wait(timeout=30)
        threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        store.close()
    except BaseException as exc:
        results = [repr(exc)] * 4
    queue.put((index, results))


@pytest.mark.parametrize("spec", SHARED_KINDS, indirect=True)
def test_processes_race_on_record_first(spec: Spec) -> None:
    barrier, queue = MP.Barrier(8), MP.Queue()
    workers = [MP.Process(target=_race_worker, args=(spec, i, barrier, queue)) for i in range(8)]
    for w in workers:
        w.start()
    answers = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    with open_spec(spec) as store:
        stored = store.list(now=NOW)
    assert len(stored) == 1
    winner = stored[0].to_dict()
    assert winner["pins"][0] in {pin(1000 + i) for i in range(32)}
    for index, results in answers:
        assert results == [winner] * 4, f"process {index}"


# -- crash safety ---------------------------------------------------------------------------------

HOSTS = 100  # records in the store; each JSON write rewrites them all


def _version(i: int) -> PinRecord:
    """Version i of a record: every field follows from i, so a torn record would show."""
    return PinRecord(f"h{i % HOSTS}.example", (pin(i), pin(i + 1)), float(i), float(i) + 0.5, None,
                     "accepted", bool(i % 2), f"https://report.example/{i}")


def _crash_writer(spec: Spec, start: int, ready: Any) -> None:
    store = open_spec(spec)
    i = start
    while True:  # until SIGKILL
        store.put(_version(i))
        if i == start + 5:
            ready.set()
        i += 1


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("spec", ["sqlite", "json"], indirect=True)
def test_sigkill_mid_write_leaves_a_whole_store(spec: Spec) -> None:
    rng = random.Random(5)
    seen: dict[str, int] = {}
    _fill(spec, [_version(i) for i in range(HOSTS)])
    for round_ in range(5):
        ready = MP.Event()
        child = MP.Process(target=_crash_writer, args=(spec, (round_ + 1) * 1_000_000, ready))
        child.start()
        assert ready.wait(timeout=30)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
        assert child.exitcode == -signal.SIGKILL
        with open_spec(spec) as store:
            records = store.list()
            assert len(records) == HOSTS
            for r in records:
                i = int(r.first_seen)
                assert r == _version(i), "a record mixes two versions"
                assert i >= seen.get(r.host, 0), "a committed write was lost"
                seen[r.host] = i
            store.put(_version(round_))  # and it can still be written
            seen[_version(round_).host] = round_
        assert max(seen.values()) >= (round_ + 1) * 1_000_000 + 5
    kind, where, _ = spec
    if kind == "sqlite":
        db = sqlite3.connect(where)
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        db.close()
    else:
        assert sorted(p.name for p in Path(where).parent.iterdir()) == ["pins.json", "pins.json.lock"]
