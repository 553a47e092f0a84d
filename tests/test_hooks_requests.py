"""requests and urllib3 adapters against real TLS servers (and a real CONNECT proxy) on loopback."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import urllib3

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine.hooks.requests import PinnedAdapter, pinned_session
from pinengine.hooks.urllib3 import PinnedPoolManager, PinnedProxyManager
from tests.certs import Chain
from tests.proxy import ConnectProxy
from tests.tls import TLSServer

HOST = "localhost"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def policy(*pins: str) -> PinPolicy:
    return PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": list(pins)}]})


@pytest.fixture(scope="module")
def key_type() -> str:
    return "p384"


@pytest.fixture
def server(chain: Chain) -> Any:
    with TLSServer(chain) as srv:
        yield srv


@pytest.fixture(scope="module")
def proxy() -> Any:
    with ConnectProxy() as p:
        yield p


def test_requests_plain_and_pooled(server: TLSServer, chain: Chain, other: Chain) -> None:
    session = pinned_session(policy(pin(chain.ders[1]), pin(other.ders[1])), verify=server.cafile)
    for _ in range(3):
        assert session.get(server.url(), timeout=10).text.startswith("hello")
    assert server.connections == 1  # one pooled connection, checked when it was made
    session.close()


def test_requests_mismatch_is_ssl_error_caused_by_pin_error(server: TLSServer, other: Chain) -> None:
    session = pinned_session(policy(pin(other.ders[0]), pin(other.ders[1])), verify=server.cafile)
    with pytest.raises(requests.exceptions.SSLError) as info:
        session.get(server.url(), timeout=10)
    assert isinstance(info.value.__cause__, PinMismatchError)
    assert pin(other.ders[0]) in str(info.value.__cause__)


def test_requests_verify_bundle_is_the_only_trust(server: TLSServer, chain: Chain, other: Chain) -> None:
    session = pinned_session(policy(pin(chain.ders[1]), pin(other.ders[1])))
    # verify=True trusts certifi, which does not hold the test CA: validation fails (not a pin error)
    with pytest.raises(requests.exceptions.SSLError) as info:
        session.get(server.url(), timeout=10)
    assert not isinstance(info.value.__cause__, PinMismatchError)
    assert session.get(server.url(), timeout=10, verify=server.cafile).status_code == 200


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_requests_verify_false_counts_only_the_leaf(server: TLSServer, chain: Chain, other: Chain) -> None:
    session = requests.Session()
    session.mount("https://", PinnedAdapter(policy(pin(chain.ders[1]), pin(chain.ders[2]))))
    with pytest.raises(requests.exceptions.SSLError) as info:
        session.get(server.url(), timeout=10, verify=False)
    assert "only the leaf" in str(info.value.__cause__)
    # the same adapter, validating, accepts the intermediate pin: settings never leak between pools
    assert session.get(server.url(), timeout=10, verify=server.cafile).status_code == 200
    leaf_session = pinned_session(policy(pin(chain.ders[0]), pin(other.ders[0])), verify=False)
    assert leaf_session.get(server.url(), timeout=10).status_code == 200


def test_requests_through_connect_proxy(server: TLSServer, proxy: ConnectProxy, chain: Chain, other: Chain) -> None:
    proxies = {"https": proxy.url}
    good = pinned_session(policy(pin(chain.ders[2]), pin(other.ders[1])), verify=server.cafile)
    assert good.get(server.url(), proxies=proxies, timeout=10).status_code == 200
    bad = pinned_session(policy(pin(other.ders[0]), pin(other.ders[1])), verify=server.cafile)
    with pytest.raises(requests.exceptions.SSLError) as info:
        bad.get(server.url(), proxies=proxies, timeout=10)
    assert isinstance(info.value.__cause__, PinMismatchError)
    assert proxy.tunnels.count(f"{HOST}:{server.port}") == 2


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_urllib3_pool_manager(server: TLSServer, chain: Chain, other: Chain) -> None:
    good = PinnedPoolManager(policy(pin(chain.ders[0]), pin(other.ders[0])), ca_certs=server.cafile)
    for _ in range(2):
        assert good.request("GET", server.url()).data.startswith(b"hello")
    assert server.connections == 1
    bad = PinnedPoolManager(policy(pin(other.ders[0]), pin(other.ders[1])), ca_certs=server.cafile, retries=False)
    with pytest.raises(urllib3.exceptions.SSLError) as info:
        bad.request("GET", server.url())
    from pinengine.hooks._contexts import find_pin_error

    assert find_pin_error(info.value) is not None
    insecure = PinnedPoolManager(policy(pin(chain.ders[1]), pin(chain.ders[2])), cert_reqs="CERT_NONE", retries=False)
    with pytest.raises(urllib3.exceptions.SSLError) as info:
        insecure.request("GET", server.url())
    assert "only the leaf" in str(find_pin_error(info.value))



def test_urllib3_pool_manager_pins_a_context_the_caller_built(server: TLSServer, chain: Chain, other: Chain) -> None:
    import ssl

    from pinengine.hooks._contexts import find_pin_error

    good_policy = policy(pin(chain.ders[0]), pin(other.ders[0]))
    context = ssl.create_default_context(cafile=server.cafile)
    good = PinnedPoolManager(good_policy, ssl_context=context)
    assert good.request("GET", server.url()).data.startswith(b"hello")
    # The same context cannot be pinned to a second policy: one of the two
    # owners would lose its pins.
    with pytest.raises(ValueError, match="already enforces another pin policy"):
        PinnedPoolManager(policy(pin(other.ders[0]), pin(other.ders[1])), ssl_context=context)
    mine = ssl.create_default_context(cafile=server.cafile)
    bad = PinnedPoolManager(policy(pin(other.ders[0]), pin(other.ders[1])), ssl_context=mine, retries=False)
    with pytest.raises(urllib3.exceptions.SSLError) as info:
        bad.request("GET", server.url())
    assert find_pin_error(info.value) is not None
    # Pinned in place: a plain urllib3 manager given that context is held to the pins too.
    plain = urllib3.PoolManager(ssl_context=mine, retries=False)
    with pytest.raises(urllib3.exceptions.SSLError) as info:
        plain.request("GET", server.url())
    assert find_pin_error(info.value) is not None
    with pytest.raises(TypeError, match="not both"):
        PinnedPoolManager(good_policy, ssl_context=ssl.create_default_context(), ca_certs=server.cafile)

    class Custom(ssl.SSLContext):
        pass

    with pytest.raises(TypeError, match=r"takes an ssl\.SSLContext"):
        PinnedPoolManager(good_policy, ssl_context=Custom(ssl.PROTOCOL_TLS_CLIENT))
    with pytest.raises(TypeError, match="client context"):
        PinnedPoolManager(good_policy, ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    # ssl_context=None is urllib3's "not given": the manager builds its own.
    assert PinnedPoolManager(good_policy, ssl_context=None, ca_certs=server.cafile).request(
        "GET", server.url()).status == 200


def test_urllib3_proxy_manager(server: TLSServer, proxy: ConnectProxy, chain: Chain, other: Chain) -> None:
    good = PinnedProxyManager(proxy.url, policy(pin(chain.ders[1]), pin(other.ders[1])), ca_certs=server.cafile)
    assert good.request("GET", server.url()).status == 200
    bad = PinnedProxyManager(proxy.url, policy(pin(other.ders[0]), pin(other.ders[1])), ca_certs=server.cafile,
                             retries=False)
    with pytest.raises(urllib3.exceptions.SSLError):
        bad.request("GET", server.url())
