"""Attack: take the pin store down (or wait for it to fail) while HPKP is on.

Issue 11, finding 13: with the store down every host was refused, even hosts
never noted. That stays the default (fail closed: ``store_outage="refuse"``),
and now there is an explicit choice, ``store_outage="known-hosts"``: refuse
the hosts of dynamic entries and the hosts known to be noted (seen by this
process, or in its last listing of the store's noted hosts, taken while the
store was healthy), let other names through, and log and count each such
pass (``store_outage_passes``). Against a real redis-server that is killed
and restarted, with real TLS servers and real clients.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from pinengine import Pin, PinMismatchError, PinPolicy, PolicyError
from pinengine.hooks.requests import pinned_session
from pinengine.stores import PinRecord, RedisStore
from tests import redis_server
from tests.certs import Chain
from tests.security.hpkp_peers import counters, fake_pin, grew, header, resolve_to_loopback, wildcard_chain
from tests.tls import TLSServer

BACKUP = fake_pin(0)


class Redis:
    """A redis-server that keeps its data across a kill and a restart on the same port."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run .ci/programs", pytrace=False)
        self.binary = binary
        self.directory = directory
        self.port = redis_server.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: Any = None
        self.start()

    def start(self) -> None:
        server = redis_server.RedisServer.__new__(redis_server.RedisServer)
        server.port, server.url, server.log = self.port, self.url, self.directory / "redis.log"
        server.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(server.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        assert server.wait_ready(10), server.log.read_text() if server.log.exists() else "redis did not start"
        self.server = server

    def kill(self) -> None:
        self.server.process.kill()
        self.server.process.wait()

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    r = Redis(tmp_path)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def wild() -> Chain:
    return wildcard_chain("site.test", "parent.site.test", "mine.site.test")


@pytest.fixture
def server(wild: Chain, monkeypatch: pytest.MonkeyPatch) -> Iterator[TLSServer]:
    resolve_to_loopback(monkeypatch)
    with TLSServer(wild) as srv:
        yield srv


def new_store(redis: Redis, namespace: str) -> RedisStore:
    return RedisStore(redis.url, namespace, timeout=1.0)


def fetch(policy: PinPolicy, server: TLSServer, host: str, headers: dict[str, str] | None = None) -> str:
    """``"ok"``, or the message of the PinMismatchError that refused the connection (a new session each time)."""
    server.httpd.headers.clear()
    server.httpd.headers.update(headers or {})
    try:
        with pinned_session(policy, verify=server.cafile) as s:
            assert s.get(f"https://{host}:{server.port}/", timeout=30).status_code == 200
        return "ok"
    except requests.exceptions.SSLError as exc:
        assert isinstance(exc.__cause__, PinMismatchError), repr(exc)
        return str(exc.__cause__)


def pkp(wild: Chain, extra: str = "; max-age=600") -> dict[str, str]:
    return {"Public-Key-Pins": header(Pin.from_certificate(wild.ders[1]), BACKUP, extra=extra)}


def test_default_refuses_every_name_while_the_store_is_down(redis: Redis, server: TLSServer, wild: Chain) -> None:
    policy = PinPolicy([], store=new_store(redis, f"o-{uuid.uuid4().hex}"), hpkp=True, cache_ttl=0)
    assert policy.store_outage == "refuse"
    assert fetch(policy, server, "noted.site.test", pkp(wild)) == "ok"
    assert policy.store.get("noted.site.test") is not None
    redis.kill()
    before = counters()
    for host in ("noted.site.test", "never.site.test"):
        outcome = fetch(policy, server, host)
        assert "pin store cannot be used" in outcome, outcome
    assert grew(before, "store_outage_passes") == 0
    redis.start()
    assert fetch(policy, server, "never.site.test") == "ok"
    assert fetch(policy, server, "noted.site.test") == "ok"


def test_known_hosts_refuses_only_what_may_be_noted(redis: Redis, server: TLSServer, wild: Chain,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    namespace = f"o-{uuid.uuid4().hex}"
    store = new_store(redis, namespace)
    policy = PinPolicy.from_mapping(
        {"domains": [{"host": "tofu.site.test", "dynamic": True}]},
        store=store, hpkp=True, cache_ttl=0, store_outage="known-hosts",
    )
    # Another gateway notes two hosts (one with includeSubDomains) before this one lists the store.
    other = PinPolicy([], store=new_store(redis, namespace), hpkp=True)
    assert fetch(other, server, "elsewhere.site.test", pkp(wild)) == "ok"
    assert fetch(other, server, "parent.site.test", pkp(wild, "; max-age=600; includeSubDomains")) == "ok"
    # This gateway: records a TOFU key, notes a host itself, and (healthy) lists the store's noted hosts.
    assert fetch(policy, server, "tofu.site.test") == "ok"
    assert fetch(policy, server, "mine.site.test", pkp(wild)) == "ok"
    assert fetch(policy, server, "plain.site.test") == "ok"

    redis.kill()
    before = counters()
    with caplog.at_level(logging.WARNING, logger="pinengine"):
        for host in ("tofu.site.test", "mine.site.test", "elsewhere.site.test", "deep.parent.site.test"):
            outcome = fetch(policy, server, host)
            assert "pin store cannot be used" in outcome, (host, outcome)
        for host in ("plain.site.test", "never.site.test", "sub.mine.site.test"):
            assert fetch(policy, server, host) == "ok", host
    assert grew(before, "store_outage_passes") == 3
    assert "pin store is unavailable" in caplog.text and "never.site.test" in caplog.text

    redis.start()
    assert fetch(policy, server, "never.site.test") == "ok"
    assert fetch(policy, server, "tofu.site.test") == "ok"
    assert fetch(policy, server, "new.site.test", pkp(wild)) == "ok"  # noting works again
    assert store.get("new.site.test") is not None


def test_known_hosts_forgets_a_host_removed_with_max_age_zero(redis: Redis, server: TLSServer, wild: Chain) -> None:
    policy = PinPolicy([], store=new_store(redis, f"o-{uuid.uuid4().hex}"), hpkp=True, cache_ttl=0,
                       store_outage="known-hosts")
    assert fetch(policy, server, "gone.site.test", pkp(wild)) == "ok"
    assert fetch(policy, server, "gone.site.test", {"Public-Key-Pins": "max-age=0"}) == "ok"
    redis.kill()
    assert fetch(policy, server, "gone.site.test") == "ok"


def test_the_snapshot_is_bounded(redis: Redis, wild: Chain, caplog: pytest.LogCaptureFixture) -> None:
    store = new_store(redis, f"o-{uuid.uuid4().hex}")
    for i in range(8):  # put by an operator: more noted hosts than this policy's cap
        store.put(PinRecord.create(f"op{i}.site.test", [str(BACKUP), str(fake_pin(1))], source="hpkp", ttl=600))
    policy = PinPolicy([], store=store, hpkp=True, cache_ttl=0, store_outage="known-hosts", hpkp_max_hosts=5)
    with caplog.at_level(logging.WARNING, logger="pinengine"):
        policy.verify("any.site.test", wild.ders)
    assert "snapshot" in caplog.text and "5" in caplog.text
    assert len(policy._noted_snapshot) <= 5


def test_the_choice_is_checked() -> None:
    with pytest.raises(PolicyError, match="store_outage"):
        PinPolicy([], store_outage="allow")


def test_known_hosts_refuses_a_noted_host_whose_record_is_unreadable(redis: Redis, server: TLSServer,
                                                                    wild: Chain) -> None:
    # Not the whole store down: one noted host's value damaged. It must not pass as "not known".
    import redis as redis_py

    namespace = f"o-{uuid.uuid4().hex}"
    noting = PinPolicy([], store=new_store(redis, namespace), hpkp=True)
    assert fetch(noting, server, "mine.site.test", pkp(wild)) == "ok"
    client = redis_py.Redis.from_url(redis.url)
    client.set(f"{namespace}:pin:mine.site.test", b"garbage")
    client.close()
    policy = PinPolicy([], store=new_store(redis, namespace), hpkp=True, cache_ttl=0, store_outage="known-hosts")
    assert fetch(policy, server, "plain.site.test") == "ok"  # healthy: lists the noted hosts
    for host in ("mine.site.test", "sub.mine.site.test"):
        outcome = fetch(policy, server, host)
        assert "pin store cannot be used" in outcome and "not valid JSON" in outcome, (host, outcome)
