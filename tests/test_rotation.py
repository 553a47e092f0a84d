"""Rotation planning: warnings for pins on certificates about to expire (pinengine.rotation, pinengine check)."""

from __future__ import annotations

import datetime as dt
import io
import socket
from pathlib import Path

import pytest

from pinengine import Pin, PinPolicy
from pinengine.cli import main
from pinengine.rotation import (
    ChainSample,
    RotationFinding,
    chain_findings,
    entry_findings,
    plan_rotation,
)
from tests.certs import Chain, make_cert, make_chain, new_key, pem
from tests.tls import TLSServer

HOST = "svc.example"
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def days(n: float) -> dt.datetime:
    # an hour more, so "in N days" does not depend on how long the test takes
    return NOW + dt.timedelta(days=n, hours=1)


def chain_expiring(leaf_days: float, inter_days: float, root_days: float = 3650, host: str = HOST) -> Chain:
    """root -> intermediate -> leaf with the given lifetimes left (negative: already expired)."""
    before = NOW - dt.timedelta(days=400)
    root_key = new_key("p256")
    root = make_cert("rotation root", root_key, None, root_key, ca=True, not_before=before,
                     not_after=days(root_days))
    inter_key = new_key("p256")
    inter = make_cert("rotation intermediate", inter_key, root, root_key, ca=True, not_before=before,
                      not_after=days(inter_days))
    leaf_key = new_key("p256")
    leaf = make_cert(host, leaf_key, inter, inter_key, ca=False, sans=(host,), not_before=before,
                     not_after=days(leaf_days))
    return Chain(leaf, inter, root, leaf_key, inter_key, root_key)


@pytest.fixture(scope="module")
def soon() -> Chain:
    """Leaf expires in 5 days, intermediate in 10, root in 10 years."""
    return chain_expiring(5, 10)


@pytest.fixture(scope="module")
def spare() -> Chain:
    """Keys for backup pins."""
    return make_chain("p256", HOST)


def pin(der: bytes, kind: str = "spki") -> str:
    return str(Pin.from_certificate(der, kind=kind))


def policy(*pins: str, host: str = HOST, **extra: object) -> PinPolicy:
    entry: dict[str, object] = {"host": host, "pins": list(pins), "require_backup_pin": len(pins) > 1}
    entry.update(extra)
    return PinPolicy.from_mapping({"domains": [entry]})


def codes(findings: list[RotationFinding]) -> list[tuple[str, str]]:
    return [(f.severity, f.code) for f in findings]


def test_pinned_certificate_expiring_within_the_window(soon: Chain, spare: Chain) -> None:
    p = policy(pin(soon.ders[1]), pin(spare.ders[1]))  # the intermediate's key, and a backup
    found = chain_findings(p, [ChainSample(soon.ders, label="chain.pem")], now=NOW)
    assert codes(found) == [("warning", "pin-cert-expiring")]  # the leaf (5 days) carries no pin: not reported
    (f,) = found
    assert f.entry == HOST and f.source == "chain.pem" and f.pins == (Pin.parse(pin(soon.ders[1])),)
    assert f.not_after == days(10)
    assert "certificate 1 (intermediate, CN=rotation intermediate" in f.message
    assert "in 10 days" in f.message and f"backup pin(s) for the next key: {pin(spare.ders[1])}" in f.message
    # outside a shorter window there is nothing to say
    assert chain_findings(p, [ChainSample(soon.ders)], window=7, now=NOW) == []


def test_only_matching_pin_expiring_with_no_backup(soon: Chain, spare: Chain) -> None:
    p = policy(pin(soon.ders[0]))  # only the leaf's key, no backup
    found = chain_findings(p, [ChainSample(soon.ders, label="chain.pem")], now=NOW)
    assert codes(found) == [("warning", "pin-cert-expiring"), ("warning", "no-backup-pin")]
    assert "in 5 days" in found[0].message
    assert "no backup pin for the next key" in found[1].message
    assert "unless the renewed certificate keeps the same key" in found[1].message
    # a certificate pin can never match a renewed certificate: an error
    p = policy(pin(soon.ders[0], "certificate"))
    assert codes(chain_findings(p, [ChainSample(soon.ders)], now=NOW)) == [
        ("warning", "pin-cert-expiring"), ("error", "no-backup-pin")]
    # with a backup pin for the next key: only the expiry warning
    p = policy(pin(soon.ders[0]), pin(spare.ders[0]))
    assert codes(chain_findings(p, [ChainSample(soon.ders)], now=NOW)) == [("warning", "pin-cert-expiring")]


