"""Real HTTPS clients fetching one URL, plain or through pinengine's hooks, for the host-name spelling attacks.

Each client is given the host exactly as a user would write it in a URL (or
pass to ``http.client``) and encodes it its own way: that is the point of the
tests that use this module.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
from typing import Any, Callable

import aiohttp
import httpx
import pytest
import requests
import urllib3

from pinengine import PinMismatchError, PinPolicy
from pinengine._errors import HostnameError
from pinengine.hooks.requests import pinned_session
from pinengine.hooks.ssl import create_pinned_context
from pinengine.hooks.urllib3 import PinnedPoolManager

CLIENTS = ("requests", "urllib3", "httpx", "aiohttp", "http.client")
TIMEOUT = 10


def _url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}/" if ":" in host else f"https://{host}:{port}/"


def _context(policy: PinPolicy | None, cafile: str) -> ssl.SSLContext:
    if policy is None:
        return ssl.create_default_context(cafile=cafile)
    return create_pinned_context(policy, cafile=cafile)


def _requests(host: str, port: int, policy: PinPolicy | None, cafile: str) -> int:
    session = requests.Session() if policy is None else pinned_session(policy, verify=cafile)
    with session:
        return session.get(_url(host, port), verify=cafile, timeout=TIMEOUT).status_code


def _urllib3(host: str, port: int, policy: PinPolicy | None, cafile: str) -> int:
    kwargs: dict[str, Any] = {"ca_certs": cafile, "retries": False, "timeout": TIMEOUT}
    manager = urllib3.PoolManager(**kwargs) if policy is None else PinnedPoolManager(policy, **kwargs)
    with manager:
        return manager.request("GET", _url(host, port)).status


def _httpx(host: str, port: int, policy: PinPolicy | None, cafile: str) -> int:
    with httpx.Client(verify=_context(policy, cafile), timeout=TIMEOUT) as client:
        return client.get(_url(host, port)).status_code


def _aiohttp(host: str, port: int, policy: PinPolicy | None, cafile: str) -> int:
    async def get() -> int:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
            async with session.get(_url(host, port), ssl=_context(policy, cafile)) as response:
                await response.read()
                return response.status

    return asyncio.run(get())


def _http_client(host: str, port: int, policy: PinPolicy | None, cafile: str) -> int:
    conn = http.client.HTTPSConnection(host, port, context=_context(policy, cafile), timeout=TIMEOUT)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


_FETCH: dict[str, Callable[[str, int, PinPolicy | None, str], int]] = {
    "requests": _requests,
    "urllib3": _urllib3,
    "httpx": _httpx,
    "aiohttp": _aiohttp,
    "http.client": _http_client,
}


def fetch(client: str, host: str, port: int, *, policy: PinPolicy | None, cafile: str) -> int:
    """GET ``https://host:port/`` with ``client`` trusting ``cafile``; pinned by ``policy`` (None: not pinned).

    Returns the HTTP status; whatever the client raises goes through.
    """
    return _FETCH[client](host, port, policy, cafile)


def refusal(exc: BaseException) -> BaseException | None:
    """The PinMismatchError or HostnameError behind a client's exception, if there is one."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, PinMismatchError) and isinstance(item.__cause__, HostnameError):
            # The TLS hooks refuse a connection whose check raised with a
            # PinMismatchError caused by that error: the cause says why.
            return item.__cause__
        if isinstance(item, (PinMismatchError, HostnameError)):
            return item  # type: ignore[no-any-return]
        if isinstance(item, BaseException):
            todo.extend([item.__cause__, item.__context__, getattr(item, "reason", None),
                         getattr(item, "os_error", None), *item.args])
    return None


def refused(client: str, host: str, port: int, *, policy: PinPolicy, cafile: str) -> BaseException:
    """Fetch through the pinned client and return the pinengine error it was refused with (fail if it was not)."""
    try:
        status = fetch(client, host, port, policy=policy, cafile=cafile)
    except Exception as exc:  # each client wraps the hook's error its own way
        found = refusal(exc)
        if found is None:
            raise AssertionError(f"{client} {host!r}: failed, but not by pinengine: {exc!r}") from exc
        return found
    raise AssertionError(f"{client} {host!r}: connected unpinned (HTTP {status}) to a server whose key is not pinned")


def resolve_test_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make names under .test / .example (in any spelling, U-labels too) resolve to 127.0.0.1, in this process.

    Only the resolver is replaced, for the test that calls this: sockets, TLS
    and clients stay real.
    """
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode("ascii", "replace") if isinstance(host, bytes) else host
        if isinstance(text, str) and (not text.isascii() or text.lower().rstrip(".").endswith((".test", ".example"))):
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
