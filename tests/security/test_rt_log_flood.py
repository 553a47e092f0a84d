"""Attack: take the pin store down, then make the client connect as often as you like.

During a store outage every handshake to a dynamic host (and, with HPKP on,
to any host) fails on the store. Each failure logged one ERROR line, in the
handshake, at the rate the attacker drives connections (a page full of
subresources, a retrying client): a log flood that fills disks and slows
every handshake by a log write. The connections are refused (fail closed);
now the "pin store error" line is rate-limited per policy (at most
``STORE_ERROR_LOG_BURST`` per ``STORE_ERROR_LOG_INTERVAL`` seconds, the next
one saying how many were held back), while every error is still counted in
``store_errors``. Against a
real redis-server that is stopped, and a real TLS server.
"""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path
from typing import Iterator

import pytest

from pinengine import PinMismatchError, PinPolicy, _observe
from pinengine.hooks.ssl import create_pinned_context
from pinengine.stores import RedisStore
from tests import redis_server
from tests.certs import Chain, cached_chain
from tests.security.hpkp_peers import counters, grew
from tests.tls import TLSServer

HOST = "localhost"
CONNECTIONS = 40


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(chain) as srv:
        yield srv


@pytest.fixture
def dead_store(tmp_path: Path) -> Iterator[RedisStore]:
    """A RedisStore whose redis-server was running, then stopped: every use fails."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run .ci/programs", pytrace=False)
    server = redis_server.start(binary, tmp_path)
    store = RedisStore(server.url)
    assert store.get(HOST) is None  # it worked
    server.stop()
    yield store
    store.close()


def store_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "pin store error" in r.getMessage()]


@pytest.mark.parametrize("hpkp", [False, True], ids=["dynamic-entry", "hpkp-any-host"])
def test_a_store_outage_does_not_log_a_line_per_handshake(
    dead_store: RedisStore, server: TLSServer, caplog: pytest.LogCaptureFixture, hpkp: bool
) -> None:
    domains = [] if hpkp else [{"host": HOST, "dynamic": True}]
    policy = PinPolicy.from_mapping({"domains": domains}, store=dead_store, cache_ttl=0, hpkp=hpkp)
    context = create_pinned_context(policy, cafile=server.cafile)
    before = counters()
    with caplog.at_level(logging.ERROR, logger="pinengine"):
        for _ in range(CONNECTIONS):
            with pytest.raises(PinMismatchError, match="pin store cannot be used"):  # fail closed, every time
                with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port)), server_hostname=HOST):
                    pass
    lines = store_lines(caplog)
    assert 1 <= len(lines) <= _observe.STORE_ERROR_LOG_BURST < CONNECTIONS, lines  # not one per handshake
    assert "Connection refused" in lines[0] or "Error" in lines[0], lines
    assert grew(before, "store_errors") == CONNECTIONS  # every error is still counted


def test_the_next_line_says_how_many_were_held_back(
    dead_store: RedisStore, server: TLSServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "dynamic": True}]}, store=dead_store, cache_ttl=0)
    context = create_pinned_context(policy, cafile=server.cafile)

    def connect() -> None:
        with pytest.raises(PinMismatchError):
            with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port)), server_hostname=HOST):
                pass

    with caplog.at_level(logging.ERROR, logger="pinengine"):
        burst = _observe.STORE_ERROR_LOG_BURST
        for _ in range(burst + 5):
            connect()
        throttle = _observe._store_error_log(policy)
        monkeypatch.setattr(throttle, "_window_end", 0.0)  # the interval has passed
        connect()
    lines = store_lines(caplog)
    assert len(lines) == burst + 1, lines
    assert "5 more store errors since the last message" in lines[-1], lines
