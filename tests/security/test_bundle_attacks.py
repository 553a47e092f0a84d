"""Attacks on signed policy bundles and live policies: each leaves the policy in force.

The attacker controls what a device downloads (the bundle file, or the Redis
value) but not the signing key. A real TLS server on loopback holds the key
the policy in force pins; after every refused update a real handshake must
still be judged by that policy, and the refusal must say why.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ed25519

from pinengine import LivePolicy, Pin, PinMismatchError, PinPolicy, PolicyError
from pinengine import bundles as b
from pinengine._errors import (
    BundleFormatError,
    BundleSignatureError,
    ExpiredBundleError,
    StaleBundleError,
    UntrustedKeyError,
)
from pinengine.hooks.requests import pinned_session
from tests.certs import Chain, cached_chain, make_chain
from tests.tls import TLSServer

HOST = "localhost"
KEY = ed25519.Ed25519PrivateKey.generate()
ATTACKER = ed25519.Ed25519PrivateKey.generate()


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def attacker_chain() -> Chain:
    return make_chain("p256", HOST)


@pytest.fixture(scope="module")
def spare() -> Chain:
    """A key kept offline: the honest policy's backup pin."""
    return make_chain("p256", HOST)


@pytest.fixture
def server(chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(chain) as srv:
        yield srv


@pytest.fixture
def attacker_server(attacker_chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(attacker_chain) as srv:
        yield srv


def honest(chain: Chain, spare: Chain, serial: int, **kwargs: Any) -> bytes:
    return b.sign_bundle({"domains": [{"host": HOST, "pins": [pin(chain.ders[0]), pin(spare.ders[1])]}]}, KEY,
                         serial=serial, **kwargs)


def evil_policy(attacker_chain: Chain) -> dict[str, Any]:
    """What the attacker wants in force: its own key pinned for the host."""
    return {"domains": [{"host": HOST, "pins": [pin(attacker_chain.ders[0]), pin(attacker_chain.ders[1])]}]}


def reencode(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    outer = json.loads(data)
    change(outer)
    return json.dumps(outer).encode()


def tamper_payload(attacker_chain: Chain) -> Callable[[bytes], bytes]:
    def go(data: bytes) -> bytes:
        def change(outer: dict[str, Any]) -> None:
            body = json.loads(base64.b64decode(outer["payload"]))
            body["policy"] = evil_policy(attacker_chain)
            body["serial"] += 100
            outer["payload"] = base64.b64encode(json.dumps(body).encode()).decode()
        return reencode(data, change)
    return go


ATTACKS: dict[str, tuple[type[Exception], Callable[[Chain, bytes], bytes]]] = {
    "tampered payload": (BundleSignatureError, lambda ac, good: tamper_payload(ac)(good)),
    "flipped signature bit": (BundleSignatureError, lambda ac, good: reencode(good, lambda o: o.__setitem__(
        "signature", base64.b64encode(bytes([base64.b64decode(o["signature"])[0] ^ 1])
                                      + base64.b64decode(o["signature"])[1:]).decode()))),
    "signed by the attacker's key": (UntrustedKeyError, lambda ac, good: b.sign_bundle(evil_policy(ac), ATTACKER,
                                                                                        serial=999)),
    "attacker's signature under the trusted key's name": (BundleSignatureError, lambda ac, good: reencode(
        b.sign_bundle(evil_policy(ac), ATTACKER, serial=999),
        lambda o: o.__setitem__("key_id", b.key_id(KEY.public_key())))),
    "replayed older bundle (rollback)": (StaleBundleError, lambda ac, good: b.sign_bundle(evil_policy(ac), KEY,
                                                                                          serial=1)),
    "same serial, other content": (StaleBundleError, lambda ac, good: b.sign_bundle(evil_policy(ac), KEY,
                                                                                    serial=10)),
    "expired": (ExpiredBundleError, lambda ac, good: b.sign_bundle(
        evil_policy(ac), KEY, serial=50, not_after=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))),
    "oversized": (BundleFormatError, lambda ac, good: good[:-2] + b" " * b.MAX_BUNDLE_BYTES + b"}\n"),
    "not a bundle (a plain policy)": (BundleFormatError, lambda ac, good: json.dumps(
        {"serial": 99, **evil_policy(ac)}).encode()),
    "not JSON": (BundleFormatError, lambda ac, good: b"\x00\xffgarbage"),
    "deeply nested": (BundleFormatError, lambda ac, good: b"[" * 100_000 + b"]" * 100_000),
    "extra outer key": (BundleFormatError, lambda ac, good: reencode(good, lambda o: o.__setitem__("policy", 1))),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_bad_bundle_keeps_the_policy_in_force(attack: str, tmp_path: Path, chain: Chain, attacker_chain: Chain,
                                                   spare: Chain, server: TLSServer,
                                                   attacker_server: TLSServer) -> None:
    error, make = ATTACKS[attack]
    good = honest(chain, spare, serial=10)
    path = tmp_path / "device.bundle"
    path.write_bytes(good)
    live = LivePolicy.from_bundle(path, [KEY.public_key()], interval=None)
    # the attacker's server is refused unless the attacker's policy gets in force
    session = pinned_session(live, verify=server.cafile)
    assert session.get(server.url(), timeout=10).status_code == 200
    bad = make(attacker_chain, good)
    path.write_bytes(bad)
    with pytest.raises(error):
        live.reload()
    assert live.serial == 10 and live.failures == 1 and error.__name__ in (live.last_failure or "")
    # Real handshakes are still judged by the honest version.
    fresh = pinned_session(live, verify=attacker_server.cafile)
    with pytest.raises(requests.exceptions.SSLError) as info:
        fresh.get(attacker_server.url(), timeout=10)
    assert isinstance(info.value.__cause__, PinMismatchError)
    assert pinned_session(live, verify=server.cafile).get(server.url(), timeout=10).status_code == 200
    # and the high-water mark did not move
    assert (tmp_path / "device.bundle.serial").read_text().split()[0] == "10"


def test_a_tampered_serial_file_fails_closed(tmp_path: Path, chain: Chain, attacker_chain: Chain) -> None:
    path = tmp_path / "device.bundle"
    path.write_bytes(honest(chain, attacker_chain, serial=10))
    (tmp_path / "device.bundle.serial").write_text("garbage\n")
    with pytest.raises(PolicyError, match="refusing to guess"):
        LivePolicy.from_bundle(path, [KEY.public_key()], interval=None)
    (tmp_path / "device.bundle.serial").write_text(f"{2**64} {'0' * 64}\n")
    with pytest.raises(PolicyError):
        LivePolicy.from_bundle(path, [KEY.public_key()], interval=None)


@pytest.mark.parametrize("serial", ["0", "-3", str(2**64), "1.5", "true", '"12"', "1" * 5000])
def test_serial_must_be_a_64_bit_whole_number(serial: str, chain: Chain, attacker_chain: Chain) -> None:
    good = honest(chain, attacker_chain, serial=10)
    body = json.loads(base64.b64decode(json.loads(good)["payload"]))
    payload = json.dumps(body).replace('"serial": 10', f'"serial": {serial}').encode()
    signature = KEY.sign(b.FORMAT.encode() + b"\0" + payload)
    data = json.dumps({"format": b.FORMAT, "key_id": b.key_id(KEY.public_key()),
                       "payload": base64.b64encode(payload).decode(),
                       "signature": base64.b64encode(signature).decode()}).encode()
    with pytest.raises(BundleFormatError):
        b.read_bundle(data, [KEY.public_key()])


def test_parsing_cost_is_linear(chain: Chain, attacker_chain: Chain) -> None:
    """A bundle of the largest size is refused (or read) in well under a second: no superlinear step."""
    good = honest(chain, attacker_chain, serial=10)
    started = time.perf_counter()
    for filler in (b"[" * (b.MAX_BUNDLE_BYTES // 2) + b"]" * (b.MAX_BUNDLE_BYTES // 2),
                   b'{"format": "' + b"a" * (b.MAX_BUNDLE_BYTES - 20) + b'"}',
                   reencode(good, lambda o: o.__setitem__("payload", "A" * (b.MAX_BUNDLE_BYTES - 200)))):
        with pytest.raises(BundleFormatError):
            b.read_bundle(filler, [KEY.public_key()])
    assert time.perf_counter() - started < 5


def test_a_policy_swap_racing_four_handshake_threads(chain: Chain, attacker_chain: Chain, server: TLSServer) -> None:
    """Bundles swapping between pinning the server and refusing it, under 4 threads of real handshakes.

    Every handshake's outcome matches one complete version: accepted with the
    honest entry, or refused listing exactly the other version's pins.
    """
    accept = {"domains": [{"host": HOST, "pins": [pin(chain.ders[0]), pin(chain.ders[1])]}]}
    refuse = evil_policy(attacker_chain)
    live = LivePolicy.from_bundle(b.sign_bundle(accept, KEY, serial=1), [KEY.public_key()])
    stop = threading.Event()
    errors: list[str] = []
    outcomes = {"accepted": 0, "refused": 0}
    accept_entry_host = PinPolicy.from_mapping(accept).entries[0].host

    def worker() -> None:
        session = pinned_session(live, verify=server.cafile)
        while not stop.is_set():
            session.close()  # a new handshake per request
            try:
                session.get(server.url(), timeout=10)
                outcomes["accepted"] += 1
            except requests.exceptions.SSLError as exc:
                cause = exc.__cause__
                pinned = str(cause).split("Pinned keys")[-1]
                if not isinstance(cause, PinMismatchError) or pin(attacker_chain.ders[0]) not in pinned \
                        or pin(chain.ders[0]) in pinned:
                    errors.append(f"refusal not from one version: {exc!r}")
                outcomes["refused"] += 1
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(repr(exc))

    signed = [b.sign_bundle(refuse if i % 2 == 0 else accept, KEY, serial=i + 2) for i in range(200)]
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for data in signed:
            assert live.update_bundle(data)
            time.sleep(0.002)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
    assert live.serial == 201 and accept_entry_host == HOST
    assert outcomes["accepted"] > 0 and outcomes["refused"] > 0, outcomes
