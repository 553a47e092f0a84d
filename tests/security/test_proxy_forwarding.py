"""HTTPS requests that would leave without the pinned context: forwarding proxies and swapped contexts.

``urllib3.ProxyManager(use_forwarding_for_https=True)`` sends an HTTPS
request to the proxy itself (TLS to the proxy, the request in the clear
inside it): no TLS connection to the pinned host is ever made, so no pin can
be checked. A pinned manager refuses the option. The other ways an HTTPS
request could get a pool without the pinned context — per-request
``pool_kwargs``, an edited ``connection_pool_kw``, the adapter's own pool
managers reached without requests' per-request settings — are refused or
pinned too.
"""

from __future__ import annotations

import ssl
import warnings
from typing import Any, Iterator

import certifi
import pytest
import requests
import urllib3

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine.hooks._contexts import find_pin_error
from pinengine.hooks.requests import PinnedAdapter
from pinengine.hooks.urllib3 import PinnedPoolManager, PinnedProxyManager
from tests.certs import Chain, cached_chain, make_chain
from tests.proxy import ConnectProxy
from tests.tls import RecordingServer, TLSServer

HOST = "localhost"
SECRET = "Bearer s3cret-token"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def stranger() -> Chain:
    return make_chain("p256", HOST)


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(chain) as srv:
        yield srv


@pytest.fixture(scope="module")
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as p:
        yield p


def strangers_policy(stranger: Chain) -> PinPolicy:
    """A policy under which ``server`` is unpinned: HOST is pinned to a stranger's keys."""
    return PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": [pin(stranger.ders[0]), pin(stranger.ders[1])]}]})


@pytest.mark.parametrize("proxy_scheme", ["https", "http"])
def test_forwarding_for_https_is_refused(proxy_scheme: str, chain: Chain, stranger: Chain, server: TLSServer) -> None:
    # The "proxy" is a TLS server that records what it is sent; forwarding
    # would hand it the request, Authorization header and all.
    proxy_chain = make_chain("p256", "127.0.0.1")
    with RecordingServer(proxy_chain) as forwarder:
        proxy_ctx = ssl.create_default_context(cafile=forwarder.cafile)
        error: BaseException | None = None
        try:
            manager = PinnedProxyManager(
                f"{proxy_scheme}://127.0.0.1:{forwarder.port}", strangers_policy(stranger),
                ca_certs=server.cafile, proxy_ssl_context=proxy_ctx, use_forwarding_for_https=True,
            )
        except ValueError as exc:
            error = exc
        else:
            with warnings.catch_warnings(), pytest.raises(urllib3.exceptions.HTTPError):
                warnings.simplefilter("ignore")
                manager.request("GET", server.url(), headers={"Authorization": SECRET}, retries=False, timeout=3)
        assert SECRET.encode() not in forwarder.received
        assert error is not None and "use_forwarding_for_https" in str(error)


def test_forwarding_off_is_still_a_pinned_tunnel(server: TLSServer, proxy: ConnectProxy, stranger: Chain) -> None:
    manager = PinnedProxyManager(proxy.url, strangers_policy(stranger), ca_certs=server.cafile,
                                 use_forwarding_for_https=False, retries=False)
    with pytest.raises(urllib3.exceptions.SSLError) as info:
        manager.request("GET", server.url())
    assert find_pin_error(info.value) is not None


SWAPS: dict[str, dict[str, Any]] = {
    "no-context": {"ssl_context": None},
    "plain-context": {"ssl_context": "plain"},
    "cert-none": {"cert_reqs": "CERT_NONE"},
    "forwarding": {"_proxy_config": "forwarding"},
}


