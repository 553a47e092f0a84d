"""A proxy URL's credentials go to that proxy only: not to the server, not into logs or errors.

``http://user:password@proxy:port`` becomes a ``Proxy-Authorization: Basic``
header of the CONNECT request, as grpc sends it. The server (reached through
the tunnel), the ``pinengine`` log lines at every level, the channel's
errors and reprs never see the password or its base64 form.
"""

from __future__ import annotations

import base64
import logging
from typing import Iterator

import pytest

grpc = pytest.importorskip("grpc")

from pinengine import PinPolicy  # noqa: E402
from pinengine.hooks.grpc import PinnedChannelError, secure_channel  # noqa: E402
from tests.certs import Chain, cached_chain  # noqa: E402
from tests.grpc_server import METADATA, UNARY, GrpcServer  # noqa: E402
from tests.grpc_support import HOST, TIMEOUT, pin, policy_for, roots, rpc_error  # noqa: E402
from tests.proxy import ConnectProxy  # noqa: E402

USER, PASSWORD = "svc", "s3cr3t@pr0xy"  # the URL carries the @ percent-encoded
SECRETS = (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())


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


def url_with_credentials(proxy: ConnectProxy) -> str:
    return f"http://{USER}:{PASSWORD.replace('@', '%40')}@127.0.0.1:{proxy.port}"


def test_the_credentials_go_to_the_proxy_only(
    server: GrpcServer, chain: Chain, good: PinPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="pinengine"), ConnectProxy() as proxy:
        with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain),
                            options=[("grpc.http_proxy", url_with_credentials(proxy))]) as channel:
            seen_by_server = channel.unary_unary(METADATA)(b"", timeout=TIMEOUT).decode()
            text = repr(channel) + repr(channel._relay.upstream)
    assert f"Proxy-Authorization: Basic {SECRETS[1]}\r\n".encode() in proxy.heads[0]
    for secret in SECRETS:
        assert secret not in seen_by_server
        assert secret not in caplog.text
        assert secret not in text
    assert "proxy-authorization" not in seen_by_server.lower()


def test_a_refusal_names_the_proxy_without_its_credentials(
    server: GrpcServer, chain: Chain, good: PinPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    answer = b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"
    with caplog.at_level(logging.DEBUG, logger="pinengine"), ConnectProxy(answer=answer) as proxy:
        with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain),
                            options=[("grpc.http_proxy", url_with_credentials(proxy))]) as channel:
            err = rpc_error(lambda: channel.unary_unary(UNARY)(b"x", timeout=TIMEOUT))
    assert isinstance(err, PinnedChannelError) and err.failure.kind == "proxy"
    assert f"127.0.0.1:{proxy.port}" in err.details()
    for secret in SECRETS:
        assert secret not in err.details() and secret not in str(err) and secret not in caplog.text
        assert secret not in repr(err.failure)


def test_no_credentials_when_the_host_is_not_proxied(
    server: GrpcServer, chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConnectProxy() as proxy:
        monkeypatch.setenv("grpc_proxy", url_with_credentials(proxy))
        monkeypatch.setenv("no_proxy", HOST)
        with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain)) as channel:
            seen_by_server = channel.unary_unary(METADATA)(b"", timeout=TIMEOUT).decode()
    assert proxy.heads == []
    assert all(secret not in seen_by_server for secret in SECRETS)
