"""Fleet propagation: LivePolicy.from_redis and ``pinengine policy publish`` against a real redis-server."""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from pinengine import LivePolicy, Pin, PinMismatchError, PinPolicy, PolicyError
from pinengine import bundles as b
from pinengine.cli import main
from tests import redis_server
from tests.certs import Chain, cached_chain, make_chain

pytest.importorskip("redis")
import redis

HOST = "localhost"
ROOT = Path(__file__).resolve().parent.parent


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def write_policy(path: Path, *pins: str) -> Path:
    path.write_text('[[domains]]\nhost = "localhost"\npins = [' + ", ".join(f'"{p}"' for p in pins) + "]\n")
    return path


def publish(url: str, key: str, path: Path, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["policy", "publish", "--store", url, "--key", key, str(path), *extra], out=out), out.getvalue()


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def spare() -> Chain:
    return make_chain("p256", HOST)


@pytest.fixture
def key(request: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    name = f"pinengine-test:{request.node.name}:{os.getpid()}"
    yield name
    redis.Redis.from_url(redis_url).delete(name)


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def test_publish_reaches_a_follower_within_a_second(tmp_path: Path, redis_url: str, key: str, chain: Chain,
                                                    spare: Chain) -> None:
    path = write_policy(tmp_path / "policy.toml", pin(chain.ders[0]), pin(spare.ders[0]))
    assert publish(redis_url, key, path) == (0, f"published serial 1 to {key}\n")
    live = LivePolicy.from_redis(redis_url, key, interval=5.0)  # slow polling: pub/sub must do it
    try:
        assert live.serial == 1 and live.verify(HOST, chain.ders).status == "match"
        write_policy(path, pin(spare.ders[0]), pin(spare.ders[1]))
        time.sleep(0.3)  # the subscription is made
        started = time.monotonic()
        assert publish(redis_url, key, path)[0] == 0
        assert wait_for(lambda: live.serial == 2, timeout=5)
        assert time.monotonic() - started < 1.0
        with pytest.raises(PinMismatchError):
            live.verify(HOST, chain.ders)
        # Fail safe: a broken value, an older serial, a value without a serial keep serial 2.
        client = redis.Redis.from_url(redis_url)
        for value, reason in ((b"{broken", "invalid JSON"), (json.dumps({"serial": 1, "domains": []}), "not newer"),
                              (json.dumps({"domains": []}), "needs a serial")):
            failures = live.failures
            client.set(key, value)
            client.publish(f"{key}:published", "x")
            assert wait_for(lambda n=failures: live.failures > n, timeout=5), reason
            assert live.serial == 2 and reason in (live.last_failure or "")
        with pytest.raises(PinMismatchError):
            live.verify(HOST, chain.ders)
        # publish refuses a serial the fleet would refuse
        code, _ = publish(redis_url, key, path, "--serial", "2")
        assert code == 0  # the broken value holds no serial: 2 is above it
        assert wait_for(lambda: live.failures >= 4 or live.serial == 2)
        client.set(key, json.dumps({"serial": 9, "domains": []}))
        code, _ = publish(redis_url, key, path, "--serial", "9")
        assert code == 1
    finally:
        live.close()


def test_bundles_through_redis(tmp_path: Path, redis_url: str, key: str, chain: Chain, spare: Chain) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    signer = ed25519.Ed25519PrivateKey.generate()
    good = {"domains": [{"host": HOST, "pins": [pin(chain.ders[0]), pin(spare.ders[0])]}]}
    bundle = tmp_path / "policy.bundle"
    bundle.write_bytes(b.sign_bundle(good, signer, serial=3))
    assert publish(redis_url, key, bundle)[0] == 0
    live = LivePolicy.from_redis(redis_url, key, trusted_keys=[signer.public_key()], interval=0.1)
    try:
        assert live.serial == 3
        # A plain policy is refused where bundles are required, even with a higher serial.
        plain = write_policy(tmp_path / "plain.toml", pin(spare.ders[0]), pin(spare.ders[1]))
        assert publish(redis_url, key, plain)[0] == 0
        assert wait_for(lambda: live.failures == 1)
        assert live.serial == 3 and "BundleFormatError" in (live.last_failure or "")
        time.sleep(0.35)  # three more polls of the same refused value: refused once, not once per poll
        assert live.failures == 1
        bundle.write_bytes(b.sign_bundle({"domains": []}, signer, serial=5))  # the plain policy took 4
        assert publish(redis_url, key, bundle)[0] == 0
        assert wait_for(lambda: live.serial == 5)
    finally:
        live.close()


def test_unreachable_redis_at_start(chain: Chain) -> None:
    url = f"redis://127.0.0.1:{redis_server.free_port()}/0"
    with pytest.raises(PolicyError, match="Redis cannot be read"):
        LivePolicy.from_redis(url, "k", timeout=0.2)
    fallback = PinPolicy()
    live = LivePolicy.from_redis(url, "k", fallback=fallback, timeout=0.2, interval=0.05)
    try:
        assert live.current is fallback and live.serial == 0
        assert wait_for(lambda: live.source_errors >= 2)
        assert "Redis cannot be read" in (live.status()["last_source_error"] or "")
    finally:
        live.close()


class Follower:
    """One gateway process following ``key`` (tests/live_follower.py)."""

    def __init__(self, url: str, key: str, backend: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if backend == "python":
            env["PINENGINE_NO_EXTENSIONS"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.live_follower", url, key], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return self.lines.get(timeout=timeout)

    def status(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("status\n")
        self.process.stdin.flush()
        while True:
            line = self.next()
            if "status" in line:
                return dict(line["status"])

    def quit(self) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        except OSError:
            pass

    def wait(self) -> None:
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_eight_processes_switch_within_a_second_and_survive_an_outage(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, chain: Chain, spare: Chain, backend: str
) -> None:
    """The followers are separate processes on the backend under test (a few seconds in all)."""
    binary = shutil.which("redis-server")
    if binary is None or os.environ.get("PINENGINE_SKIP_REDIS", "") not in ("", "0"):
        pytest.skip("no redis-server")
    directory = tmp_path_factory.mktemp("redis-fleet")
    server = redis_server.start(binary, directory)
    key = "fleet:policy"
    path = write_policy(tmp_path / "policy.toml", pin(chain.ders[0]), pin(spare.ders[0]))
    assert publish(server.url, key, path)[0] == 0
    followers = [Follower(server.url, key, backend) for _ in range(8)]
    try:
        for f in followers:
            ready = f.next(timeout=30)
            assert ready["ready"] and ready["serial"] == 1 and ready["backend"] == backend
        time.sleep(0.5)  # subscriptions made
        published = time.time()
        assert publish(server.url, key, path, "--serial", "2")[0] == 0
        lags = []
        for f in followers:
            line = f.next(timeout=5)
            assert line["serial"] == 2
            lags.append(line["at"] - published)
        assert max(lags) < 1.0, lags
        # Redis goes away: every follower keeps serial 2 and notices the outage.
        server.stop()
        time.sleep(1.0)
        for f in followers:
            status = f.status()
            assert status["serial"] == 2 and status["source_errors"] >= 1 and status["failures"] == 0
        # Redis comes back (empty, on the same port): the next publish reaches everyone again.
        server = redis_server.RedisServer(binary, directory, server.port)
        assert server.wait_ready(10)
        published = time.time()
        assert publish(server.url, key, path, "--serial", "3")[0] == 0
        lags = []
        for f in followers:
            line = f.next(timeout=10)
            assert line["serial"] == 3
            lags.append(line["at"] - published)
        # pub/sub resubscribes within its retry interval; polling (0.5 s) catches up otherwise
        assert max(lags) < 2.0, lags
    finally:
        for f in followers:
            f.quit()
        for f in followers:
            f.wait()
        server.stop()
