"""Gateways racing on one host: 8 processes x 4 threads, two real TLS servers, one shared store.

Both servers answer as the same host name with certificates from the same
trusted CA but for different keys. Whichever key is recorded first, exactly
one may ever be recorded; every connection that succeeded went to the server
with that key; every connection to the other was refused. Also: Redis going
away mid-run refuses dynamic hosts (fail closed) and nothing is lost.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import shutil
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine.hooks.ssl import create_pinned_context
from pinengine.stores import JSONFileStore, RedisStore, SQLiteStore, StoreError
from tests.certs import Chain, make_cert, make_chain, new_key
from tests.tls import TLSServer

HOST = "localhost"
PROCESSES, THREADS = 8, 4


def _open(spec: tuple[str, str, str]) -> Any:
    kind, where, namespace = spec
    if kind == "sqlite":
        return SQLiteStore(where)
    if kind == "json":
        return JSONFileStore(where)
    return RedisStore(where, namespace=namespace)


def _gateway(
    backend: str, spec: tuple[str, str, str], ports: list[int], cafile: str, start: Any, results: Any, n: int
) -> None:
    """One gateway process: THREADS threads, each connecting once to one of the two servers."""
    from pinengine import _backend

    # A fresh process (forkserver): select the backend under test here.
    _backend.use(importlib.import_module("pinengine._core" if backend == "compiled" else "pinengine._core_py"))
    store = _open(spec)
    policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "dynamic": True}]}, store=store)
    ctx = create_pinned_context(policy, cafile=cafile)
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()

    def connect(t: int) -> None:
        which = (n + t) % 2
        start.wait()
        try:
            with socket.create_connection(("127.0.0.1", ports[which]), timeout=20) as raw:
                with ctx.wrap_socket(raw, server_hostname=HOST):
                    outcome = "ok"
        except PinMismatchError:
            outcome = "refused"
        except Exception as exc:  # anything else is a test failure, reported to the parent
            outcome = f"error: {exc!r}"
        with lock:
            outcomes.append((which, outcome))

    threads = [threading.Thread(target=connect, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.close()
    results.put(outcomes)


@pytest.fixture(scope="module")
def servers() -> Any:
    first = make_chain("p256", HOST)
    key = new_key("p256")
    leaf = make_cert(HOST, key, first.intermediate, first.intermediate_key, ca=False, sans=(HOST,))
    second = Chain(leaf, first.intermediate, first.root, key, first.intermediate_key, first.root_key)
    with TLSServer(first) as a, TLSServer(second) as b:
        yield (a, b), [str(Pin.from_certificate(c.ders[0])) for c in (first, second)]


def _spec(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str, str]:
    if kind == "sqlite":
        return (kind, str(tmp_path / "pins.sqlite3"), "")
    if kind == "json":
        return (kind, str(tmp_path / "pins.json"), "")
    return (kind, request.getfixturevalue("redis_url"), f"race-{uuid.uuid4().hex}")


@pytest.mark.parametrize("kind", ["sqlite", "json", "redis"])
def test_racing_gateways_record_exactly_one_key(
    kind: str, servers: Any, tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    (a, b), pins = servers
    spec = _spec(kind, tmp_path, request)
    # Not fork: this process runs threads (the TLS servers), and forking it is
    # unsafe (CPython 3.12+ warns). The forkserver forks from a single-threaded
    # server that has this module loaded already.
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload([__name__])
    start = mp.Barrier(PROCESSES * THREADS)
    results = mp.Queue()
    procs = [mp.Process(target=_gateway, args=(backend, spec, [a.port, b.port], a.cafile, start, results, n))
             for n in range(PROCESSES)]
    for p in procs:
        p.start()
    outcomes = [o for _ in procs for o in results.get(timeout=120)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(outcomes) == PROCESSES * THREADS
    assert not [o for o in outcomes if o[1].startswith("error")], outcomes
    with _open(spec) as store:
        records = store.list()
    assert len(records) == 1 and records[0].host == HOST and len(records[0].pins) == 1
    winner = pins.index(records[0].pins[0])
    for which, outcome in outcomes:
        assert outcome == ("ok" if which == winner else "refused"), (which, outcome, winner)
    assert {w for w, _ in outcomes} == {0, 1}  # both servers were really tried


def test_redis_going_away_fails_closed_and_loses_nothing(servers: Any, tmp_path: Path) -> None:
    import tests.redis_server as redis_server

    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("PINENGINE_SKIP_REDIS"):
            pytest.skip("PINENGINE_SKIP_REDIS=1")
        pytest.fail("redis-server is not installed: run .ci/programs", pytrace=False)
    (a, _), pins = servers
    port = redis_server.free_port()
    # keep the data on disk across the restart, as a real deployment would
    server = _start(binary, tmp_path, port)
    try:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", namespace="gone")
        policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "dynamic": True}]}, store=store, cache_ttl=0)
        ctx = create_pinned_context(policy, cafile=a.cafile)

        def connect() -> str:
            try:
                with socket.create_connection(("127.0.0.1", a.port), timeout=10) as raw:
                    with ctx.wrap_socket(raw, server_hostname=HOST):
                        return "ok"
            except PinMismatchError as exc:
                return str(exc)

        assert connect() == "ok"  # first key recorded
        server.stop()
        refused = connect()
        assert "pin store cannot be used" in refused, refused
        with pytest.raises(StoreError):
            store.get(HOST)
        server = _start(binary, tmp_path, port)
        assert connect() == "ok"
        assert store.get(HOST).pins == (pins[0],)  # nothing recorded before was lost
        store.close()
    finally:
        server.stop()


def _start(binary: str, directory: Path, port: int) -> Any:
    import subprocess

    import tests.redis_server as redis_server

    server = redis_server.RedisServer.__new__(redis_server.RedisServer)
    server.port = port
    server.url = f"redis://127.0.0.1:{port}/0"
    server.log = directory / "redis.log"
    server.process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--dbfilename", "dump.rdb",
         "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(server.log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    assert server.wait_ready(10), server.log.read_text() if server.log.exists() else "redis did not start"
    return server
