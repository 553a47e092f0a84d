"""Load balancing and re-resolution through pinned gRPC channels, against real grpcio servers.

A pinned channel gives grpc one local endpoint per address of the target
(for every load-balancing policy but pick_first), so grpc's own policies see
every backend; pick_first gets one endpoint whose connections try the
addresses in order. Names are resolved again on a new connection once
``grpc.dns_min_time_between_resolutions_ms`` has passed, as grpc does.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from typing import Any, Iterator

import pytest

grpc = pytest.importorskip("grpc")

import grpc.aio  # noqa: E402, F811

from pinengine import PinPolicy  # noqa: E402
from pinengine.hooks.grpc import aio_secure_channel, secure_channel  # noqa: E402
from tests.certs import Chain, make_chain, rotated  # noqa: E402
from tests.grpc_server import WHERE, GrpcServer  # noqa: E402
from tests.grpc_support import HOST, OVERRIDE, ROUND_ROBIN, TIMEOUT, pin, policy_for, roots, until  # noqa: E402


@pytest.fixture(scope="module")
def good(chain: Chain) -> PinPolicy:
    return policy_for(pin(chain.ders[1]), pin(make_chain("p256", HOST).ders[1]))


@pytest.fixture(scope="module")
def backends(chain: Chain) -> Iterator[tuple[GrpcServer, GrpcServer]]:
    with GrpcServer(chain) as a, GrpcServer(chain) as b:
        yield a, b


def reached(channel: Any, rpcs: int = 40) -> Counter[bytes]:
    where = channel.unary_unary(WHERE)
    return Counter(where(b"", timeout=TIMEOUT, wait_for_ready=True) for _ in range(rpcs))


def both(channel: Any, a: GrpcServer, b: GrpcServer) -> bool:
    """RPCs until both backends answered (round_robin connects to each as it can)."""
    return until(lambda: set(reached(channel, 10)) == {a.target.encode(), b.target.encode()})


def fake_dns(monkeypatch: pytest.MonkeyPatch, name: str, answer: list[int]) -> list[str]:
    """``name`` resolves to 127.0.0.1 at each port in ``answer`` (a list the test can change); returns the lookups."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in list(answer)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


# -- every address reaches grpc ---------------------------------------------------------


def test_round_robin_reaches_every_backend(backends: tuple[GrpcServer, GrpcServer], chain: Chain, good: PinPolicy) -> None:
    a, b = backends
    target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    options = [ROUND_ROBIN, OVERRIDE]
    plain = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots(chain)), options=options)
    with plain:
        assert both(plain, a, b)  # the reference: what grpc itself does
    with secure_channel(target, good, root_certificates=roots(chain), options=options) as channel:
        assert channel._relay.endpoints == 2
        assert both(channel, a, b)
        spread = reached(channel)
        assert spread[a.target.encode()] == spread[b.target.encode()] == 20  # round robin, as grpc does
        assert channel.connections_established == 2 and channel.connections_refused == 0
        assert channel.pin_result is not None and channel.pin_result.status == "match"


def test_pick_first_uses_the_first_address(backends: tuple[GrpcServer, GrpcServer], chain: Chain, good: PinPolicy) -> None:
    a, b = backends
    with secure_channel(
        f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}", good, root_certificates=roots(chain), options=[OVERRIDE]
    ) as channel:
        assert reached(channel) == Counter({a.target.encode(): 40})
        assert channel._relay.endpoints == 1


