"""Attack: serve a certificate for another name, from a CA the client pins, to a client with ``check_hostname = False``.

With host-name checking off (set by hand, or by urllib3 for
``assert_hostname`` / ``assert_fingerprint``, which then matches names itself
only after the handshake), the trust store still validates the chain, but
for whatever name the certificate carries. The pin check took that chain as
validated: a CA pin let a certificate issued to ``evil.test`` through for
``bank.test``, and a dynamic entry recorded ``evil.test``'s key as
``bank.test``'s first key (trust-on-first-use poisoning that outlives the
connection). Now such a chain counts as unvalidated for this name, as under
``CERT_NONE``: only the leaf can match, and no first key is recorded. Real
TLS servers, the ssl socket and asyncio streams.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, Iterator

import pytest

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine.hooks.ssl import create_pinned_context
from pinengine.stores import MemoryStore
from tests.certs import Chain, make_chain
from tests.tls import TLSServer

BANK = "bank.test"


@pytest.fixture(scope="module")
def evil() -> Chain:
    """A certificate for evil.test, issued by the CA (root and intermediate) that bank.test's pins name."""
    return make_chain("p256", "evil.test")


@pytest.fixture(scope="module")
def server(evil: Chain) -> Iterator[TLSServer]:
    with TLSServer(evil) as srv:
        yield srv


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


def ca_pinned(evil: Chain) -> PinPolicy:
    return PinPolicy.from_mapping({"domains": [{"host": BANK, "pins": [pin(evil.ders[1]), pin(evil.ders[2])]}]})


def connect(context: ssl.SSLContext, server: TLSServer) -> Any:
    conn = context.wrap_socket(socket.create_connection(("127.0.0.1", server.port)), server_hostname=BANK)
    conn.close()
    return conn


def no_host_check(context: ssl.SSLContext) -> ssl.SSLContext:
    context.check_hostname = False
    return context


def test_a_ca_pin_does_not_vouch_for_a_certificate_of_another_name(evil: Chain, server: TLSServer) -> None:
    # The control: with host-name checking on, the certificate is refused by validation.
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        connect(create_pinned_context(ca_pinned(evil), cafile=server.cafile), server)
    assert not isinstance(info.value, PinMismatchError)
    # Off: the chain validates (for evil.test), and the CA pins must not make it bank.test's.
    with pytest.raises(PinMismatchError, match="only the leaf"):
        connect(no_host_check(create_pinned_context(ca_pinned(evil), cafile=server.cafile)), server)


def test_a_leaf_pin_still_matches_without_host_name_checking(evil: Chain, server: TLSServer) -> None:
    policy = PinPolicy.from_mapping(
        {"domains": [{"host": BANK, "pins": [pin(evil.ders[0])], "require_backup_pin": False}]}
    )
    conn = connect(no_host_check(create_pinned_context(policy, cafile=server.cafile)), server)
    assert conn.pin_result.status == "match" and conn.pin_result.verified is False


def test_no_first_key_is_recorded_from_a_certificate_of_another_name(evil: Chain, server: TLSServer) -> None:
    store = MemoryStore()
    policy = PinPolicy.from_mapping({"domains": [{"host": BANK, "dynamic": True}]}, store=store, cache_ttl=0)
    with pytest.raises(PinMismatchError, match="No key is recorded"):
        connect(no_host_check(create_pinned_context(policy, cafile=server.cafile)), server)
    assert store.get(BANK) is None  # evil.test's key did not become bank.test's


def test_asyncio_streams_without_host_name_checking(evil: Chain, server: TLSServer) -> None:
    store = MemoryStore()
    contexts = [
        no_host_check(create_pinned_context(ca_pinned(evil), cafile=server.cafile)),
        no_host_check(create_pinned_context(
            PinPolicy.from_mapping({"domains": [{"host": BANK, "dynamic": True}]}, store=store, cache_ttl=0),
            cafile=server.cafile,
        )),
    ]

    async def talk(context: ssl.SSLContext) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context, server_hostname=BANK)
        writer.close()

    for context in contexts:
        with pytest.raises(PinMismatchError):
            asyncio.run(talk(context))
    assert store.get(BANK) is None
