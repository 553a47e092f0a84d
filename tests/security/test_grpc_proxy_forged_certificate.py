"""A CONNECT proxy that forges the target's certificate: the pin check of the TARGET refuses it.

The proxy answers CONNECT, then terminates the client's TLS itself with a
certificate for the target's name and relays what it decrypts to the real
server (a working man in the middle: the control test shows an RPC goes
through it when its key is the pinned one). With a forging CA the client
trusts (a corporate interception CA, a misissued certificate), only the pin
check stands in the way: the connection is refused before a byte of HTTP/2
reaches the forger, the client's last handshake flight (under TLS 1.3 its
certificate and Finished) never leaves, and nothing reaches the server.
"""

from __future__ import annotations

from typing import Iterator

import pytest

grpc = pytest.importorskip("grpc")

from pinengine import PinMismatchError  # noqa: E402
from pinengine.hooks.grpc import PinnedChannelError, aio_secure_channel, secure_channel  # noqa: E402
from tests.certs import Chain, cached_chain, key_pem, make_cert, new_key, pem  # noqa: E402
from tests.grpc_server import UNARY, GrpcServer  # noqa: E402
from tests.grpc_support import HOST, TIMEOUT, pin, policy_for, roots, rpc_error  # noqa: E402
from tests.proxy import ConnectProxy  # noqa: E402


def forging_chain(hostname: str) -> Chain:
    """A chain for ``hostname`` from the interception CA (its own names, so trust stores keep both apart)."""
    root_key, inter_key, leaf_key = new_key("p256"), new_key("p256"), new_key("p256")
    root = make_cert("interception root", root_key, None, root_key, ca=True)
    inter = make_cert("interception intermediate", inter_key, root, root_key, ca=True)
    leaf = make_cert(hostname, leaf_key, inter, inter_key, ca=False, sans=(hostname,))
    return Chain(leaf, inter, root, leaf_key, inter_key, root_key)


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def forged() -> Chain:
    return forging_chain(HOST)


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[GrpcServer]:
    with GrpcServer(chain) as srv:
        yield srv


@pytest.fixture
def forger(chain: Chain, forged: Chain, tmp_path: object) -> Iterator[ConnectProxy]:
    cafile = f"{tmp_path}/target-ca.pem"
    with open(cafile, "wb") as f:
        f.write(pem(chain.root))
    with ConnectProxy(forge=(pem(forged.leaf) + pem(forged.intermediate), key_pem(forged.leaf_key)),
                      target_cafile=cafile) as proxy:
        yield proxy


def test_the_forger_works_when_its_key_is_the_pinned_one(
    server: GrpcServer, chain: Chain, forged: Chain, forger: ConnectProxy
) -> None:
    # Control: the forging proxy is a working man in the middle.
    policy = policy_for(pin(forged.ders[1]), pin(chain.ders[1]))
    with secure_channel(f"{HOST}:{server.port}", policy, root_certificates=roots(chain) + roots(forged),
                        options=[("grpc.http_proxy", forger.url)]) as channel:
        assert channel.unary_unary(UNARY)(b"through", timeout=TIMEOUT) == b"through"
    assert forger.forged_handshakes == 1 and forger.forged_bytes > 0


def test_a_forged_certificate_from_a_trusted_ca_is_refused_by_the_pins(
    server: GrpcServer, chain: Chain, forged: Chain, forger: ConnectProxy
) -> None:
    policy = policy_for(pin(chain.ders[1]), pin(chain.ders[0]))  # the target's keys
    before = server.calls
    with secure_channel(f"{HOST}:{server.port}", policy, root_certificates=roots(chain) + roots(forged),
                        options=[("grpc.http_proxy", forger.url)]) as channel:
        err = rpc_error(lambda: channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT))
        assert isinstance(err, PinnedChannelError) and err.failure.kind == "pin"
        assert isinstance(err.pin_error, PinMismatchError)
        assert err.details().startswith(f"pin verification failed for {HOST} ({HOST}:{server.port} via proxy")
        assert channel.connections_established == 0
    assert forger.tunnels  # the proxy was used
    assert forger.forged_handshakes == 0  # the client's Finished never reached the forger
    assert forger.forged_bytes == 0  # nor a byte of HTTP/2
    assert server.calls == before


def test_a_forged_certificate_from_an_untrusted_ca_is_refused(
    server: GrpcServer, chain: Chain, forger: ConnectProxy
) -> None:
    policy = policy_for(pin(chain.ders[1]), pin(chain.ders[0]))
    with secure_channel(f"{HOST}:{server.port}", policy, root_certificates=roots(chain),
                        options=[("grpc.http_proxy", forger.url)]) as channel:
        err = rpc_error(lambda: channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT))
    assert isinstance(err, PinnedChannelError) and err.failure.kind == "certificate"
    assert forger.forged_bytes == 0


def test_a_client_certificate_is_not_shown_to_the_forger(
    chain: Chain, forged: Chain, forger: ConnectProxy
) -> None:
    # Mutual TLS through the forging proxy: the client's key pair is loaded,
    # and under TLS 1.3 its certificate would travel with its Finished.
    client = cached_chain("p256", "pinned-client")
    with GrpcServer(chain, client_ca=pem(client.root)) as srv:
        policy = policy_for(pin(chain.ders[1]), pin(chain.ders[0]))
        with secure_channel(
            f"{HOST}:{srv.port}", policy, root_certificates=roots(chain) + roots(forged),
            private_key=key_pem(client.leaf_key), certificate_chain=pem(client.leaf) + pem(client.intermediate),
            options=[("grpc.http_proxy", forger.url)],
        ) as channel:
            err = rpc_error(lambda: channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT))
            assert isinstance(err, PinnedChannelError) and err.failure.kind == "pin"
    assert forger.forged_handshakes == 0 and forger.forged_bytes == 0


def test_aio_through_the_forger(server: GrpcServer, chain: Chain, forged: Chain, forger: ConnectProxy) -> None:
    import asyncio

    policy = policy_for(pin(chain.ders[1]), pin(chain.ders[0]))

    async def main() -> None:
        async with aio_secure_channel(f"{HOST}:{server.port}", policy, root_certificates=roots(chain) + roots(forged),
                                      options=[("grpc.http_proxy", forger.url)]) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT)
            assert "pin verification failed" in info.value.details()

    asyncio.run(main())
    assert forger.forged_bytes == 0