@pytest.mark.parametrize(
    "options",
    [
        [("grpc.lb_policy_name", "round_robin")],
        [("grpc.service_config", json.dumps({"loadBalancingPolicy": "ROUND_ROBIN"}))],
        [("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}, {"pick_first": {}}]}))],
        [("grpc.service_config", json.dumps({"loadBalancingConfig": [{"weighted_round_robin": {}}]}))],
    ],
    ids=["lb_policy_name", "loadBalancingPolicy", "loadBalancingConfig", "weighted_round_robin"],
)
def test_every_way_of_naming_a_balancing_policy(
    backends: tuple[GrpcServer, GrpcServer], chain: Chain, good: PinPolicy, options: list[tuple[str, Any]]
) -> None:
    a, b = backends
    target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    with secure_channel(target, good, root_certificates=roots(chain), options=[*options, OVERRIDE]) as channel:
        assert channel._relay.endpoints == 2
        assert both(channel, a, b)


def test_pick_first_in_the_service_config_keeps_one_endpoint(
    backends: tuple[GrpcServer, GrpcServer], chain: Chain, good: PinPolicy
) -> None:
    a, b = backends
    config = json.dumps({"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": True}}]})
    with secure_channel(
        f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}", good, root_certificates=roots(chain),
        options=[("grpc.service_config", config), ("grpc.lb_policy_name", "round_robin"), OVERRIDE],
    ) as channel:
        assert channel._relay.endpoints == 1 and channel._relay.book.shuffle
        assert len(reached(channel)) == 1  # one backend, whichever the shuffle put first


def test_round_robin_over_a_dns_name(
    backends: tuple[GrpcServer, GrpcServer], chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = backends
    fake_dns(monkeypatch, "pool.localhost", [a.port, b.port])
    with secure_channel(
        "dns:///pool.localhost:443", good, root_certificates=roots(chain), options=[ROUND_ROBIN, OVERRIDE]
    ) as channel:
        assert channel._relay.endpoints == 2
        assert both(channel, a, b)


def test_aio_round_robin(backends: tuple[GrpcServer, GrpcServer], chain: Chain, good: PinPolicy) -> None:
    a, b = backends

    async def main() -> set[bytes]:
        seen: set[bytes] = set()
        async with aio_secure_channel(
            f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}", good, root_certificates=roots(chain),
            options=[ROUND_ROBIN, OVERRIDE],
        ) as channel:
            where = channel.unary_unary(WHERE)
            for _ in range(200):
                seen.add(await where(b"", timeout=TIMEOUT, wait_for_ready=True))
                if len(seen) == 2:
                    break
        return seen

    assert asyncio.run(main()) == {a.target.encode(), b.target.encode()}


def test_a_backend_with_another_key_is_refused_the_others_serve(chain: Chain, caplog: pytest.LogCaptureFixture) -> None:
    # Each backend is judged alone, as grpc judges certificates: the one whose
    # key is not pinned never gets an RPC; the others keep serving.
    # (The impostor's certificate is valid, from the same CA: only the pin tells them apart.)
    leaf_pinned = policy_for(pin(chain.ders[0]), pin(make_chain("p256", HOST).ders[0]))
    with GrpcServer(chain) as a, GrpcServer(rotated(chain, HOST)) as impostor:
        with secure_channel(
            f"ipv4:127.0.0.1:{a.port},127.0.0.1:{impostor.port}", leaf_pinned,
            root_certificates=roots(chain), options=[ROUND_ROBIN, OVERRIDE],
        ) as channel:
            assert reached(channel) == Counter({a.target.encode(): 40})
            assert until(lambda: channel.connections_refused >= 1)
            # (A later connection to the good backend clears pin_failure; the log keeps it.)
            assert f"connection to 127.0.0.1:{impostor.port} refused by the pin check" in caplog.text
            # the violation report names the backend that was refused, not the first address of the list
            assert f"pin violation for localhost:{impostor.port} (refused)" in caplog.text
            assert f"pin violation for localhost:{a.port}" not in caplog.text
            assert impostor.calls == 0
            assert channel.connections_established == 1


# -- resolving again, as grpc does ------------------------------------------------------------


