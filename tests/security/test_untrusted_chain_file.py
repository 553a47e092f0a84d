"""Attack: a chain file is whatever its author put in it (issue 11, finding 6).

``pinengine verify --host H --policy P chain.pem`` used to treat the file as
a validated chain: an attacker's leaf with the pinned CA certificates
appended was accepted ("matched certificate 1"). The files here are captured
from a real TLS server on loopback, as an operator would save one.
Offline, only the leaf may count, unless ``--cafile`` makes the command
validate the file itself; then the pins are checked on the chain the
verifier built.
"""

from __future__ import annotations

import io
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pinengine import cli
from pinengine._live import fetch_chains
from pinengine.cli import main
from tests.certs import Chain
from tests.security.webpki_chain import Hierarchy, hierarchy, issue, new_key, write_pem
from tests.tls import TLSServer

HOST = "www.example.com"
ROOT = Path(__file__).resolve().parent.parent.parent


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def pinned() -> Hierarchy:
    """The operator's PKI: the policy pins its intermediate."""
    return hierarchy(HOST)


@pytest.fixture
def policy(tmp_path: Path, pinned: Hierarchy) -> Path:
    backup = hierarchy(HOST)
    path = tmp_path / "policy.toml"
    path.write_text(
        f'[[domains]]\nhost = "**.example.com"\npins = ["{pinned.pin(pinned.intermediate)}", '
        f'"{backup.pin(backup.intermediate)}"]\n'
    )
    return path


@pytest.fixture
def roots(tmp_path: Path, pinned: Hierarchy) -> Path:
    return write_pem(tmp_path / "roots.pem", pinned.root)


def served_by(server_chain: Chain, tmp_path: Path, *, send_intermediate: bool = True,
              extra: tuple[x509.Certificate, ...] = ()) -> Path:
    """The chain a real TLS server on loopback sends, saved to a PEM file (as the operator would)."""
    with TLSServer(server_chain, send_intermediate=send_intermediate, extra=extra) as server:
        live = fetch_chains("127.0.0.1", server.port, server_name=HOST, insecure=True, timeout=10)
    path = tmp_path / "served.pem"
    path.write_text("".join(ssl.DER_cert_to_PEM_cert(der) for der in live.served))
    return path


def attacker_server(pinned: Hierarchy) -> tuple[Chain, tuple[x509.Certificate, ...]]:
    """The attacker's own leaf for HOST (its own CA), with the pinned intermediate and root appended."""
    evil_key = new_key()
    evil_ca = issue("attacker CA", evil_key, None, evil_key, ca=True)
    leaf_key = new_key()
    leaf = issue(HOST, leaf_key, evil_ca, evil_key, ca=False, san=HOST)
    return Chain(leaf, evil_ca, evil_ca, leaf_key, evil_key, evil_key), (pinned.intermediate, pinned.root)


def operator_server(pinned: Hierarchy) -> Chain:
    leaf_key = new_key()
    leaf = issue(HOST, leaf_key, pinned.intermediate, pinned.intermediate_key, ca=False, san=HOST)
    return Chain(leaf, pinned.intermediate, pinned.root, leaf_key, pinned.intermediate_key, pinned.root_key)


# ---- the attack of the issue -----------------------------------------------------------------


def test_appended_pinned_ca_is_refused_without_cafile(tmp_path: Path, pinned: Hierarchy, policy: Path) -> None:
    chain, extra = attacker_server(pinned)
    path = served_by(chain, tmp_path, send_intermediate=False, extra=extra)
    code, out = run("verify", "--policy", str(policy), "--host", HOST, str(path))
    assert code == 1, out
    assert "chain: NOT validated (offline, no --cafile): only the leaf can match a pin" in out
    assert "decision: REFUSED" in out and "matched certificate 1" not in out


def test_appended_pinned_ca_is_refused_with_cafile(
    tmp_path: Path, pinned: Hierarchy, policy: Path, roots: Path
) -> None:
    chain, extra = attacker_server(pinned)
    path = served_by(chain, tmp_path, send_intermediate=False, extra=extra)
    code, out = run("verify", "--policy", str(policy), "--host", HOST, "--cafile", str(roots), str(path))
    assert code == 1, out
    assert "decision: REFUSED: chain validation failed:" in out
    assert "matched" not in out