def _swap(name: str, server: TLSServer) -> dict[str, Any]:
    swap = dict(SWAPS[name])
    if swap.get("ssl_context") == "plain":
        swap["ssl_context"] = ssl.create_default_context(cafile=server.cafile)
    if swap.get("_proxy_config") == "forwarding":
        swap["_proxy_config"] = urllib3.connection.ProxyConfig(None, True, None, None)  # type: ignore[attr-defined]
    return swap


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("swap", sorted(SWAPS))
@pytest.mark.parametrize("manager_class", ["pool", "proxy"])
def test_per_request_pool_kwargs_cannot_unpin(
    swap: str, manager_class: str, server: TLSServer, proxy: ConnectProxy, stranger: Chain
) -> None:
    policy = strangers_policy(stranger)
    manager: urllib3.PoolManager
    if manager_class == "pool":
        manager = PinnedPoolManager(policy, ca_certs=server.cafile, retries=False)
    else:
        manager = PinnedProxyManager(proxy.url, policy, ca_certs=server.cafile, retries=False)
    error = ValueError if swap == "forwarding" else TypeError
    with pytest.raises(error, match="use_forwarding_for_https" if swap == "forwarding" else "pinned"):
        pool = manager.connection_from_url(server.url(), pool_kwargs=_swap(swap, server))
        pool.urlopen("GET", "/", retries=False)  # (reached only if the swap was accepted)


@pytest.mark.parametrize("swap", ["no-context", "plain-context"])
def test_edited_connection_pool_kw_cannot_unpin(swap: str, server: TLSServer, stranger: Chain) -> None:
    manager = PinnedPoolManager(strangers_policy(stranger), ca_certs=server.cafile, retries=False)
    manager.connection_pool_kw.update(_swap(swap, server))
    with pytest.raises(TypeError, match="pinned"):
        manager.request("GET", server.url())


def test_plain_http_pools_are_untouched(stranger: Chain) -> None:
    # the guard is about HTTPS pools; a plain http:// pool has no TLS to pin
    manager = PinnedPoolManager(strangers_policy(stranger))
    assert manager.connection_from_url("http://127.0.0.1:9/").scheme == "http"


@pytest.fixture
def trust_server_everywhere(server: TLSServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``server`` trusted by urllib3's own default context and by requests' bundle (certifi).

    Then a pool that is not pinned reaches the unpinned server with a
    validated connection and succeeds: only a pinned context refuses it.
    """
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, server.cafile)
    monkeypatch.setattr(certifi, "where", lambda: server.cafile)


@pytest.mark.usefixtures("trust_server_everywhere")
def test_requests_adapter_pools_made_outside_send_are_pinned(
    server: TLSServer, proxy: ConnectProxy, stranger: Chain
) -> None:
    adapter = PinnedAdapter(strangers_policy(stranger))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pool = adapter.get_connection(server.url())  # deprecated, but still there for subclasses
    with pytest.raises(urllib3.exceptions.SSLError) as info:
        pool.urlopen("GET", "/", retries=False)
    assert isinstance(find_pin_error(info.value), PinMismatchError)
    with pytest.raises(urllib3.exceptions.SSLError) as info:
        adapter.poolmanager.request("GET", server.url(), retries=False)
    assert isinstance(find_pin_error(info.value), PinMismatchError)
    # the plain ProxyManager requests makes for a proxy URL
    with pytest.raises(urllib3.exceptions.SSLError) as info:
        adapter.proxy_manager_for(proxy.url).request("GET", server.url(), retries=False)
    assert isinstance(find_pin_error(info.value), PinMismatchError)
    adapter.close()


@pytest.mark.usefixtures("trust_server_everywhere")
def test_requests_session_through_a_proxy_is_pinned(server: TLSServer, proxy: ConnectProxy, stranger: Chain) -> None:
    session = requests.Session()
    session.mount("https://", PinnedAdapter(strangers_policy(stranger)))
    for proxies in ({"https": proxy.url}, {"all": proxy.url}):
        with pytest.raises(requests.exceptions.SSLError) as info:
            session.get(server.url(), proxies=proxies, timeout=10)
        assert isinstance(info.value.__cause__, PinMismatchError)
    session.close()
