"""Pinned gRPC channels against a real grpcio server on 127.0.0.1 with TLS (pinengine.hooks.grpc).

The service (tests/grpc_server.py) is defined with generic handlers and
counts the RPCs that reach it, so a test can tell that nothing was sent
over a connection the pin check refused.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Iterator

import pytest

grpc = pytest.importorskip("grpc")  # the `test` extra installs grpcio

import grpc.aio  # noqa: E402, F811 (the submodule, on the module importorskip returned)

from pinengine import Pin, PinMismatchError, PinPolicy  # noqa: E402
from pinengine.hooks.grpc import PinnedAioRpcError, PinnedChannelError, aio_secure_channel, secure_channel  # noqa: E402
from pinengine.hooks.grpc._targets import parse_target  # noqa: E402
from tests.certs import Chain, key_pem, make_chain, pem, rotated  # noqa: E402
from tests.grpc_server import (  # noqa: E402
    BIDI_STREAM,
    CLIENT_STREAM,
    METADATA,
    SERVER_STREAM,
    UNARY,
    WHOAMI,
    GrpcServer,
)

HOST = "localhost"
TIMEOUT = 10


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def policy_for(*pins: str, host: str = HOST, mode: str = "enforce") -> PinPolicy:
    return PinPolicy.from_mapping({"domains": [{"host": host, "pins": list(pins), "mode": mode}]})


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[GrpcServer]:
    with GrpcServer(chain) as srv:
        yield srv


@pytest.fixture(scope="module")
def good(chain: Chain, other: Chain) -> PinPolicy:
    return policy_for(pin(chain.ders[1]), pin(other.ders[1]))


@pytest.fixture(scope="module")
def bad(other: Chain) -> PinPolicy:
    return policy_for(pin(other.ders[0]), pin(other.ders[1]))


def target(server: GrpcServer) -> str:
    """The server by the name in its certificate (it listens on 127.0.0.1)."""
    return f"{HOST}:{server.port}"


def roots(chain: Chain) -> bytes:
    return pem(chain.root)


def all_four(channel: Any) -> list[Any]:
    """One RPC of each kind; the results."""
    return [
        channel.unary_unary(UNARY)(b"ping", timeout=TIMEOUT),
        list(channel.unary_stream(SERVER_STREAM)(b"3:ab", timeout=TIMEOUT)),
        channel.stream_unary(CLIENT_STREAM)(iter([b"a", b"b", b"c"]), timeout=TIMEOUT),
        list(channel.stream_stream(BIDI_STREAM)(iter([b"x", b"y"]), timeout=TIMEOUT)),
    ]


EXPECTED = [b"ping", [b"ab", b"ab", b"ab"], b"abc", [b"x", b"y"]]


def rpc_error(fn: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


# -- succeeding ----------------------------------------------------------------


@pytest.mark.parametrize("position", ["leaf", "intermediate", "root", "backup"])
def test_every_rpc_kind_with_a_matching_pin(server: GrpcServer, chain: Chain, other: Chain, position: str) -> None:
    index = {"leaf": 0, "intermediate": 1, "root": 2, "backup": 0}[position]
    pins = [pin(chain.ders[index]), pin(other.ders[0])]
    if position == "backup":
        pins.reverse()  # the server's key is the second (backup) pin
    with secure_channel(target(server), policy_for(*pins), root_certificates=roots(chain)) as channel:
        assert all_four(channel) == EXPECTED
        result = channel.pin_result
        assert result is not None and result.status == "match"
        assert [m.role for m in result.matches] == [position if position != "backup" else "leaf"]
        assert channel.connection_attempts == channel.connections_established == 1


def test_bulk_streaming_through_the_relay(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    # Messages larger than the socket buffers: partial sends and back-pressure, both ways.
    big = [bytes([i]) * (1 << 20) for i in range(12)]
    with secure_channel(target(server), good, root_certificates=roots(chain)) as channel:
        got = list(channel.stream_stream(BIDI_STREAM)(iter(big), timeout=60))
        assert got == big
        assert channel.stream_unary(CLIENT_STREAM)(iter(big[:3]), timeout=60) == b"".join(big[:3])
        assert channel.connections_established == 1


def test_forwarder_back_pressure_both_ways(chain: Chain, good: PinPolicy) -> None:
    """The relay alone (no grpc), to a TLS echo server that starts reading late: nothing lost or reordered."""
    import hashlib
    import ssl
    import tempfile

    from pinengine.hooks._relay import TLSRelay, Upstream
    from pinengine.hooks.ssl import create_pinned_context

    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "c.pem"), "wb") as f:
            f.write(pem(chain.leaf) + pem(chain.intermediate))
        with open(os.path.join(d, "k.pem"), "wb") as f:
            f.write(key_pem(chain.leaf_key))
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(os.path.join(d, "c.pem"), os.path.join(d, "k.pem"))
    listener = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            time.sleep(0.5)  # let the forwarder's buffers towards the server fill up
            while True:
                data = tls.recv(65536)
                if not data:
                    return
                tls.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    upstream = Upstream("127.0.0.1", listener.getsockname()[1], HOST)
    forwarder = TLSRelay(upstream, create_pinned_context(good, cadata=pem(chain.root).decode()))
    payload = os.urandom(1 << 16) * 128  # 8 MiB
    try:
        client = socket.socket(socket.AF_UNIX)
        client.connect(forwarder.local_address)
        writer = threading.Thread(target=client.sendall, args=(payload,), daemon=True)
        writer.start()
        received = hashlib.sha256()
        total = 0
        client.settimeout(30)
        while total < len(payload):
            chunk = client.recv(1 << 20)
            assert chunk, "the relay closed early"
            received.update(chunk)
            total += len(chunk)
        writer.join(30)
        assert received.digest() == hashlib.sha256(payload).digest()
        assert forwarder.established == 1 and forwarder.active_connections == 1
        client.close()
        assert _until(lambda: forwarder.active_connections == 0)
    finally:
        forwarder.close()
        listener.close()


def test_futures_and_with_call(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    with secure_channel(target(server), good, root_certificates=roots(chain)) as channel:
        unary = channel.unary_unary(UNARY)
        assert unary.future(b"f", timeout=TIMEOUT).result() == b"f"
        response, call = unary.with_call(b"w", timeout=TIMEOUT)
        assert response == b"w" and call.code() == grpc.StatusCode.OK
        future = channel.stream_unary(CLIENT_STREAM).future(iter([b"1", b"2"]), timeout=TIMEOUT)
        done = threading.Event()
        future.add_done_callback(lambda f: done.set())
        assert future.result() == b"12" and done.wait(TIMEOUT)


def test_intercept_channel_and_channel_ready(server: GrpcServer, chain: Chain, good: PinPolicy, bad: PinPolicy) -> None:
    seen: list[str] = []

    class Record(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            seen.append(details.method)
            return continuation(details, request)

    with secure_channel(target(server), good, root_certificates=roots(chain)) as pinned:
        grpc.channel_ready_future(pinned).result(timeout=TIMEOUT)
        channel = grpc.intercept_channel(pinned, Record())
        assert channel.unary_unary(UNARY)(b"i", timeout=TIMEOUT) == b"i"
        assert seen == [UNARY]
    with secure_channel(target(server), bad, root_certificates=roots(chain)) as pinned:
        with pytest.raises(grpc.FutureTimeoutError):  # never READY: no connection passes the pin check
            grpc.channel_ready_future(pinned).result(timeout=1.0)
        channel = grpc.intercept_channel(pinned, Record())
        err = rpc_error(lambda: channel.unary_unary(UNARY)(b"i", timeout=TIMEOUT))
        assert isinstance(err, PinnedChannelError)  # what the application sees through interceptors


def test_not_pinned_host_passes(server: GrpcServer, chain: Chain, other: Chain) -> None:
    policy = policy_for(pin(other.ders[0]), pin(other.ders[1]), host="elsewhere.example")
    with secure_channel(target(server), policy, root_certificates=roots(chain)) as channel:
        assert channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT) == b"x"
        assert channel.pin_result is not None and channel.pin_result.status == "not-pinned"


def test_report_only_lets_rpcs_through_and_logs(
    server: GrpcServer, chain: Chain, other: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    policy = policy_for(pin(other.ders[0]), pin(other.ders[1]), mode="report-only")
    with caplog.at_level(logging.WARNING, logger="pinengine"):
        with secure_channel(target(server), policy, root_certificates=roots(chain)) as channel:
            assert all_four(channel) == EXPECTED
            assert channel.pin_result is not None and channel.pin_result.status == "report-only"
    assert "allowed, report-only" in caplog.text
    assert pin(chain.ders[0]) in caplog.text  # the chain's pins are in the log


def test_per_call_credentials_are_sent(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    # The local hop uses local-connection credentials, so grpc still sends call credentials.
    with secure_channel(target(server), good, root_certificates=roots(chain)) as channel:
        text = channel.unary_unary(METADATA)(
            b"", timeout=TIMEOUT, credentials=grpc.access_token_call_credentials("t0ken"), metadata=[("x-a", "b")]
        ).decode()
    assert "authorization=Bearer t0ken" in text and "x-a=b" in text
    # channel-wide call credentials, as grpc.composite_channel_credentials gives
    with secure_channel(
        target(server), good, root_certificates=roots(chain), call_credentials=grpc.access_token_call_credentials("ch")
    ) as channel:
        assert "authorization=Bearer ch" in channel.unary_unary(METADATA)(b"", timeout=TIMEOUT).decode()


# -- refusing ------------------------------------------------------------------


def test_no_pin_matches(server: GrpcServer, chain: Chain, bad: PinPolicy, caplog: pytest.LogCaptureFixture) -> None:
    before = server.calls
    calls: list[Callable[[], Any]]
    with caplog.at_level(logging.ERROR, logger="pinengine"):
        with secure_channel(target(server), bad, root_certificates=roots(chain)) as channel:
            calls = [
                lambda: channel.unary_unary(UNARY)(b"ping", timeout=TIMEOUT),
                lambda: list(channel.unary_stream(SERVER_STREAM)(b"3:ab", timeout=TIMEOUT)),
                lambda: channel.stream_unary(CLIENT_STREAM)(iter([b"a"]), timeout=TIMEOUT),
                lambda: list(channel.stream_stream(BIDI_STREAM)(iter([b"x"]), timeout=TIMEOUT)),
                lambda: channel.unary_unary(UNARY).future(b"f", timeout=TIMEOUT).result(),
                lambda: channel.unary_unary(UNARY).with_call(b"w", timeout=TIMEOUT),
            ]
            for call in calls:
                err = rpc_error(call)
                assert isinstance(err, PinnedChannelError)
                assert err.code() == grpc.StatusCode.UNAVAILABLE
                assert err.details().startswith(f"pin verification failed for {HOST} (127.0.0.1:{server.port})")
                assert isinstance(err.pin_error, PinMismatchError) and err.failure.kind == "pin"
            # a streaming call object reports the same
            stream = channel.unary_stream(SERVER_STREAM)(b"1:a", timeout=TIMEOUT)
            with pytest.raises(PinnedChannelError):
                next(stream)
            assert stream.code() == grpc.StatusCode.UNAVAILABLE
            assert "pin verification failed" in stream.details()
            assert channel.connections_established == 0 and channel.connections_refused >= 1
    assert server.calls == before  # nothing reached the server
    # the full PinMismatchError message is logged: the chain's pins and the configured pins
    assert "Certificate pinning failure for localhost!" in caplog.text
    assert pin(chain.ders[0]) in caplog.text and pin(chain.ders[1]) in caplog.text
    assert str(bad.entries[0].pins[0]) in caplog.text


def test_untrusted_certificate(server: GrpcServer, good: PinPolicy, other: Chain) -> None:
    with secure_channel(target(server), good, root_certificates=roots(other)) as channel:
        err = rpc_error(lambda: channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert isinstance(err, PinnedChannelError) and err.failure.kind == "certificate"
    assert err.details().startswith(f"TLS certificate verification failed for {HOST}")


def test_wait_for_ready_gives_deadline_exceeded_naming_the_pin_failure(
    server: GrpcServer, chain: Chain, bad: PinPolicy
) -> None:
    with secure_channel(target(server), bad, root_certificates=roots(chain)) as channel:
        err = rpc_error(lambda: channel.unary_unary(UNARY)(b"x", timeout=1.0, wait_for_ready=True))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "the latest connection attempt failed: pin verification failed for localhost" in err.details()


# -- key rotation: no stale trust -----------------------------------------------------


def _until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_key_rotation_sync(chain: Chain, other: Chain) -> None:
    old_policy = policy_for(pin(chain.ders[0]), pin(other.ders[0]))  # the leaf key, and a backup
    new_chain = rotated(chain, HOST)
    with GrpcServer(chain) as srv:
        channel = secure_channel(target(srv), old_policy, root_certificates=roots(chain))
        unary = channel.unary_unary(UNARY)
        assert unary(b"before", timeout=TIMEOUT) == b"before"
        assert channel.connection_attempts == 1

        srv.restart(new_chain)  # same port, same CA, a different key
        served_before = srv.calls
        # The next RPC on the open channel must fail. (If it raced the old
        # connection's shutdown it fails as that connection dies; the RPC
        # after that makes a new connection, which the pin check refuses.)
        err = rpc_error(lambda: unary(b"after", timeout=TIMEOUT))
        if not isinstance(err, PinnedChannelError):
            assert err.code() == grpc.StatusCode.UNAVAILABLE
            err = rpc_error(lambda: unary(b"after", timeout=TIMEOUT, wait_for_ready=False))
        assert isinstance(err, PinnedChannelError) and err.failure.kind == "pin"
        assert "pin verification failed for localhost" in err.details()
        assert srv.calls == served_before  # the new key never saw an RPC from the old policy
        assert channel.connection_attempts >= 2 and channel.connections_established == 1
        channel.close()

        new_policy = policy_for(pin(new_chain.ders[0]), pin(other.ders[0]))
        with secure_channel(target(srv), new_policy, root_certificates=roots(chain)) as fresh:
            assert all_four(fresh) == EXPECTED
        assert srv.calls == served_before + 4


def test_every_reconnect_is_checked(chain: Chain, good: PinPolicy) -> None:
    with GrpcServer(chain) as srv:
        with secure_channel(target(srv), good, root_certificates=roots(chain), options=[
            ("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50),
        ]) as channel:
            unary = channel.unary_unary(UNARY)
            assert unary(b"1", timeout=TIMEOUT) == b"1"
            for n in (2, 3):
                srv.restart(chain)  # the same key: reconnects succeed, each one checked
                assert _until(lambda: _ok(unary))
                assert channel.connections_established == n
            assert channel.connection_attempts == channel.connections_established == 3


def _ok(unary: Any) -> bool:
    try:
        return bool(unary(b"x", timeout=TIMEOUT) == b"x")
    except grpc.RpcError:
        return False


# -- grpc.aio --------------------------------------------------------------------------


def test_aio_every_rpc_kind(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    async def main() -> list[Any]:
        async with aio_secure_channel(target(server), good, root_certificates=roots(chain)) as channel:
            out = [await channel.unary_unary(UNARY)(b"ping", timeout=TIMEOUT)]
            out.append([m async for m in channel.unary_stream(SERVER_STREAM)(b"3:ab", timeout=TIMEOUT)])
            out.append(await channel.stream_unary(CLIENT_STREAM)(iter([b"a", b"b", b"c"]), timeout=TIMEOUT))
            call = channel.stream_stream(BIDI_STREAM)(timeout=TIMEOUT)
            got = []
            for m in (b"x", b"y"):
                await call.write(m)
                got.append(await call.read())
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK
            out.append(got)
            assert channel.pin_result is not None and channel.pin_result.status == "match"
            return out

    assert asyncio.run(main()) == EXPECTED


def test_aio_no_pin_matches(server: GrpcServer, chain: Chain, bad: PinPolicy) -> None:
    before = server.calls

    async def main() -> None:
        async with aio_secure_channel(target(server), bad, root_certificates=roots(chain)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary(UNARY)(b"ping", timeout=TIMEOUT)
            err = info.value
            assert isinstance(err, PinnedAioRpcError) and isinstance(err.pin_error, PinMismatchError)
            assert err.code() == grpc.StatusCode.UNAVAILABLE
            assert err.details().startswith(f"pin verification failed for {HOST}")
            with pytest.raises(PinnedAioRpcError):
                async for _ in channel.unary_stream(SERVER_STREAM)(b"2:a", timeout=TIMEOUT):
                    pass
            with pytest.raises(PinnedAioRpcError):
                await channel.stream_unary(CLIENT_STREAM)(iter([b"a"]), timeout=TIMEOUT)
            call = channel.stream_stream(BIDI_STREAM)(iter([b"x"]), timeout=TIMEOUT)
            with pytest.raises(PinnedAioRpcError):
                async for _ in call:
                    pass
            assert await call.code() == grpc.StatusCode.UNAVAILABLE
            assert "pin verification failed" in await call.details()

    asyncio.run(main())
    assert server.calls == before


def test_aio_key_rotation(chain: Chain, other: Chain) -> None:
    old_policy = policy_for(pin(chain.ders[0]), pin(other.ders[0]))
    new_chain = rotated(chain, HOST)
    new_policy = policy_for(pin(new_chain.ders[0]), pin(other.ders[0]))

    async def main(srv: GrpcServer) -> None:
        channel = aio_secure_channel(target(srv), old_policy, root_certificates=roots(chain))
        unary = channel.unary_unary(UNARY)
        assert await unary(b"before", timeout=TIMEOUT) == b"before"
        await asyncio.get_running_loop().run_in_executor(None, srv.restart, new_chain)
        served_before = srv.calls
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await unary(b"after", timeout=TIMEOUT)
        if not isinstance(info.value, PinnedAioRpcError):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await unary(b"after", timeout=TIMEOUT)
        assert isinstance(info.value, PinnedAioRpcError) and info.value.failure.kind == "pin"
        assert srv.calls == served_before
        await channel.close()
        assert channel.closed
        async with aio_secure_channel(target(srv), new_policy, root_certificates=roots(chain)) as fresh:
            assert await fresh.unary_unary(UNARY)(b"again", timeout=TIMEOUT) == b"again"
        assert srv.calls == served_before + 1

    with GrpcServer(chain) as srv:
        asyncio.run(main(srv))


# -- mutual TLS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_chain() -> Chain:
    return make_chain("p256", "pinned-client")


@pytest.fixture(scope="module")
def mtls_server(chain: Chain, client_chain: Chain) -> Iterator[GrpcServer]:
    with GrpcServer(chain, client_ca=pem(client_chain.root)) as srv:
        yield srv


def test_mutual_tls(mtls_server: GrpcServer, chain: Chain, client_chain: Chain, good: PinPolicy) -> None:
    key = key_pem(client_chain.leaf_key)
    certs = pem(client_chain.leaf) + pem(client_chain.intermediate)
    with secure_channel(
        target(mtls_server), good, root_certificates=roots(chain), private_key=key, certificate_chain=certs
    ) as channel:
        assert channel.unary_unary(WHOAMI)(b"", timeout=TIMEOUT) == b"pinned-client"
    # without the key pair the server refuses the connection
    with secure_channel(target(mtls_server), good, root_certificates=roots(chain)) as channel:
        err = rpc_error(lambda: channel.unary_unary(WHOAMI)(b"", timeout=TIMEOUT))
        assert err.code() == grpc.StatusCode.UNAVAILABLE

    async def aio() -> bytes:
        async with aio_secure_channel(
            target(mtls_server), good, root_certificates=roots(chain), private_key=key, certificate_chain=certs
        ) as channel:
            return await channel.unary_unary(WHOAMI)(b"", timeout=TIMEOUT)

    assert asyncio.run(aio()) == b"pinned-client"


@pytest.mark.parametrize("pinned_ok", [True, False])
def test_tls13_client_certificate_not_sent_when_pins_fail(
    chain: Chain, client_chain: Chain, other: Chain, pinned_ok: bool
) -> None:
    # A plain Python TLS 1.3 server that requires a client certificate: its
    # handshake completes only if the client's certificate and Finished
    # arrive. When the pin check fails they stay in the memory BIO.
    import ssl
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for name, data in (("c.pem", pem(chain.leaf) + pem(chain.intermediate)), ("k.pem", key_pem(chain.leaf_key)),
                           ("ca.pem", pem(client_chain.root))):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, "c.pem"), os.path.join(d, "k.pem"))
        ctx.load_verify_locations(os.path.join(d, "ca.pem"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.set_alpn_protocols(["h2"])
    listener = socket.create_server(("127.0.0.1", 0))
    outcome: list[Any] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(5)
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
            outcome.append(tls.getpeercert())
            tls.close()
        except (OSError, ssl.SSLError) as exc:
            outcome.append(exc)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    pins = (pin(chain.ders[0]), pin(other.ders[0])) if pinned_ok else (pin(other.ders[0]), pin(other.ders[1]))
    with secure_channel(
        f"{HOST}:{listener.getsockname()[1]}", policy_for(*pins), root_certificates=roots(chain),
        private_key=key_pem(client_chain.leaf_key), certificate_chain=pem(client_chain.leaf) + pem(client_chain.intermediate),
    ) as channel:
        with pytest.raises(grpc.RpcError):  # not a gRPC server: the RPC cannot succeed either way
            channel.unary_unary(UNARY)(b"x", timeout=1.5)
        thread.join(10)
    listener.close()
    assert len(outcome) == 1
    if pinned_ok:
        assert isinstance(outcome[0], dict) and outcome[0]  # the server saw the client certificate
    else:
        assert isinstance(outcome[0], (OSError, ssl.SSLError)), outcome  # the handshake never completed


def test_mutual_tls_needs_both_halves(chain: Chain, good: PinPolicy, client_chain: Chain) -> None:
    with pytest.raises(ValueError, match="both private_key and certificate_chain"):
        secure_channel("localhost:1", good, private_key=key_pem(client_chain.leaf_key))


# -- targets, addresses, overrides ----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_several_addresses_are_tried_in_order(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    target = f"ipv4:127.0.0.1:{_closed_port()},127.0.0.1:{server.port}"
    options = [("grpc.ssl_target_name_override", HOST)]
    with secure_channel(target, good, root_certificates=roots(chain), options=options) as channel:
        assert channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT) == b"x"
        assert channel.pin_result is not None and channel.pin_result.hostname == HOST


def test_a_pin_failure_is_not_retried_on_the_next_address(
    server: GrpcServer, chain: Chain, other: Chain
) -> None:
    # Like OkHttp: a refused pin ends the attempt; no shopping for an address that passes.
    with GrpcServer(other) as impostor:
        policy = policy_for(pin(chain.ders[0]), pin(chain.ders[1]))
        target = f"ipv4:127.0.0.1:{impostor.port},127.0.0.1:{server.port}"
        with secure_channel(
            target, policy, root_certificates=roots(chain) + roots(other),
            options=[("grpc.ssl_target_name_override", HOST)],
        ) as channel:
            err = rpc_error(lambda: channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT))
            assert isinstance(err, PinnedChannelError) and f"127.0.0.1:{impostor.port}" in err.details()
            assert impostor.calls == 0


def test_dns_name_with_several_addresses(
    server: GrpcServer, chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name resolves to ::1 first, where nothing listens, then to 127.0.0.1;
    # it is resolved again for every new connection.
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "multi.localhost":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    options = [("grpc.ssl_target_name_override", HOST)]
    with secure_channel(
        f"dns:///multi.localhost:{server.port}", good, root_certificates=roots(chain), options=options
    ) as channel:
        assert channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT) == b"x"
        assert lookups == ["multi.localhost"] and channel.connections_established == 1


def test_target_name_override(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    options = [("grpc.ssl_target_name_override", HOST)]
    with secure_channel(f"127.0.0.1:{server.port}", good, root_certificates=roots(chain), options=options) as channel:
        assert channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT) == b"x"
        assert channel.pin_result is not None and channel.pin_result.hostname == HOST
    # without the override the name is 127.0.0.1, which the certificate does not hold
    with secure_channel(f"127.0.0.1:{server.port}", good, root_certificates=roots(chain)) as channel:
        err = rpc_error(lambda: channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT))
        assert isinstance(err, PinnedChannelError) and err.failure.kind == "certificate"


@pytest.mark.parametrize(
    ("target", "override", "host", "port", "name", "authority"),
    [
        ("api.example.com", None, "api.example.com", 443, "api.example.com", "api.example.com"),
        ("api.example.com:8443", None, "api.example.com", 8443, "api.example.com", "api.example.com:8443"),
        ("dns:///api.example.com:50051", None, "api.example.com", 50051, "api.example.com", "api.example.com:50051"),
        ("dns:api.example.com:50051", None, "api.example.com", 50051, "api.example.com", "api.example.com:50051"),
        ("[::1]:50051", None, "::1", 50051, "::1", "[::1]:50051"),
        ("127.0.0.1:50051", "api.example.com", "127.0.0.1", 50051, "api.example.com", "api.example.com"),
        ("ipv4:10.0.0.1:5,10.0.0.2:6", "svc.example", "10.0.0.1", 5, "svc.example", "svc.example"),
        ("ipv6:[::1]:7", None, "::1", 7, "::1", "[::1]:7"),
    ],
)
def test_targets(target: str, override: str | None, host: str, port: int, name: str, authority: str) -> None:
    upstream, got_authority = parse_target(target, override)
    assert (upstream.host, upstream.port, upstream.server_hostname, got_authority) == (host, port, name, authority)


def test_tls_over_a_unix_socket_upstream(chain: Chain, good: PinPolicy, tmp_path: Any) -> None:
    from concurrent import futures

    from tests.certs import key_pem as _key_pem
    from tests.grpc_server import make_handlers

    path = str(tmp_path / "grpc.sock")
    calls = [0]
    server = grpc.server(futures.ThreadPoolExecutor(2), handlers=[make_handlers(calls)])
    creds = grpc.ssl_server_credentials([(_key_pem(chain.leaf_key), pem(chain.leaf) + pem(chain.intermediate))])
    assert server.add_secure_port(f"unix:{path}", creds)
    server.start()
    try:
        with secure_channel(f"unix:{path}", good, root_certificates=roots(chain)) as channel:  # name: localhost
            assert channel.unary_unary(UNARY)(b"u", timeout=TIMEOUT) == b"u"
            assert channel.pin_result is not None and channel.pin_result.status == "match"
    finally:
        server.stop(None).wait(5)


def test_relay_without_epoll(
    server: GrpcServer, chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import select

    monkeypatch.delattr(select, "epoll", raising=False)  # the selectors fallback (macOS, BSD)
    with secure_channel(target(server), good, root_certificates=roots(chain)) as channel:
        assert all_four(channel) == EXPECTED
        assert channel._relay._poller._epoll is None


def test_unix_and_unsupported_targets() -> None:
    upstream, authority = parse_target("unix:///run/svc.sock", None)
    assert upstream.unix_path == "/run/svc.sock" and upstream.server_hostname == authority == "localhost"
    assert parse_target("unix:rel.sock", "svc.example")[0].server_hostname == "svc.example"
    assert parse_target("ipv4:10.0.0.1:5,10.0.0.2:6", None)[0].addresses[1][1] == ("10.0.0.2", 6)
    for bad_target in ("xds:///svc", "dns://8.8.8.8/api.example.com", ""):
        with pytest.raises(ValueError):
            parse_target(bad_target, None)


# -- closing: nothing leaks ------------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _relay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pinengine-grpc")]


def _settled(baseline_threads: int, baseline_fds: int) -> bool:
    gc.collect()
    return (
        not _relay_threads()
        and threading.active_count() <= baseline_threads
        and _fds() <= baseline_fds
    )


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_many_channels_leak_nothing(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    def one(i: int) -> str:
        channel = secure_channel(target(server), good, root_certificates=roots(chain))
        assert channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT) == b"x"
        path = channel._relay.local_address
        if i % 2:
            channel.close()  # closed explicitly
        else:
            del channel  # or dropped: garbage collection stops the forwarder
        return str(path)

    for i in range(10):  # warm up grpc's own lazily created state
        one(i)
    assert _until(lambda: _settled(10**6, 10**6))
    threads, fds, rss = threading.active_count(), _fds(), _rss_kib()
    paths = [one(i) for i in range(50)]
    assert _until(lambda: _settled(threads, fds)), (threading.enumerate(), _fds(), fds)
    assert not any(os.path.exists(os.path.dirname(p)) for p in paths)  # socket directories removed
    growth = _rss_kib() - rss
    assert growth < 8 * 1024, f"RSS grew by {growth} KiB over 50 channels"  # measured: under 300 KiB


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_many_aio_channels_leak_nothing(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    async def run(n: int) -> None:
        for i in range(n):
            channel = aio_secure_channel(target(server), good, root_certificates=roots(chain))
            assert await channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT) == b"x"
            if i % 2:
                await channel.close()
            else:
                del channel  # dropped: garbage collection stops the forwarder
                gc.collect()

    asyncio.run(run(5))
    assert _until(lambda: _settled(10**6, 10**6))
    threads, fds = threading.active_count(), _fds()
    asyncio.run(run(25))
    assert _until(lambda: _settled(threads, fds)), (threading.enumerate(), _fds(), fds)


def test_close_aborts_a_stalled_handshake(good: PinPolicy, chain: Chain) -> None:
    # A server that accepts TCP and never answers the ClientHello.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    channel = secure_channel(f"{HOST}:{listener.getsockname()[1]}", good, root_certificates=roots(chain))
    err = rpc_error(lambda: channel.unary_unary(UNARY)(b"x", timeout=0.5))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Still waiting for the server. (The handshake runs in the relay's own
    # loop: no thread per connection attempt.)
    assert channel._relay.pending_attempts == 1
    start = time.monotonic()
    channel.close()
    assert time.monotonic() - start < 3
    assert _until(lambda: not _relay_threads(), 5)
    listener.close()
    for s in accepted:
        s.close()


def test_closed_channel(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    channel = secure_channel(target(server), good, root_certificates=roots(chain))
    directory = os.path.dirname(str(channel._relay.local_address))
    assert channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT) == b"x"
    channel.close()
    channel.close()  # idempotent
    assert channel.closed and channel._relay.closed and not os.path.exists(directory)
    with socket.socket(socket.AF_UNIX) as s, pytest.raises((ConnectionRefusedError, FileNotFoundError)):
        s.connect(channel._relay.local_address)  # the endpoint is gone
    with pytest.raises(ValueError):  # what grpc raises for a closed channel
        channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT)


def test_socket_directory_is_private(
    server: GrpcServer, chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Linux: abstract sockets that take connections from this process only
    # (tests/security/test_grpc_local_endpoints.py tries other processes);
    # elsewhere: unix sockets in a directory only this user can enter.
    from pinengine.hooks._relay import _loop

    with secure_channel(target(server), good, root_certificates=roots(chain)) as channel:
        if _loop._ABSTRACT:
            assert channel._relay.local_target.startswith("unix-abstract:")
        monkeypatch.setattr(_loop, "_ABSTRACT", False)
    with secure_channel(target(server), good, root_certificates=roots(chain)) as channel:
        directory = os.path.dirname(str(channel._relay.local_address))
        assert channel._relay.local_target.startswith("unix:")
        assert os.stat(directory).st_mode & 0o777 == 0o700
        assert channel.unary_unary(UNARY)(b"fs", timeout=TIMEOUT) == b"fs"
    assert not os.path.exists(directory)


def test_bad_arguments(chain: Chain, good: PinPolicy) -> None:
    with pytest.raises(TypeError):
        secure_channel("localhost:1", object())  # type: ignore[arg-type]
    assert not _relay_threads()
