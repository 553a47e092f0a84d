"""Pinned gRPC channels through an HTTP CONNECT proxy, chosen as grpc chooses it.

A real CONNECT proxy on loopback (tests/proxy.py) and a real grpcio server:
the channel asks the proxy for a tunnel to the target, and the TLS handshake
and the pin check run with the target through the tunnel. Every way grpc
picks a proxy (the ``grpc.http_proxy`` option; ``grpc_proxy``,
``https_proxy``, ``http_proxy``; ``no_grpc_proxy`` / ``no_proxy``;
``grpc.enable_http_proxy``) is checked beside plain grpc where it matters.
"""

from __future__ import annotations

import logging
from typing import Iterator

import pytest

grpc = pytest.importorskip("grpc")

from pinengine import PinPolicy  # noqa: E402
from pinengine.hooks.grpc import PinnedChannelError, secure_channel  # noqa: E402
from tests.certs import Chain, make_chain  # noqa: E402
from tests.grpc_server import UNARY, GrpcServer  # noqa: E402
from tests.grpc_support import HOST, OVERRIDE, TIMEOUT, pin, policy_for, roots, rpc_error  # noqa: E402
from tests.proxy import ConnectProxy  # noqa: E402

PROXY_VARIABLES = ("grpc_proxy", "https_proxy", "http_proxy", "no_grpc_proxy", "no_proxy",
                   "GRPC_PROXY", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def good(chain: Chain) -> PinPolicy:
    return policy_for(pin(chain.ders[1]), pin(make_chain("p256", HOST).ders[1]))


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[GrpcServer]:
    with GrpcServer(chain) as srv:
        yield srv


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as p:
        yield p


def one_rpc(channel: object) -> bytes:
    return bytes(channel.unary_unary(UNARY)(b"via", timeout=TIMEOUT))  # type: ignore[attr-defined]


def test_the_option_sends_the_channel_through_the_proxy(
    server: GrpcServer, chain: Chain, good: PinPolicy, proxy: ConnectProxy
) -> None:
    with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain),
                        options=[("grpc.http_proxy", proxy.url)]) as channel:
        assert one_rpc(channel) == b"via"
        assert channel.pin_result is not None and channel.pin_result.status == "match"
        assert channel.pin_result.hostname == HOST  # the target's pins, not the proxy's
    assert proxy.tunnels == [f"{HOST}:{server.port}"]
    head = proxy.heads[0].decode()
    assert head.startswith(f"CONNECT {HOST}:{server.port} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n")
    assert "Proxy-Authorization" not in head


def test_as_plain_grpc_does(server: GrpcServer, chain: Chain, proxy: ConnectProxy) -> None:
    # The reference: grpc itself asks the same proxy for the same tunnel.
    with grpc.secure_channel(f"{HOST}:{server.port}", grpc.ssl_channel_credentials(roots(chain)),
                             options=[("grpc.http_proxy", proxy.url)]) as channel:
        assert one_rpc(channel) == b"via"
    assert proxy.tunnels == [f"{HOST}:{server.port}"]


@pytest.mark.parametrize("variable", ["grpc_proxy", "https_proxy", "http_proxy"])
def test_each_environment_variable(
    server: GrpcServer, chain: Chain, good: PinPolicy, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    monkeypatch.setenv(variable, proxy.url)
    with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain)) as channel:
        assert one_rpc(channel) == b"via"
    assert proxy.tunnels == [f"{HOST}:{server.port}"]


def test_the_first_variable_set_wins_even_empty(
    server: GrpcServer, chain: Chain, good: PinPolicy, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("grpc_proxy", "")  # set, empty: no proxy, whatever https_proxy says
    monkeypatch.setenv("https_proxy", proxy.url)
    with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain)) as channel:
        assert one_rpc(channel) == b"via"
    assert proxy.tunnels == []


def test_upper_case_variables_are_not_read_as_grpc_does_not(
    server: GrpcServer, chain: Chain, good: PinPolicy, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("GRPC_PROXY", proxy.url)
    with grpc.secure_channel(f"{HOST}:{server.port}", grpc.ssl_channel_credentials(roots(chain))) as channel:
        assert one_rpc(channel) == b"via"  # the reference
    with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain)) as channel:
        assert one_rpc(channel) == b"via"
    assert proxy.tunnels == []


def test_the_option_wins_over_the_environment(
    server: GrpcServer, chain: Chain, good: PinPolicy, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("grpc_proxy", "http://127.0.0.1:1")  # nothing listens there
    with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain),
                        options=[("grpc.http_proxy", proxy.url)]) as channel:
        assert one_rpc(channel) == b"via"
    assert len(proxy.tunnels) == 1
    with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain),
                        options=[("grpc.http_proxy", "")]) as channel:  # "": no proxy
        assert one_rpc(channel) == b"via"
    assert len(proxy.tunnels) == 1


