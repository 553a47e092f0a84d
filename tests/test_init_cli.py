"""`pinengine init`: a starter policy from live loopback servers (issue 15, item 2)."""

from __future__ import annotations

import io
import json
import socket
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pinengine import Pin, PinPolicy
from pinengine._errors import PolicyError
from pinengine.cli import main
from tests.certs import Chain, make_cert, make_chain, new_key
from tests.tls import TLSServer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def next_csr(tmp_path: Path) -> tuple[Path, str]:
    """A CSR for the next key, as an operator keeps one offline, and its pin."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
           .sign(key, hashes.SHA256()))
    path = tmp_path / "next.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64
    import hashlib

    return path, "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_init_with_a_backup_writes_a_policy_that_loads_and_matches(tmp_path: Path) -> None:
    chain = make_chain("p256", "localhost")
    csr, backup = next_csr(tmp_path)
    with TLSServer(chain) as server:
        out_file = tmp_path / "policy.toml"
        code, _ = run("init", f"localhost:{server.port}", "--backup", str(csr), "--cafile", server.cafile,
                      "-o", str(out_file))
        assert code == 0
        # never overwrites
        assert run("init", f"localhost:{server.port}", "--backup", str(csr), "--cafile", server.cafile,
                   "-o", str(out_file))[0] == 2
    text = out_file.read_text()
    doc = tomllib.loads(text)
    assert doc["domains"] == [{"host": "localhost", "pins": [str(Pin.from_certificate(chain.ders[1])), backup],
                               "mode": "report-only"}]
    assert "NOT READY" not in text
    policy = PinPolicy.from_file(out_file)
    result = policy.verify("localhost", chain.ders)
    assert result.status == "match" and result.matches[0].index == 1


def test_init_without_a_backup_leaves_a_placeholder_and_does_not_load(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    chain = make_chain("p256", "localhost")
    with TLSServer(chain) as server:
        code, text = run("init", f"localhost:{server.port}", "--cafile", server.cafile)
    assert code == 0
    assert "BACKUP PIN NEEDED" in text and text.startswith("# NOT READY")
    assert "add a backup pin" in capsys.readouterr().err
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match="backup pin"):
        PinPolicy.from_file(path)


def test_init_json_and_dead_hosts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chain = make_chain("p256", "localhost")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    with TLSServer(chain) as server, silent:
        code, out = run("init", "--format", "json", f"127.0.0.1:{silent.getsockname()[1]}",
                        f"localhost:{server.port}", "--backup", str(Pin.from_certificate(make_chain().ders[0])),
                        "--cafile", server.cafile, "--timeout", "1")
    assert code == 2  # the worst outcome: a host was left out
    assert "left out" in capsys.readouterr().err
    doc = json.loads(out)
    assert [d["host"] for d in doc["domains"]] == ["localhost"]
    PinPolicy.from_mapping(doc)


def test_server_chosen_subjects_cannot_write_policy_lines(tmp_path: Path) -> None:
    # An intermediate whose subject carries a newline and a TOML table: it
    # may only ever reach a comment.
    root_key, inter_key, leaf_key = new_key("p256"), new_key("p256"), new_key("p256")
    root = make_cert("root", root_key, None, root_key, ca=True)
    inter = make_cert('x"\n[[domains]]\nhost = "evil.example"\npins = []\n#', inter_key, root, root_key, ca=True)
    leaf = make_cert("localhost", leaf_key, inter, inter_key, ca=False, sans=("localhost",))
    chain = Chain(leaf, inter, root, leaf_key, inter_key, root_key)
    with TLSServer(chain) as server:
        code, text = run("init", f"localhost:{server.port}", "--cafile", server.cafile,
                         "--backup", str(Pin.from_certificate(make_chain().ders[0])))
    assert code == 0
    doc = tomllib.loads(text)
    assert [d["host"] for d in doc["domains"]] == ["localhost"]
    assert all(line.lstrip().startswith(("#", "[", "host", "pins", '"', "]", "mode")) or not line.strip()
               for line in text.splitlines())