def test_a_pin_on_a_lasting_certificate_is_enough(soon: Chain) -> None:
    p = policy(pin(soon.ders[0]), pin(soon.ders[2]))  # leaf (5 days) and root (10 years)
    found = chain_findings(p, [ChainSample(soon.ders)], now=NOW)
    assert codes(found) == [("warning", "pin-cert-expiring")]
    assert "certificate 0 (leaf" in found[0].message


def test_expired_pinned_certificate_is_an_error(spare: Chain) -> None:
    old = chain_expiring(-2, 300)
    p = policy(pin(old.ders[0]), pin(spare.ders[0]))
    found = chain_findings(p, [ChainSample(old.ders)], now=NOW)
    assert codes(found) == [("error", "pin-cert-expired")]
    assert "which expired on" in found[0].message


def test_positions_are_respected(soon: Chain, spare: Chain) -> None:
    # the leaf's key pinned for the root position only: it does not match this chain
    p = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": [
        {"pin": pin(soon.ders[0]), "position": "root"}, pin(spare.ders[0])]}]})
    assert codes(chain_findings(p, [ChainSample(soon.ders, label="c")], now=NOW)) == [("warning", "chain-unmatched")]
    found = chain_findings(p, [ChainSample(soon.ders, HOST, "c")], now=NOW)
    assert codes(found) == [("error", "no-matching-pin")]
    assert "connections would be refused" in found[0].message


def test_named_hosts_unmatched_chains_and_report_only(soon: Chain, spare: Chain) -> None:
    p = policy(pin(spare.ders[0]), pin(spare.ders[1]), mode="report-only")
    found = chain_findings(p, [ChainSample(soon.ders, HOST, "c"), ChainSample(soon.ders, "other.example", "d")],
                           now=NOW)
    assert codes(found) == [("error", "no-matching-pin"), ("warning", "no-entry")]
    assert "reported (report-only)" in found[0].message
    assert "no entry covers other.example" in found[1].message


def test_entry_expiry(soon: Chain, spare: Chain) -> None:
    p = PinPolicy.from_mapping({"domains": [
        {"host": "gone.example", "pins": [pin(spare.ders[0]), pin(spare.ders[1])], "expires": "2020-01-01"},
        {"host": "soon.example", "pins": [pin(spare.ders[0]), pin(spare.ders[1])],
         "expires": (NOW + dt.timedelta(days=12)).date().isoformat()},
        {"host": "later.example", "pins": [pin(spare.ders[0]), pin(spare.ders[1])],
         "expires": (NOW + dt.timedelta(days=200)).date().isoformat()},
    ]})
    found = entry_findings(p, now=NOW)
    assert codes(found) == [("error", "entry-expired"), ("warning", "entry-expiring")]
    assert [f.entry for f in found] == ["gone.example", "soon.example"]
    assert codes(entry_findings(p, window=365, now=NOW))[-1] == ("warning", "entry-expiring")
    assert len(plan_rotation(p, [ChainSample(soon.ders)], now=NOW)) == 3  # + the chain matches no entry


