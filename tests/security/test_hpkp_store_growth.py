"""Attack: a server with a wildcard certificate makes the client note pins for endless host names.

Issue 11, finding 11: 120 requests to new subdomains noted 120 hosts (132k
pins, 8.4 MB) and the JSON store rewrote the whole file on every note. Now
the pins per host are bounded (``MAX_PINS``, see test_hpkp_header_cost), and
so are the noted hosts per registrable domain and per store: past a cap a
new host is refused (logged, counted), the hosts noted before stay noted.
Repeated identical headers do not write.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from pinengine import Pin, PinMismatchError, PinPolicy, PolicyError
from pinengine.hooks.requests import pinned_session
from pinengine.hpkp import MAX_NOTED_HOSTS, MAX_NOTED_PER_DOMAIN, note_response
from pinengine.stores import JSONFileStore, MemoryStore, PinRecord, PinStore, RedisStore, SQLiteStore
from pinengine.stores._base import noted_domain
from tests.certs import Chain
from tests.security.hpkp_peers import counters, fake_pin, grew, header, resolve_to_loopback, wildcard_chain
from tests.tls import TLSServer

KINDS = ["memory", "sqlite", "json", "redis"]
BACKUP = fake_pin(0)
DOMAINS = [f"d{j}.test" for j in range(6)]


@pytest.fixture(scope="module")
def wild() -> Chain:
    """One key, valid for ``*.wild.test`` and ``*.d0.test`` .. ``*.d5.test``."""
    return wildcard_chain("wild.test", *DOMAINS)


@pytest.fixture
def server(wild: Chain, monkeypatch: pytest.MonkeyPatch) -> Iterator[TLSServer]:
    resolve_to_loopback(monkeypatch)
    with TLSServer(wild) as srv:
        srv.httpd.headers["Public-Key-Pins"] = header(Pin.from_certificate(wild.ders[1]), BACKUP)
        yield srv


def open_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> PinStore:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "pins.sqlite3")
    if kind == "json":
        return JSONFileStore(tmp_path / "pins.json")
    url = request.getfixturevalue("redis_url")
    namespace = f"growth-{uuid.uuid4().hex}"

    def clean() -> None:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{namespace}:*"))
        if keys:
            client.delete(*keys)
        client.close()

    request.addfinalizer(clean)
    return RedisStore(url, namespace)


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PinStore]:
    s = open_store(request.param, tmp_path, request)
    yield s
    s.close()


def visit(session: requests.Session, server: TLSServer, host: str) -> None:
    assert session.get(f"https://{host}:{server.port}/", timeout=30).status_code == 200


def noted(store: PinStore) -> list[str]:
    return [r.host for r in store.list() if r.source == "hpkp"]


def test_wildcard_certificate_notes_at_most_the_domain_cap(store: PinStore, server: TLSServer,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    policy = PinPolicy([], store=store, hpkp=True)
    before = counters()
    extra = 6
    with caplog.at_level(logging.WARNING, logger="pinengine"), pinned_session(policy, verify=server.cafile) as s:
        for i in range(MAX_NOTED_PER_DOMAIN + extra):
            visit(s, server, f"h{i}.wild.test")
    hosts = noted(store)
    assert len(hosts) == MAX_NOTED_PER_DOMAIN
    assert set(hosts) == {f"h{i}.wild.test" for i in range(MAX_NOTED_PER_DOMAIN)}  # the first ones stay
    assert grew(before, "hpkp_notes_refused") == extra
    assert "wild.test" in caplog.text and f"{MAX_NOTED_PER_DOMAIN} hosts" in caplog.text
    # hosts noted before the cap are still enforced
    with pytest.raises(PinMismatchError):
        policy.verify("h0.wild.test", wildcard_chain("wild.test").ders)


def test_many_domains_fill_the_store_only_to_its_cap(store: PinStore, server: TLSServer) -> None:
    policy = PinPolicy([], store=store, hpkp=True, hpkp_max_hosts=10, hpkp_max_hosts_per_domain=3)
    before = counters()
    with pinned_session(policy, verify=server.cafile) as s:
        for domain in DOMAINS:  # 6 domains x 3 hosts = 18 candidates for 10 places
            for i in range(3):
                visit(s, server, f"h{i}.{domain}")
    hosts = noted(store)
    assert len(hosts) == 10
    assert grew(before, "hpkp_notes_refused") == 8
    # a host already noted may still update its own record at the cap
    server.httpd.headers["Public-Key-Pins"] = header(Pin.from_certificate(server.chain.ders[0]), BACKUP)
    with pinned_session(policy, verify=server.cafile) as s:
        visit(s, server, hosts[0])
    record = store.get(hosts[0])
    assert record is not None and str(Pin.from_certificate(server.chain.ders[0])) in record.pins


def test_a_process_with_a_higher_cap_does_not_lift_another_processes_cap(store: PinStore, server: TLSServer) -> None:
    small = PinPolicy([], store=store, hpkp=True, hpkp_max_hosts_per_domain=2)
    with pinned_session(small, verify=server.cafile) as s:
        for i in range(4):
            visit(s, server, f"s{i}.d0.test")
    assert len(noted(store)) == 2
    big = PinPolicy([], store=store, hpkp=True, hpkp_max_hosts_per_domain=4)
    with pinned_session(big, verify=server.cafile) as s:
        for i in range(4, 8):
            visit(s, server, f"s{i}.d0.test")
    assert len(noted(store)) == 4  # each writer enforces its own cap on what the store holds


def test_expired_notes_make_room(store: PinStore, wild: Chain) -> None:
    policy = PinPolicy([], store=store, hpkp=True, hpkp_max_hosts=4, hpkp_max_hosts_per_domain=2)
    value = {"Public-Key-Pins": header(Pin.from_certificate(wild.ders[1]), BACKUP, extra="; max-age=100")}
    long_ago = time.time() - 10_000

    def note(host: str, at: float) -> str:
        conn = {"pin_result": policy.verify(host, wild.ders), "pin_chain": wild.ders}
        return note_response(policy, host, value, now=at, **conn)

    # Two hosts noted long ago (expired now): they do not hold the domain's places.
    assert note("old1.d1.test", long_ago) == note("old2.d1.test", long_ago) == "noted"
    assert note("new1.d1.test", time.time()) == "noted"
    assert note("new2.d1.test", time.time()) == "noted"
    assert note("new3.d1.test", time.time()).startswith("ignored: ")
    assert sorted(noted(store)) == ["new1.d1.test", "new2.d1.test"]


def test_caps_must_be_positive() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(PolicyError, match="hpkp_max_hosts"):
            PinPolicy([], hpkp=True, hpkp_max_hosts=bad)  # type: ignore[arg-type]
        with pytest.raises(PolicyError, match="hpkp_max_hosts_per_domain"):
            PinPolicy([], hpkp=True, hpkp_max_hosts_per_domain=bad)  # type: ignore[arg-type]
    assert MAX_NOTED_PER_DOMAIN < MAX_NOTED_HOSTS


@pytest.mark.parametrize(
    "host, domain",
    [
        ("a.b.wild.test", "wild.test"),
        ("wild.test", "wild.test"),
        ("test", "test"),
        ("www.bank.co.uk", "bank.co.uk"),  # a two-letter country code under a generic second level
        ("a.b.example.com.au", "example.com.au"),
        ("shop.example.de", "example.de"),
        ("x.y.evil.co", "evil.co"),  # "co" is a top-level domain of its own here
    ],
)
def test_the_registrable_domain_approximation(host: str, domain: str) -> None:
    assert noted_domain(host) == domain


def test_repeated_identical_headers_do_not_write(tmp_path: Path, server: TLSServer) -> None:
    path = tmp_path / "pins.json"
    policy = PinPolicy([], store=JSONFileStore(path), hpkp=True)
    with pinned_session(policy, verify=server.cafile) as s:
        visit(s, server, "same.wild.test")
        first = os.stat(path)
        for _ in range(20):
            visit(s, server, "same.wild.test")
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (first.st_ino, first.st_mtime_ns, first.st_size)


def test_the_store_stays_small(tmp_path: Path, server: TLSServer) -> None:
    # The run, on the JSON store: 120 new subdomains of a wildcard certificate.
    path = tmp_path / "pins.json"
    policy = PinPolicy([], store=JSONFileStore(path), hpkp=True)
    with pinned_session(policy, verify=server.cafile) as s:
        for i in range(120):
            visit(s, server, f"n{i}.wild.test")
    records = JSONFileStore(path).list()
    assert len(records) == MAX_NOTED_PER_DOMAIN
    assert sum(len(r.pins) for r in records) == 2 * MAX_NOTED_PER_DOMAIN
    assert path.stat().st_size < 20_000


def test_records_put_by_an_operator_count_but_are_never_refused(store: PinStore, wild: Chain) -> None:
    # The caps bound what servers can make the client note; an operator's put/import is not capped.
    now = time.time()
    for i in range(5):
        store.put(PinRecord.create(f"op{i}.d2.test", [str(BACKUP)], source="hpkp", now=now, ttl=600))
    assert len(noted(store)) == 5
    policy = PinPolicy([], store=store, hpkp=True, hpkp_max_hosts_per_domain=5)
    value = {"Public-Key-Pins": header(Pin.from_certificate(wild.ders[1]), BACKUP)}
    conn: dict[str, Any] = {"pin_result": policy.verify("x.d2.test", wild.ders), "pin_chain": wild.ders}
    assert note_response(policy, "x.d2.test", value, **conn).startswith("ignored: ")
    store.delete("op0.d2.test")
    assert note_response(policy, "x.d2.test", value, **conn) == "noted"


# -- many gateways at once ---------------------------------------------------------------

# Not fork: the test process runs threads, and forking a multi-threaded
# process is unsafe (CPython 3.12+ warns); the forkserver forks from a
# single-threaded server.
MP: Any = multiprocessing.get_context("forkserver")


def _open_shared(spec: tuple[str, str, str]) -> PinStore:
    kind, where, namespace = spec
    if kind == "sqlite":
        return SQLiteStore(where)
    if kind == "json":
        return JSONFileStore(where)
    return RedisStore(where, namespace)


def _gateway(spec: tuple[str, str, str], n: int, start: Any, results: Any) -> None:
    """One process, four threads, each noting a host of its own under one domain at the same moment."""
    store = _open_shared(spec)
    outcomes: list[str] = []
    lock = threading.Lock()

    def note(t: int) -> None:
        record = PinRecord.create(f"g{n}-{t}.race.test", [str(BACKUP), str(fake_pin(1))], source="hpkp", ttl=600)
        start.wait()
        try:
            outcome, _ = store.note_hpkp(record, max_hosts=1000, max_hosts_per_domain=5)
        except Exception as exc:  # reported to the parent
            outcome = repr(exc)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=note, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.close()
    results.put(outcomes)


@pytest.mark.parametrize("kind", ["sqlite", "json", "redis"])
def test_racing_gateways_never_exceed_the_cap(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        shared = open_store("redis", tmp_path, request)
        spec = ("redis", url, shared.namespace)  # type: ignore[attr-defined]
        shared.close()
    else:
        spec = (kind, str(tmp_path / ("pins.sqlite3" if kind == "sqlite" else "pins.json")), "")
    start = MP.Barrier(16)
    results = MP.Queue()
    procs = [MP.Process(target=_gateway, args=(spec, n, start, results)) for n in range(4)]
    for p in procs:
        p.start()
    outcomes = [o for _ in procs for o in results.get(timeout=120)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(set(outcomes)) == ["domain-full", "noted"], outcomes
    assert outcomes.count("noted") == 5
    with _open_shared(spec) as store:
        assert len(noted(store)) == 5
