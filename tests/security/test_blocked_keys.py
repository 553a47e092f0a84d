"""Blocked (compromised) keys are refused wherever the policy promises it.

Any blocked key — the policy's top-level ``blocked_pins`` ("refused for every
host") or the entry's own — in the checked chain refuses the connection,
whatever the entry's mode: report-only, expired, or no entry at all. Under
``CERT_NONE`` nothing was validated, so the policy gets the whole chain the
server sent: positive pins count on the leaf only, blocked keys anywhere.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Iterator

import pytest
import requests
import urllib3

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine.hooks._contexts import find_pin_error
from pinengine.hooks.requests import pinned_session
from pinengine.hooks.ssl import create_pinned_context
from pinengine.hooks.urllib3 import PinnedPoolManager
from tests.certs import Chain, cached_chain, make_chain
from tests.tls import TLSServer

HOST = "localhost"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def stranger() -> Chain:
    return make_chain("p256", HOST)


@pytest.fixture(scope="module")
def planted() -> Chain:
    return make_chain("p256", "planted.example")


@pytest.fixture(scope="module")
def server(chain: Chain, planted: Chain) -> Iterator[TLSServer]:
    # serves leaf, intermediate, and an unrelated certificate appended after them
    with TLSServer(chain, extra=[planted.leaf]) as srv:
        yield srv


def make_policy(where: str, mode: str, blocked: str, matching: str, other: str) -> PinPolicy:
    """A policy for HOST in ``mode`` whose entry pins ``matching`` (the leaf) and blocks ``blocked`` at ``where``.

    ``mode`` is enforce, report-only, expired or not-pinned (the entry names another host).
    """
    entry: dict[str, Any] = {"host": HOST if mode != "not-pinned" else "elsewhere.example",
                             "pins": [matching, other]}
    if mode == "report-only":
        entry["mode"] = "report-only"
    if mode == "expired":
        entry["expires"] = "2020-01-01"
    mapping: dict[str, Any] = {"domains": [entry]}
    if where == "top-level":
        mapping["blocked_pins"] = [blocked]
    else:
        entry["blocked_pins"] = [blocked]
    return PinPolicy.from_mapping(mapping)


CASES = [
    ("top-level", "enforce"),
    ("top-level", "report-only"),
    ("top-level", "expired"),
    ("top-level", "not-pinned"),
    ("entry", "enforce"),
    ("entry", "report-only"),
    ("entry", "expired"),
]


def fetch(ctx: ssl.SSLContext, srv: TLSServer) -> ssl.SSLSocket:
    raw = socket.create_connection((srv.host, srv.port), timeout=10)
    try:
        s = ctx.wrap_socket(raw, server_hostname=HOST)
    except BaseException:
        raw.close()
        raise
    with s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")
    return s


def unvalidated(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.mark.parametrize("where, mode", CASES)
def test_blocked_intermediate_is_refused_in_every_mode(
    where: str, mode: str, server: TLSServer, chain: Chain, stranger: Chain
) -> None:
    # the leaf pin matches, yet the intermediate's key is blocked: refused, not reported and let through
    policy = make_policy(where, mode, pin(chain.ders[1]), pin(chain.ders[0]), pin(stranger.ders[0]))
    with pytest.raises(PinMismatchError, match="blocked key") as info:
        fetch(create_pinned_context(policy, cafile=server.cafile), server)
    assert info.value.result.blocked[0].index == 1  # type: ignore[attr-defined]
    with pytest.raises(PinMismatchError, match="blocked key"):
        policy.verify(HOST, chain.ders)
    assert isinstance(policy.verify_batch([(HOST, chain.ders)])[0], PinMismatchError)


@pytest.mark.parametrize("where, mode", CASES)
def test_blocked_key_is_refused_through_requests(
    where: str, mode: str, server: TLSServer, chain: Chain, stranger: Chain
) -> None:
    policy = make_policy(where, mode, pin(chain.ders[2]), pin(chain.ders[0]), pin(stranger.ders[0]))
    session = pinned_session(policy, verify=server.cafile)
    with pytest.raises(requests.exceptions.SSLError) as info:
        session.get(server.url(), timeout=10)
    assert "blocked key" in str(info.value.__cause__)
    assert isinstance(info.value.__cause__, PinMismatchError)
    session.close()


@pytest.mark.parametrize("where, mode", CASES)
@pytest.mark.parametrize("index", [1, 2], ids=["served-intermediate", "appended-certificate"])
def test_cert_none_blocked_key_anywhere_in_the_served_chain(
    where: str, mode: str, index: int, server: TLSServer, chain: Chain, planted: Chain, stranger: Chain
) -> None:
    # nothing validated: the leaf pin still matches, but a blocked key anywhere
    # in what the server sent (its intermediate, or an extra certificate) refuses
    blocked = pin(chain.ders[1] if index == 1 else planted.ders[0])
    policy = make_policy(where, mode, blocked, pin(chain.ders[0]), pin(stranger.ders[0]))
    with pytest.raises(PinMismatchError, match="blocked key") as info:
        fetch(unvalidated(create_pinned_context(policy)), server)
    result = info.value.result  # type: ignore[attr-defined]
    assert result.verified is False and result.blocked[0].index == index
    assert "(as sent)" in str(info.value)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("where, mode", [("top-level", "report-only"), ("entry", "enforce"), ("top-level", "not-pinned")])
def test_cert_none_blocked_key_through_requests_and_urllib3(
    where: str, mode: str, server: TLSServer, chain: Chain, stranger: Chain
) -> None:
    policy = make_policy(where, mode, pin(chain.ders[1]), pin(chain.ders[0]), pin(stranger.ders[0]))
    session = pinned_session(policy, verify=False)
    with pytest.raises(requests.exceptions.SSLError) as info:
        session.get(server.url(), timeout=10)
    assert isinstance(info.value.__cause__, PinMismatchError)
    assert "blocked key" in str(info.value.__cause__)
    session.close()
    manager = PinnedPoolManager(policy, cert_reqs="CERT_NONE", retries=False)
    with pytest.raises(urllib3.exceptions.SSLError) as err:
        manager.request("GET", server.url())
    assert "blocked key" in str(find_pin_error(err.value))


def test_cert_none_still_matches_only_the_leaf(server: TLSServer, chain: Chain, stranger: Chain) -> None:
    # the served chain reaches the policy, but positive pins beyond the leaf still do not count
    intermediate_only = PinPolicy.from_mapping(
        {"domains": [{"host": HOST, "pins": [pin(chain.ders[1]), pin(stranger.ders[1])]}]}
    )
    with pytest.raises(PinMismatchError, match="only the leaf"):
        fetch(unvalidated(create_pinned_context(intermediate_only)), server)
    leaf = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": [pin(chain.ders[0]), pin(stranger.ders[0])]}]})
    result = fetch(unvalidated(create_pinned_context(leaf)), server).pin_result  # type: ignore[attr-defined]
    assert result.status == "match" and result.verified is False
    assert [m.index for m in result.matches] == [0]


def test_validated_chain_is_what_counts_when_validating(server: TLSServer, chain: Chain, planted: Chain) -> None:
    # with validation on, the checked chain is the validated one: the appended
    # certificate is not part of it (pins are never matched against what the
    # server merely sent), while a blocked key in the validated chain refuses
    policy = PinPolicy.from_mapping({"blocked_pins": [pin(planted.ders[0])], "domains": []})
    ctx = create_pinned_context(policy, cafile=server.cafile)
    assert fetch(ctx, server).pin_result.status == "not-pinned"  # type: ignore[attr-defined]
    policy = PinPolicy.from_mapping({"blocked_pins": [pin(chain.ders[2])], "domains": []})
    with pytest.raises(PinMismatchError, match="blocked key"):
        fetch(create_pinned_context(policy, cafile=server.cafile), server)


def test_pinned_and_blocked_at_once_is_refused(server: TLSServer, chain: Chain) -> None:
    # a key both pinned by a report-only entry and blocked at the top: the block wins
    policy = PinPolicy.from_mapping({
        "blocked_pins": [pin(chain.ders[1])],
        "domains": [{"host": HOST, "pins": [pin(chain.ders[1]), pin(chain.ders[0])], "mode": "report-only"}],
    })
    with pytest.raises(PinMismatchError, match="blocked key"):
        fetch(create_pinned_context(policy, cafile=server.cafile), server)