# -- pinengine check --chain / --host -----------------------------------------------------------


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def write(tmp_path: Path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def toml_policy(tmp_path: Path, *pins: str, host: str = HOST) -> str:
    quoted = ", ".join(f'"{p}"' for p in pins)
    body = f'[[domains]]\nhost = "{host}"\npins = [{quoted}]\n'
    if len(pins) < 2:
        body += "require_backup_pin = false\n"
    return write(tmp_path, "policy.toml", body)


def test_check_with_chain_files(tmp_path: Path, soon: Chain, spare: Chain) -> None:
    chain_file = write(tmp_path, "chain.pem", b"".join(pem(c) for c in soon.certs))
    lasting = make_chain("p256", HOST)
    lasting_file = write(tmp_path, "lasting.pem", b"".join(pem(c) for c in lasting.certs))
    path = toml_policy(tmp_path, pin(soon.ders[1]), pin(spare.ders[1]))
    code, out = run("check", path, "--chain", chain_file)
    assert code == 0, out
    warning = (
        f"warning: entry '{HOST}': pin {pin(soon.ders[1])} is carried by certificate 1 (intermediate, "
        f"CN=rotation intermediate,O=pinengine tests) of {chain_file}, which expires on "
        f"{days(10):%Y-%m-%d}, in 10 days; backup pin(s) for the next key: {pin(spare.ders[1])}"
    )
    assert out.splitlines() == [warning, f"{path}: 1 entry, 1 chain, 0 errors, 1 warning"]
    assert run("check", "--strict", path, "--chain", chain_file)[0] == 1
    assert run("check", path, "--window", "7", "--chain", chain_file) == (
        0, f"{path}: 1 entry, 1 chain, 0 errors, 0 warnings\n")
    # several chains; one named for the host, which its pins do not match
    code, out = run("check", path, "--chain", chain_file, f"{HOST}={lasting_file}")
    assert code == 1
    assert f"error: entry '{HOST}': {lasting_file} matches none of its pins: connections would be refused" in out
    assert out.endswith(f"{path}: 1 entry, 2 chains, 1 error, 1 warning\n")


def test_check_only_pin_expiring_without_backup(tmp_path: Path, soon: Chain) -> None:
    chain_file = write(tmp_path, "chain.pem", b"".join(pem(c) for c in soon.certs))
    path = write(tmp_path, "p.toml", f'[[domains]]\nhost = "{HOST}"\npins = ["{pin(soon.ders[0], "certificate")}"]\n'
                                      "require_backup_pin = false\n")
    code, out = run("check", path, "--chain", chain_file)
    assert code == 1
    assert "error: entry 'svc.example': every pin matching" in out and "no backup pin for the next key" in out


def test_check_chain_errors(tmp_path: Path, soon: Chain, spare: Chain) -> None:
    path = toml_policy(tmp_path, pin(soon.ders[1]), pin(spare.ders[1]))
    assert run("check", path, "--chain", str(tmp_path / "missing.pem"))[0] == 2
    assert run("check", path, "--chain", write(tmp_path, "junk.pem", b"not a certificate"))[0] == 2
    assert run("check", path, "--window", "-1")[0] == 2


def test_check_live_host(tmp_path: Path, spare: Chain) -> None:
    near = chain_expiring(4, 2000, host="localhost")
    path = toml_policy(tmp_path, pin(near.ders[0]), host="localhost")
    with TLSServer(near) as server:
        code, out = run("check", path, "--host", f"localhost:{server.port}", "--cafile", server.cafile)
        assert code == 0, out
        lines = out.splitlines()
        assert lines[0] == "warning: entry 'localhost': only one pin and no backup pin (require_backup_pin = false)"
        assert lines[1].startswith(f"warning: entry 'localhost': pin {pin(near.ders[0])} is carried by certificate 0 "
                                   f"(leaf, CN=localhost,O=pinengine tests) of localhost:{server.port}")
        assert "in 4 days" in lines[1]
        assert lines[2].startswith("warning: entry 'localhost': every pin matching")
        assert lines[3] == f"{path}: 1 entry, 1 chain, 0 errors, 3 warnings"
        # a server the trust store does not validate: an error finding, not a crash
        code, out = run("check", path, "--host", f"localhost:{server.port}")
        assert code == 1 and "certificate validation failed" in out
    assert run("check", path, "--host", f"localhost:{server.port}", "--timeout", "2")[0] == 2  # nobody listens


def test_check_every_host_even_when_some_are_dead(tmp_path: Path) -> None:
    # Two live servers with a dead one (accepts TCP, never answers the
    # handshake) and a closed port between them: every host is reported, in
    # the order given, then the summary; the exit status is the worst outcome.
    near = chain_expiring(4, 2000, host="localhost")
    path = toml_policy(tmp_path, pin(near.ders[0]), host="localhost")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    with TLSServer(near) as first, TLSServer(near) as second, silent:
        hosts = [f"localhost:{first.port}", f"127.0.0.1:{silent.getsockname()[1]}",
                 f"127.0.0.1:{closed_port}", f"localhost:{second.port}"]
        code, out = run("check", path, *[a for h in hosts for a in ("--host", h)],
                        "--cafile", first.cafile, "--timeout", "1")
    assert code == 2, out
    lines = out.splitlines()
    unreachable = [ln for ln in lines if ln.startswith("unreachable: ")]
    assert [ln.split(": ")[1] for ln in unreachable] == hosts[1:3]
    assert "timed out" in unreachable[0]
    for live in (hosts[0], hosts[3]):
        assert any(f"of {live}" in ln for ln in lines), live  # planned against both live chains
    assert lines[-1] == f"{path}: 1 entry, 2 chains, 0 errors, 5 warnings, 2 unreachable"
