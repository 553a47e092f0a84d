"""The pinned ssl.SSLContext against real TLS servers on loopback."""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

import pytest

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine.hooks.ssl import create_pinned_context
from tests.certs import Chain, make_chain
from tests.tls import TLSServer

HOST = "localhost"


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def policy(host: str, *pins: str, **extra: Any) -> PinPolicy:
    entry: dict[str, Any] = {"host": host, "pins": list(pins)}
    if len(pins) < 2:
        entry["require_backup_pin"] = False
    entry.update(extra)
    return PinPolicy.from_mapping({"domains": [entry]})


@pytest.fixture(scope="module")
def stranger() -> Chain:
    return make_chain("p256", HOST)


def fetch(ctx: ssl.SSLContext, srv: TLSServer, hostname: str = HOST, connect_to: str | None = None) -> ssl.SSLSocket:
    """Connect, handshake (the pin check runs here), send a request, read the answer; return the socket."""
    raw = socket.create_connection((connect_to or srv.host, srv.port), timeout=10)
    try:
        s = ctx.wrap_socket(raw, server_hostname=hostname)
    except BaseException:
        raw.close()
        raise
    with s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.saved_session = s.session  # type: ignore[attr-defined]  # (TLS 1.3 tickets arrive with the data)
    return s


@pytest.mark.parametrize("index, role", [(0, "leaf"), (1, "intermediate"), (2, "root")])
def test_match_at_each_position(server: TLSServer, chain: Chain, stranger: Chain, index: int, role: str) -> None:
    ctx = create_pinned_context(policy(HOST, pin(chain.ders[index]), pin(stranger.ders[0])), cafile=server.cafile)
    s = fetch(ctx, server)
    result = s.pin_result  # type: ignore[attr-defined]
    assert result.status == "match"
    assert [(m.index, m.role) for m in result.matches] == [(index, role)]


def test_match_through_backup_pin(server: TLSServer, chain: Chain, stranger: Chain) -> None:
    ctx = create_pinned_context(policy(HOST, pin(stranger.ders[1]), pin(chain.ders[2])), cafile=server.cafile)
    assert fetch(ctx, server).pin_result.matches[0].index == 2  # type: ignore[attr-defined]


def test_mismatch_refuses_and_lists_the_chain(server: TLSServer, chain: Chain, stranger: Chain) -> None:
    ctx = create_pinned_context(policy(HOST, pin(stranger.ders[0]), pin(stranger.ders[2])), cafile=server.cafile)
    with pytest.raises(PinMismatchError) as info:
        fetch(ctx, server)
    text = str(info.value)
    for der in chain.ders:  # the validated chain, root included
        assert pin(der) in text
    assert pin(stranger.ders[0]) in text
    assert isinstance(info.value, ssl.SSLCertVerificationError)


def test_chain_injection_is_refused(chain: Chain) -> None:
    # The server sends its real leaf and intermediate plus an unrelated
    # certificate whose key is pinned: that certificate is not part of the
    # validated chain, so it must not count.
    planted = make_chain("p256", "attacker.example")
    with TLSServer(chain, extra=[planted.leaf, planted.root]) as srv:
        ctx = create_pinned_context(policy(HOST, pin(planted.ders[0]), pin(planted.ders[2])), cafile=srv.cafile)
        with pytest.raises(PinMismatchError) as info:
            fetch(ctx, srv)
        assert pin(planted.ders[0]) not in str(info.value).split("Pinned keys")[0]
        # the same server passes with a pin on its real chain
        ok = create_pinned_context(policy(HOST, pin(chain.ders[1])), cafile=srv.cafile)
        assert fetch(ok, srv).pin_result.matches[0].index == 1  # type: ignore[attr-defined]


def test_cert_none_counts_only_the_leaf(server: TLSServer, chain: Chain) -> None:
    for index in (1, 2):
        ctx = create_pinned_context(policy(HOST, pin(chain.ders[index])))
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with pytest.raises(PinMismatchError, match="only the leaf"):
            fetch(ctx, server)
    ctx = create_pinned_context(policy(HOST, pin(chain.ders[0])))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    result = fetch(ctx, server).pin_result  # type: ignore[attr-defined]
    assert result.status == "match" and result.verified is False


def test_untrusted_server_still_fails_validation(server: TLSServer, chain: Chain) -> None:
    ctx = create_pinned_context(policy(HOST, pin(chain.ders[0])))  # system trust store: the test CA is unknown
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        fetch(ctx, server)
    assert not isinstance(info.value, PinMismatchError)


