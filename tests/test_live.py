"""`pinengine verify HOST[:PORT]` against live servers, and agreement with curl --pinnedpubkey."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess

import pytest

from pinengine import Pin
from pinengine._live import split_target
from pinengine.cli import main
from tests.certs import Chain, make_chain
from tests.tls import TLSServer

HOST = "localhost"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def test_live_match_and_mismatch(server: TLSServer, chain: Chain) -> None:
    code, out = run("verify", f"{HOST}:{server.port}", "--pin", pin(chain.ders[1]), "--cafile", server.cafile)
    assert code == 0, out
    assert "verified chain:" in out and "matched certificate 1 (intermediate)" in out
    for der in chain.ders:
        assert pin(der) in out
    code, out = run("verify", f"{HOST}:{server.port}", "--pin", pin(make_chain().ders[0]), "--cafile", server.cafile)
    assert code == 1 and "REFUSED" in out and pin(chain.ders[0]) in out


def test_live_served_chain_shown_when_it_differs(chain: Chain) -> None:
    extra = make_chain("p256", "planted.example")
    with TLSServer(chain, extra=[extra.leaf]) as srv:
        code, out = run("verify", f"{HOST}:{srv.port}", "--pin", pin(extra.ders[0]), "--cafile", srv.cafile)
    assert code == 1
    assert "served chain (differs from the verified chain)" in out
    verified_part = out.split("served chain")[0]
    assert pin(extra.ders[0]) not in verified_part


def test_live_insecure_counts_only_the_leaf(server: TLSServer, chain: Chain) -> None:
    code, out = run("verify", f"127.0.0.1:{server.port}", "--sni", HOST, "--insecure", "--pin", pin(chain.ders[1]))
    assert code == 1 and "only the leaf" in out
    code, out = run("verify", f"127.0.0.1:{server.port}", "--sni", HOST, "--insecure", "--pin", pin(chain.ders[0]))
    assert code == 0, out


def test_live_validation_failure_and_no_server(server: TLSServer, chain: Chain) -> None:
    code, out = run("verify", f"{HOST}:{server.port}", "--pin", pin(chain.ders[0]))  # test CA not trusted
    assert code == 1 and "certificate validation failed" in out
    s = socket.socket()  # a port where nothing listens once this probe socket is gone
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    code, _ = run("verify", f"127.0.0.1:{closed}", "--pin", pin(chain.ders[0]), "--timeout", "2")
    assert code == 2


def test_live_ipv6_literal(chain: Chain) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    v6 = make_chain("p256", HOST, ("::1",))
    with TLSServer(v6, host="::1") as srv:
        code, out = run("verify", f"[::1]:{srv.port}", "--pin", pin(v6.ders[0]), "--cafile", srv.cafile)
    assert code == 0, out


@pytest.mark.parametrize(
    "text, want",
    [("example.com", ("example.com", 443)), ("example.com:8443", ("example.com", 8443)),
     ("[::1]:8443", ("::1", 8443)), ("[::1]", ("::1", 443)), ("::1", ("::1", 443))],
)
def test_split_target(text: str, want: tuple[str, int]) -> None:
    assert split_target(text) == want


@pytest.mark.parametrize("bad", ["", ":443", "host:0", "host:99999", "host:x", "[::1", "[::1]x"])
def test_split_target_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        split_target(bad)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_decisions_agree_with_curl_pinnedpubkey() -> None:
    # curl --pinnedpubkey checks the leaf's public key; for leaf SPKI pins,
    # pinengine must accept and refuse exactly the same servers.
    chains = [make_chain(kind, HOST) for kind in ("p256", "rsa2048", "ed25519")]
    servers = [TLSServer(c) for c in chains]
    try:
        decisions = []
        for srv in servers:
            for c in chains:
                leaf_pin = pin(c.ders[0])
                curl = subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", "--max-time", "10", "--cacert", srv.cafile,
                     "--pinnedpubkey", "sha256//" + leaf_pin.split("/", 1)[1], srv.url()],
                    capture_output=True,
                )
                code, _ = run("verify", f"{HOST}:{srv.port}", "--pin", leaf_pin, "--cafile", srv.cafile)
                decisions.append((curl.returncode == 0, code == 0))
        assert all(a == b for a, b in decisions), decisions
        assert [a for a, _ in decisions].count(True) == len(servers)  # each server matches only its own leaf
    finally:
        for srv in servers:
            srv.close()
