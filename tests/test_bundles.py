"""Signed policy bundles (pinengine.bundles), LivePolicy.from_bundle, and ``pinengine policy`` / ``check``."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ed25519

from pinengine import LivePolicy, Pin, PinMismatchError, PinPolicy, PolicyError
from pinengine import bundles as b
from pinengine._errors import BundleError, BundleFormatError, StaleBundleError, UntrustedKeyError
from pinengine.cli import main
from pinengine.hooks.requests import pinned_session
from tests.certs import Chain, cached_chain, make_chain, rotated
from tests.tls import TLSServer

HOST = "localhost"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def mapping(*pins: str) -> dict[str, Any]:
    return {"domains": [{"host": HOST, "pins": list(pins)}]}


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def spare() -> Chain:
    return make_chain("p256", HOST)


@pytest.fixture(scope="module")
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def server(chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(chain) as srv:
        yield srv


def test_sign_and_read_round_trip(key: Any, chain: Chain, spare: Chain) -> None:
    policy = mapping(pin(chain.ders[0]), pin(spare.ders[0]))
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    data = b.sign_bundle(policy, key, serial=7, not_after=later)
    bundle = b.read_bundle(data, [key.public_key()])
    assert bundle.serial == 7
    assert PinPolicy.from_mapping(bundle.policy).to_mapping() == PinPolicy.from_mapping(policy).to_mapping()
    assert bundle.key_id == b.key_id(key.public_key()) and bundle.key_id.startswith("ed25519:")
    assert bundle.not_after is not None and abs((bundle.not_after - later).total_seconds()) < 1
    # a PinPolicy signs too; PEM text, PEM bytes and raw public keys are trusted keys
    from cryptography.hazmat.primitives import serialization

    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    again = b.sign_bundle(PinPolicy.from_mapping(policy), key, serial=8)
    for trusted in (pem, pem.decode(), raw):
        assert b.read_bundle(again, [trusted]).serial == 8


def test_signing_refuses_what_could_never_load(key: Any) -> None:
    with pytest.raises(PolicyError):
        b.sign_bundle({"domains": [{"host": HOST, "pins": []}]}, key, serial=1)
    for serial in (0, -1, 2**64, True, 1.5):
        with pytest.raises(BundleError, match="serial"):
            b.sign_bundle({"domains": []}, key, serial=serial)  # type: ignore[arg-type]
    with pytest.raises(BundleError, match="no trusted keys"):
        b.read_bundle(b.sign_bundle({"domains": []}, key, serial=1), [])


def test_from_bundle_follows_a_bundle_file_with_a_real_session(
    tmp_path: Path, key: Any, chain: Chain, spare: Chain, server: TLSServer
) -> None:
    new = rotated(chain, HOST)
    path = tmp_path / "policy.bundle"
    path.write_bytes(b.sign_bundle(mapping(pin(chain.ders[0]), pin(spare.ders[0])), key, serial=1))
    live = LivePolicy.from_bundle(path, [key.public_key()], interval=0.05)
    try:
        assert (tmp_path / "policy.bundle.serial").read_text().split()[0] == "1"
        session = pinned_session(live, verify=server.cafile)
        assert session.get(server.url(), timeout=10).status_code == 200
        path.write_bytes(b.sign_bundle(mapping(pin(new.ders[0]), pin(spare.ders[0])), key, serial=2))
        deadline = time.monotonic() + 10
        while live.serial != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert live.serial == 2 and live.status()["source"] == "bundle"
        fresh = pinned_session(live, verify=server.cafile)
        with pytest.raises(requests.exceptions.SSLError) as info:
            fresh.get(server.url(), timeout=10)
        assert isinstance(info.value.__cause__, PinMismatchError)
    finally:
        live.close()
    # The high-water mark survives a restart: the older bundle is refused at start.
    assert (tmp_path / "policy.bundle.serial").read_text().split()[0] == "2"
    path.write_bytes(b.sign_bundle(mapping(pin(chain.ders[0]), pin(spare.ders[0])), key, serial=1))
    with pytest.raises(StaleBundleError):
        LivePolicy.from_bundle(path, [key.public_key()], interval=None)
    # The accepted bundle itself loads again after a restart.
    path.write_bytes(b.sign_bundle(mapping(pin(new.ders[0]), pin(spare.ders[1])), key, serial=3))
    first = LivePolicy.from_bundle(path, [key.public_key()], interval=None)
    second = LivePolicy.from_bundle(path, [key.public_key()], interval=None)
    assert first.serial == second.serial == 3


def test_bundles_from_bytes_and_update_bundle(key: Any, chain: Chain, spare: Chain) -> None:
    live = LivePolicy.from_bundle(b.sign_bundle(mapping(pin(chain.ders[0]), pin(spare.ders[0])), key, serial=5),
                                  [key.public_key()])
    assert live.verify(HOST, chain.ders).status == "match"
    assert live.update_bundle(b.sign_bundle(mapping(pin(spare.ders[0]), pin(spare.ders[1])), key, serial=6))
    with pytest.raises(PinMismatchError):
        live.verify(HOST, chain.ders)
    with pytest.raises(StaleBundleError):
        live.update_bundle(b.sign_bundle(mapping(pin(chain.ders[0]), pin(spare.ders[0])), key, serial=6))
    assert live.serial == 6


def test_cli_keygen_sign_verify_check(tmp_path: Path, chain: Chain, spare: Chain,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    keyfile = str(tmp_path / "signing-key.pem")
    code, out = run("policy", "keygen", "-o", keyfile)
    assert code == 0 and "key id ed25519:" in out
    assert (Path(keyfile).stat().st_mode & 0o777) == 0o600
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[domains]]\nhost = "localhost"\npins = ["{pin(chain.ders[0])}", "{pin(spare.ders[0])}"]\n')
    bundle = str(tmp_path / "policy.bundle")
    code, out = run("policy", "sign", "--key", keyfile, str(policy), "-o", bundle, "--serial", "42",
                    "--not-after", "2999-01-01")
    assert code == 0 and "serial 42" in out
    code, out = run("policy", "verify-bundle", bundle, "--trusted-key", keyfile + ".pub", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["valid"] and doc["serial"] == 42 and doc["domains"] == 1
    assert doc["not_after"].startswith("2999-01-02")
    code, out = run("policy", "verify-bundle", bundle, "--trusted-key", keyfile + ".pub", "--min-serial", "42")
    assert code == 1 and "StaleBundleError" in out
    other = str(tmp_path / "other.pem")
    run("policy", "keygen", "-o", other)
    code, out = run("policy", "verify-bundle", bundle, "--trusted-key", other + ".pub")
    assert code == 1 and "UntrustedKeyError" in out and "not trusted" in out
    # check lints the policy inside a bundle whose signature checks out
    code, out = run("check", bundle, "--trusted-key", keyfile + ".pub")
    assert code == 0, out
    code, out = run("check", bundle)
    assert code == 1 and "--trusted-key" in out
    code, out = run("check", bundle, "--trusted-key", other + ".pub")
    assert code == 1 and "not trusted" in out
    # a policy that does not load is never signed
    policy.write_text('[[domains]]\nhost = "localhost"\npins = []\n')
    code, _ = run("policy", "sign", "--key", keyfile, str(policy), "-o", bundle)
    assert code == 2 and "no pins" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run("policy", "sign", "--key", keyfile, str(policy), "-o", bundle, "--serial", "0")
    assert exit_info.value.code == 2 and "whole number from 1" in capsys.readouterr().err


def test_missing_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric", None)
    with pytest.raises(BundleError, match=r"pinengine\[cryptography\]"):
        b.generate_key()


def test_read_bundle_file_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "huge.bundle"
    path.write_bytes(b"{" + b" " * b.MAX_BUNDLE_BYTES + b"}")
    with pytest.raises(BundleFormatError, match="larger than"):
        b.read_bundle_file(path)
    with pytest.raises(BundleError, match="cannot read"):
        b.read_bundle_file(tmp_path / "missing")


def test_untrusted_key_error_lists_trusted_ids(key: Any) -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(UntrustedKeyError) as info:
        b.read_bundle(b.sign_bundle({"domains": []}, other, serial=1), [key.public_key()])
    assert b.key_id(key.public_key()) in str(info.value) and b.key_id(other.public_key()) in str(info.value)


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keyfile = str(tmp_path / "k.pem")
    assert run("policy", "keygen", "-o", keyfile)[0] == 0
    assert run("policy", "keygen", "-o", keyfile)[0] == 2  # never overwrites a key
    policy = tmp_path / "p.toml"
    policy.write_text("domains = []\n")
    assert run("policy", "publish", "--store", str(tmp_path / "pins.sqlite3"), str(policy))[0] == 2
    assert run("policy", "sign", "--key", str(tmp_path / "missing.pem"), str(policy), "-o", "-")[0] == 2
    assert run("policy")[0] == 2
    err = capsys.readouterr().err
    assert "File exists" in err and "missing.pem" in err and "give an action" in err
    assert "redis" in err.lower()  # the store URL is refused by the Redis client, not a traceback