def test_expired_report_only_and_unpinned_pass(
    server: TLSServer, stranger: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = (pin(stranger.ders[0]), pin(stranger.ders[1]))
    with caplog.at_level(logging.WARNING, logger="pinengine"):
        ctx = create_pinned_context(policy(HOST, *wrong, expires="2020-01-01"), cafile=server.cafile)
        assert fetch(ctx, server).pin_result.status == "expired"  # type: ignore[attr-defined]
        assert "expired on" in caplog.text
        caplog.clear()
        ctx = create_pinned_context(policy(HOST, *wrong, mode="report-only"), cafile=server.cafile)
        assert fetch(ctx, server).pin_result.status == "report-only"  # type: ignore[attr-defined]
        assert "allowed, report-only" in caplog.text
    ctx = create_pinned_context(policy("elsewhere.example", *wrong), cafile=server.cafile)
    assert fetch(ctx, server).pin_result.status == "not-pinned"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "pattern, sni, chosen",
    [
        ("*.pinned.test", "www.pinned.test", True),
        ("*.pinned.test", "a.b.pinned.test", False),
        ("**.pinned.test", "a.b.pinned.test", True),
        ("**.pinned.test", "pinned.test", True),
        ("pinned.test", "www.pinned.test", False),
    ],
)
def test_patterns_chosen_by_sni(pattern: str, sni: str, chosen: bool, stranger: Chain) -> None:
    wild = make_chain("p256", sni)
    with TLSServer(wild) as srv:
        ctx = create_pinned_context(policy(pattern, pin(stranger.ders[0]), pin(stranger.ders[1])), cafile=srv.cafile)
        if chosen:
            with pytest.raises(PinMismatchError):
                fetch(ctx, srv, hostname=sni)
        else:
            assert fetch(ctx, srv, hostname=sni).pin_result.status == "not-pinned"  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_resumed_sessions_are_checked(version: ssl.TLSVersion, chain: Chain) -> None:
    with TLSServer(chain, max_version=version) as srv:
        ctx = create_pinned_context(policy(HOST, pin(chain.ders[1])), cafile=srv.cafile)
        first = fetch(ctx, srv)
        s = ctx.wrap_socket(socket.create_connection((srv.host, srv.port), timeout=10),
                            server_hostname=HOST, session=first.saved_session)  # type: ignore[attr-defined]
        with s:
            assert s.session_reused
            # checked on the resumed connection too, against the chain validated
            # when the session was made: the intermediate pin still matches
            assert s.pin_result.matches[0].index == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_key_change_behind_a_cached_session_is_refused(version: ssl.TLSVersion, chain: Chain) -> None:
    ctx = create_pinned_context(policy(HOST, pin(chain.ders[0])), cafile=None)
    ctx.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(chain.ders[2]))
    with TLSServer(chain, max_version=version) as srv:
        port = srv.port
        session = fetch(ctx, srv).saved_session  # type: ignore[attr-defined]
    # The server comes back on the same port with a new key (a certificate from
    # the same, trusted CA); the client offers its cached session. The
    # connection must be checked afresh and refused, not resumed on trust.
    from tests.certs import make_cert, new_key

    key = new_key("p256")
    leaf = make_cert(HOST, key, chain.intermediate, chain.intermediate_key, ca=False, sans=(HOST,))
    rotated = Chain(leaf, chain.intermediate, chain.root, key, chain.intermediate_key, chain.root_key)
    with TLSServer(rotated, max_version=version, port=port) as srv2:
        raw = socket.create_connection((srv2.host, port), timeout=10)
        with pytest.raises(PinMismatchError) as info:
            ctx.wrap_socket(raw, server_hostname=HOST, session=session)
        raw.close()
        assert pin(rotated.ders[0]) in str(info.value)


def test_the_pinned_context_is_as_strict_as_the_default_context(chain: Chain) -> None:
    # Every setting create_default_context() makes on this Python is made too (3.13 added
    # VERIFY_X509_STRICT and VERIFY_X509_PARTIAL_CHAIN): moving to pinning never loosens validation.
    default = ssl.create_default_context()
    pinned = create_pinned_context(PinPolicy(), cafile=None)
    assert pinned.verify_flags & default.verify_flags == default.verify_flags
    assert pinned.options & default.options == default.options
    assert (pinned.verify_mode, pinned.check_hostname) == (default.verify_mode, default.check_hostname)
    assert pinned.minimum_version >= default.minimum_version


def test_every_pinned_context_refuses_renegotiation_for_good() -> None:
    # A renegotiation is a second handshake after the pin check: its certificate would never be checked.
    # Every way to get a pinned context refuses it, and the option cannot be switched off afterwards.
    from pinengine.hooks.ssl import PinnedSSLContext, pin_context

    contexts = [
        create_pinned_context(PinPolicy()),
        pin_context(ssl.create_default_context(), PinPolicy()),
        pin_context(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), PinPolicy()),
        PinnedSSLContext(ssl.PROTOCOL_TLS_CLIENT),
    ]
    for context in contexts:
        assert context.options & ssl.OP_NO_RENEGOTIATION, context
        context.options &= ~ssl.OP_NO_RENEGOTIATION
        assert context.options & ssl.OP_NO_RENEGOTIATION, context
        context.options = ssl.OP_NO_COMPRESSION
        assert context.options & ssl.OP_NO_RENEGOTIATION and context.options & ssl.OP_NO_COMPRESSION, context