def test_insecure_counts_only_the_leaf(tmp_path: Path, pinned: Hierarchy, policy: Path) -> None:
    chain, extra = attacker_server(pinned)
    path = served_by(chain, tmp_path, send_intermediate=False, extra=extra)
    code, out = run("verify", "--policy", str(policy), "--host", HOST, "--insecure", str(path))
    assert code == 1, out
    assert "chain: NOT validated (--insecure): only the leaf can match a pin" in out
    assert "decision: REFUSED" in out


def test_pinned_ca_sent_as_the_leaf_is_refused_with_cafile(
    tmp_path: Path, pinned: Hierarchy, policy: Path, roots: Path
) -> None:
    """The pinned intermediate itself put first: a CA certificate, not a server certificate for HOST."""
    path = write_pem(tmp_path / "ca-first.pem", pinned.intermediate, pinned.root)
    code, out = run("verify", "--policy", str(policy), "--host", HOST, "--cafile", str(roots), str(path))
    assert code == 1, out
    assert "chain validation failed" in out


# ---- the operator's own chain --------------------------------------------------------------


def test_served_chain_validated_with_cafile_matches_the_intermediate(
    tmp_path: Path, pinned: Hierarchy, policy: Path, roots: Path
) -> None:
    path = served_by(operator_server(pinned), tmp_path)
    code, out = run("verify", "--policy", str(policy), "--host", HOST, "--cafile", str(roots), str(path))
    assert code == 0, out
    assert f"chain: validated against {roots} for {HOST}" in out
    assert "decision: accepted:" in out and "matched certificate 1 (intermediate)" in out


def test_served_chain_without_cafile_matches_only_a_leaf_pin(tmp_path: Path, pinned: Hierarchy, policy: Path) -> None:
    server = operator_server(pinned)
    path = served_by(server, tmp_path)
    code, out = run("verify", "--policy", str(policy), "--host", HOST, str(path))
    assert code == 1, out  # the intermediate's pin does not count on an unvalidated file
    assert "only the leaf can match a pin" in out
    leaf_pin = pinned.pin(server.leaf)
    code, out = run("verify", "--pin", leaf_pin, "--host", HOST, str(path))
    assert code == 0, out
    assert "chain: NOT validated (offline, no --cafile)" in out and "matched certificate 0 (leaf)" in out


def test_pins_are_checked_on_the_chain_the_verifier_built(
    tmp_path: Path, pinned: Hierarchy, roots: Path
) -> None:
    """The file lacks the root and carries a stray certificate: the built chain is leaf, intermediate, root."""
    server = operator_server(pinned)
    stray = hierarchy(HOST)
    path = write_pem(tmp_path / "odd.pem", server.leaf, stray.intermediate, pinned.intermediate)
    code, out = run("verify", "--pin", pinned.pin(pinned.root), "--host", HOST, "--cafile", str(roots), str(path))
    assert code == 0, out
    assert "matched certificate 2 (root)" in out
    assert "validated chain:" in out and "chain file (differs from the validated chain):" in out
    # A pin on the stray certificate is not part of the validated chain: it cannot match.
    code, out = run("verify", "--pin", stray.pin(stray.intermediate), "--host", HOST, "--cafile", str(roots), str(path))
    assert code == 1 and "decision: REFUSED" in out


def test_chain_for_another_host_fails_validation(tmp_path: Path, pinned: Hierarchy, policy: Path, roots: Path) -> None:
    path = served_by(operator_server(pinned), tmp_path)
    code, out = run("verify", "--policy", str(policy), "--host", "evil.example.com", "--cafile", str(roots), str(path))
    assert code == 1, out
    assert "chain validation failed" in out and "subjectAltName" in out


def test_expired_chain_fails_validation(tmp_path: Path, pinned: Hierarchy, policy: Path, roots: Path) -> None:
    import datetime as dt

    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)
    leaf = issue(HOST, new_key(), pinned.intermediate, pinned.intermediate_key, ca=False, san=HOST, start=old)
    path = write_pem(tmp_path / "expired.pem", leaf, pinned.intermediate)
    code, out = run("verify", "--policy", str(policy), "--host", HOST, "--cafile", str(roots), str(path))
    assert code == 1, out
    assert "chain validation failed" in out


