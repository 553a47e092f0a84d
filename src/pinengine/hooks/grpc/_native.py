"""The seam for grpc's own certificate hook: pins checked inside grpc's handshake, no relay.

grpc/proposal#546 (a draft, not released) proposes
``grpc.ssl_channel_credentials(..., verify_peer_callback=fn)``, backed by the
C core's external certificate verifier: ``fn(target_name, peer_pem)`` runs
after grpc validated the chain, on the connection that will carry the RPCs,
and raising refuses the peer. As proposed it passes the *leaf* only; pins are
checked against the chain the trust store validated (DESIGN.md), so with the
leaf alone only leaf pins could ever match: a policy pinning an intermediate
or a root would refuse every connection (safe, but not usable).

So the relay stays until a grpcio release offers the callback *and* passes
it the validated chain. ``native_support()`` detects the callback in the
installed grpcio (from the signature, no version number is pinned). How a
release would pass a validated chain is not defined yet (the proposal's open
question 1 names ``peer_cert_full_chain``, which in the C core is the chain
as the peer *sent* it and does not qualify); when it is, that is recognised
in ``native_support`` and nowhere else. ``verifier()`` is the callback such a
release would get. When ``native_support().usable`` becomes true, the channel
factories can build ``grpc.ssl_channel_credentials(roots, key, chain,
verify_peer_callback=verifier(policy, host))`` and a plain
``grpc.secure_channel`` (wrapped for the error translation, as today)
instead of starting a relay. Nothing here calls the unreleased API.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Callable

from ...policy import PinPolicy

__all__ = ["NativeSupport", "native_support", "verifier"]

log = logging.getLogger("pinengine")

_CALLBACK = "verify_peer_callback"


@dataclass(frozen=True)
class NativeSupport:
    """What the installed grpcio offers for checking pins inside its handshake."""

    callback: bool  # ssl_channel_credentials takes a verify_peer_callback
    validated_chain: bool  # ... and passes it the chain the trust store validated
    reason: str

    @property
    def usable(self) -> bool:
        """Whether pins can be checked inside grpc's handshake (then no relay is needed)."""
        return self.callback and self.validated_chain


def native_support(grpc_module: Any = None) -> NativeSupport:
    """Detect grpc's verify_peer_callback in ``grpc_module`` (the installed grpc by default)."""
    if grpc_module is None:
        import grpc as grpc_module
    try:
        params = inspect.signature(grpc_module.ssl_channel_credentials).parameters
    except (AttributeError, TypeError, ValueError):
        return NativeSupport(False, False, "grpc.ssl_channel_credentials cannot be inspected")
    if _CALLBACK not in params:
        return NativeSupport(False, False, f"this grpcio has no {_CALLBACK} (grpc/proposal#546)")
    # The place to recognise a release whose callback gets the validated chain.
    return NativeSupport(True, False, f"this grpcio's {_CALLBACK} gives the leaf only, as grpc/proposal#546 "
                                      "proposes; pins are checked on the validated chain, so the relay stays")


def verifier(policy: PinPolicy, hostname: str, port: int | None = None) -> Callable[..., None]:
    """The callback a release with validated chains would get: raises PinMismatchError to refuse the peer.

    ``verified_chain`` (DER or PEM certificates, leaf first) is the chain
    grpc validated; without it only the leaf (``peer_pem``) is known, and the
    policy is asked as for a chain nobody validated: only leaf pins count.
    """

    def verify_peer(target_name: str, peer_pem: str, verified_chain: list[Any] | None = None) -> None:
        name = target_name or hostname
        if verified_chain:
            chain = [_der(cert) for cert in verified_chain]
            policy.verify(name, chain, verified=True, port=port)
        else:
            leaf = _der(peer_pem)
            policy.verify(name, [leaf], verified=False, port=port, served_chain=[leaf])

    return verify_peer


def _der(cert: Any) -> bytes:
    if isinstance(cert, (bytes, bytearray)) and not bytes(cert).lstrip().startswith(b"-----"):
        return bytes(cert)
    text = cert.decode("ascii") if isinstance(cert, (bytes, bytearray)) else str(cert)
    return ssl.PEM_cert_to_DER_cert(text.strip())
