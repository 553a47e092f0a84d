"""The generated test certificates pass a strict X.509 verifier, as CPython 3.13+ uses.

From CPython 3.13 on, ``ssl.create_default_context()`` sets
``VERIFY_X509_STRICT``: OpenSSL then refuses a chain whose certificates lack
an Authority Key Identifier, a CA without a Subject Key Identifier or Key
Usage, and so on. The CLI's live ``verify`` and the HTTPS report sink use such
a context, so certificates that only a lax verifier accepts would fail those
tests on 3.13 and 3.14 for the wrong reason. Here the strict flag is set by
hand, so every Python checks it; a real TLS server on loopback serves each key
type's chain, the client is ``ssl`` itself and pinengine's pinned context.
"""

from __future__ import annotations

import socket
import ssl

import pytest

from pinengine import Pin, PinPolicy
from pinengine.hooks.ssl import create_pinned_context
from tests.certs import KEY_TYPES, cached_chain
from tests.tls import TLSServer

HOST = "example.com"


def _handshake(context: ssl.SSLContext, port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_generated_chain_passes_a_strict_verifier(key_type: str) -> None:
    chain = cached_chain(key_type)  # for HOST: the same chains as the other tests (RSA-4096 keys are slow to make)
    with TLSServer(chain) as server:
        strict = ssl.create_default_context(cafile=server.cafile)
        strict.verify_flags |= ssl.VERIFY_X509_STRICT
        assert _handshake(strict, server.port) == chain.ders[0]

        policy = PinPolicy.from_mapping(
            {"domains": [{"host": HOST, "pins": [str(Pin.from_certificate(chain.ders[1])), str(Pin.from_certificate(chain.ders[0]))]}]}
        )
        pinned = create_pinned_context(policy, cafile=server.cafile)
        pinned.verify_flags |= ssl.VERIFY_X509_STRICT
        assert _handshake(pinned, server.port) == chain.ders[0]


def test_strict_verifier_is_live() -> None:
    """The strict flag really refuses what it should: a leaf without an Authority Key Identifier."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from tests.certs import Chain, new_key

    chain = cached_chain("p256")
    key = new_key("p256")
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    bare_leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(chain.intermediate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(chain.intermediate_key, hashes.SHA256())
    )
    lax_chain = Chain(bare_leaf, chain.intermediate, chain.root, key, chain.intermediate_key, chain.root_key)
    with TLSServer(lax_chain) as server:
        lax = ssl.create_default_context(cafile=server.cafile)
        lax.verify_flags &= ~ssl.VERIFY_X509_STRICT
        assert _handshake(lax, server.port) == lax_chain.ders[0]
        strict = ssl.create_default_context(cafile=server.cafile)
        strict.verify_flags |= ssl.VERIFY_X509_STRICT
        with pytest.raises(ssl.SSLCertVerificationError, match="Authority Key Identifier"):
            _handshake(strict, server.port)


def test_strict_verifier_refuses_a_root_without_subject_key_identifier() -> None:
    """Real bundles hold such roots (certifi's TWCA Global Root CA has no SKI).

    A chain that ends at one is refused by every context that sets
    VERIFY_X509_STRICT: on CPython 3.13+ that is ``ssl.create_default_context()``,
    so pinengine's live ``verify``/``check`` and the HTTPS report sink's default
    context (docs/edge-devices.md). The lax flags still accept it.
    """
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from tests.certs import Chain, make_cert, new_key

    root_key = new_key("p256")
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root without SKI")])
    usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(root_key, hashes.SHA256())
    )
    inter_key, leaf_key = new_key("p256"), new_key("p256")
    inter = make_cert("intermediate", inter_key, root, root_key, ca=True)
    leaf = make_cert(HOST, leaf_key, inter, inter_key, ca=False, sans=(HOST,))
    with TLSServer(Chain(leaf, inter, root, leaf_key, inter_key, root_key)) as server:
        lax = ssl.create_default_context(cafile=server.cafile)
        lax.verify_flags &= ~ssl.VERIFY_X509_STRICT
        _handshake(lax, server.port)
        strict = ssl.create_default_context(cafile=server.cafile)
        strict.verify_flags |= ssl.VERIFY_X509_STRICT
        with pytest.raises(ssl.SSLCertVerificationError, match="Subject Key Identifier"):
            _handshake(strict, server.port)
