"""The seam for grpc's own verify_peer_callback (grpc/proposal#546): detected, not relied on.

The installed grpcio has no such callback, so pinned channels use the relay.
A grpcio that offers the callback as proposed (the leaf only) is detected and
still not used: pins are checked on the validated chain. ``verifier`` is the
callback a release with validated chains would get; it is checked here
against the policy directly.
"""

from __future__ import annotations

import inspect
import ssl
from types import SimpleNamespace
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

from pinengine import PinMismatchError  # noqa: E402
from pinengine.hooks.grpc import secure_channel  # noqa: E402
from pinengine.hooks.grpc._native import native_support, verifier  # noqa: E402
from tests.certs import cached_chain, make_chain, pem  # noqa: E402
from tests.grpc_support import HOST, pin, policy_for  # noqa: E402


def test_the_installed_grpcio_has_no_callback_so_the_relay_is_used() -> None:
    support = native_support()
    assert "verify_peer_callback" not in inspect.signature(grpc.ssl_channel_credentials).parameters
    assert not support.callback and not support.usable
    stranger = make_chain("p256", HOST)
    with secure_channel(f"{HOST}:1", policy_for(pin(stranger.ders[0]), pin(stranger.ders[1]))) as channel:
        assert channel._relay.is_unix  # a relay: the local endpoint grpc talks to


def test_a_callback_as_proposed_is_detected_and_not_used() -> None:
    def ssl_channel_credentials(root_certificates: Any = None, private_key: Any = None,
                                certificate_chain: Any = None, verify_peer_callback: Any = None) -> None:
        raise AssertionError("the seam must not call an unreleased API")

    support = native_support(SimpleNamespace(ssl_channel_credentials=ssl_channel_credentials))
    assert support.callback and not support.validated_chain and not support.usable
    assert "leaf only" in support.reason


def test_something_that_cannot_be_inspected() -> None:
    assert not native_support(SimpleNamespace()).callback
    assert not native_support(SimpleNamespace(ssl_channel_credentials=len)).usable


def test_the_verifier_with_the_leaf_only_counts_leaf_pins_only() -> None:
    chain = cached_chain("p256", HOST)
    leaf_pem = pem(chain.leaf).decode()
    verifier(policy_for(pin(chain.ders[0]), pin(make_chain("p256", HOST).ders[0])), HOST)(HOST, leaf_pem)
    intermediate_pinned = policy_for(pin(chain.ders[1]), pin(make_chain("p256", HOST).ders[1]))
    with pytest.raises(PinMismatchError):  # nothing validated the chain: an intermediate pin cannot count
        verifier(intermediate_pinned, HOST)(HOST, leaf_pem)
    # with the validated chain it can
    verifier(intermediate_pinned, HOST)(HOST, leaf_pem, verified_chain=[pem(c) for c in chain.certs])
    verifier(intermediate_pinned, HOST)("", leaf_pem, verified_chain=chain.ders)  # no target name: the channel's
    stranger = make_chain("p256", HOST)
    with pytest.raises(PinMismatchError):
        verifier(intermediate_pinned, HOST)(HOST, pem(stranger.leaf).decode(), verified_chain=stranger.ders)
    with pytest.raises(ValueError):
        verifier(intermediate_pinned, HOST)(HOST, "not a certificate")
    assert ssl.PEM_cert_to_DER_cert(leaf_pem) == chain.ders[0]