def test_reconnect_resolves_again_after_the_minimum_interval(
    chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GrpcServer(chain) as a, GrpcServer(chain) as b:
        answer = [a.port]
        lookups = fake_dns(monkeypatch, "moving.localhost", answer)
        options = [("grpc.dns_min_time_between_resolutions_ms", 0), OVERRIDE,
                   ("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50)]
        with secure_channel("moving.localhost:443", good, root_certificates=roots(chain), options=options) as channel:
            where = channel.unary_unary(WHERE)
            assert where(b"", timeout=TIMEOUT) == a.target.encode()
            assert lookups == ["moving.localhost"]
            answer[:] = [b.port]  # the name moves
            a.stop()  # the connection drops; grpc reconnects; the relay resolves again
            assert until(lambda: _answer(where) == b.target.encode())
            assert len(lookups) >= 2


def test_reconnect_within_the_minimum_interval_keeps_the_addresses(
    chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GrpcServer(chain) as a:
        lookups = fake_dns(monkeypatch, "steady.localhost", [a.port])
        options = [("grpc.dns_min_time_between_resolutions_ms", 60_000), OVERRIDE,
                   ("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50)]
        with secure_channel("steady.localhost:443", good, root_certificates=roots(chain), options=options) as channel:
            where = channel.unary_unary(WHERE)
            for _ in range(3):
                assert where(b"", timeout=TIMEOUT) == a.target.encode()
                a.restart(chain)  # same port: reconnects succeed without a lookup
                assert until(lambda: _answer(where) == a.target.encode())
            assert lookups == ["steady.localhost"] and channel.connections_established >= 3


def test_spread_endpoints_follow_a_moved_address(chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    with GrpcServer(chain) as a, GrpcServer(chain) as b, GrpcServer(chain) as c:
        answer = [a.port, b.port]
        fake_dns(monkeypatch, "pool2.localhost", answer)
        options = [ROUND_ROBIN, OVERRIDE, ("grpc.dns_min_time_between_resolutions_ms", 0),
                   ("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50),
                   ("grpc.max_reconnect_backoff_ms", 200)]
        with secure_channel("pool2.localhost:443", good, root_certificates=roots(chain), options=options) as channel:
            assert both(channel, a, b)
            answer[:] = [a.port, c.port]  # b is replaced by c
            b.stop()
            assert until(lambda: set(reached(channel, 10)) == {a.target.encode(), c.target.encode()}, 20)


def test_an_endpoint_whose_address_went_away_is_refused_quietly(
    chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GrpcServer(chain) as a, GrpcServer(chain) as b:
        answer = [a.port, b.port]
        fake_dns(monkeypatch, "pool3.localhost", answer)
        options = [ROUND_ROBIN, OVERRIDE, ("grpc.dns_min_time_between_resolutions_ms", 0),
                   ("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50)]
        with secure_channel("pool3.localhost:443", good, root_certificates=roots(chain), options=options) as channel:
            assert both(channel, a, b)
            refused = channel.connections_refused
            answer[:] = [a.port]  # the pool shrinks
            b.stop()
            assert until(lambda: channel._relay.book.assigned[1] is None)
            assert reached(channel) == Counter({a.target.encode(): 40})
            # the emptied endpoint is not a failed connection: nothing to report
            assert channel.connections_refused == refused and channel.pin_failure is None


def test_a_name_that_does_not_resolve_for_round_robin_fails_at_creation(chain: Chain, good: PinPolicy) -> None:
    # One endpoint per address needs the addresses when the channel is made.
    with pytest.raises(OSError, match="the round_robin policy needs the target's addresses"):
        secure_channel("nowhere.invalid:443", good, root_certificates=roots(chain), options=[ROUND_ROBIN])


def _answer(where: Any) -> bytes | None:
    try:
        return bytes(where(b"", timeout=2))
    except grpc.RpcError:
        return None


def test_a_slow_resolution_is_cut_off_by_dns_ares_query_timeout(
    chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.localhost":
            time.sleep(3)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with secure_channel("slow.localhost:443", good, root_certificates=roots(chain),
                        options=[("grpc.dns_ares_query_timeout", 500)]) as channel:
        start = time.monotonic()
        err = _error(lambda: channel.unary_unary(WHERE)(b"", timeout=TIMEOUT))
        assert time.monotonic() - start < 2.5
    assert err.failure.kind == "connect" and "timed out resolving slow.localhost:443" in err.details()


def test_a_name_that_does_not_resolve(chain: Chain, good: PinPolicy) -> None:
    with secure_channel("nowhere.invalid:443", good, root_certificates=roots(chain)) as channel:
        err = _error(lambda: channel.unary_unary(WHERE)(b"", timeout=TIMEOUT))
    assert err.failure.kind == "connect" and err.details().startswith("connection to nowhere.invalid")


def _error(call: Any) -> Any:
    from pinengine.hooks.grpc import PinnedChannelError

    with pytest.raises(PinnedChannelError) as info:
        call()
    return info.value
