"""TLS handshakes over loopback: a plain context vs the pinned context vs the same check on `cryptography`.

Each round opens a TCP connection to a local TLS server, completes a full
TLS 1.3 handshake (validation against the test CA, hostname check) and
closes. The pinned context adds pinengine's check (verified chain -> SPKI
digests -> policy decision) inside ``do_handshake``. The third contestant does
the same check by hand with cryptography: load every certificate of the
verified chain, re-encode its public key, hash it, compare.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pinengine import Pin, PinPolicy
from pinengine.hooks.ssl import create_pinned_context, peer_chains

GROUP = "handshake: full TLS 1.3 handshake over loopback, per handshake"
HOST = "handshake.bench.example"


class _HandshakeServer:
    """Accepts, completes the handshake, closes: nothing else, so the handshake dominates."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.context = context
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as s:
                    s.recv(1)  # wait for the client's close
            except OSError:
                pass

    def close(self) -> None:
        self.running = False
        self.sock.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_HandshakeServer, Any, str]]:
    from tests.certs import cached_chain, key_pem, pem

    chain = cached_chain("p256", HOST)
    d = tmp_path_factory.mktemp("handshake")
    (d / "chain.pem").write_bytes(pem(chain.leaf) + pem(chain.intermediate))
    (d / "key.pem").write_bytes(key_pem(chain.leaf_key))
    (d / "ca.pem").write_bytes(pem(chain.root))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(d / "chain.pem", d / "key.pem")
    server = _HandshakeServer(server_ctx)
    yield server, chain, str(d / "ca.pem")
    server.close()


def _handshake(ctx: ssl.SSLContext, port: int) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname=HOST)
    s.close()
    return s


def _pins(chain: Any) -> list[str]:
    return [str(Pin.from_certificate(chain.ders[1])), str(Pin.from_certificate(chain.ders[2]))]


@pytest.mark.benchmark(group=GROUP)
def test_handshake_plain(benchmark: Any, setup: Any) -> None:
    server, _chain, cafile = setup
    ctx = ssl.create_default_context(cafile=cafile)
    benchmark.extra_info["items"] = 1
    benchmark.pedantic(_handshake, args=(ctx, server.port), rounds=300, warmup_rounds=20)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("use_backend", ["compiled"], indirect=True)
def test_handshake_pinned(benchmark: Any, setup: Any, use_backend: Any) -> None:
    server, chain, cafile = setup
    policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": _pins(chain)}]})
    ctx = create_pinned_context(policy, cafile=cafile)
    s = _handshake(ctx, server.port)
    assert s.pin_result.status == "match"  # type: ignore[attr-defined]
    benchmark.extra_info["items"] = 1
    benchmark.pedantic(_handshake, args=(ctx, server.port), rounds=300, warmup_rounds=20)


class _CryptographyPinnedSocket(ssl.SSLSocket):
    pins: frozenset[bytes] = frozenset()

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        verified, _ = peer_chains(self)
        for der in verified:
            spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            if hashlib.sha256(spki).digest() in self.pins:
                return
        self.close()
        raise ssl.SSLCertVerificationError("pin mismatch")


@pytest.mark.benchmark(group=GROUP)
def test_handshake_cryptography_check(benchmark: Any, setup: Any) -> None:
    server, chain, cafile = setup
    ctx = ssl.create_default_context(cafile=cafile)

    class Sock(_CryptographyPinnedSocket):
        pins = frozenset(Pin.parse(p).digest for p in _pins(chain))

    ctx.sslsocket_class = Sock
    _handshake(ctx, server.port)
    benchmark.extra_info["items"] = 1
    benchmark.pedantic(_handshake, args=(ctx, server.port), rounds=300, warmup_rounds=20)


@pytest.mark.benchmark(group="handshake: the pin check alone, per check")
@pytest.mark.parametrize("use_backend", ["compiled"], indirect=True)
def test_pin_check_alone(benchmark: Any, setup: Any, use_backend: Any) -> None:
    """What the pinned context adds, measured without the handshake around it."""
    _, chain, _ = setup
    policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": _pins(chain)}]})
    ders = chain.ders
    benchmark.extra_info["items"] = 1
    benchmark(policy.verify, HOST, ders, port=443, served_chain=ders[:2])
