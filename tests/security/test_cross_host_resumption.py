"""Cross-host session resumption: a session made with one host must not vouch for another.

The attacker holds a valid certificate for ``evil.test`` from the CA that
``bank.test`` is pinned to. The client talks to ``evil.test`` once (a full,
validated handshake) and then, through a session cache that mixes hosts up,
offers that session to the same server when it asks for ``bank.test``. The
server accepts the resumption; OpenSSL checks neither the chain nor the host
name on a resumed session, so the pin check is the last line: the chain
validated for ``evil.test`` must not count for ``bank.test``.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pytest

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine.hooks.ssl import PinnedSSLContext, create_pinned_context
from tests.certs import Chain, make_chain
from tests.tls import TLSServer

EVIL = "evil.test"
BANK = "bank.test"
VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


@pytest.fixture(scope="module")
def evil() -> Chain:
    return make_chain("p256", EVIL)


def pinned(srv: TLSServer, evil: Chain, **extra: Any) -> PinnedSSLContext:
    """bank.test (and, with ``evil_pinned``, evil.test too) pinned to the CA that issued evil.test's certificate."""
    domains = [{"host": BANK, "pins": [pin(evil.ders[1]), pin(evil.ders[2])]}]
    if extra.get("evil_pinned"):
        domains.append({"host": EVIL, "pins": [pin(evil.ders[1]), pin(evil.ders[2])]})
    return create_pinned_context(PinPolicy.from_mapping({"domains": domains}), cafile=srv.cafile)


def session_of(ctx: ssl.SSLContext, srv: TLSServer, hostname: str) -> ssl.SSLSession:
    """A full handshake with ``hostname`` and one request; the session it leaves (TLS 1.3 tickets come with data)."""
    with ctx.wrap_socket(socket.create_connection((srv.host, srv.port), timeout=10), server_hostname=hostname) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        session = s.session
    assert session is not None
    return session


def resume(ctx: ssl.SSLContext, srv: TLSServer, hostname: str, session: ssl.SSLSession) -> ssl.SSLSocket:
    raw = socket.create_connection((srv.host, srv.port), timeout=10)
    try:
        return ctx.wrap_socket(raw, server_hostname=hostname, session=session)
    except BaseException:
        raw.close()
        raise


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_session_of_another_host_does_not_vouch_for_a_pinned_host(version: ssl.TLSVersion, evil: Chain) -> None:
    with TLSServer(evil, max_version=version) as srv:
        ctx = pinned(srv, evil)
        session = session_of(ctx, srv, EVIL)
        with pytest.raises(PinMismatchError) as info:
            resume(ctx, srv, BANK, session)
        # decided on the leaf alone: nothing was validated for bank.test
        assert info.value.result.verified is False  # type: ignore[attr-defined]
        assert "only the leaf can match" in str(info.value)
        # without the session the same server fails validation (wrong host name), not the pin check
        with pytest.raises(ssl.SSLCertVerificationError) as plain:
            resume(ctx, srv, BANK, None)  # type: ignore[arg-type]
        assert not isinstance(plain.value, PinMismatchError)


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_session_of_another_host_through_an_sslobject(version: ssl.TLSVersion, evil: Chain) -> None:
    # the same attack on an SSLObject (memory BIOs, as asyncio and the gRPC forwarder use)
    with TLSServer(evil, max_version=version) as srv:
        ctx = pinned(srv, evil)
        session = session_of(ctx, srv, EVIL)
        sock = socket.create_connection((srv.host, srv.port), timeout=10)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname=BANK, session=session)
        with pytest.raises(PinMismatchError) as info:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
                    incoming.write(sock.recv(65536))
        assert tls.session_reused
        assert info.value.result.verified is False  # type: ignore[attr-defined]
        sock.close()


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_resumption_for_the_same_host_keeps_its_validated_chain(version: ssl.TLSVersion, evil: Chain) -> None:
    with TLSServer(evil, max_version=version) as srv:
        ctx = pinned(srv, evil, evil_pinned=True)
        session = session_of(ctx, srv, EVIL)
        # the same host, spelled as a client may spell it: the remembered chain is found
        for spelling in (EVIL, "EVIL.Test", "evil.test."):
            with resume(ctx, srv, spelling, session) as s:
                assert s.session_reused
                result = s.pin_result  # type: ignore[attr-defined]
                assert result.status == "match" and result.verified is True
                assert result.matches[0].index == 1  # the intermediate: from the chain validated for evil.test


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_bank_session_does_not_vouch_for_evil_either(version: ssl.TLSVersion) -> None:
    # one certificate valid for both names: a session made for one host is
    # resumed for the other. Each host gets its own decision: a chain is
    # remembered per (leaf, host name), never per leaf alone.
    both = make_chain("p256", BANK, extra_sans=(EVIL,))
    with TLSServer(both, max_version=version) as srv:
        policy = PinPolicy.from_mapping({"domains": [
            {"host": BANK, "pins": [pin(both.ders[1]), pin(both.ders[2])]},
            {"host": EVIL, "pins": [pin(both.ders[1]), pin(both.ders[0])]},
        ]})
        ctx = create_pinned_context(policy, cafile=srv.cafile)
        session = session_of(ctx, srv, BANK)
        with resume(ctx, srv, EVIL, session) as s:
            assert s.session_reused
            result = s.pin_result  # type: ignore[attr-defined]
            # evil.test's own leaf pin matches; the intermediate does not count (nothing validated for evil.test)
            assert result.verified is False and [m.index for m in result.matches] == [0]
        with resume(ctx, srv, BANK, session) as s:
            assert s.session_reused and s.pin_result.verified is True  # type: ignore[attr-defined]


def test_remembered_chains_are_bounded(evil: Chain) -> None:
    # one entry per (leaf, host name) a server can make the client validate:
    # the oldest go first once the bound is reached, and a resumption whose
    # chain is gone is judged on its leaf (never on another host's chain)
    from pinengine.hooks import ssl as hook

    ctx = create_pinned_context(PinPolicy([]))
    for i in range(hook._CHAIN_CACHE_SIZE + 10):
        ctx._remember_chain(f"host{i}.test", evil.ders, i % 2 == 0)
    assert len(ctx._chains) == hook._CHAIN_CACHE_SIZE
    assert ctx._recall_chain("host0.test", evil.ders[0]) is None
    last = hook._CHAIN_CACHE_SIZE + 9
    # Each chain is remembered with whether its full handshake validated it for the name.
    assert ctx._recall_chain(f"host{last}.test", evil.ders[0]) == (evil.ders, False)
    assert ctx._recall_chain(f"host{last - 1}.test", evil.ders[0]) == (evil.ders, True)
    assert ctx._recall_chain("elsewhere.test", evil.ders[0]) is None
