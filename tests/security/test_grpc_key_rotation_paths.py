"""A server key that changes under an open pinned channel is refused on every path.

Every connection the channel makes is pin-checked, so a rotated key (an
attacker's, or an operator's who forgot the pins) is refused on the next
connection: through a CONNECT proxy, and on each load-balanced backend
alone (RPCs keep going to the backends that still hold a pinned key, never
to the rotated one). Within a connection the key cannot change either: TLS
1.2 renegotiation, where a server may present another certificate that no
pin check would see, is refused.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

from pinengine import PinPolicy  # noqa: E402
from pinengine.hooks._relay import TLSRelay, Upstream  # noqa: E402
from pinengine.hooks.grpc import PinnedChannelError, secure_channel  # noqa: E402
from pinengine.hooks.grpc._credentials import pinned_context  # noqa: E402
from tests.certs import Chain, cached_chain, key_pem, make_chain, pem, rotated  # noqa: E402
from tests.grpc_server import UNARY, WHERE, GrpcServer  # noqa: E402
from tests.grpc_support import HOST, OVERRIDE, ROUND_ROBIN, TIMEOUT, pin, policy_for, roots, rpc_error, until  # noqa: E402
from tests.proxy import ConnectProxy  # noqa: E402

FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50),
                  ("grpc.max_reconnect_backoff_ms", 200)]


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def leaf_pinned(chain: Chain) -> PinPolicy:
    """The leaf key and a backup: a rotated leaf matches neither."""
    return policy_for(pin(chain.ders[0]), pin(make_chain("p256", HOST).ders[0]))


def _refused(call: Any) -> PinnedChannelError:
    """The RPCs after a rotation fail; once the restarted server listens, they name the pin failure.

    (An RPC that raced the old connection's end, or the moment the server was
    down, fails for that reason instead; none succeeds.)
    """
    errors: list[grpc.RpcError] = []

    def pin_failure() -> bool:
        errors.append(rpc_error(call))
        return isinstance(errors[-1], PinnedChannelError) and errors[-1].failure.kind == "pin"

    assert until(pin_failure), errors[-3:]
    err = errors[-1]
    assert isinstance(err, PinnedChannelError)
    return err


def test_rotation_through_a_proxy(chain: Chain, leaf_pinned: PinPolicy) -> None:
    with GrpcServer(chain) as srv, ConnectProxy() as proxy:
        with secure_channel(f"{HOST}:{srv.port}", leaf_pinned, root_certificates=roots(chain),
                            options=[("grpc.http_proxy", proxy.url), *FAST_RECONNECT]) as channel:
            unary = channel.unary_unary(UNARY)
            assert unary(b"before", timeout=TIMEOUT) == b"before"
            srv.restart(rotated(chain, HOST))  # same port, same CA, another key
            served = srv.calls
            err = _refused(lambda: unary(b"after", timeout=TIMEOUT))
            assert err.failure.kind == "pin" and "via proxy" in err.failure.peer
            assert srv.calls == served
            assert channel.connections_established == 1
        assert len(proxy.tunnels) >= 2  # the refused connection went through the proxy too


def test_rotation_on_one_balanced_backend(chain: Chain, leaf_pinned: PinPolicy) -> None:
    with GrpcServer(chain) as a, GrpcServer(chain) as b:
        names = {a.target.encode(), b.target.encode()}
        with secure_channel(f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}", leaf_pinned,
                            root_certificates=roots(chain), options=[ROUND_ROBIN, OVERRIDE, *FAST_RECONNECT]) as channel:
            where = channel.unary_unary(WHERE)

            def seen(n: int = 10) -> Counter[bytes]:
                return Counter(where(b"", timeout=TIMEOUT, wait_for_ready=True) for _ in range(n))

            assert until(lambda: set(seen()) == names)
            b.restart(rotated(chain, HOST))  # one backend's key changes
            served_by_b = b.calls
            assert until(lambda: channel.connections_refused >= 1)
            assert seen(40) == Counter({a.target.encode(): 40})  # the others keep serving
            assert b.calls == served_by_b  # the rotated backend never gets an RPC
            a.restart(rotated(chain, HOST))  # and then every backend's
            served_by_a = a.calls
            err = _refused(lambda: where(b"", timeout=TIMEOUT))
            assert err.failure.kind == "pin"
            assert (a.calls, b.calls) == (served_by_a, served_by_b)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (s_server)")
@pytest.mark.parametrize("refused", [True, False], ids=["channel-context", "renegotiation-allowed-control"])
def test_tls12_renegotiation_is_refused(chain: Chain, tmp_path: Any, refused: bool) -> None:
    # openssl s_server asks for a renegotiation ("r" on its stdin); -msg shows
    # every handshake message, so a second ClientHello means it happened.
    import ssl

    (tmp_path / "leaf.pem").write_bytes(pem(chain.leaf))
    (tmp_path / "inter.pem").write_bytes(pem(chain.intermediate))
    (tmp_path / "key.pem").write_bytes(key_pem(chain.leaf_key))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-tls1_2", "-alpn", "h2", "-msg",
         "-cert", str(tmp_path / "leaf.pem"), "-cert_chain", str(tmp_path / "inter.pem"),
         "-key", str(tmp_path / "key.pem")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    output = server.stdout
    assert output is not None
    threading.Thread(target=lambda: lines.extend(raw.decode(errors="replace") for raw in output), daemon=True).start()
    relay = None
    try:
        assert until(lambda: any("ACCEPT" in line for line in lines), 10)
        context = pinned_context(policy_for(pin(chain.ders[1]), pin(chain.ders[0])), pem(chain.root), None, None)
        if not refused:
            # The control: what the flag prevents. A pinned context keeps the flag whatever is assigned
            # to its options, so it is cleared through the ssl module's own property.
            vars(ssl.SSLContext)["options"].__set__(context, context.options & ~ssl.OP_NO_RENEGOTIATION)
            assert not context.options & ssl.OP_NO_RENEGOTIATION
        relay = TLSRelay(Upstream("127.0.0.1", port, HOST), context, require_alpn="h2")
        client = socket.socket(socket.AF_UNIX)
        client.connect(relay.local_address)
        client.sendall(b"hello\n")
        assert until(lambda: any("hello" in line for line in lines), 10)
        assert server.stdin is not None
        server.stdin.write(b"r\n")  # s_server: renegotiate
        server.stdin.flush()
        time.sleep(0.5)
        try:
            client.sendall(b"again\n")
        except OSError:
            pass  # the relay closed the connection
        time.sleep(0.5)
        text = "".join(lines)
        if refused:
            assert text.count("ClientHello") == 1, text
            assert "no_renegotiation" in text
            assert until(lambda: relay is not None and relay.active_connections == 0)
        else:
            assert text.count("ClientHello") == 2, text
        client.close()
    finally:
        if relay is not None:
            relay.close()
        server.kill()
        server.wait(5)
