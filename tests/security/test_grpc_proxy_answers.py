"""A hostile CONNECT proxy's answers: bounded in size and time, parsed strictly, never taken for the server's.

The proxy's status line and headers are read up to 8 KiB (MAX_ANSWER) and
within ``connect_timeout``; only a 2xx opens the tunnel; bytes after the
answer (before the client's first TLS bytes: a TLS server speaks second) are
refused rather than fed to TLS. A refused tunnel is a failed connection
(``failure.kind == "proxy"``); no RPC reaches the server.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest

grpc = pytest.importorskip("grpc")

from pinengine import PinPolicy  # noqa: E402
from pinengine.hooks._relay._connect import MAX_ANSWER, ConnectAnswer, connect_request  # noqa: E402
from pinengine.hooks.grpc import PinnedChannelError, secure_channel  # noqa: E402
from tests.certs import Chain, cached_chain  # noqa: E402
from tests.grpc_server import UNARY, GrpcServer  # noqa: E402
from tests.grpc_support import HOST, TIMEOUT, pin, policy_for, roots  # noqa: E402
from tests.proxy import ConnectProxy  # noqa: E402


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def good(chain: Chain) -> PinPolicy:
    return policy_for(pin(chain.ders[1]), pin(chain.ders[0]))


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[GrpcServer]:
    with GrpcServer(chain) as srv:
        yield srv


def through(proxy: ConnectProxy, server: GrpcServer, chain: Chain, good: PinPolicy,
            connect_timeout: float = 20.0) -> grpc.RpcError | bytes:
    with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain), connect_timeout=connect_timeout,
                        options=[("grpc.http_proxy", proxy.url)]) as channel:
        try:
            return bytes(channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT))
        except grpc.RpcError as exc:
            return exc


def padded_answer(size: int) -> bytes:
    """A 200 answer of exactly ``size`` bytes."""
    head, tail = b"HTTP/1.1 200 Connection established\r\nX-Pad: ", b"\r\n\r\n"
    return head + b"a" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (padded_answer(MAX_ANSWER + 1), f"over {MAX_ANSWER} bytes"),
        (b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * (4 * MAX_ANSWER), f"over {MAX_ANSWER} bytes"),  # no end at all
        (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
         "the proxy refused the tunnel: 407 Proxy Authentication Required"),
        (b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03\x00\x02junk", "sent data after its answer"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "is not HTTP"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "is not HTTP"),
        (b"HTTP/1.1 200 OK\r\n", "closed the connection before answering"),  # then it hangs up
    ],
    ids=["over-the-bound", "endless", "407", "data-after", "not-http", "bad-status", "cut-short"],
)
def test_bad_answers_are_refused(
    server: GrpcServer, chain: Chain, good: PinPolicy, answer: bytes, problem: str
) -> None:
    before = server.calls
    with ConnectProxy(answer=answer) as proxy:
        err = through(proxy, server, chain, good)
    assert isinstance(err, PinnedChannelError) and err.failure.kind == "proxy", err
    assert problem in err.details()
    assert server.calls == before


def test_an_answer_at_the_bound_opens_the_tunnel(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    with ConnectProxy(answer=padded_answer(MAX_ANSWER), tunnel=True) as proxy:
        assert through(proxy, server, chain, good) == b"x"


def test_a_proxy_that_trickles_its_answer_is_cut_off_in_time(
    server: GrpcServer, chain: Chain, good: PinPolicy
) -> None:
    # One byte every 50 ms: the answer would take minutes; connect_timeout bounds it.
    with ConnectProxy(answer=padded_answer(4000), trickle=0.05) as proxy:
        start = time.monotonic()
        err = through(proxy, server, chain, good, connect_timeout=1.0)
        elapsed = time.monotonic() - start
    assert isinstance(err, PinnedChannelError) and err.failure.kind == "proxy", err
    assert "timed out waiting for the proxy's answer to CONNECT" in err.details()
    assert elapsed < 8


def test_the_answer_parser_is_bounded_and_linear() -> None:
    # Byte by byte up to the bound: each byte is scanned a bounded number of times.
    answer = ConnectAnswer()
    data = padded_answer(MAX_ANSWER)
    start = time.perf_counter()
    for i in range(len(data) - 1):
        assert not answer.feed(data[i:i + 1])
    assert answer.feed(data[-1:]) and answer.status == 200
    assert time.perf_counter() - start < 1.0  # linear: 8 KiB of one-byte feeds (measured: ~10 ms)
    with pytest.raises(ConnectionError, match="over"):
        big = ConnectAnswer()
        for _ in range(MAX_ANSWER + 1):
            big.feed(b"a")
    assert ConnectAnswer().room() == MAX_ANSWER + 1


@pytest.mark.parametrize("bad", ["host\r\nX: y:443", "host:443\n", "host\x00:443"])
def test_a_connect_request_cannot_be_split(bad: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        connect_request(bad)
    with pytest.raises(ValueError, match="control characters"):
        connect_request("host:443", (("Proxy-Authorization", f"Basic {bad}"),))
