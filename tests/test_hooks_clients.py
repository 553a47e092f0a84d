"""One pinned context pins every Python HTTPS client: http.client, urllib, asyncio, httpx, aiohttp."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import socket
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine.hooks.ssl import create_pinned_context
from tests.certs import Chain, make_chain
from tests.tls import TLSServer

HOST = "localhost"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


@pytest.fixture(scope="module")
def key_type() -> str:
    return "rsa2048"


@pytest.fixture(scope="module")
def contexts(server: TLSServer, chain: Chain) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(good, bad): pinned to the server's intermediate key, and to keys it does not have."""
    other = make_chain("p256", HOST)
    good = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": [pin(chain.ders[1]), pin(other.ders[1])]}]})
    bad = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": [pin(other.ders[0]), pin(other.ders[1])]}]})
    return create_pinned_context(good, cafile=server.cafile), create_pinned_context(bad, cafile=server.cafile)


def test_http_client(server: TLSServer, contexts: Any) -> None:
    good, bad = contexts
    conn = http.client.HTTPSConnection(HOST, server.port, context=good, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read().startswith(b"hello")
    conn.close()
    conn = http.client.HTTPSConnection(HOST, server.port, context=bad, timeout=10)
    with pytest.raises(PinMismatchError):
        conn.request("GET", "/")
    conn.close()


def test_urllib_request(server: TLSServer, contexts: Any) -> None:
    good, bad = contexts
    with urllib.request.urlopen(server.url(), context=good, timeout=10) as response:
        assert response.read().startswith(b"hello")
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(server.url(), context=bad, timeout=10)
    assert isinstance(info.value.reason, PinMismatchError)


def test_asyncio_open_connection(server: TLSServer, contexts: Any) -> None:
    good, bad = contexts

    async def get(ctx: ssl.SSLContext) -> bytes:
        reader, writer = await asyncio.open_connection(HOST, server.port, ssl=ctx)
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = await reader.read()
        writer.close()
        return data

    assert b"hello" in asyncio.run(get(good))
    with pytest.raises(PinMismatchError):
        asyncio.run(get(bad))


def test_httpx_sync_and_async(server: TLSServer, contexts: Any) -> None:
    httpx = pytest.importorskip("httpx")
    good, bad = contexts
    with httpx.Client(verify=good) as client:
        assert client.get(server.url()).text.startswith("hello")
    with httpx.Client(verify=bad) as client, pytest.raises(httpx.ConnectError) as info:
        client.get(server.url())
    assert "pinning failure" in str(info.value)

    async def run() -> None:
        async with httpx.AsyncClient(verify=good) as client:
            assert (await client.get(server.url())).text.startswith("hello")
        async with httpx.AsyncClient(verify=bad) as client:
            with pytest.raises(httpx.ConnectError, match="pinning failure"):
                await client.get(server.url())

    asyncio.run(run())


def test_aiohttp(server: TLSServer, contexts: Any) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    good, bad = contexts

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url(), ssl=good) as response:
                assert (await response.text()).startswith("hello")
            with pytest.raises(aiohttp.ClientError) as info:
                async with session.get(server.url(), ssl=bad):
                    pass
            assert "pinning failure" in str(info.value) or isinstance(
                getattr(info.value, "os_error", None) or info.value.__cause__, PinMismatchError
            )

    asyncio.run(run())


def test_ipv6_loopback(chain: Chain) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    v6 = make_chain("p256", HOST, ("::1",))
    other = make_chain("p256", HOST)
    with TLSServer(v6, host="::1") as srv:
        policy = PinPolicy.from_mapping(
            {"domains": [{"host": "[::1]", "pins": [pin(v6.ders[0]), pin(other.ders[0])]}]}
        )
        ctx = create_pinned_context(policy, cafile=srv.cafile)
        conn = http.client.HTTPSConnection("::1", srv.port, context=ctx, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        wrong = PinPolicy.from_mapping(
            {"domains": [{"host": "::1", "pins": [pin(other.ders[0]), pin(other.ders[1])]}]}
        )
        conn = http.client.HTTPSConnection("::1", srv.port, context=create_pinned_context(wrong, cafile=srv.cafile))
        with pytest.raises(PinMismatchError):
            conn.request("GET", "/")
        conn.close()


def test_one_context_many_threads_and_no_leak_between_contexts(server: TLSServer, contexts: Any) -> None:
    good, bad = contexts

    def one(ctx: ssl.SSLContext) -> str:
        conn = http.client.HTTPSConnection(HOST, server.port, context=ctx, timeout=10)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return "ok"
        except PinMismatchError:
            return "refused"
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, [good, bad] * 20))
    assert outcomes == ["ok", "refused"] * 20
