"""Live policies (pinengine.LivePolicy): pins that change under running clients, against real servers."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from pinengine import LivePolicy, Pin, PinMismatchError, PinPolicy, PolicyError, stats
from pinengine._errors import StalePolicyError
from pinengine.hooks.requests import pinned_session
from pinengine.hooks.ssl import create_pinned_context
from pinengine.hooks.urllib3 import PinnedPoolManager
from tests.certs import Chain, cached_chain, make_chain, rotated
from tests.tls import TLSServer

HOST = "localhost"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def write_policy(path: Path, *pins: str, serial: int | None = None, extra: str = "") -> None:
    """Write a TOML policy for HOST; a new inode each time, as deploy tools do (write, rename)."""
    head = f"serial = {serial}\n" if serial is not None else ""
    body = head + extra + '[[domains]]\nhost = "localhost"\npins = [' + ", ".join(f'"{p}"' for p in pins) + "]\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(body)
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def new_chain(chain: Chain) -> Chain:
    """The key rotation: a new leaf key under the same CA."""
    return rotated(chain, HOST)


@pytest.fixture(scope="module")
def spare() -> Chain:
    """Keys no server has (backup pins)."""
    return make_chain("p256", HOST)


@pytest.fixture
def old_server(chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(chain) as srv:
        yield srv


@pytest.fixture
def new_server(new_chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(new_chain) as srv:
        yield srv


def refused(session: requests.Session, url: str) -> PinMismatchError:
    with pytest.raises(requests.exceptions.SSLError) as info:
        session.get(url, timeout=10)
    cause = info.value.__cause__
    assert isinstance(cause, PinMismatchError), repr(info.value)
    return cause


def test_live_policy_is_a_pin_policy_answering_from_the_version_in_force(tmp_path: Path, chain: Chain,
                                                                          spare: Chain) -> None:
    path = tmp_path / "policy.toml"
    write_policy(path, pin(chain.ders[0]), pin(spare.ders[0]))
    live = LivePolicy.from_file(path, interval=None)
    assert isinstance(live, PinPolicy)
    assert live.serial == 1 and live.current.source == str(path)
    assert live.entries == live.current.entries and live.entry_for(HOST) is live.current.entries[0]
    assert live.verify(HOST, chain.ders).status == "match"
    assert live.to_mapping() == live.current.to_mapping()
    assert live.hpkp is False and live.reporter is None
    write_policy(path, pin(spare.ders[0]), pin(spare.ders[1]))
    assert live.reload() is True
    assert live.serial == 2
    with pytest.raises(PinMismatchError):
        live.verify(HOST, chain.ders)
    assert live.reload() is False  # nothing changed


def test_requests_session_follows_the_file(tmp_path: Path, chain: Chain, new_chain: Chain, spare: Chain,
                                           old_server: TLSServer, new_server: TLSServer) -> None:
    path = tmp_path / "policy.toml"
    write_policy(path, pin(chain.ders[0]), pin(spare.ders[0]))
    live = LivePolicy.from_file(path, interval=0.05)
    try:
        session = pinned_session(live, verify=old_server.cafile)
        assert session.get(old_server.url(), timeout=10).status_code == 200
        refused(session, new_server.url())
        # Rotation: the new key beside the old one, then the old key removed.
        write_policy(path, pin(chain.ders[0]), pin(new_chain.ders[0]))
        assert wait_for(lambda: live.serial == 2)
        assert session.get(new_server.url(), timeout=10).status_code == 200
        write_policy(path, pin(new_chain.ders[0]), pin(spare.ders[0]))
        assert wait_for(lambda: live.serial == 3)
        # The established (pooled) connection to the old server is not judged again ...
        assert session.get(old_server.url(), timeout=10).status_code == 200
        assert old_server.connections == 1
        # ... but a new handshake uses the new pins: the removed key is refused.
        fresh = pinned_session(live, verify=old_server.cafile)
        error = refused(fresh, old_server.url())
        assert pin(new_chain.ders[0]) in str(error)  # the message lists the pins in force
        assert fresh.get(new_server.url(), timeout=10).status_code == 200
    finally:
        live.close()


def test_recheck_closes_pooled_connections_the_new_version_refuses(
    tmp_path: Path, chain: Chain, new_chain: Chain, spare: Chain, old_server: TLSServer
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(f'{{"domains": [{{"host": "localhost", "pins": ["{pin(chain.ders[0])}", "{pin(spare.ders[0])}"]}}]}}')
    live = LivePolicy.from_file(path, interval=None, on_update="recheck")
    session = live.watch(pinned_session(live, verify=old_server.cafile))
    manager = live.watch(PinnedPoolManager(live, ca_certs=old_server.cafile, retries=False))
    assert session.get(old_server.url(), timeout=10).status_code == 200
    assert manager.request("GET", old_server.url()).status == 200
    assert old_server.connections == 2
    # A version that still accepts the server keeps both pooled connections.
    path.write_text(f'{{"domains": [{{"host": "localhost", "pins": ["{pin(chain.ders[1])}", "{pin(spare.ders[0])}"]}}]}}')
    assert live.reload()
    assert session.get(old_server.url(), timeout=10).status_code == 200
    assert old_server.connections == 2
    # One that refuses it closes them: the next request makes a new handshake, which is refused.
    path.write_text(f'{{"domains": [{{"host": "localhost", "pins": ["{pin(new_chain.ders[0])}", "{pin(spare.ders[0])}"]}}]}}')
    assert live.reload()
    refused(session, old_server.url())
    import urllib3

    with pytest.raises(urllib3.exceptions.SSLError):
        manager.request("GET", old_server.url())
    assert old_server.connections == 4


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


@pytest.mark.parametrize("broken", [
    'this is [not toml',
    '[[domains]]\nhost = "localhost"\npins = ["sha256/AAAA"]\n',  # a malformed pin
    '[[domains]]\nhost = "localhost"\npins = []\n',  # no pins
    '\xff\xfe',  # not UTF-8
    'serial = "7"\n[[domains]]\nhost = "x.example"\npins = []\n',
])
def test_a_broken_file_keeps_the_policy_in_force(tmp_path: Path, chain: Chain, spare: Chain, broken: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "policy.toml"
    write_policy(path, pin(chain.ders[0]), pin(spare.ders[0]), serial=5)
    live = LivePolicy.from_file(path, interval=None)
    before = live.current
    path.write_bytes(broken.encode("utf-8", "surrogateescape") if broken != '\xff\xfe' else b"\xff\xfe")
    with caplog.at_level(logging.ERROR, logger="pinengine"), pytest.raises(PolicyError):
        live.reload()
    assert live.current is before and live.serial == 5
    assert live.verify(HOST, chain.ders).status == "match"
    status = live.status()
    assert status["failures"] == 1 and status["last_failure"] and status["source"] == "file"
    assert "refused" in caplog.text and "serial 5 stays in force" in caplog.text


def test_an_older_serial_keeps_the_policy_in_force(tmp_path: Path, chain: Chain, spare: Chain) -> None:
    path = tmp_path / "policy.toml"
    write_policy(path, pin(chain.ders[0]), pin(spare.ders[0]), serial=10)
    live = LivePolicy.from_file(path, interval=None)
    for serial in (9, 10):
        write_policy(path, pin(spare.ders[0]), pin(spare.ders[1]), serial=serial)
        with pytest.raises(StalePolicyError, match="not newer than serial 10"):
            live.reload()
        assert live.verify(HOST, chain.ders).status == "match"
    write_policy(path, pin(spare.ders[0]), pin(spare.ders[1]), serial=11)
    assert live.reload() and live.serial == 11


def test_a_polled_broken_file_is_recorded_not_raised(tmp_path: Path, chain: Chain, spare: Chain) -> None:
    path = tmp_path / "policy.toml"
    write_policy(path, pin(chain.ders[0]), pin(spare.ders[0]))
    live = LivePolicy.from_file(path, interval=0.02)
    try:
        path.write_text("not = [valid")
        assert wait_for(lambda: live.failures == 1)
        assert live.verify(HOST, chain.ders).status == "match"
        path.unlink()  # gone: refused too, the version in force stays
        assert wait_for(lambda: live.failures == 2)
        assert "gone" in (live.last_failure or "")
        write_policy(path, pin(spare.ders[0]), pin(spare.ders[1]))
        assert wait_for(lambda: live.serial == 2)
        assert live.status()["updates"] == 1
    finally:
        live.close()


def test_the_first_read_must_succeed(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        LivePolicy.from_file(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[domains]]\n")
    with pytest.raises(PolicyError):
        LivePolicy.from_file(tmp_path / "bad.toml")


def test_sighup_reloads(tmp_path: Path, chain: Chain, spare: Chain) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled in the main thread")
    import signal

    path = tmp_path / "policy.toml"
    write_policy(path, pin(chain.ders[0]), pin(spare.ders[0]))
    previous = signal.getsignal(signal.SIGHUP)
    live = LivePolicy.from_file(path, interval=None, sighup=True)
    try:
        write_policy(path, pin(spare.ders[0]), pin(spare.ders[1]))
        time.sleep(0.05)
        assert live.serial == 1  # no polling
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_for(lambda: live.serial == 2)
    finally:
        live.close()
        signal.signal(signal.SIGHUP, previous)


def test_manual_update_and_carry_over(tmp_path: Path, chain: Chain, spare: Chain) -> None:
    from pinengine.stores import MemoryStore

    store = MemoryStore()
    reports: list[Any] = []

    class Reporter:
        def report(self, event: Any) -> None:
            reports.append(event)

    path = tmp_path / "policy.toml"
    path.write_text('[[domains]]\nhost = "localhost"\ndynamic = true\n')
    live = LivePolicy.from_file(path, interval=None, store=store, reporter=Reporter())
    assert live.verify(HOST, chain.ders).status == "match"  # trust on first use: recorded in the store
    assert store.get(HOST) is not None
    path.write_text('[[domains]]\nhost = "localhost"\ndynamic = true\nmode = "report-only"\n')
    assert live.reload()
    assert live.store is store and live.current.reporter is not None
    assert live.verify(HOST, chain.ders).status == "match"  # the recorded key carries over
    assert live.verify(HOST, spare.ders).status == "report-only"
    assert len(reports) == 1
    with pytest.raises(StalePolicyError):
        live.update(PinPolicy(), serial=1)
    live.update(PinPolicy(), serial=50)
    assert live.serial == 50 and live.verify(HOST, spare.ders).status == "not-pinned"
    with pytest.raises(TypeError):
        LivePolicy(live)  # type: ignore[arg-type]


def test_stats_show_live_policies(tmp_path: Path, chain: Chain, spare: Chain) -> None:
    path = tmp_path / "policy.toml"
    write_policy(path, pin(chain.ders[0]), pin(spare.ders[0]), serial=3)
    live = LivePolicy.from_file(path, interval=None, name="edge")
    path.write_text("broken = [")
    with pytest.raises(PolicyError):
        live.reload()
    shown = [p for p in stats()["policies"] if p["name"] == "edge"]
    assert len(shown) == 1
    assert shown[0]["serial"] == 3 and shown[0]["source"] == "file" and shown[0]["failures"] == 1
    assert "invalid TOML" in shown[0]["last_failure"]
    from pinengine.metrics import prometheus_text

    text = prometheus_text()
    assert 'pinengine_policy_serial{name="edge",source="file"} 3' in text
    assert 'pinengine_policy_update_failures_total{name="edge",source="file"} 1' in text
    assert 'pinengine_policy_last_failure_timestamp_seconds{name="edge",source="file"} ' in text
    prometheus_client = pytest.importorskip("prometheus_client")
    from pinengine.metrics import register_prometheus

    registry = prometheus_client.CollectorRegistry()
    register_prometheus(registry)
    exposed = prometheus_client.generate_latest(registry).decode()
    assert "# TYPE pinengine_policy_serial gauge" in exposed
    assert 'pinengine_policy_serial{name="edge",source="file"} 3.0' in exposed
    assert 'pinengine_policy_update_failures_total{name="edge",source="file"} 1.0' in exposed


def test_swaps_under_concurrent_handshakes_use_one_complete_version(chain: Chain, spare: Chain,
                                                                    old_server: TLSServer) -> None:
    """1,000 swaps while 4 threads verify: every decision is one complete version's.

    Version A pins the server (match); version B pins other keys for the same
    host (refused, listing B's pins). A decision mixing them would be a match
    naming another entry than A's, or a refusal listing A's pins.
    """
    a = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": [pin(chain.ders[0]), pin(spare.ders[0])]}]})
    b = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": [pin(spare.ders[1]), pin(spare.ders[2])]}]})
    live = LivePolicy(a)
    stop = threading.Event()
    seen = {"a": 0, "b": 0}
    errors: list[str] = []
    import socket
    import ssl

    def worker() -> None:
        context = create_pinned_context(live, cafile=old_server.cafile)
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", old_server.port), timeout=10) as raw, \
                        context.wrap_socket(raw, server_hostname=HOST) as tls:
                    result = tls.pin_result  # type: ignore[attr-defined]
                    if result.entry is not a.entries[0]:
                        errors.append(f"a match decided with entry {result.entry!r}")
                    seen["a"] += 1
            except ssl.SSLError as exc:
                cause = exc if isinstance(exc, PinMismatchError) else exc.__cause__
                pinned = str(cause).split("Pinned keys")[-1]
                if not isinstance(cause, PinMismatchError) or pin(spare.ders[1]) not in pinned \
                        or pin(chain.ders[0]) in pinned:
                    errors.append(f"a refusal not from version B: {exc!r}")
                seen["b"] += 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(1000):
            live.update(b if i % 2 == 0 else a)
            time.sleep(0.0005)
            if i % 2 == 1:
                # direct decisions too: each names exactly one version's entry
                res = live.verify(HOST, chain.ders)
                if res.entry is not a.entries[0]:
                    errors.append("a direct decision mixed versions")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:5]
    assert live.serial == 1000
    assert seen["a"] > 0 and seen["b"] > 0, seen


def test_grpc_channel_follows_the_file(tmp_path: Path, chain: Chain, new_chain: Chain, spare: Chain) -> None:
    grpc = pytest.importorskip("grpc")
    from pinengine.hooks.grpc import secure_channel
    from tests.certs import pem
    from tests.grpc_server import UNARY, GrpcServer

    path = tmp_path / "policy.toml"
    write_policy(path, pin(chain.ders[0]), pin(spare.ders[0]))
    live = LivePolicy.from_file(path, interval=0.05)
    with GrpcServer(chain) as server:
        target = f"{HOST}:{server.port}"
        with secure_channel(target, live, root_certificates=pem(chain.root)) as channel:
            call = channel.unary_unary(UNARY)
            assert call(b"one", timeout=10) == b"one"
            # The new key beside the old: the established connection keeps working.
            write_policy(path, pin(chain.ders[0]), pin(new_chain.ders[0]))
            assert wait_for(lambda: live.serial == 2)
            assert call(b"two", timeout=10) == b"two"
            # The server rotates its key: the reconnection's handshake uses the new pins.
            server.restart(new_chain)
            assert wait_for(lambda: _ok(call, b"three"))
            # The old key is removed, and the server goes back to it: refused.
            write_policy(path, pin(new_chain.ders[0]), pin(spare.ders[0]))
            assert wait_for(lambda: live.serial == 3)
            server.restart(chain)
            with pytest.raises(grpc.RpcError) as info:
                for _ in range(50):
                    call(b"four", timeout=2)
                    time.sleep(0.05)
            assert "pin verification failed for localhost" in info.value.details()
    live.close()


def _ok(call: Any, message: bytes) -> bool:
    try:
        return bool(call(message, timeout=2) == message)
    except Exception:
        return False


def test_a_changed_file_is_read_once_it_stopped_changing(tmp_path: Path, chain: Chain, spare: Chain) -> None:
    """Half of a policy written in place can be a valid, smaller policy: polling waits for one quiet poll."""
    path = tmp_path / "policy.toml"
    write_policy(path, pin(chain.ders[0]), pin(spare.ders[0]))
    live = LivePolicy.from_file(path, interval=None)
    other = f'[[domains]]\nhost = "other.example"\npins = ["{pin(spare.ders[1])}", "{pin(spare.ders[2])}"]\n'
    full = path.read_text() + other
    half = full[: full.index("[[domains]]", 1)]  # the first entry only: a valid policy on its own
    path.write_text(half + "# ...")  # written in place, not finished yet
    live._poll()
    assert live.serial == 1  # changed since the last poll: not read yet
    path.write_text(full)
    live._poll()
    assert live.serial == 1  # changed again: not yet
    live._poll()
    assert live.serial == 2 and len(live.entries) == 2


def test_settings_made_on_a_live_policy_reach_every_version(tmp_path: Path, chain: Chain, spare: Chain) -> None:
    # `live.hpkp = True` used to set an attribute of the wrapper only: reading it back said True while
    # every decision, made by the version in force, still had HPKP off.
    path = tmp_path / "policy.toml"
    write_policy(path, pin(chain.ders[1]), pin(spare.ders[1]))
    live = LivePolicy.from_file(path, interval=None)
    first = live.current
    reporter = object()
    live.hpkp = True
    live.cache_ttl = 1.5
    live.reporter = reporter
    assert (first.hpkp, first.cache_ttl, first.reporter) == (True, 1.5, reporter)
    assert (live.hpkp, live.cache_ttl, live.reporter) == (True, 1.5, reporter)
    # A version from the source, and one given by hand, get them too.
    write_policy(path, pin(chain.ders[1]), pin(spare.ders[2]), serial=7)
    assert live.reload() and live.current is not first
    assert (live.current.hpkp, live.current.cache_ttl, live.current.reporter) == (True, 1.5, reporter)
    live.update(PinPolicy(), serial=9)
    assert (live.current.hpkp, live.current.cache_ttl, live.current.reporter) == (True, 1.5, reporter)
    # What a version is made of changes with a new version, not on the wrapper.
    for name, value in (("entries", ()), ("blocked_pins", ()), ("allow_sha1", True), ("source", "x")):
        with pytest.raises(AttributeError, match="update"):
            setattr(live, name, value)
    assert live.current.source != "x"