def test_ip_literal_host_is_validated_as_an_ip_address(tmp_path: Path, pinned: Hierarchy, roots: Path) -> None:
    leaf = issue("127.0.0.1", new_key(), pinned.intermediate, pinned.intermediate_key, ca=False, san="127.0.0.1")
    path = write_pem(tmp_path / "ip.pem", leaf, pinned.intermediate)
    pin = pinned.pin(pinned.intermediate)
    code, out = run("verify", "--pin", pin, "--host", "127.0.0.1", "--cafile", str(roots), str(path))
    assert code == 0 and "matched certificate 1 (intermediate)" in out, out
    for other in ("127.0.0.2", "::ffff:127.0.0.1", "localhost"):
        code, out = run("verify", "--pin", pin, "--host", other, "--cafile", str(roots), str(path))
        assert code == 1 and "chain validation failed" in out, (other, out)


def test_host_no_certificate_can_name_is_a_usage_error(
    tmp_path: Path, pinned: Hierarchy, policy: Path, roots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pem(tmp_path / "c.pem", operator_server(pinned).leaf, pinned.intermediate)
    code, out = run("verify", "--policy", str(policy), "--host", "*.example.com", "--cafile", str(roots), str(path))
    assert code == 2 and "decision" not in out
    assert "--host '*.example.com': a chain cannot be validated for this name" in capsys.readouterr().err


# ---- inputs around the validation --------------------------------------------------------


def test_cafile_and_insecure_together_are_a_usage_error(
    tmp_path: Path, pinned: Hierarchy, policy: Path, roots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pem(tmp_path / "c.pem", operator_server(pinned).leaf, pinned.intermediate)
    code, _ = run("verify", "--policy", str(policy), "--host", HOST, "--cafile", str(roots), "--insecure", str(path))
    assert code == 2
    assert "--insecure" in capsys.readouterr().err


def test_bad_cafile_is_a_usage_error(
    tmp_path: Path, pinned: Hierarchy, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pem(tmp_path / "c.pem", operator_server(pinned).leaf, pinned.intermediate)
    missing = tmp_path / "missing.pem"
    assert run("verify", "--policy", str(policy), "--host", HOST, "--cafile", str(missing), str(path))[0] == 2
    assert "missing.pem" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    assert run("verify", "--policy", str(policy), "--host", HOST, "--cafile", str(garbage), str(path))[0] == 2
    assert "garbage.pem" in capsys.readouterr().err


def test_too_many_certificates_in_the_chain_file(
    tmp_path: Path, pinned: Hierarchy, policy: Path, roots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    most = cli.MAX_CHAIN_FILE_CERTIFICATES
    leaf = operator_server(pinned).leaf
    ok = write_pem(tmp_path / "ok.pem", leaf, *[pinned.intermediate] * (most - 1))
    code, out = run("verify", "--policy", str(policy), "--host", HOST, "--cafile", str(roots), str(ok))
    assert code == 0, out
    big = write_pem(tmp_path / "big.pem", leaf, *[pinned.intermediate] * most)
    for extra in ((), ("--cafile", str(roots))):
        code, out = run("verify", "--policy", str(policy), "--host", HOST, *extra, str(big))
        assert code == 2 and "decision" not in out
        assert f"at most {most}" in capsys.readouterr().err


def test_cafile_without_cryptography_names_the_extra(tmp_path: Path, pinned: Hierarchy, policy: Path, roots: Path) -> None:
    path = write_pem(tmp_path / "c.pem", operator_server(pinned).leaf, pinned.intermediate)
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from pinengine.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["verify", "--policy", str(policy), "--host", HOST, "--cafile", str(roots), str(path)]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 2, done
    assert "pip install 'pinengine[cryptography]'" in done.stderr
    assert "decision" not in done.stdout


def test_example_chain_validates_against_the_example_root() -> None:
    """The README's main job: the example chain, validated offline against examples/root.pem."""
    examples = ROOT / "examples"
    code, out = run("verify", "--policy", str(examples / "policy.toml"), "--host", HOST,
                    "--cafile", str(examples / "root.pem"), str(examples / "chain.pem"))
    assert code == 0, out
    assert "matched certificate 1 (intermediate)" in out
    code, out = run("verify", "--policy", str(examples / "policy.toml"), "--host", HOST, str(examples / "chain.pem"))
    assert code == 1, out


def test_pem_is_what_the_server_sent(tmp_path: Path, pinned: Hierarchy) -> None:
    """The capture helper itself: the saved file is the served chain, in the server's order."""
    server = operator_server(pinned)
    path = served_by(server, tmp_path)
    want = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (server.leaf, server.intermediate))
    assert path.read_bytes() == want