@pytest.mark.parametrize(
    ("variable", "value", "target", "proxied"),
    [
        ("no_proxy", "localhost", "localhost", False),
        ("no_proxy", "LOCALHOST", "localhost", False),
        ("no_grpc_proxy", ".localhost", "localhost", False),
        ("no_proxy", "example.com, calhost", "localhost", True),  # a suffix, but not on a label boundary
        ("no_proxy", "*", "localhost", True),  # nothing special to grpc
        ("no_proxy", "10.0.0.0/8,127.0.0.0/8", "127.0.0.1", False),  # an IP literal in a CIDR range
        ("no_proxy", "127.0.0.1", "127.0.0.1", False),
        ("no_proxy", "0.1", "127.0.0.1", False),  # grpc treats the literal's last labels as a domain too
        ("no_proxy", "10.0.0.0/8", "127.0.0.1", True),
    ],
)
def test_no_proxy_as_grpc_reads_it(
    server: GrpcServer, chain: Chain, good: PinPolicy, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch,
    variable: str, value: str, target: str, proxied: bool,
) -> None:
    monkeypatch.setenv("grpc_proxy", proxy.url)
    monkeypatch.setenv(variable, value)
    with grpc.secure_channel(f"{target}:{server.port}", grpc.ssl_channel_credentials(roots(chain)),
                             options=[OVERRIDE]) as channel:
        assert one_rpc(channel) == b"via"  # the reference: what grpc itself does
    assert len(proxy.tunnels) == proxied
    with secure_channel(f"{target}:{server.port}", good, root_certificates=roots(chain),
                        options=[OVERRIDE]) as channel:
        assert one_rpc(channel) == b"via"
    assert len(proxy.tunnels) == 2 * proxied


def test_no_grpc_proxy_is_read_before_no_proxy(
    server: GrpcServer, chain: Chain, good: PinPolicy, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("grpc_proxy", proxy.url)
    monkeypatch.setenv("no_grpc_proxy", "example.com")
    monkeypatch.setenv("no_proxy", "localhost")  # not read: no_grpc_proxy is set
    with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain)) as channel:
        assert one_rpc(channel) == b"via"
    assert len(proxy.tunnels) == 1


def test_enable_http_proxy_zero(
    server: GrpcServer, chain: Chain, good: PinPolicy, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("grpc_proxy", proxy.url)
    with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain),
                        options=[("grpc.enable_http_proxy", 0)]) as channel:
        assert one_rpc(channel) == b"via"
    assert proxy.tunnels == []


def test_an_ip_literal_target_goes_through_the_proxy(
    server: GrpcServer, chain: Chain, good: PinPolicy, proxy: ConnectProxy
) -> None:
    with secure_channel(f"ipv4:127.0.0.1:{server.port}", good, root_certificates=roots(chain),
                        options=[("grpc.http_proxy", proxy.url), OVERRIDE]) as channel:
        assert one_rpc(channel) == b"via"
    assert proxy.tunnels == [f"127.0.0.1:{server.port}"]


def test_a_unix_socket_target_is_never_proxied(
    chain: Chain, good: PinPolicy, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from concurrent import futures

    from tests.certs import key_pem, pem
    from tests.grpc_server import make_handlers

    path = f"{tmp_path}/grpc.sock"
    srv = grpc.server(futures.ThreadPoolExecutor(2), handlers=[make_handlers([0])])
    creds = grpc.ssl_server_credentials([(key_pem(chain.leaf_key), pem(chain.leaf) + pem(chain.intermediate))])
    assert srv.add_secure_port(f"unix:{path}", creds)
    srv.start()
    monkeypatch.setenv("grpc_proxy", proxy.url)
    try:
        with secure_channel(f"unix:{path}", good, root_certificates=roots(chain)) as channel:
            assert one_rpc(channel) == b"via"
    finally:
        srv.stop(None).wait(5)
    assert proxy.tunnels == []


def test_a_proxy_that_refuses_the_tunnel(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    with ConnectProxy(answer=b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n") as refusing:
        with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain),
                            options=[("grpc.http_proxy", refusing.url)]) as channel:
            err = rpc_error(lambda: one_rpc(channel))
    assert isinstance(err, PinnedChannelError) and err.failure.kind == "proxy"
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "the proxy refused the tunnel: 403 Forbidden" in err.details()
    assert f"via proxy 127.0.0.1:{refusing.port}" in err.details()


def test_a_proxy_url_grpc_cannot_use_is_an_error_as_an_option(chain: Chain, good: PinPolicy) -> None:
    for url, problem in [
        ("https://127.0.0.1:3128", "scheme 'https' is not supported"),
        ("socks5://127.0.0.1:1080", "scheme 'socks5' is not supported"),
        ("127.0.0.1:3128", "no scheme"),
        ("http://", "names no host"),
        ("http://127.0.0.1:99999", "port out of range"),
        ("http://" + "a" * 3000, "over 2048 characters"),
    ]:
        with pytest.raises(ValueError, match=problem):
            secure_channel(f"{HOST}:1", good, root_certificates=roots(chain), options=[("grpc.http_proxy", url)])


def test_a_proxy_url_grpc_cannot_use_in_the_environment_is_logged_and_skipped(
    server: GrpcServer, chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("https_proxy", "https://corporate-proxy.example:3128")
    with caplog.at_level(logging.ERROR, logger="pinengine"):
        with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain)) as channel:
            assert one_rpc(channel) == b"via"  # directly, as grpc does
    assert "environment variable https_proxy" in caplog.text and "connecting directly" in caplog.text


def test_an_address_list_cannot_go_through_a_proxy(chain: Chain, good: PinPolicy, proxy: ConnectProxy) -> None:
    with pytest.raises(ValueError, match="an address list cannot go through the proxy"):
        secure_channel("ipv4:127.0.0.1:1,127.0.0.1:2", good, root_certificates=roots(chain),
                       options=[("grpc.http_proxy", proxy.url)])
